"""Human-readable results: a markdown report with summary tables and plots."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from neon_ray.results import read_results, summarise


def _plot_tradeoff(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (method, label), part in frame.groupby(["method", "config_label"]):
        ax.scatter(part["reduction"], part["delta_acc_pp"], s=14, alpha=0.7, label=f"{method} {label}")
    ax.set_xscale("log")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("parameter reduction (x, log scale)")
    ax.set_ylabel("test accuracy change (pp)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(results: str | Path, out: str | Path, tolerance: float | None = None) -> Path:
    """Write `out/report.md` (overall and per-dataset tables) and `out/tradeoff.png`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame = read_results(results)
    overall = summarise(frame, tolerance=tolerance)
    per_dataset = summarise(frame, by="dataset", tolerance=tolerance)
    _plot_tradeoff(frame, out / "tradeoff.png")
    fmt = lambda t: t.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else t.to_string(index=False)
    text = "\n\n".join(
        [
            f"# neon-ray results: {results}",
            f"{len(frame)} rows, {frame['network_id'].nunique()} networks, methods: {', '.join(sorted(frame['method'].unique()))}",
            "## Overall",
            fmt(overall),
            "## Per dataset",
            fmt(per_dataset),
            "![reduction vs accuracy change](tradeoff.png)",
        ]
    )
    path = out / "report.md"
    path.write_text(text + "\n")
    return path


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
