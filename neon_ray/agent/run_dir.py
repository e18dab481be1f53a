"""A training run's directory: its files, checked and written atomically, and loading the agent back.

    RUN/config.json           the resolved AgentTrainConfig + the protocol's network selection
    RUN/progress.csv          one row per training iteration (PROGRESS_COLUMNS)
    RUN/tensorboard/          TensorBoard event files, one step per iteration (diagnostics.py)
    RUN/checkpoints/iter_NNNNNN/   algo.save_to_path() checkpoints (the newest `keep_checkpoints`), each
                              with policy.json + policy.pt: the policy in a format that runs no code
    RUN/checkpoints/latest    JSON pointer to the newest complete checkpoint (atomically replaced)
    RUN/checkpoints/best      with validation: JSON pointer to the checkpoint of the highest val_score
                              (kept however old; progress.csv's val_score column has every score)

Applying an agent (`load_agent`, `prune`) reads only config.json, a pointer (`best` if there is
one, else `latest`) and policy.json + policy.pt (see export.py); resuming training restores
RLlib's own checkpoint, which unpickles files: trusted runs only.

By URI: a run may also be `s3://bucket/run` (any URI pyarrow opens, see `runtime.files`), read
through pyarrow. Training into a URI trains in a local staging copy (`PublishedRun`) published as
it goes (`publish_run`); `upload_run` (`neon-ray agent upload`) copies only what applying reads.
Both copy checkpoints first (policy.json, which marks a complete export, last of each), then the
run's other files, then the pointers: a reader follows a pointer only to a complete checkpoint.

`check_run` says what a configuration may do with a directory before anything is written; a
run directory without a completed checkpoint is started again from scratch by a new run.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from neon_ray.agent.algos import LoadedPolicy, load_policy
from neon_ray.agent.config import AgentTrainConfig
from neon_ray.agent.export import SPEC_FILE, WEIGHTS_FILE, export_from_algo, read_policy
from neon_ray.agent.protocols import Selection
from neon_ray.errors import CheckpointError, ConfigError, NeonRayError
from neon_ray.runtime.files import (
    Location, atomic_write_bytes, atomic_write_text, check_output_dir, check_path_component, display, is_dir, is_file,
    is_uri, join, list_files, local_path, read_bytes, remove,
)

CONFIG_FILE = "config.json"
PROGRESS_FILE = "progress.csv"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
BEST = "best"
TENSORBOARD = "tensorboard"
PROGRESS_COLUMNS = ("iteration", "episodes_total", "episodes", "env_steps", "return_mean", "reduction_mean",
                    "reduction_geomean", "acc_change_pp_mean", "warmup", "seconds", "time_total_s", "val_score")


@dataclass(frozen=True)
class RunDir:
    """Paths and atomic writes of a training run directory (by URI: reading only)."""

    root: Location
    """The run directory: a path (a str is converted; made absolute, so it works from any working
    directory), or a URI such as s3://bucket/run, kept as given, which the agent is read from."""

    def __post_init__(self) -> None:
        if not is_uri(self.root):
            object.__setattr__(self, "root", local_path(self.root).expanduser().absolute())

    @property
    def config_path(self) -> Location:
        return join(self.root, CONFIG_FILE)

    @property
    def progress_path(self) -> Location:
        return join(self.root, PROGRESS_FILE)

    @property
    def checkpoints(self) -> Location:
        return join(self.root, CHECKPOINTS)

    @property
    def tensorboard(self) -> Location:
        return join(self.root, TENSORBOARD)

    def latest(self) -> dict | None:
        """The newest checkpoint's pointer {checkpoint, iteration, episodes}, or None."""
        return self._pointer(LATEST)

    def best(self) -> dict | None:
        """The best-validated checkpoint's pointer {checkpoint, iteration, episodes, val_score}, or None."""
        return self._pointer(BEST)

    def agent_checkpoint_path(self) -> Location:
        """The checkpoint an agent is applied from: `best` when validation wrote one, else `latest`."""
        pointer = self.best()
        return join(self.checkpoints, pointer["checkpoint"]) if pointer else self.latest_checkpoint()

    def set_best(self, iteration: int, episodes: int, val_score: float, keep: int) -> None:
        """Point `best` at iteration's checkpoint, then prune what it no longer protects."""
        name = f"iter_{iteration:06d}"
        if not (self.checkpoints / name).is_dir():
            raise CheckpointError(f"{self.checkpoints / name}: no such checkpoint to mark as best")
        atomic_write_text(self.checkpoints / BEST, json.dumps(
            {"checkpoint": name, "iteration": iteration, "episodes": episodes, "val_score": val_score}))
        latest = self.latest()
        self._prune(keep, latest["checkpoint"] if latest else name)

    def set_val_score(self, iteration: int, val_score: float) -> None:
        """Record iteration's validation score in its progress.csv row (the file is rewritten atomically)."""
        rows = self.progress_rows()
        for row in rows:
            if int(row["iteration"]) == iteration:
                row["val_score"] = val_score
        self.write_progress(rows)

    def _pointer(self, kind: str) -> dict | None:
        path = display(join(self.checkpoints, kind))
        try:
            if not is_file(join(self.checkpoints, kind)):
                return None
            pointer = json.loads(read_bytes(join(self.checkpoints, kind)).decode())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: not a valid checkpoint pointer ({exc})") from None
        name = pointer.get("checkpoint") if isinstance(pointer, dict) else None
        if not isinstance(name, str) or not isinstance(pointer.get("iteration"), int):
            raise CheckpointError(f"{path}: not a valid checkpoint pointer (expected "
                                  '{"checkpoint": "iter_NNNNNN", "iteration": N, "episodes": N})')
        try:
            check_path_component(name, f"{path}: checkpoint")
        except ConfigError as exc:
            raise CheckpointError(str(exc)) from None
        if not is_dir(join(self.checkpoints, name)):
            raise CheckpointError(f"{path} points to {name!r}, which is not in {display(self.checkpoints)}; "
                                  "restore that checkpoint, or start a new run in another directory")
        return pointer

    def latest_checkpoint(self) -> Location:
        pointer = self.latest()
        if pointer is None:
            raise CheckpointError(f"{display(self.root)}: no completed checkpoint yet "
                                  f"({display(join(self.checkpoints, LATEST))} is missing)")
        return join(self.checkpoints, pointer["checkpoint"])

    def read_config(self) -> AgentTrainConfig:
        shown = display(self.config_path)
        try:
            if not is_file(self.config_path):
                raise NeonRayError(f"{display(self.root)}: not an agent run directory ({CONFIG_FILE} is missing)")
            doc = json.loads(read_bytes(self.config_path).decode())
            saved = doc["config"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{shown}: not a readable agent run configuration "
                                  f"({type(exc).__name__}: {exc})") from None
        if not isinstance(saved, dict):
            raise CheckpointError(f"{shown}: 'config' must be a JSON object")
        try:
            return AgentTrainConfig.from_dict(saved)
        except (TypeError, ConfigError) as exc:
            raise ConfigError(f"{shown}: {exc}") from None

    def write_config(self, cfg: AgentTrainConfig, selection: Selection) -> None:
        doc = {"config": cfg.to_dict(), "selection": asdict(selection)}
        atomic_write_text(self.config_path, json.dumps(doc, indent=1, sort_keys=True))

    def save_checkpoint(self, algo, iteration: int, episodes: int, keep: int, algo_name: str) -> Path:
        """algo.save_to_path and the policy export into a temporary folder, renamed into place, then the pointer moves."""
        name = f"iter_{iteration:06d}"
        final, tmp = self.checkpoints / name, self.checkpoints / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        algo.save_to_path(str(tmp))
        export_from_algo(algo, tmp, algo_name)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        atomic_write_text(self.checkpoints / LATEST,
                          json.dumps({"checkpoint": name, "iteration": iteration, "episodes": episodes}))
        self._prune(keep, name)
        return final

    def _prune(self, keep: int, newest: str) -> None:
        """Keep the newest `keep` checkpoints, and the best one however old."""
        best = self.best()
        older = sorted(p for p in self.checkpoints.glob("iter_*") if p.is_dir() and p.name != newest)
        for path in older[: max(0, len(older) - (keep - 1))]:
            if best is None or path.name != best["checkpoint"]:
                shutil.rmtree(path, ignore_errors=True)

    def clear_checkpoints(self) -> None:
        """Remove the checkpoint folders, pointer and event files a run left (before starting it again from scratch)."""
        if self.tensorboard.is_dir() and not self.tensorboard.is_symlink():  # its curves belong to the abandoned run
            shutil.rmtree(self.tensorboard, ignore_errors=True)
        if not self.checkpoints.is_dir():
            return
        for path in list(self.checkpoints.glob("iter_*")) + list(self.checkpoints.glob(".iter_*.tmp")):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
        (self.checkpoints / LATEST).unlink(missing_ok=True)
        (self.checkpoints / BEST).unlink(missing_ok=True)

    def progress_rows(self) -> list[dict]:
        if not is_file(self.progress_path):
            return []
        return list(csv.DictReader(io.StringIO(read_bytes(self.progress_path).decode(), newline="")))

    def truncate_progress(self, iteration: int) -> None:
        """Drop rows after `iteration` (iterations a crash lost since the last checkpoint)."""
        rows = [r for r in self.progress_rows() if int(r["iteration"]) <= iteration]
        self.write_progress(rows)

    def _has_current_header(self) -> bool:
        with self.progress_path.open(newline="") as fh:
            return next(csv.reader(fh), None) == list(PROGRESS_COLUMNS)

    def write_progress(self, rows: list[dict]) -> None:
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=PROGRESS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.progress_path, buffer.getvalue())

    def append_progress(self, row: dict) -> None:
        if not self.progress_path.is_file() or not self._has_current_header():
            self.write_progress(self.progress_rows())  # new, or from before a column was added: rewritten with it
        with self.progress_path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=PROGRESS_COLUMNS).writerow(row)


