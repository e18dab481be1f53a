"""Human-readable results: summary tables and plots, as markdown (here) or one HTML page (html_report.py).

Plots share one look (`log_reduction_axis`): parameter reduction on a log axis with ticks
written x1, x2, x5, x10, ..., a title, the tolerance line where one applies, and the legend
outside the axes so that it hides no point. Markdown tables are plain text in fenced blocks,
which read the same in a terminal and in a rendered page.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from neon_ray.results.schema import check_tolerance
from neon_ray.results.store import read_results
from neon_ray.results.summary import incomplete_messages, run_status, score, summarise
from neon_ray.runtime.files import atomic_write_bytes, atomic_write_text, check_output_dir

MARKERS = "o^sDvP*Xh<>"
"""Marker shapes, one per method (or reward), in order."""


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib  # here: only reports need it, and it is slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(plt, fig) -> bytes:
    """The figure as PNG (closed afterwards); the legend outside the axes is kept inside the image."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def log_reduction_axis(ax, which: str = "x") -> None:
    """Put `which` axis of `ax` on a log scale of reduction factors with readable ticks: x1, x2, x5, x10, ...
    over a wide range, x1.1, x1.2, ... over a narrow one (call it after plotting: it reads the limits)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
    axis = ax.xaxis if which == "x" else ax.yaxis
    wide = hi / max(lo, 1e-12) >= 8
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)) if wide else MaxNLocator(nbins=6))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"x{v:g}"))
    axis.set_minor_formatter(NullFormatter())
    if not wide:  # log minor ticks between x1.1 and x1.2 would only look like missing labels
        axis.set_minor_locator(NullLocator())


def legend_outside(ax, **kwargs) -> None:
    """The legend right of the axes, where it covers no data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=7, **kwargs)


def fenced(table: pd.DataFrame) -> str:
    """A table as aligned text in a fenced markdown block."""
    text = table.to_string(index=False, float_format=lambda v: f"{v:.3f}") if len(table) else "(no rows)"
    return f"```\n{text}\n```"


def _plot_tradeoff(frame: pd.DataFrame, tolerance: float | None = None, title: str = "") -> bytes:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, ((method, label), part) in enumerate(frame.groupby(["method", "config_label"])):
        ax.scatter(part["reduction"], part["delta_acc_pp"], s=14, alpha=0.7, marker=MARKERS[i % len(MARKERS)],
                   label=f"{method} {label} ({len(part)})")
    log_reduction_axis(ax)
    ax.axhline(0, color="grey", lw=0.8)
    if tolerance is not None:
        ax.axhline(-tolerance, color="red", lw=1.0, ls="--", label=f"tolerance: -{tolerance:g} pp")
    ax.set_xlabel("parameter reduction (log scale)")
    ax.set_ylabel("test accuracy change (pp)")
    ax.set_title(title or "Every network: reduction against accuracy change")
    legend_outside(ax, title="method, configuration (networks)", title_fontsize=7)
    return png_bytes(plt, fig)


def plot_pareto(frame: pd.DataFrame, tolerance: float, title: str) -> bytes:
    """PNG: each network's reduction (log x) against its test accuracy change, one marker per `method`
    value, each method's geometric-mean reduction and mean change as a large outlined marker, and the
    line at -`tolerance` pp below which a network fails the tolerance (and scores x1)."""
    tolerance = check_tolerance(tolerance, "Pareto plot tolerance")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for i, (method, part) in enumerate(frame.groupby("method", sort=True)):
        marker, color = MARKERS[i % len(MARKERS)], f"C{i % 10}"
        ax.scatter(part["reduction"], part["delta_acc_pp"], s=16, alpha=0.45, marker=marker, color=color)
        centre = float(np.exp(np.log(part["reduction"].clip(lower=1e-12)).mean()))
        ax.scatter([centre], [part["delta_acc_pp"].mean()], s=110, marker=marker, color=color, edgecolors="black",
                   label=f"{method} (geo x{centre:.2f}, score {score(part, tolerance):.2f})")
    log_reduction_axis(ax)
    ax.axhline(0, color="grey", lw=0.8)
    ax.axhline(-tolerance, color="red", lw=1.0, ls="--", label=f"tolerance: -{tolerance:g} pp")
    ax.set_xlabel("parameter reduction (log scale)")
    ax.set_ylabel("test accuracy change (pp)")
    ax.set_title(title)
    legend_outside(ax, title="small: networks; large: geo-mean x, mean change", title_fontsize=7)
    return png_bytes(plt, fig)


@dataclass(frozen=True)
class ResultsReport:
    """What a results report shows, computed once for the markdown and the HTML page."""

    results: str
    intro: str
    warnings: tuple[str, ...]
    overall: pd.DataFrame
    per_dataset: pd.DataFrame
    runs: pd.DataFrame
    """run_status() of the results (every column)."""
    run_table: pd.DataFrame
    """The runs as shown: run, method, status, state, networks found and expected."""
    tradeoff_png: bytes


def results_report(results: str | Path, tolerance: float | None = None) -> ResultsReport:
    """Read a results directory and compute its tables and plot (see write_report)."""
    check_tolerance(tolerance, "report tolerance")
    frame = read_results(results)
    runs = run_status(results, frame)
    run_table = runs[["run_id", "method", "status", "state", "networks", "expected"]].astype(object)
    intro = (f"{len(frame)} rows, {frame['network_id'].nunique()} networks, methods: "
             f"{', '.join(sorted(frame['method'].unique()))}" + (f"; tolerance {tolerance:g} pp for rows without one"
                                                               if tolerance is not None else ""))
    title = f"{Path(results).name}: every network, reduction against test accuracy change"
    return ResultsReport(str(results), intro, tuple(incomplete_messages(runs)), summarise(frame, tolerance=tolerance),
                         summarise(frame, by="dataset", tolerance=tolerance), runs,
                         run_table.where(run_table.notna(), "-"), _plot_tradeoff(frame, tolerance, title))


RUNS_NOTE = ("Status from the run manifests (`_runs/`): complete, incomplete (killed, failed or still running), "
             "or unknown (rows written without a manifest, e.g. by older versions).")


def write_report(results: str | Path, out: str | Path, tolerance: float | None = None) -> Path:
    """Write `out/report.md` (overall and per-dataset tables, run completeness) and `out/tradeoff.png`."""
    return write_report_and_runs(results, out, tolerance)[0]


def write_report_and_runs(results: str | Path, out: str | Path, tolerance: float | None = None) -> tuple[Path, pd.DataFrame]:
    """`write_report`, also returning `results.run_status` (which runs are complete, incomplete or unknown)."""
    out = check_output_dir(out, "report directory (--out)")  # before any work
    report = results_report(results, tolerance)
    text = "\n\n".join([
        f"# neon-ray results: {results}",
        report.intro,
        *(f"**Warning: {line}.**" for line in report.warnings),
        "## Overall", fenced(report.overall),
        "## Per dataset", fenced(report.per_dataset),
        "![reduction vs accuracy change](tradeoff.png)",
        "## Runs", RUNS_NOTE, fenced(report.run_table),
    ])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "tradeoff.png", report.tradeoff_png)
    path = atomic_write_text(out / "report.md", text + "\n")
    return path, report.runs
