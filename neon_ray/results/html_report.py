"""One self-contained HTML page (tables, and plots as base64 PNG), with the same content as markdown.

    page = results_page("runs/results", tolerance=5)          # or sweep_page(trials, curves, ...)
    write_page(page, "runs/report")    # report.html (one file, opens anywhere), report.md + its PNGs

A `Page` is a list of parts (headings, paragraphs, tables, images). The HTML embeds every
image, so the file can be mailed or attached as it is; the markdown keeps the tables in fenced
blocks and writes the images next to it. The sweep page takes plain tables (the sweep's
trials, one row per trial; their score curves, one row per trial and iteration), so this
module needs nothing from the stages that produce them.
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from neon_ray.results.report import (
    MARKERS, RUNS_NOTE, fenced, legend_outside, log_reduction_axis, png_bytes, pyplot, results_report,
)
from neon_ray.runtime.files import Location, atomic_write_bytes, atomic_write_text, check_output_dir, display

HTML_FILE, MARKDOWN_FILE = "report.html", "report.md"
_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.82em;margin:.5em 0}th,td{border:1px solid #ccc;padding:.2em .5em;text-align:right}
th{background:#f2f2f2;text-align:center}td.t{text-align:left}tr:nth-child(even){background:#fafafa}
div.s{overflow-x:auto}img{max-width:100%;border:1px solid #eee;margin:.5em 0}p.w{color:#a00;font-weight:bold}.note{color:#555;font-size:.9em}"""
# Longest cell shown in a table (trial folders and errors can be long; the Parquet table has all).
_MAX_CELL = 80


@dataclass
class Page:
    """An ordered list of parts, rendered as HTML or markdown."""

    title: str
    parts: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str) -> "Page":
        self.parts.append(("h2", text))
        return self

    def text(self, text: str, kind: str = "p") -> "Page":
        """A paragraph; kind 'w' is a warning, 'note' a remark."""
        self.parts.append((kind, text))
        return self

    def table(self, frame: pd.DataFrame) -> "Page":
        self.parts.append(("table", frame))
        return self

    def image(self, name: str, png: bytes, alt: str) -> "Page":
        """A PNG; `name` is its file name next to the markdown."""
        self.parts.append(("img", (name, png, alt)))
        return self

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, value in self.parts:
            if kind == "table":
                body.append(_html_table(value))
            elif kind == "img":
                name, png, alt = value
                body.append(f'<img alt="{html.escape(alt)}" title="{html.escape(name)}" '
                            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')
            elif kind == "h2":
                body.append(f"<h2>{html.escape(value)}</h2>")
            else:
                body.append(f'<p class="{kind}">{html.escape(value)}</p>')
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
                f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")

    def markdown(self) -> str:
        lines = [f"# {self.title}"]
        for kind, value in self.parts:
            if kind == "table":
                lines.append(fenced(_shown(value)))
            elif kind == "img":
                lines.append(f"![{value[2]}]({value[0]})")
            elif kind == "h2":
                lines.append(f"## {value}")
            else:
                lines.append(f"**Warning: {value}**" if kind == "w" else value)
        return "\n\n".join(lines) + "\n"

    def images(self) -> dict[str, bytes]:
        return {value[0]: value[1] for kind, value in self.parts if kind == "img"}


def _shown(frame: pd.DataFrame) -> pd.DataFrame:
    def cell(value):
        long = isinstance(value, str) and len(value) > _MAX_CELL
        return "..." + value[-(_MAX_CELL - 3):] if long else value
    return frame.apply(lambda col: col.map(cell) if col.dtype == object else col)


def _html_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "<p>(no rows)</p>"
    shown = _shown(frame)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    rows = []
    for values in shown.itertuples(index=False):
        cells = "".join(f'<td class="t">{html.escape(v)}</td>' if isinstance(v, str) else f"<td>{_number(v)}</td>"
                        for v in values)
        rows.append(f"<tr>{cells}</tr>")
    return f'<div class="s"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _number(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.4g}"
    return html.escape(str(value))


def write_page(page: Page, out: str | Path) -> tuple[Path, Path]:
    """Write OUT/report.html and OUT/report.md (with its PNGs); returns both paths."""
    out = check_output_dir(out, "report directory (--out)")
    out.mkdir(parents=True, exist_ok=True)
    for name, png in page.images().items():
        atomic_write_bytes(out / name, png)
    return atomic_write_text(out / HTML_FILE, page.html()), atomic_write_text(out / MARKDOWN_FILE, page.markdown())


# --------------------------------------------------------------------------- results


def results_page(results: Location, tolerance: float | None = None) -> Page:
    """A results directory (a path or a URI): per-method and per-dataset tables, every network's trade-off, the runs."""
    report = results_report(results, tolerance)
    page = Page(f"neon-ray results: {display(results)}").text(report.intro)
    for line in report.warnings:
        page.text(f"{line}.", "w")
    page.heading("Per method").table(report.overall)
    page.heading("Per dataset").table(report.per_dataset)
    page.image("tradeoff.png", report.tradeoff_png, "reduction against accuracy change, every network")
    return page.heading("Runs").text(RUNS_NOTE, "note").table(report.run_table)


# --------------------------------------------------------------------------- sweeps

SWEEP_SHOWN = ("trial", "status", "score", "last_score", "best_iteration", "iterations", "reduction_mean",
               "acc_change_pp_mean", "tolerance", "reward", "reward_params", "loops", "lr", "entropy", "batch_steps",
               "algo", "seed", "failures", "error")


def sweep_page(name: str, trials: pd.DataFrame, curves: pd.DataFrame, facts: dict,
               heldout: dict[float, pd.DataFrame] | None = None, heldout_images: dict[str, bytes] | None = None) -> Page:
    """A sweep: its settings, the trials by score, their trade-off and score curves, the best agent held out.

    `trials` has the sweep table's columns (SWEEP_SHOWN at least); `curves` one row per trial and
    scored iteration (trial, iteration, val_score); `heldout` the best agent's evaluation tables
    per tolerance and `heldout_images` its plots.
    """
    ranked = trials.sort_values("score", ascending=False, na_position="last")
    counts = ranked["status"].value_counts().to_dict()
    page = Page(f"neon-ray sweep: {name}").text(
        f"{len(ranked)} trials ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}). The score is the "
        "validation score: the geometric-mean parameter reduction over every network of the validation datasets, "
        "a network that loses more test accuracy than the tolerance counting as x1; each trial's agent is its "
        "best-scoring checkpoint.")
    if facts:
        page.table(pd.DataFrame({"setting": list(facts), "value": [str(v) for v in facts.values()]}))
    if ranked["status"].isin(["unfinished", "error"]).any():
        page.text("Some trials are not finished: continue the sweep with neon-ray tune --resume.", "w")
    page.heading("Trials, best score first").table(ranked[[c for c in SWEEP_SHOWN if c in ranked.columns]])
    page.image("trials_tradeoff.png", plot_trials(ranked), "trials: mean reduction against mean accuracy change")
    if not curves.empty:
        page.image("score_curves.png", plot_score_curves(curves, ranked), "validation score per trial and iteration")
    if heldout:
        page.heading("The best agent on the held-out datasets")
        for tolerance, table in heldout.items():
            page.text(f"a = {tolerance:g} pp").table(table)
        for file, png in (heldout_images or {}).items():
            page.image(f"heldout_{file}", png, f"held-out evaluation: {file}")
    return page


def _params_label(text) -> str:
    """`{"w_params": 1.7511}` as `(w_params=1.75)`."""
    try:
        params = json.loads(text) if isinstance(text, str) else {}
    except json.JSONDecodeError:
        return f" {text}"
    shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))
    return f"({shown})" if shown else ""


