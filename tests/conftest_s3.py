"""A real S3-compatible server for tests of storage by URI: moto's server mode, started on loopback
and a free port, reached by pyarrow's own S3 client (no mock of pyarrow).

Test modules import the fixtures they use (`from conftest_s3 import bucket, s3`); `uri(s3, path)`
gives an s3:// URI carrying the endpoint as a query (`?endpoint_override=...&scheme=http`), the
credentials coming from the environment as a user would set them (`CREDENTIALS`).
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pyarrow.fs as pafs
import pytest

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_moto(timeout: float = 60) -> tuple[subprocess.Popen, int]:
    """moto_server on 127.0.0.1 and a free port, once it answers; a new port if the chosen one was taken."""
    if not MOTO_SERVER.is_file():
        pytest.fail(f"{MOTO_SERVER} not found: install the test extra (pip install -c constraints.txt -e '.[test]')")
    for _ in range(3):
        port = _free_port()
        server = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + timeout
        while server.poll() is None and time.monotonic() < end:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=2):
                    return server, port
            except OSError:
                time.sleep(0.2)
        server.kill()
        server.wait()
    pytest.fail("moto_server did not start on loopback")


@pytest.fixture(scope="module")
def s3():
    """(filesystem, URI query, port) of a loopback S3 server; credentials in the environment, as a user sets them."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in CREDENTIALS.items():
            env.setenv(key, value)
        server, port = _start_moto()
        try:
            fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", allow_bucket_creation=True)
            yield fs, f"endpoint_override=127.0.0.1:{port}&scheme=http", port
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@pytest.fixture()
def bucket(s3):
    """A new, empty bucket."""
    fs = s3[0]
    name = f"neon-{uuid.uuid4().hex[:12]}"
    fs.create_dir(name)
    return name


def uri(s3, path: str) -> str:
    """s3://PATH with the endpoint in the query."""
    return f"s3://{path}?{s3[1]}"


def keys(s3, prefix: str) -> list[str]:
    """Every object key under `prefix`, relative to it, sorted (none if nothing is there)."""
    fs = s3[0]
    found = fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    return sorted(i.path[len(prefix) + 1:] for i in found if i.type == pafs.FileType.File)