def check_run(run: RunDir, cfg: AgentTrainConfig, resume: bool) -> dict | None:
    """What `cfg` may do with the run directory (a path or a URI), checked without writing anything.

    Returns the checkpoint pointer to resume from (resume) or None (a fresh start). A directory
    whose run never completed a checkpoint may be started again from scratch; with `resume` it
    has nothing to resume from.
    """
    check_output_dir(run.root, "run directory (--out)")
    root = display(run.root)
    if resume:
        if not is_file(run.config_path):
            raise ConfigError(f"--resume: {root} holds no training run ({CONFIG_FILE} is missing); run without --resume")
        pointer = run.latest()
        if pointer is None:
            raise ConfigError(f"--resume: nothing to resume from: {root} has no completed checkpoint; "
                              "run without --resume to start it again from scratch")
        saved = run.read_config()
        diff = _differences(saved.identity(), cfg.identity())
        if diff:
            raise ConfigError(
                f"--resume: {display(run.config_path)} was written with other settings ({'; '.join(diff)}); "
                "resume with the same settings, or start a new run in another directory"
            )
        return pointer
    if run.latest() is not None:
        raise ConfigError(f"{root} already holds a training run; pass --resume to continue it, or use another --out")
    return None


def check_resumable(run: RunDir, shown: Location) -> None:
    """Refuse a run whose `latest` checkpoint holds the policy export only (an `upload_run` copy of `shown`)."""
    name = (run.latest() or {}).get("checkpoint")
    if name and not any(p.is_file() and p.name not in (SPEC_FILE, WEIGHTS_FILE) for p in (run.checkpoints / name).rglob("*")):
        raise CheckpointError(f"{display(shown)}: {name} holds the agent's policy only (as `neon-ray agent upload` "
                              "copies it), not RLlib's checkpoint: only a run trained into a URI resumes there")


