"""Human-readable results: a markdown report with summary tables and plots."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from neon_ray.results.schema import check_tolerance
from neon_ray.results.store import read_results
from neon_ray.results.summary import incomplete_messages, run_status, score, summarise
from neon_ray.runtime.files import atomic_write_bytes, atomic_write_text, check_output_dir


def _pyplot():
    import matplotlib  # here: only reports need it, and it is slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(plt, fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def _plot_tradeoff(frame: pd.DataFrame) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (method, label), part in frame.groupby(["method", "config_label"]):
        ax.scatter(part["reduction"], part["delta_acc_pp"], s=14, alpha=0.7, label=f"{method} {label}")
    ax.set_xscale("log")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("parameter reduction (x, log scale)")
    ax.set_ylabel("test accuracy change (pp)")
    ax.legend(fontsize=7, loc="lower left")
    return _png(plt, fig)


_MARKERS = "o^sDvP*Xh<>"


def plot_pareto(frame: pd.DataFrame, tolerance: float, title: str) -> bytes:
    """PNG: each network's reduction (log x) against its test accuracy change, one marker per `method`
    value, each method's geometric-mean reduction and mean change as a large outlined marker, and the
    line at -`tolerance` pp below which a network fails the tolerance (and scores x1)."""
    tolerance = check_tolerance(tolerance, "Pareto plot tolerance")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for i, (method, part) in enumerate(frame.groupby("method", sort=True)):
        marker, color = _MARKERS[i % len(_MARKERS)], f"C{i % 10}"
        ax.scatter(part["reduction"], part["delta_acc_pp"], s=16, alpha=0.45, marker=marker, color=color)
        centre = float(np.exp(np.log(part["reduction"].clip(lower=1e-12)).mean()))
        ax.scatter([centre], [part["delta_acc_pp"].mean()], s=110, marker=marker, color=color, edgecolors="black",
                   label=f"{method} (geo x{centre:.2f}, score {score(part, tolerance):.2f})")
    ax.set_xscale("log")
    ax.axhline(0, color="grey", lw=0.8)
    ax.axhline(-tolerance, color="red", lw=1.0, ls="--", label=f"tolerance: -{tolerance:g} pp")
    ax.set_xlabel("parameter reduction (x, log scale)")
    ax.set_ylabel("test accuracy change (pp)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best", title="small: networks; large: geo-mean x, mean change", title_fontsize=7)
    return _png(plt, fig)


def write_report(results: str | Path, out: str | Path, tolerance: float | None = None) -> Path:
    """Write `out/report.md` (overall and per-dataset tables, run completeness) and `out/tradeoff.png`."""
    return write_report_and_runs(results, out, tolerance)[0]


def write_report_and_runs(results: str | Path, out: str | Path, tolerance: float | None = None) -> tuple[Path, pd.DataFrame]:
    """`write_report`, also returning `results.run_status` (which runs are complete, incomplete or unknown)."""
    out = check_output_dir(out, "report directory (--out)")  # before any work
    check_tolerance(tolerance, "report tolerance")
    frame = read_results(results)
    runs = run_status(results, frame)
    overall = summarise(frame, tolerance=tolerance)
    per_dataset = summarise(frame, by="dataset", tolerance=tolerance)
    plot = _plot_tradeoff(frame)
    fmt = lambda t: t.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else t.to_string(index=False)
    warnings = [f"**Warning: {line}.**" for line in incomplete_messages(runs)]
    run_table = runs[["run_id", "method", "status", "state", "networks", "expected"]].astype(object)
    run_table = run_table.where(run_table.notna(), "-")
    text = "\n\n".join(
        [
            f"# neon-ray results: {results}",
            f"{len(frame)} rows, {frame['network_id'].nunique()} networks, methods: {', '.join(sorted(frame['method'].unique()))}",
            *warnings,
            "## Overall",
            fmt(overall),
            "## Per dataset",
            fmt(per_dataset),
            "![reduction vs accuracy change](tradeoff.png)",
            "## Runs",
            "Status from the run manifests (`_runs/`): complete, incomplete (killed, failed or still running), "
            "or unknown (rows written without a manifest, e.g. by older versions).",
            fmt(run_table),
        ]
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "tradeoff.png", plot)
    path = atomic_write_text(out / "report.md", text + "\n")
    return path, runs


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
