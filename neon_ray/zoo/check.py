"""Is a zoo converged? Per network: accuracy, its dataset's best, a reference learner, and the no-op gain.

    report = check_zoo(open_zoo("runs/zoo"), partial(finetune, cfg=EpisodeConfig().finetune))
    print(format_check(report))

Method.md §11: if the base networks are under-trained, a pruning episode's fine-tuning finishes
their training, and an accuracy change says nothing about pruning. The check measures that
directly with the **no-op gain**: the episode's own fine-tuning applied to the unpruned network.
An episode fine-tunes after every step, at the step's layer, with the episode's budget and scope
('affected': the Linears around that layer). With nothing pruned, one pass of an episode is
therefore: for each hidden layer l = 0..depth-1 in turn, `finetune(model, l, dataset, seed=seed + l)`
(the seed advancing per step, as in the environment). The no-op gain is the val and test accuracy
after that pass minus before, in percentage points; on a converged zoo it is about zero.

zoo/ sits below pruning/ in the stage order, so the fine-tuning is passed in: any callable
`finetune(model, layer, dataset, seed=...)` that fine-tunes `model` in place; the CLI passes
`functools.partial(pruning.finetune.finetune, cfg=EpisodeConfig().finetune)`.

The reference learner is scikit-learn's HistGradientBoostingClassifier (seeded, its own early
stopping off), fit on the train split and scored on the same test split as the networks: a
dataset whose best network is far below it has an under-trained or weak zoo.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier

from neon_ray.errors import ConfigError
from neon_ray.nets import metrics
from neon_ray.nets.checks import MAX_SEED, check_int
from neon_ray.runtime.fanout import fan_out
from neon_ray.runtime.progress import ProgressLine
from neon_ray.runtime.ray_session import cluster_cpus, ray_session
from neon_ray.zoo.store import Zoo

log = logging.getLogger(__name__)

BELOW_BEST_PP = 5.0
"""A network more than this many pp below its dataset's best test accuracy counts as lagging."""
Finetune = Callable[..., object]
"""`finetune(model, layer, dataset, seed=...)`: fine-tunes `model` in place after a step at `layer`."""


def noop_gain(model, data, finetune: Finetune, seed: int = 0) -> dict:
    """Val and test accuracy before and after one no-op pass of episode fine-tuning (see the module doc).

    Fine-tunes `model` in place; returns accuracies as fractions and gains in pp.
    """
    val0 = metrics.accuracy_f1(model, data.X_val, data.y_val)[0]
    test0 = metrics.accuracy_f1(model, data.X_test, data.y_test)[0]
    for layer in range(model.spec.depth):
        finetune(model, layer, data, seed=seed + layer)
    val1 = metrics.accuracy_f1(model, data.X_val, data.y_val)[0]
    test1 = metrics.accuracy_f1(model, data.X_test, data.y_test)[0]
    return {"val_acc": val0, "test_acc": test0, "noop_val_acc": val1, "noop_test_acc": test1,
            "noop_val_gain_pp": 100 * (val1 - val0), "noop_test_gain_pp": 100 * (test1 - test0)}


def reference_accuracy(data, seed: int = 0) -> float:
    """Test accuracy of a seeded HistGradientBoostingClassifier fit on the train split."""
    learner = HistGradientBoostingClassifier(early_stopping=False, random_state=seed)
    learner.fit(data.X_train.numpy(), data.y_train.numpy())
    return float(learner.score(data.X_test.numpy(), data.y_test.numpy()))


def _noop_in_task(model, data, finetune: Finetune, seed: int) -> dict:
    torch.set_num_threads(1)  # one Ray CPU per task
    return noop_gain(model, data, finetune, seed)