def prepare_run(run: RunDir, cfg: AgentTrainConfig, selection: Selection, resume: bool) -> dict | None:
    """check_run, then write RUN/config.json (and for a fresh start an empty progress.csv).

    A fresh start over a run that never completed a checkpoint replaces what it left.
    """
    pointer = check_run(run, cfg, resume)
    if pointer is None:
        run.clear_checkpoints()
        run.write_progress([])
    run.write_config(cfg, selection)  # on resume: records the new episode target
    return pointer


def _differences(saved: dict, new: dict, prefix: str = "") -> list[str]:
    diff = []
    for key in sorted(set(saved) | set(new)):
        a, b = saved.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "reward_params":
            diff += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            diff.append(f"{prefix}{key}: saved {a!r}, now {b!r}")
    return diff


def agent_checkpoint(run_dir: Location) -> tuple[Location, AgentTrainConfig]:
    """(The run's agent checkpoint directory: `best` if validated, else `latest`; the run's configuration).

    `run_dir` is a path (made absolute) or a URI (see the module docstring).
    """
    run = RunDir(run_dir)
    try:
        found = is_dir(run.root)
    except OSError as exc:
        raise CheckpointError(f"{display(run.root)}: agent run directory cannot be read ({exc})") from None
    if not found:
        raise CheckpointError(f"{display(run.root)}: no such agent run directory")
    cfg = run.read_config()
    return run.agent_checkpoint_path(), cfg


def load_checkpoint_policy(checkpoint: Location, *, seed: int | None = None) -> LoadedPolicy:
    """`algos.load_policy` of a checkpoint directory given as a path or a URI (the export read through pyarrow)."""
    if not is_uri(checkpoint):
        return load_policy(checkpoint, seed=seed)
    module, spec = read_policy(checkpoint)
    return LoadedPolicy(module, seed=seed, spec=spec)


