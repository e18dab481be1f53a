"""`neon-ray submit` against a real token-mode Ray head on loopback (tests/e2e/cluster.py).

The client side gets the head's token only as RAY_AUTH_TOKEN, never RAY_AUTH_MODE, as a user
following the command's one-line hint would; the first submission comes right after the dashboard
answers, when the job agent may still be starting.
"""
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from ray.job_submission import JobStatus, JobSubmissionClient

from e2e.cluster import BIN

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def submit(head, *args, env=None, timeout=120) -> subprocess.CompletedProcess:
    command = [str(BIN / "neon-ray"), "submit", "--address", head.address, "--working-dir", str(REPO), *args]
    return subprocess.run(command, env=env or head.client_env(), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_a_command_job_runs_in_the_uploaded_working_dir_and_its_output_is_streamed(head):
    code = "import os, pathlib; print('job-ok', pathlib.Path('jobs/pipeline.py').is_file(), os.environ['PYTHONUNBUFFERED'])"
    done = submit(head, "--", "python", "-c", code)
    assert done.returncode == 0, done.stderr[-3000:]
    # the repo's files arrived, and cluster/runtime-env.yaml's env_vars were applied
    assert "job-ok True 1" in done.stdout
    assert re.search(r"job neonray_\w+ succeeded", done.stderr)


def test_a_failing_job_exits_with_status_1_after_its_output(head):
    done = submit(head, "--", "python", "-c", "import sys; print('about to fail', flush=True); sys.exit(3)")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "about to fail" in done.stdout
    assert re.search(r"job neonray_\w+ failed", done.stderr)


def test_ctrl_c_stops_the_job_on_the_cluster_and_exits_130(head):
    marker = uuid.uuid4().hex
    command = [str(BIN / "neon-ray"), "submit", "--address", head.address, "--working-dir", str(REPO), "--",
               "python", "-c", f"import time; print('{marker}', flush=True); time.sleep(300)"]
    proc = subprocess.Popen(command, env=head.client_env(), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # the job is running once its first line has come back
        started = any(marker in line for line in proc.stdout)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert started, err[-3000:]
    assert proc.returncode == 130, err[-3000:]
    job_id = re.search(r"submitted job (neonray_\w+)", err).group(1)
    assert f"stopped job {job_id}" in err
    client = JobSubmissionClient(head.address, headers={"Authorization": f"Bearer {head.token}"})
    end = time.monotonic() + 30
    while (status := client.get_job_status(job_id)) != JobStatus.STOPPED and time.monotonic() < end:
        time.sleep(0.5)
    assert status == JobStatus.STOPPED


def test_without_a_token_one_line_says_how_to_get_it(head, tmp_path):
    done = submit(head, "--", "python", "-c", "print(1)", env=head.client_env(token=None, home=str(tmp_path)))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "requires an auth token" in lines[0] and "`ray get-auth-token` on the head" in lines[0]
    assert "export RAY_AUTH_TOKEN=" in lines[0]


def test_a_wrong_token_is_refused_in_one_line(head):
    done = submit(head, "--", "python", "-c", "print(1)", env=head.client_env(token="not-the-token"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "refused the auth token from RAY_AUTH_TOKEN" in lines[0]
