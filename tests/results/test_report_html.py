"""The report page: self-contained HTML and fenced markdown for a results directory and for a sweep."""
from __future__ import annotations

import base64
import json
import re

import pandas as pd
import pytest

from neon_ray.cli import main
from neon_ray.results.html_report import Page, plot_score_curves, plot_trials, results_page, sweep_page, write_page
from neon_ray.results.report import log_reduction_axis, pyplot, write_report
from neon_ray.results.store import write_results

from test_results import rows  # the results tests' rows (pytest puts this folder on sys.path)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "res"
    write_results(rows("r1", "neon", "phoneme", 3, reduction=4.0) + rows("r2", "uniform", "phoneme", 2, reduction=2.0)
                  + rows("r1", "neon", "sklearn:wine", 2, reduction=8.0, dacc=-0.2), root)
    return root


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_results_page_has_the_method_and_dataset_tables_and_embeds_its_plot(results, tmp_path):
    html_path, md_path = write_page(results_page(results, tolerance=5.0), tmp_path / "rep")
    html, md = html_path.read_text(), md_path.read_text()
    assert html.count("<table>") == 3 and "Per method" in html and "Per dataset" in html and "sklearn:wine" in html
    images = _images(html)
    assert len(images) == 1 and images[0].startswith(PNG) and len(images[0]) > 10_000
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing outside the file
    assert md.count("```") == 6 and "geomean_x" in md.split("```")[1] and "![" in md and (tmp_path / "rep" / "tradeoff.png").read_bytes().startswith(PNG)


def test_markdown_report_keeps_tables_in_fenced_blocks(results, tmp_path):
    text = write_report(results, tmp_path / "md", tolerance=5.0).read_text()
    blocks = text.split("```")[1::2]
    assert len(blocks) == 3 and "geomean_x" in blocks[0] and "phoneme" in blocks[1] and "complete" not in blocks[0]


def _trials() -> pd.DataFrame:
    return pd.DataFrame({
        "trial": ["tol=5_neon_s0_a", "tol=5_neon_s1_b", "tol=1-50_composite_w_params=2_s0_c", "tol=50_neon_s0_d"],
        "status": ["finished", "finished", "stopped early", "unfinished"],
        "score": [1.4, 2.5, 1.1, float("nan")], "last_score": [1.3, 2.5, 1.1, float("nan")],
        "best_iteration": [10, 20, 10, None], "iterations": [20, 20, 10, 0],
        "reduction_mean": [1.6, 3.0, 1.2, float("nan")], "acc_change_pp_mean": [-1.0, -4.0, 0.5, float("nan")],
        "tolerance": ["5.0", "5.0", "[1.0, 50.0]", "50.0"], "reward": ["neon", "neon", "composite", "neon"],
        "reward_params": ['{"scale": 64000.0}'] * 2 + ['{"w_params": 2.0}', '{"scale": 64000.0}'],
        "loops": [4] * 4, "lr": [1e-3] * 4, "entropy": [0.01] * 4, "batch_steps": [8] * 4, "algo": ["a2c"] * 4,
        "seed": [0, 1, 0, 0], "error": [""] * 4})


def _curves() -> pd.DataFrame:
    return pd.DataFrame([{"trial": t, "iteration": i, "val_score": s * i / 20}
                         for t, s, n in (("tol=5_neon_s0_a", 1.4, 20), ("tol=5_neon_s1_b", 2.5, 20),
                                         ("tol=1-50_composite_w_params=2_s0_c", 1.1, 10))
                         for i in range(10, n + 1, 10)])


def test_sweep_page_ranks_trials_and_shows_the_tradeoff_and_the_curves(tmp_path):
    heldout = {5.0: pd.DataFrame({"method": ["neon-a2c", "random-guard"], "score": [1.8, 1.2]})}
    page = sweep_page("s", _trials(), _curves(), {"search": "grid"}, heldout, {"pareto_a5.png": plot_trials(_trials())})
    html = page.html()
    order = [html.index(t) for t in ("tol=5_neon_s1_b", "tol=5_neon_s0_a", "tol=1-50_composite", "tol=50_neon_s0_d")]
    assert order == sorted(order)  # best score first, the unscored last
    assert "not finished" in html and "neon-a2c" in html and "random-guard" in html
    assert len(_images(html)) == 3 and all(image.startswith(PNG) for image in _images(html))
    md = page.markdown()
    assert "![trials: mean reduction" in md and md.count("```") == 2 * 3  # settings, trials, held-out table


def test_plots_use_readable_reduction_ticks():
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.scatter([1.0, 30.0], [0, -1])
    log_reduction_axis(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels and all(label.startswith("x") for label in labels) and "x10" in labels
    ax.set_xlim(1.0, 1.6)
    log_reduction_axis(ax)  # a narrow range: linear steps, still written as factors
    fig.canvas.draw()
    assert len([t for t in ax.get_xticklabels() if t.get_text().startswith("x1.")]) >= 2
    plt.close(fig)
    assert plot_score_curves(_curves(), _trials()).startswith(PNG)


def test_page_html_escapes_text():
    html = Page("a <b>").text("x & y").table(pd.DataFrame({"c": ["<script>"]})).html()
    assert "<script>" not in html.split("<style>")[1].split("</style>")[1] and "&lt;script&gt;" in html


def _sweep_dir(tmp_path):
    from neon_ray.agent.config import AgentTrainConfig
    from neon_ray.tune.config import SweepConfig

    folder = tmp_path / "sw" / "s"
    folder.mkdir(parents=True)
    cfg = SweepConfig(base=AgentTrainConfig(zoo=str(tmp_path / "no-zoo")), out=str(tmp_path / "sw"), name="s",
                      validation_datasets=("v",))
    (folder / "sweep.json").write_text(json.dumps(cfg.to_dict()))
    trials = _trials().assign(agent_dir=[str(tmp_path / "none")] * 4, trial_dir="", episodes=0, return_mean=0.0,
                              batch_episodes=float("nan"))
    trials.to_parquet(folder / "summary.parquet")
    return folder


def test_report_command_writes_both_outputs_for_a_sweep_and_for_results(results, tmp_path, capsys):
    assert main(["report", str(_sweep_dir(tmp_path)), "--out", str(tmp_path / "r1")]) == 0
    html = (tmp_path / "r1" / "report.html").read_text()
    assert "neon-ray sweep: s" in html and "zoo not readable" in html and "tol=5_neon_s1_b" in html
    assert main(["report", str(results), "--out", str(tmp_path / "r2"), "--tolerance", "5"]) == 0
    assert "Per dataset" in (tmp_path / "r2" / "report.md").read_text()
    assert "report written to" in capsys.readouterr().out
    assert main(["report", str(_sweep_dir(tmp_path / "b")), "--out", str(tmp_path / "r3"), "--tolerance", "5"]) == 2
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r4")]) == 2