def _tolerance_of(text: str) -> float | None:
    """A trial's fixed tolerance from its JSON text (None for a range)."""
    numbers = re.findall(r"[-+0-9.eE]+", str(text))
    return float(numbers[0]) if len(numbers) == 1 else None


def plot_trials(trials: pd.DataFrame) -> bytes:
    """PNG: each scored trial's mean reduction (log x) against its mean accuracy change over its last
    training iterations, one marker per reward, one colour per tolerance, the best trial circled,
    and a dashed line at -a for each fixed tolerance a."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    shown = trials[np.isfinite(trials["reduction_mean"].astype(float))]
    tolerances = sorted(trials["tolerance"].astype(str).unique())
    reward_of = trials["reward"].astype(str) + trials["reward_params"].map(_params_label)
    rewards = sorted(reward_of.unique())
    for (tolerance, reward), part in shown.groupby([shown["tolerance"].astype(str), reward_of[shown.index]]):
        ax.scatter(part["reduction_mean"], part["acc_change_pp_mean"], color=f"C{tolerances.index(tolerance) % 10}",
                   marker=MARKERS[rewards.index(reward) % len(MARKERS)], s=40, alpha=0.8, edgecolors="black",
                   linewidths=0.4)
    for i, reward in enumerate(rewards):  # legend entries only: the colour belongs to the tolerance
        ax.scatter([], [], marker=MARKERS[i % len(MARKERS)], color="lightgrey", edgecolors="black", label=reward)
    for j, text in enumerate(tolerances):
        a = _tolerance_of(text)
        if a is None:
            ax.plot([], [], color=f"C{j % 10}", lw=4, label=f"tolerance {text} (drawn per episode)")
        else:
            ax.axhline(-a, color=f"C{j % 10}", lw=1.0, ls="--", label=f"tolerance {text}: line at -{a:g} pp")
    if len(shown):
        top = shown.iloc[0]
        ax.scatter([top["reduction_mean"]], [top["acc_change_pp_mean"]], s=260, facecolors="none", edgecolors="red",
                   linewidths=1.5, label=f"best: {top['trial'][:64]}")
    log_reduction_axis(ax)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("mean parameter reduction of the last training episodes (log scale)")
    ax.set_ylabel("mean val accuracy change (pp)")
    ax.set_title(f"Trials: reduction against accuracy change ({len(shown)} of {len(trials)} with episodes)")
    legend_outside(ax, title="marker: reward; colour: tolerance", title_fontsize=7)
    return png_bytes(plt, fig)


def plot_score_curves(curves: pd.DataFrame, trials: pd.DataFrame) -> bytes:
    """PNG: the validation score of every trial at each scored iteration (log y), best trials first in the legend."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    order = [t for t in trials["trial"] if t in set(curves["trial"])]
    for i, trial in enumerate(order):
        part = curves[curves["trial"] == trial].sort_values("iteration")
        ax.plot(part["iteration"], part["val_score"], marker=MARKERS[i % len(MARKERS)], ms=5, lw=1.2, alpha=0.8,
                color=f"C{i % 10}", ls=("-", "--", ":", "-.")[i // 10 % 4], label=trial[:64])
    log_reduction_axis(ax, "y")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("training iteration")
    ax.set_ylabel("validation score (log scale)")
    ax.set_title(f"Validation score per trial ({len(order)} trials)")
    legend_outside(ax, ncol=1 if len(order) <= 24 else 2)
    return png_bytes(plt, fig)