def check_zoo(
    zoo: Zoo,
    finetune: Finetune,
    datasets: tuple[str, ...] | None = None,
    seed: int = 0,
    reference: bool = True,
    in_process: bool = False,
    address: str | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> dict:
    """The convergence report of `zoo` (every dataset, or `datasets`): per-network rows and the summary.

    Networks are fine-tuned on Ray through `fan_out` (`workers` in flight, default the cluster's
    CPUs), or one after another here with `in_process=True`. `seed` seeds the fine-tuning and the
    reference learner; `reference=False` skips the reference learner.
    """
    check_int("check seed", seed, 0, MAX_SEED)
    if workers is not None:
        check_int("workers", workers, 1)
    names = [zoo.check_dataset(d) for d in datasets] if datasets else list(zoo.datasets)
    work, refs = [], {}
    for name in names:
        frame = zoo.manifest(name)
        if frame.empty:
            continue
        data = zoo.dataset(name)
        refs[name] = reference_accuracy(data, seed) if reference else None
        work.append((name, data, frame.to_dict("records")))
    if not work:
        raise ConfigError(f"{zoo.root}: no trained networks to check")
    bar = ProgressLine(sum(len(r) for _, _, r in work), "zoo check", enabled=progress)
    results: dict[str, dict] = {}

    def keep(item, gains: dict) -> str:
        results[item[0]["network_id"]] = gains
        return f"{item[0]['network_id']} no-op test gain {gains['noop_test_gain_pp']:+.2f} pp"

    if in_process:
        for _, data, records in work:
            for row in records:
                bar.update(keep((row,), noop_gain(zoo.load(row["network_id"])[0], data, finetune, seed)))
    else:
        with ray_session(address) as ray:
            task = ray.remote(_noop_in_task).options(num_cpus=1)
            items = []
            for _, data, records in work:
                data_ref = ray.put(data)  # one copy per dataset, shared by its networks' tasks
                items += [(row, data_ref) for row in records]
            fan_out(items, lambda item: task.remote(zoo.load(item[0]["network_id"])[0], item[1], finetune, seed),
                    keep, limit=workers or max(1, int(cluster_cpus())), progress=bar)
    rows = [_row(row, results[row["network_id"]], refs[name]) for name, _, records in work for row in records]
    return summarise(rows)


def _row(manifest_row: dict, gains: dict, reference: float | None) -> dict:
    keep = ("network_id", "dataset", "role", "arch", "epochs", "best_epoch", "stop_reason", "settle_epochs")
    row = {k: _plain(manifest_row.get(k)) for k in keep}
    return {**row, **gains, "reference_test_acc": reference}


def _plain(value):
    """A JSON-ready value: numpy scalars as Python ones, NaN (a column older manifests lack) as None."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def summarise(rows: list[dict]) -> dict:
    """Add each network's dataset best and gap to it, and the zoo-wide figures, to the per-network rows."""
    best: dict[str, float] = {}
    for row in rows:
        best[row["dataset"]] = max(best.get(row["dataset"], 0.0), row["test_acc"])
    for row in rows:
        row["dataset_best_test_acc"] = best[row["dataset"]]
        row["below_best_pp"] = 100 * (best[row["dataset"]] - row["test_acc"])
    refs = {r["dataset"]: r["reference_test_acc"] for r in rows if r["reference_test_acc"] is not None}
    return {
        "networks": len(rows),
        "datasets": len(best),
        "test_acc_mean": float(np.mean([r["test_acc"] for r in rows])),
        "noop_gain_pp_mean": float(np.mean([r["noop_test_gain_pp"] for r in rows])),
        "noop_val_gain_pp_mean": float(np.mean([r["noop_val_gain_pp"] for r in rows])),
        "noop_gain_pp_max": float(np.max([r["noop_test_gain_pp"] for r in rows])),
        "below_best_5pp_share": float(np.mean([r["below_best_pp"] > BELOW_BEST_PP for r in rows])),
        "reference_gap_pp_mean": float(np.mean([100 * (refs[d] - best[d]) for d in refs])) if refs else None,
        "stop_reasons": dict(Counter(str(r["stop_reason"]) for r in rows)),
        "rows": rows,
    }


def format_check(report: dict) -> str:
    """The report as text: one line per network, one per dataset, then the summary."""
    lines = [f"{'network':<44} {'arch':<34} {'stop':<10} {'epochs':>6} {'test':>6} {'best':>6} {'ref':>6} "
             f"{'noop val':>8} {'noop test':>9}"]
    for r in report["rows"]:
        stop = r["stop_reason"] or "?"
        epochs = "?" if r["epochs"] is None else f"{r['best_epoch'] if r['best_epoch'] is not None else '?'}/{r['epochs']}"
        lines.append(f"{r['network_id']:<44} {str(r['arch'])[:34]:<34} {stop:<10} {epochs:>6} {r['test_acc']:6.3f} "
                     f"{r['dataset_best_test_acc']:6.3f} {_acc(r['reference_test_acc'])} "
                     f"{r['noop_val_gain_pp']:+8.2f} {r['noop_test_gain_pp']:+9.2f}")
    lines.append("")
    lines.append(f"{'dataset':<36} {'nets':>4} {'mean test':>9} {'best':>6} {'ref':>6} {'noop test':>9}")
    for name in dict.fromkeys(r["dataset"] for r in report["rows"]):
        rows = [r for r in report["rows"] if r["dataset"] == name]
        lines.append(f"{name:<36} {len(rows):>4} {np.mean([r['test_acc'] for r in rows]):9.3f} "
                     f"{rows[0]['dataset_best_test_acc']:6.3f} {_acc(rows[0]['reference_test_acc'])} "
                     f"{np.mean([r['noop_test_gain_pp'] for r in rows]):+9.2f}")
    gap = report["reference_gap_pp_mean"]
    lines += [
        "",
        f"{report['networks']} networks over {report['datasets']} datasets, mean test accuracy {report['test_acc_mean']:.4f}",
        f"no-op gain (episode fine-tuning, nothing pruned): test {report['noop_gain_pp_mean']:+.2f} pp mean "
        f"(max {report['noop_gain_pp_max']:+.2f}), val {report['noop_val_gain_pp_mean']:+.2f} pp mean",
        f"networks more than {BELOW_BEST_PP:g} pp below their dataset's best: {100 * report['below_best_5pp_share']:.1f}%",
        "reference learner minus dataset best: " + ("n/a" if gap is None else f"{gap:+.2f} pp mean"),
        "stop reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(report["stop_reasons"].items())),
    ]
    return "\n".join(lines)


def _acc(value: float | None) -> str:
    return f"{'n/a':>6}" if value is None else f"{value:6.3f}"
