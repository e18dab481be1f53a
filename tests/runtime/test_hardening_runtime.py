"""Hostile-user review, runtime findings: one file mode, output locations checked before work, and
every numeric option validated (the Ray session's findings are in test_ray_session.py)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from neon_ray.cli import main
from neon_ray.errors import ConfigError

NAN, INF = float("nan"), float("inf")


@pytest.fixture
def under_a_file(tmp_path) -> Path:
    """A path whose parent is a regular file: nothing can ever be written there."""
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    return blocker / "out"


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ------------------------------------------------------------------------------------------------
# 7. one file mode: 0666 less the umask, for networks and compressed files alike


def test_network_and_nrdc_files_are_0644_under_umask_022(tmp_path, umask022):
    from neon_ray.nets.checkpoint import save_network
    from neon_ray.deepcomp import fileformat
    from neon_ray.nets.spec import ArchSpec, build_mlp

    model = build_mlp(ArchSpec(4, 2, (3,), ("relu",), ("none",)), seed=0)
    save_network(model, tmp_path / "net", {"dataset": "x"})
    fileformat.write(tmp_path / "net.nrdc", model)
    for name in ("net.pt", "net.json", "net.nrdc"):
        assert _mode(tmp_path / name) == 0o644, name
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"


def test_a_stricter_umask_keeps_files_private(tmp_path):
    from neon_ray.nets.checkpoint import save_network
    from neon_ray.deepcomp import fileformat
    from neon_ray.nets.spec import ArchSpec, build_mlp

    model = build_mlp(ArchSpec(4, 2, (3,), ("relu",), ("none",)), seed=0)
    old = os.umask(0o077)
    try:
        save_network(model, tmp_path / "net", {})
        fileformat.write(tmp_path / "net.nrdc", model)
    finally:
        os.umask(old)
    assert {_mode(tmp_path / n) for n in ("net.pt", "net.json", "net.nrdc")} == {0o600}


# ------------------------------------------------------------------------------------------------
# 9. output locations are checked before any work


@pytest.fixture
def wine_network(tmp_path):
    from neon_ray.nets.checkpoint import save_network
    from neon_ray.nets.spec import ArchSpec, build_mlp

    stem = tmp_path / "wine_net"
    save_network(build_mlp(ArchSpec(13, 3, (4,), ("relu",), ("none",)), seed=0), stem, {"dataset": "sklearn:wine", "seed": 0})
    return stem


@pytest.fixture
def no_compression(monkeypatch):
    """compress_model that fails the test if the command ever gets that far."""
    import neon_ray.deepcomp.pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("compression started although the output location is unusable")

    monkeypatch.setattr(neon_ray.deepcomp.pipeline, "compress_model", refuse)


@pytest.mark.parametrize("flag", ["--out", "--table"])
def test_compress_checks_out_and_table_before_work(wine_network, under_a_file, tmp_path, no_compression, capsys, flag):
    paths = {"--out": str(tmp_path / "ok.nrdc"), "--table": str(tmp_path / "ok.json"), flag: str(under_a_file)}
    argv = ["compress", "--network", str(wine_network)]
    for key, value in paths.items():
        argv += [key, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err and "is a file, expected a directory" in err and str(under_a_file) in err


def test_compress_refuses_an_out_that_is_a_directory(wine_network, tmp_path, no_compression, capsys):
    assert main(["compress", "--network", str(wine_network), "--out", str(tmp_path)]) == 2
    assert "is a directory, expected a file path" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["tune", "--zoo", "/nonexistent/zoo", "--out", "{bad}"],
    ["demo", "--out", "{bad}"],
    ["pipeline", "--spec", "jobs/specs/smoke.json", "--out", "{bad}"],
    ["bench", "zoo", "--data-dir", "/nonexistent/data", "--out", "{bad}.json"],
    ["bench", "step", "--zoo", "/nonexistent/zoo", "--out", "{bad}.json"],
    ["bench", "step", "--reference", "--data-dir", "/nonexistent/data", "--out", "{bad}.json"],
    ["bench", "rollout", "--zoo", "/nonexistent/zoo", "--out", "{bad}.json"],
], ids=lambda argv: " ".join(argv[:2]))
def test_commands_check_out_before_work(argv, under_a_file, capsys, monkeypatch):
    import ray

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    # at Ray itself: modules bind `ray_session` when imported, and the shared test Ray may be running
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", _no_ray)
    assert main([a.replace("{bad}", str(under_a_file)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert str(under_a_file) in err and "is a file, expected a directory" in err, err


def _no_ray(*args, **kwargs):
    raise AssertionError("Ray was started although the output location is unusable")


def test_run_pipeline_and_run_sweep_check_out_themselves(under_a_file):
    from neon_ray.agent.config import AgentTrainConfig
    from neon_ray.pipeline import PipelineConfig, run_pipeline
    from neon_ray.tune.sweep import SweepConfig, run_sweep

    with pytest.raises(ConfigError, match="is a file"):
        run_pipeline(PipelineConfig(out=str(under_a_file)))
    with pytest.raises(ConfigError, match="is a file"):
        run_sweep(SweepConfig(base=AgentTrainConfig(zoo="/nonexistent"), out=str(under_a_file)))


# ------------------------------------------------------------------------------------------------
# 12. every numeric option: finite and in range, at the CLI and in the configs


@pytest.mark.parametrize("argv", [
    ["compress", "--network", "n", "--out", "o", "--q", "nan"],
    ["compress", "--network", "n", "--out", "o", "--q", "0.5,inf"],
    ["compress", "--network", "n", "--out", "o", "--q", "-1"],
    ["compress", "--network", "n", "--out", "o", "--q", "11"],
    ["compress", "--network", "n", "--out", "o", "--q", ""],
    ["compress", "--network", "n", "--out", "o", "--bits", "0"],
    ["compress", "--network", "n", "--out", "o", "--bits", "13"],
    ["compress", "--network", "n", "--out", "o", "--prune-epochs", "-1"],
    ["compress", "--network", "n", "--out", "o", "--share-epochs", "1.5"],
    ["compress", "--network", "n", "--out", "o", "--seed", "-1"],
    ["tune", "--zoo", "z", "--out", "o", "--iterations", "0"],
    ["tune", "--zoo", "z", "--out", "o", "--episodes", "nan"],
    ["tune", "--zoo", "z", "--out", "o", "--cpus-per-trial", "nan"],
    ["tune", "--zoo", "z", "--out", "o", "--cpus-per-trial", "0"],
    ["tune", "--zoo", "z", "--out", "o", "--cpus-per-trial", "inf"],
    ["tune", "--zoo", "z", "--out", "o", "--concurrent", "0"],
    ["demo", "--episodes", "0"],
    ["pipeline", "--spec", "s.json", "--episodes", "-3"],
    ["bench", "zoo", "--data-dir", "d", "--out", "o", "--networks", "0"],
    ["bench", "zoo", "--data-dir", "d", "--out", "o", "--workers", "1,0"],
    ["bench", "zoo", "--data-dir", "d", "--out", "o", "--max-epochs", "0"],
    ["bench", "zoo", "--data-dir", "d", "--out", "o", "--widths", "16,-4"],
    ["bench", "step", "--out", "o", "--keep-rate", "nan"],
    ["bench", "step", "--out", "o", "--keep-rate", "1.5"],
    ["bench", "step", "--out", "o", "--keep-rate", "0"],
    ["bench", "step", "--out", "o", "--loops", "0"],
    ["bench", "step", "--out", "o", "--episodes", "0"],
    ["bench", "step", "--out", "o", "--seed", "-1"],
    ["bench", "rollout", "--zoo", "z", "--out", "o", "--iterations", "0"],
    ["bench", "rollout", "--zoo", "z", "--out", "o", "--runners", "0,2"],
    ["bench", "rollout", "--zoo", "z", "--out", "o", "--batch-episodes", "0"],
    ["bench", "rollout", "--zoo", "z", "--out", "o", "--finetune-epochs", "0"],
], ids=lambda argv: " ".join(argv[:1] + argv[-2:]))
def test_cli_refuses_non_finite_and_out_of_range_numbers(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[-2]}" in err and repr(argv[-1]) in err


def test_compress_cli_bounds_match_the_library():
    from neon_ray.cli import compress_cmd
    from neon_ray.deepcomp.prune import MAX_Q
    from neon_ray.deepcomp.share import MAX_BITS

    assert (compress_cmd.MAX_Q, compress_cmd.MAX_BITS) == (MAX_Q, MAX_BITS)


def test_q_nan_can_no_longer_prune_a_whole_layer():
    import torch

    from neon_ray.deepcomp.prune import threshold_mask

    for q in (NAN, INF, -0.5):
        with pytest.raises(ConfigError, match="q must be >= 0 and finite"):
            threshold_mask(torch.randn(8, 8), q)


def _deepcomp(**kw):
    from neon_ray.deepcomp.pipeline import DeepCompConfig

    return DeepCompConfig(**kw)


def _retrain(**kw):
    from neon_ray.nets.training import TrainConfig

    return TrainConfig(**kw)


def _lenet5(**kw):
    from neon_ray.deepcomp.lenet import LeNet5Config

    return LeNet5Config(**kw)


def _sweep(**kw):
    from neon_ray.agent.config import AgentTrainConfig
    from neon_ray.tune.sweep import SweepConfig

    return SweepConfig(base=AgentTrainConfig(zoo="z"), out="o", **kw)


def _pipeline(**kw):
    from neon_ray.pipeline import PipelineConfig

    return PipelineConfig(out="o", **kw)


def _reward(**params):
    from neon_ray.tune.sweep import RewardVariant

    return RewardVariant("composite", params)


@pytest.mark.parametrize("make, kw, message", [
    (_deepcomp, {"q_schedule": (0.5, NAN)}, r"DeepCompConfig\.q_schedule\[1\] must be a finite number in \[0, 10\], got nan"),
    (_deepcomp, {"q_schedule": (INF,)}, r"q_schedule\[0\] must be a finite number in \[0, 10\], got inf"),
    (_deepcomp, {"q_schedule": (12.0,)}, r"q_schedule\[0\] .* \[0, 10\], got 12"),
    (_deepcomp, {"q_schedule": ()}, r"q_schedule needs at least one q"),
    (_deepcomp, {"q_scale": {"head.weight": NAN}}, r"q_scale\['head.weight'\] must be a finite number"),
    (_deepcomp, {"fc_bits": 2.5}, r"DeepCompConfig\.fc_bits must be an integer in \[1, 12\], got 2.5"),
    (_deepcomp, {"conv_bits": 13}, r"conv_bits must be an integer in \[1, 12\], got 13"),
    (_deepcomp, {"seed": -1}, r"DeepCompConfig\.seed must be an integer in \[0, 4294967295\], got -1"),
    (_retrain, {"lr": NAN}, r"TrainConfig\.lr must be a finite number in \(0, 10\], got nan"),
    (_retrain, {"lr": INF}, r"TrainConfig\.lr .* got inf"),
    (_deepcomp, {"prune_l2": NAN}, r"DeepCompConfig\.prune_l2 must be a finite number in \[0, 10\], got nan"),
    (_retrain, {"max_epochs": 2.5}, r"TrainConfig\.max_epochs must be an integer in \[1, 100000\], got 2.5"),
    (_retrain, {"batch_size": 0}, r"TrainConfig\.batch_size must be an integer in \[1, "),
    (_retrain, {"patience": True}, r"TrainConfig\.patience must be an integer"),
    (_retrain, {"max_train_rows": 1}, r"TrainConfig\.max_train_rows must be an integer in \[2, inf\), got 1"),
    (_lenet5, {"in_channels": 1.5}, r"LeNet5Config\.in_channels must be an integer in \[1, inf\), got 1.5"),
    (_lenet5, {"image_size": 8}, r"LeNet5Config\.image_size must be an integer in \[16, inf\), got 8"),
    (_lenet5, {"n_classes": 1}, r"LeNet5Config\.n_classes"),
    (_sweep, {"cpus_per_trial": NAN}, r"cpus_per_trial must be a finite number in \(0, inf\), got nan"),
    (_sweep, {"cpus_per_trial": INF}, r"cpus_per_trial .* got inf"),
    (_sweep, {"tolerances": (NAN,)}, r"tolerance must be a number >= 0 and <= 100 .* got nan"),
    (_sweep, {"tolerances": ((1.0, INF),)}, r"tolerance must be .* got \(1.0, inf\)"),
    (_sweep, {"iterations": 2.0}, r"iterations must be an integer >= 1, got 2.0"),
    (_sweep, {"concurrent": True}, r"concurrent must be an integer >= 1, got True"),
    (_sweep, {"summary_iterations": 0}, r"summary_iterations must be an integer >= 1, got 0"),
    (_reward, {"w_params": NAN}, r"parameter w_params=nan must be a finite number"),
    (_pipeline, {"tolerances": (NAN,)}, r"PipelineConfig\.tolerances\[0\] must be a finite number in \[0, 100\], got nan"),
    (_pipeline, {"tolerances": (5.0, 101.0)}, r"PipelineConfig\.tolerances\[1\] .* got 101"),
    (_pipeline, {"train_tolerance": (5.0, 1.0)}, r"train_tolerance\[1\] must be a finite number in \[5, 100\], got 1.0"),
    (_pipeline, {"train_tolerance": (INF, INF)}, r"train_tolerance\[0\] .* got inf"),
    (_pipeline, {"uniform_rate": 0.0}, r"uniform_rate must be a finite number in \(0, 1\], got 0.0"),
    (_pipeline, {"magnitude_rate": 1.0}, r"magnitude_rate must be a finite number in \[0, 1\), got 1.0"),
    (_pipeline, {"networks": 0}, r"PipelineConfig\.networks must be an integer in \[1, 10000\], got 0"),
    (_pipeline, {"networks": 2, "test_networks": 2}, r"test_networks must be an integer in \[0, 1\], got 2"),
    (_pipeline, {"widths": (16, 0)}, r"widths\[1\] must be an integer in \[1, 16384\], got 0"),
    (_pipeline, {"episodes": 1.5}, r"PipelineConfig\.episodes must be an integer in \[1, inf\), got 1.5"),
    (_pipeline, {"loops": 0}, r"PipelineConfig\.loops"),
    (_pipeline, {"seed": -1}, r"PipelineConfig\.seed"),
    (_pipeline, {"runners": -1}, r"PipelineConfig\.runners"),
    (_pipeline, {"finetune_epochs": 0}, r"PipelineConfig\.finetune_epochs"),
    (_pipeline, {"zoo_epochs": NAN}, r"PipelineConfig\.zoo_epochs must be an integer .* got nan"),
    (_pipeline, {"baselines": ("random", "best")}, r"baselines: unknown \['best'\]"),
    (_pipeline, {"samples": 1001}, r"PipelineConfig\.samples must be an integer in \[0, 1000\], got 1001"),
    (_pipeline, {"max_rows": 99}, r"PipelineConfig\.max_rows must be an integer in \[100, inf\), got 99"),
    (_pipeline, {"algo": "dqn"}, r"PipelineConfig\.algo must be one of"),
], ids=lambda v: getattr(v, "__name__", None) or (",".join(v) if isinstance(v, dict) else None))
def test_configs_refuse_non_finite_and_out_of_range_values(make, kw, message):
    with pytest.raises(ConfigError, match=message):
        make(**kw)


@pytest.mark.parametrize("doc, message", [
    ('{"out": "o", "tolerance": NaN}', r"spec.json: not valid JSON \(NaN is not a number a pipeline spec may hold"),
    ('{"out": "o", "uniform_rate": Infinity}', r"Infinity is not a number"),
    ('{"out": "o", "tolerance": 1e999}', r"spec.json: PipelineConfig\.tolerances\[0\] must be a finite number in \[0, 100\], got inf"),
    ('{"out": "o", "tolerances": [1, NaN]}', r"spec.json: not valid JSON \(NaN is not a number"),
    ('{"out": "o", "networks": "4"}', r"spec.json: PipelineConfig\.networks must be an integer in \[1, 10000\], got '4'"),
    ('{"out": "o", "networks": true}', r"PipelineConfig\.networks must be an integer .* got True"),
    ('{"out": "o", "datasets": "sklearn:wine"}', r"spec.json: datasets must be a JSON list, got 'sklearn:wine'"),
    ('[1, 2]', r"expected a JSON object of PipelineConfig fields, got list"),
])
def test_pipeline_spec_values_are_checked(tmp_path, doc, message):
    from neon_ray.pipeline import load_spec

    path = tmp_path / "spec.json"
    path.write_text(doc)
    with pytest.raises(ConfigError, match=message):
        load_spec(path)


def test_shipped_specs_still_load():
    from neon_ray.pipeline import load_spec

    for spec in sorted((Path(__file__).resolve().parents[2] / "jobs" / "specs").glob("*.json")):
        if not spec.name.startswith("sweep_"):  # sweep specs are read by jobs/sweep.py (tests/tune)
            assert load_spec(spec, out="o").episodes >= 1
