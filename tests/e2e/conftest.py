"""One token-mode loopback Ray head (tests/e2e/cluster.py) shared by the end-to-end tests of a session."""
import pytest

from e2e.cluster import running_head  # tests/ is on sys.path: the folder of tests/conftest.py (pytest's default import mode)


@pytest.fixture(scope="session")
def head():
    with running_head(num_cpus=2) as started:
        yield started
