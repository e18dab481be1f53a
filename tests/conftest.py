"""Shared fixtures: the benchmark data directory, one local Ray and one tiny zoo for the whole session.

Every test that takes the `shared_data_dir` fixture is marked `shared_data` here, so
`pytest -m "not shared_data"` runs everything that does not need ../shared/datasets.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NEON_RAY_DATA_DIR", REPO.parent / "shared" / "datasets"))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "shared_data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """../shared/datasets (or $NEON_RAY_DATA_DIR); tests that need it fail loudly if absent."""
    if not (SHARED_DATA / "MANIFEST.csv").is_file():
        pytest.fail(f"benchmark datasets not found at {SHARED_DATA} (set NEON_RAY_DATA_DIR)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray with 2 CPUs shared by every Ray integration test, started the way every
    command starts it (loopback only, quiet, reaped if pytest is killed)."""
    from neon_ray.runtime.ray_session import ray_session as local_ray

    with local_ray(num_cpus=2) as ray:
        yield ray


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One torch thread, as inside Ray workers: on a busy 2-core machine idle intra-op threads
    stall the small networks of the tests far more than they help."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_zoo(ray_session, tmp_path_factory):
    """wine and breast_cancer x 3 small networks (1 'test' each), built once on the shared Ray.

    Read-only for the tests that share it: they write results and pruned networks elsewhere.
    """
    from neon_ray.nets.spec import SamplerConfig
    from neon_ray.nets.training import TrainConfig
    from neon_ray.zoo.build import build_zoo
    from neon_ray.zoo.config import ZooConfig
    from neon_ray.zoo.store import open_zoo

    cfg = ZooConfig(out=str(tmp_path_factory.mktemp("tiny_zoo")), datasets=("sklearn:wine", "sklearn:breast_cancer"),
                    networks=3, test_networks=1, sampler=SamplerConfig(max_layers=2, widths=(16, 32)),
                    train=TrainConfig(max_epochs=5))
    build_zoo(cfg, progress=False)
    return open_zoo(cfg.out)
