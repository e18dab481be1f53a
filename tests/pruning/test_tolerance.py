"""The guard's confidence bound on a val accuracy drop (tolerance.drop_bound_pp), without Ray."""
from __future__ import annotations

import math

import numpy as np
import pytest

from neon_ray.errors import ConfigError
from neon_ray.pruning.episode_config import EpisodeConfig
from neon_ray.pruning.tolerance import CONFIDENCE_Z, check_confidence_z, drop_bound_pp, paired_changes


def test_paired_changes_count_rows_lost_and_gained():
    orig = np.array([True, True, False, False, True])
    now = np.array([True, False, True, False, False])
    assert paired_changes(orig, now) == (2, 1)


def test_z_zero_is_the_measured_drop():
    assert drop_bound_pp(3, 1, 200, z=0) == pytest.approx(1.0)
    assert drop_bound_pp(1, 3, 200, z=0) == pytest.approx(-1.0)


def test_bound_adds_z_standard_errors_of_the_paired_change():
    lost, gained, n = 6, 2, 400
    b, c = lost + 0.5, gained + 0.5
    se = math.sqrt(((b + c) / n - ((b - c) / n) ** 2) / n)
    assert drop_bound_pp(lost, gained, n, z=2.0) == pytest.approx(100 * ((lost - gained) / n + 2.0 * se))


def test_small_val_splits_prove_little_even_without_disagreement():
    # identical predictions on 49 rows still leave a 1 pp tolerance unproven, but not a 5 pp one
    assert 1.0 < drop_bound_pp(0, 0, 49) < 5.0
    assert drop_bound_pp(0, 0, 4500) < 0.1
    # more disagreement, same net drop: a wider bound
    assert drop_bound_pp(20, 18, 450) > drop_bound_pp(2, 0, 450)


def test_confidence_z_is_checked():
    assert EpisodeConfig().confidence_z == CONFIDENCE_Z
    assert check_confidence_z(0) == 0.0
    for bad in (-1, 11, float("nan"), True, "2"):
        with pytest.raises(ConfigError, match="confidence_z"):
            EpisodeConfig(confidence_z=bad)
    with pytest.raises(ConfigError, match="at least one row"):
        drop_bound_pp(0, 0, 0)