def load_agent(run_dir: Location, *, seed: int | None = None) -> tuple[LoadedPolicy, AgentTrainConfig]:
    """The run's agent (its policy) and the run's configuration; needs no Ray cluster.

    The agent is the checkpoint RUN/checkpoints/best names when the run was validated
    (`validate_every`: the highest validation score), else the one RUN/checkpoints/latest names
    (the newest). Reads only RUN/config.json, that pointer and the checkpoint's policy.json + policy.pt
    (see export.py): nothing that can run code. A checkpoint without that export is refused.
    RUN may be a URI, e.g. s3://bucket/run (see the module docstring).
    """
    checkpoint, cfg = agent_checkpoint(run_dir)
    return load_checkpoint_policy(checkpoint, seed=seed), cfg


def upload_run(run_dir: str | Path, dest: Location) -> Location:
    """Copy what applying the run's agent reads to `dest` (a URI, or another path), in the order readers
    rely on (module docstring), pointers as read at the start; returns `dest`. Not while it trains."""
    run = RunDir(run_dir)
    if is_uri(run.root):
        raise ConfigError(f"{display(run.root)}: the run to upload must be a path (where training wrote it)")
    run.read_config()  # a run directory, readable, before anything is written
    run.latest_checkpoint()
    pointers = {kind: pointer for kind in (BEST, LATEST) if (pointer := run._pointer(kind))}
    check_output_dir(dest, "agent upload destination")
    target = RunDir(dest)
    try:
        _copy_run(run, target, pointers)
    except OSError as exc:
        raise NeonRayError(f"uploading {run.root} to {display(dest)} failed ({exc}); every file is written whole, "
                           "so running the upload again completes it") from None
    return target.root


def _copy_run(run: RunDir, target: RunDir, pointers: dict[str, dict], whole: bool = False,
              done: frozenset[str] | set[str] = frozenset()) -> set[str]:
    """Copy `run` to `target` in the order readers rely on (module docstring); the checkpoints copied.
    Not `whole`: the pointed-to checkpoints' export, config.json, progress.csv. `whole`: every checkpoint
    not in `done`, all its files (RLlib's: resumable), every file outside checkpoints/; then the pointers."""
    names = sorted(p.name for p in run.checkpoints.glob("iter_*") if p.is_dir()) if whole \
        else sorted({pointer["checkpoint"] for pointer in pointers.values()})
    for name in (n for n in names if n not in done):
        folder = run.checkpoints / name
        read_policy(folder)  # complete and intact: refused here, not on every node later
        files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: _export_last(folder, p)) \
            if whole else [folder / WEIGHTS_FILE, folder / SPEC_FILE]
        for path in files:
            atomic_write_bytes(join(target.checkpoints, name, *path.relative_to(folder).parts), path.read_bytes())
    outside = [p for p in sorted(run.root.rglob("*")) if p.is_file() and _outside_checkpoints(run, p)] if whole \
        else [run.config_path, run.progress_path]
    for path in outside:
        if path.is_file():
            atomic_write_bytes(join(target.root, *path.relative_to(run.root).parts), path.read_bytes())
    for kind, pointer in pointers.items():  # last: readers follow them to complete checkpoints only
        atomic_write_text(join(target.checkpoints, kind), json.dumps(pointer))
    return set(names)


def _export_last(folder: Path, path: Path) -> tuple:
    """Sort key: RLlib's files, then policy.pt, then policy.json (a complete export once it is there)."""
    name = path.relative_to(folder).as_posix()
    return name == SPEC_FILE, name == WEIGHTS_FILE, name


def _outside_checkpoints(run: RunDir, path: Path) -> bool:
    parts = path.relative_to(run.root).parts
    return parts[0] != CHECKPOINTS and not any(part.startswith(".") for part in parts)


def publish_run(run: RunDir, target: Location, done: set[str]) -> None:
    """Make `target` (a URI, or another path) hold local `run` as it is now: `_copy_run(whole=True)`, then
    the pointers and checkpoints `run` no longer has are deleted there. `done`: checkpoints published
    before and unchanged since; updated."""
    pointers = {kind: pointer for kind in (BEST, LATEST) if (pointer := run._pointer(kind))}
    published = RunDir(target)
    done |= _copy_run(run, published, pointers, whole=True, done=done)
    for kind in {BEST, LATEST} - set(pointers):
        remove(join(published.checkpoints, kind))
    there = {parts[0] for parts, _ in list_files(published.checkpoints) if len(parts) > 1 and parts[0].startswith("iter_")}
    for name in sorted(there - {p.name for p in run.checkpoints.glob("iter_*") if p.is_dir()}):
        remove(join(published.checkpoints, name))
        done.discard(name)
