"""Small tables on disk for the data tests, and the split rows `load_dataset` gives them."""
from __future__ import annotations

import numpy as np
import pandas as pd

from neon_ray.data.splits import SplitConfig, split_indices

SPLIT_FRACTIONS = [SplitConfig().test_fraction, SplitConfig().val_fraction]


def write_csv(tmp_path, frame: pd.DataFrame, name: str = "data.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def write_parquet(tmp_path, frame: pd.DataFrame, name: str = "data.parquet") -> str:
    path = tmp_path / name
    frame.to_parquet(path)
    return str(path)


def toy_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """rid: a unique row id (survives min-max scaling as a unique value); x: noise; target: 0/1."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"rid": np.arange(n), "x": rng.random(n), "target": np.arange(n) % 2})


def split_rows(frame: pd.DataFrame, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(test, val, train) raw row indices that load_dataset uses for 0..K-1 integer targets."""
    return tuple(split_indices(frame["target"].to_numpy(), SPLIT_FRACTIONS, seed))
