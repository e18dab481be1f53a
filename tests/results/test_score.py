"""The evaluation score on hand-made rows (no Ray), and the Pareto plot."""
import math

import pandas as pd
import pytest

from neon_ray.errors import ConfigError
from neon_ray.results.report import plot_pareto
from neon_ray.results.summary import score, summarise


def frame(reductions, daccs, tolerance=5.0, method="m"):
    n = len(reductions)
    return pd.DataFrame({"method": [method] * n, "config_label": ["c"] * n, "network_id": [f"n{i}" for i in range(n)],
                         "reduction": reductions, "delta_acc_pp": daccs, "tolerance": [tolerance] * n,
                         "seconds": [1.0] * n})


def test_score_is_the_geomean_with_failures_counted_as_x1():
    # x4 within (-1 pp), x16 within (exactly -5 pp), x100 failing (-6 pp) counts x1: (4 * 16 * 1) ** (1/3) = 4
    f = frame([4.0, 16.0, 100.0], [-1.0, -5.0, -6.0])
    assert score(f) == pytest.approx(4.0)
    # a method that removed more by losing more does not win: the failing x100 adds nothing
    assert score(f) < score(frame([4.0, 16.0, 2.0], [-1.0, -5.0, 0.0]))


def test_score_uses_the_given_tolerance_only_for_rows_without_one():
    unguarded = frame([4.0, 9.0], [-2.0, -3.0], tolerance=None)
    assert math.isnan(score(unguarded))
    assert score(unguarded, 5.0) == pytest.approx(6.0)
    assert score(unguarded, 2.5) == pytest.approx(2.0)  # the -3 pp network counts x1: sqrt(4 * 1)
    assert score(frame([4.0], [-3.0], tolerance=1.0), 50.0) == 1.0  # the row's own tolerance wins
    with pytest.raises(ConfigError, match="score tolerance"):
        score(unguarded, -1.0)


def test_summarise_has_the_score_per_method():
    f = pd.concat([frame([4.0, 16.0, 100.0], [-1.0, -5.0, -6.0], method="a"), frame([2.0, 8.0], [0.0, 0.0], method="b")])
    s = summarise(f).set_index("method")
    assert s.loc["a", "score"] == pytest.approx(4.0) and s.loc["b", "score"] == pytest.approx(4.0)
    assert s.loc["a", "geomean_x"] == pytest.approx(6400 ** (1 / 3))  # the plain geomean rewards the failing x100
    assert math.isnan(summarise(frame([4.0], [0.0], tolerance=None))["score"].iloc[0])


def test_pareto_plot_is_a_png(tmp_path):
    f = pd.concat([frame([4.0, 16.0], [-1.0, -6.0], method="a"), frame([2.0, 8.0], [0.0, 0.0], method="b")])
    png = plot_pareto(f, 5.0, "two methods")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
