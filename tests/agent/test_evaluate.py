"""`neon-ray evaluate` on the session's tiny zoo with a (briefly trained, real) agent, on Ray."""
from __future__ import annotations

import argparse
import json

import pytest

from neon_ray.agent.config import AgentTrainConfig, default_agent_episode
from neon_ray.agent.evaluate import EvaluateConfig
from neon_ray.agent.training import train_agent
from neon_ray.cli import evaluate_cmd
from neon_ray.errors import ConfigError
from neon_ray.pruning.episodes import RunOptions
from neon_ray.pruning.finetune import FinetuneConfig
from neon_ray.results.store import read_results

WINE = "sklearn:wine"


@pytest.fixture(scope="module")
def run_dir(tiny_zoo, tmp_path_factory):
    """A protocol-B run (wine held out) after one short A2C update, as in test_apply.py."""
    out = tmp_path_factory.mktemp("agent")
    episode = default_agent_episode(keep_rates=(1.0, 0.8, 0.6, 0.4), loops=2, tolerance=(1.0, 50.0),
                                    finetune=FinetuneConfig(max_epochs=1, patience=1))
    cfg = AgentTrainConfig(zoo=str(tiny_zoo.root), out=str(out), holdout=(WINE,), episode=episode, episodes=1,
                           warmup_episodes=0, train_batch_size=1)
    train_agent(cfg, progress=False)
    return out


@pytest.mark.ray
def test_evaluate_writes_rows_tables_json_and_plots(tiny_zoo, run_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    evaluate_cmd.register(parser.add_subparsers())
    res = tmp_path / "res"
    args = parser.parse_args(["evaluate", "--agent", str(run_dir), "--zoo", str(tiny_zoo.root), "--datasets", WINE,
                              "--tolerances", "5,50", "--results", str(res), "--baselines", "random,random-guard,magnitude",
                              "--samples", "2", "--no-timing"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "== tolerance 5 pp: 3 networks per method ==" in out and "== tolerance 50 pp" in out
    assert all(word in out for word in ("score", "geomean_x", "neon-a2c-best2", "random-guard", "magnitude"))

    # every method has exactly the wine networks: once per tolerance, unguarded baselines once in all
    ids = sorted(tiny_zoo.network_ids(dataset=WINE))
    rows = read_results(res)
    for (method, tol), part in rows.groupby(["method", rows["tolerance"].fillna(-1)]):
        assert sorted(part["network_id"]) == ids, (method, tol)
    per_method = rows.groupby("method")["tolerance"].apply(lambda t: sorted(t.fillna(-1).unique())).to_dict()
    assert per_method == {"neon-a2c": [5.0, 50.0], "neon-a2c-best2": [5.0, 50.0], "random": [-1.0, 5.0, 50.0],
                          "magnitude": [-1.0]}
    assert rows[rows["method"] == "random"].groupby("tolerance", dropna=False)["guard"].all().tolist() == [True, True, False]

    doc = json.loads((res / "_evaluation" / "evaluation.json").read_text())
    assert doc["networks"] == 3 and "geometric-mean" in doc["score"]
    for tol in ("5", "50"):
        methods = doc["tolerances"][tol]
        assert set(methods) == {"neon-a2c", "neon-a2c-best2", "random", "random-guard", "magnitude"}
        assert all(m["networks"] == 3 and m["score"] >= 1.0 for m in methods.values())
        assert (res / "_evaluation" / f"pareto_a{tol}.png").stat().st_size > 10_000
    assert read_results(res)["run_id"].nunique() == 8  # 2 x (greedy, best-of-2, random-guard) + random + magnitude


def test_evaluate_config_refuses_mistakes():
    base = dict(agent="a", datasets=(WINE,), tolerances=(5,), results="r")
    with pytest.raises(ConfigError, match="uniform-search-guard"):
        EvaluateConfig(**base, baselines=("uniform-search-guard",))
    with pytest.raises(ConfigError, match="repeat"):
        EvaluateConfig(**{**base, "tolerances": (5, 5.0)})
    with pytest.raises(ConfigError, match="samples"):
        EvaluateConfig(**base, samples=-1)
    with pytest.raises(ConfigError, match="dataset"):
        EvaluateConfig(**{**base, "datasets": ()})
    with pytest.raises(ConfigError, match="Deep Compression"):
        EvaluateConfig(**base, options=RunOptions(compress=True))
    assert str(EvaluateConfig(**base).out_dir).endswith("r/_evaluation")
