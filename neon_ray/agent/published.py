"""Training into a URI: a run trained in a local staging folder and published as it goes.

`staged_run(target)` is the RunDir `train_agent` and Tune trials train in: the path itself, or for
a URI a `PublishedRun` in a fresh folder under a work dir, fetched from the URI first to resume.
A `PublishedRun` publishes (run_dir.publish_run: checkpoints, then the run's files, then the
pointers) after every write a reader of the URI may follow.
"""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from neon_ray.agent.config import AgentTrainConfig
from neon_ray.agent.protocols import Selection
from neon_ray.agent.run_dir import CHECKPOINTS, CONFIG_FILE, TENSORBOARD, RunDir, check_resumable, publish_run
from neon_ray.runtime.files import Location, atomic_write_bytes, copy_tree, is_uri, join, remove


@dataclass(frozen=True)
class PublishedRun(RunDir):
    """A run trained in a local staging folder `root`, published to `target` (a URI) as it goes: config.json
    when written, the whole run (`publish_run`) after each checkpoint, validation score and `best`."""

    target: Location = ""
    done: set = field(default_factory=set, compare=False, repr=False)  # published, unchanged since

    def publish(self) -> None:
        publish_run(self, self.target, self.done)

    def write_config(self, cfg: AgentTrainConfig, selection: Selection) -> None:
        super().write_config(cfg, selection)
        atomic_write_bytes(join(self.target, CONFIG_FILE), self.config_path.read_bytes())

    def save_checkpoint(self, algo, iteration: int, episodes: int, keep: int, algo_name: str) -> Path:
        self.done.discard(f"iter_{iteration:06d}")  # saved again (a trial rolled back past it): new files
        final = super().save_checkpoint(algo, iteration, episodes, keep, algo_name)
        self.publish()
        return final

    def set_val_score(self, iteration: int, val_score: float) -> None:
        super().set_val_score(iteration, val_score)
        self.publish()

    def set_best(self, iteration: int, episodes: int, val_score: float, keep: int) -> None:
        super().set_best(iteration, episodes, val_score, keep)
        self.publish()

    def clear_checkpoints(self) -> None:
        """Also what a run that never completed a checkpoint left at `target`."""
        super().clear_checkpoints()
        for folder in (CHECKPOINTS, TENSORBOARD):
            remove(join(self.target, folder))
        self.done.clear()


@contextlib.contextmanager
def staged_run(target: Location, work_dir: str | Path | None = None, fetch: bool = False):
    """The RunDir to train in: `target` itself when it is a path. For a URI, a `PublishedRun` in a new
    folder under `work_dir` (default: the system's temporary folder, $TMPDIR), holding first, with
    `fetch`, a copy of everything the URI holds (to resume from); the folder is deleted at the end."""
    if not is_uri(target):
        yield RunDir(target)
        return
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="neon-ray-run-", dir=work_dir))
    try:
        run = PublishedRun(staging / "run", target=target)
        if fetch:
            copy_tree(target, run.root)
            run.done.update(p.name for p in run.checkpoints.glob("iter_*") if p.is_dir())
            check_resumable(run, target)
        yield run
    finally:
        shutil.rmtree(staging, ignore_errors=True)
