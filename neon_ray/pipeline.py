"""The whole NEON pipeline as one library function: zoo -> agent -> prune -> baselines -> summary.

`neon-ray demo`, `jobs/pipeline.py` (what `ray job submit` runs) and the end-to-end test all
call `run_pipeline`; only the `PipelineConfig` differs (the embedded demo default, or a JSON
spec under jobs/specs/). Protocol B of method.md §8: the agent trains on the train networks of
every dataset except `holdout`, then prunes every network of the held-out datasets, which it
has never seen; the baselines run on exactly those networks.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from neon_ray.errors import ConfigError

SKLEARN_DEMO = ("sklearn:breast_cancer", "sklearn:digits", "sklearn:iris", "sklearn:wine")


@dataclass(frozen=True)
class PipelineConfig:
    """One protocol-B run, from zoo building to the summary table."""

    out: str
    """Run directory: zoo/, agent/, results/ and report/ are written under it."""
    datasets: tuple[str, ...] = SKLEARN_DEMO
    """Datasets of the zoo (MANIFEST names in data_dir, sklearn:NAME, or file paths)."""
    holdout: tuple[str, ...] = ("sklearn:wine",)
    """Datasets the agent never trains on; every network of them is pruned and reported."""
    data_dir: str | None = None
    """Directory with MANIFEST.csv (not needed for sklearn: datasets)."""
    networks: int = 4
    """Networks per dataset."""
    test_networks: int = 1
    """Networks per dataset with role 'test'."""
    widths: tuple[int, ...] = (16, 32, 64, 128)
    """Hidden widths of the zoo's random architectures."""
    max_layers: int = 3
    """Most hidden layers of the zoo's networks."""
    zoo_epochs: int = 30
    """Base-network training epochs at most (early stopping on val)."""
    seed: int = 0
    """Seed of everything (splits, architectures, agent, baselines)."""
    algo: str = "a2c"
    """Agent learner: 'a2c' or 'ppo'."""
    train_tolerance: tuple[float, float] = (1.0, 50.0)
    """Tolerance range (pp) sampled per training episode, so one agent serves all of them."""
    tolerance: float = 5.0
    """Tolerance (pp) the held-out networks are pruned under."""
    loops: int = 4
    """Passes over the hidden layers per episode."""
    episodes: int = 48
    """Agent training episodes."""
    runners: int = 1
    """RLlib EnvRunners (Ray actors running pruning rollouts in parallel)."""
    finetune_epochs: int = 2
    """Fine-tuning epochs at most after each pruning step."""
    baselines: tuple[str, ...] = ("random", "uniform")
    """Baselines run on the same held-out networks."""
    uniform_rate: float = 0.7
    """Keep-rate of the uniform baseline."""

    def __post_init__(self) -> None:
        missing = set(self.holdout) - set(self.datasets)
        if missing:
            raise ConfigError(f"pipeline holdout {sorted(missing)} is not among the datasets {list(self.datasets)}")
        if set(self.holdout) == set(self.datasets):
            raise ConfigError("pipeline holdout must leave at least one dataset to train the agent on")

    @property
    def root(self) -> Path:
        return Path(self.out).resolve()


def load_spec(path: str | Path, **overrides) -> PipelineConfig:
    """A PipelineConfig from a JSON spec file; `overrides` that are not None replace its values."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: pipeline spec not found") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    known = {f.name for f in fields(PipelineConfig)}
    unknown = sorted(set(doc) - known - {"description"})
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown}; expected some of {sorted(known)}")
    doc.pop("description", None)
    doc.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("datasets", "holdout", "widths", "baselines", "train_tolerance"):
        if key in doc:
            doc[key] = tuple(doc[key])
    if "out" not in doc:
        raise ConfigError(f"{path}: no output directory (give --out)")
    return PipelineConfig(**doc)
