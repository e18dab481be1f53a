"""`zoo check`: the no-op gain tells an under-trained zoo from a converged one; the CLI prints it."""
from __future__ import annotations

import json
from functools import partial

import pytest

from neon_ray import cli
from neon_ray.nets.spec import SamplerConfig
from neon_ray.nets.training import TrainConfig
from neon_ray.pruning.episode_config import EpisodeConfig
from neon_ray.pruning.finetune import finetune
from neon_ray.zoo.build import build_zoo
from neon_ray.zoo.check import check_zoo, format_check
from neon_ray.zoo.config import ZooConfig, zoo_train_config
from neon_ray.zoo.store import open_zoo

PLAIN = SamplerConfig(max_layers=1, widths=(16,), pre_probs={"none": 1.0}, act_probs={"relu": 1.0})
EPISODE_FINETUNE = partial(finetune, cfg=EpisodeConfig().finetune)


def wine_zoo(root, train: TrainConfig):
    cfg = ZooConfig(out=str(root), datasets=("sklearn:wine",), networks=2, test_networks=0, sampler=PLAIN, train=train)
    build_zoo(cfg, progress=False, in_process=True)
    return open_zoo(root)


def test_noop_gain_is_large_when_under_trained_and_near_zero_when_converged(tmp_path):
    # Two Adam steps leave wine's networks near chance: the episode's fine-tuning then finishes their training.
    raw = check_zoo(wine_zoo(tmp_path / "raw", TrainConfig(max_epochs=1, patience=None)), EPISODE_FINETUNE, in_process=True)
    done = check_zoo(wine_zoo(tmp_path / "done", zoo_train_config()), EPISODE_FINETUNE, in_process=True)
    assert raw["noop_gain_pp_mean"] > 20
    assert abs(done["noop_gain_pp_mean"]) < 3  # wine's test split has 36 rows: one row is 2.8 pp
    assert {r["stop_reason"] for r in raw["rows"]} == {"max_epochs"}
    for report in (raw, done):
        assert report["networks"] == 2 and report["datasets"] == 1
        row = report["rows"][0]
        assert row["dataset_best_test_acc"] == max(r["test_acc"] for r in report["rows"])
        assert 0.5 < row["reference_test_acc"] <= 1
        assert report["below_best_5pp_share"] == sum(r["below_best_pp"] > 5 for r in report["rows"]) / 2
    assert "no-op gain" in format_check(done)


def test_cli_json_has_the_summary_keys(tmp_path, capsys):
    wine_zoo(tmp_path / "zoo", TrainConfig(max_epochs=2, patience=1))
    code = cli.main(["zoo", "check", str(tmp_path / "zoo"), "--in-process", "--json", "--budget", "agent", "--no-reference"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {"noop_gain_pp_mean", "below_best_5pp_share", "rows"} <= set(report)
    assert report["rows"][0]["reference_test_acc"] is None and report["rows"][0]["best_epoch"] is not None


@pytest.mark.ray
def test_check_runs_networks_on_ray(tiny_zoo):
    report = check_zoo(tiny_zoo, EPISODE_FINETUNE, reference=False, workers=2)
    assert report["networks"] == len(tiny_zoo.manifest()) and report["datasets"] == 2
    assert all(r["noop_test_gain_pp"] == pytest.approx(100 * (r["noop_test_acc"] - r["test_acc"])) for r in report["rows"])
