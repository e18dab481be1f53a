"""`neon-ray submit` without a cluster: where the token comes from, the one-line messages, the
checks made before anything is uploaded, and the readiness retry. The real submissions, Ctrl-C and a
token-mode head's answers are in tests/e2e/test_submit.py."""
from __future__ import annotations

import http.server
import socket
import socketserver
import threading
from pathlib import Path

import pytest
import requests

from neon_ray.cli import main
from neon_ray.errors import ConfigError
from neon_ray.runtime.jobs import (
    NO_AGENT, JobConfig, Token, auth_error_message, find_token, landed_before, load_runtime_env, retry_while_starting,
)

REPO = Path(__file__).resolve().parents[2]
SMOKE = str(REPO / "jobs" / "specs" / "smoke.json")
# the head's answer while its job agent starts, as Ray's client raises it
NO_AGENT_ERROR = f"Request failed with status code 500: {NO_AGENT}, please try again later.."


# ------------------------------------------------------------------------------------------------
# The token: Ray's own sources, in Ray's order


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_token_variable_comes_first(tmp_path):
    write(tmp_path / ".ray" / "auth_token", "from-file")
    path = write(tmp_path / "t", "from-path")
    token = find_token({"RAY_AUTH_TOKEN": " from-env\n", "RAY_AUTH_TOKEN_PATH": str(path)}, home=tmp_path)
    assert token == Token("from-env", "RAY_AUTH_TOKEN")


def test_then_the_file_named_by_the_path_variable_then_the_default_file(tmp_path):
    write(tmp_path / ".ray" / "auth_token", "from-file\n")
    path = write(tmp_path / "t", "  from-path\n")
    assert find_token({"RAY_AUTH_TOKEN": "  ", "RAY_AUTH_TOKEN_PATH": str(path)}, home=tmp_path) == \
        Token("from-path", f"RAY_AUTH_TOKEN_PATH ({path})")
    assert find_token({}, home=tmp_path) == Token("from-file", str(tmp_path / ".ray" / "auth_token"))


def test_an_unreadable_path_variable_is_an_error_not_a_fallback(tmp_path):
    write(tmp_path / ".ray" / "auth_token", "from-file")
    with pytest.raises(ConfigError, match="RAY_AUTH_TOKEN_PATH=.*missing"):
        find_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "absent")}, home=tmp_path)


def test_no_token_anywhere_or_an_empty_file_is_none(tmp_path):
    assert find_token({}, home=tmp_path) is None
    write(tmp_path / ".ray" / "auth_token", " \n")
    assert find_token({}, home=tmp_path) is None


def test_the_missing_token_message_is_one_line_naming_how_to_get_it():
    message = auth_error_message("http://head:8265", None)
    assert "\n" not in message
    assert "http://head:8265 requires an auth token and none was found" in message
    assert "`ray get-auth-token` on the head" in message and "export RAY_AUTH_TOKEN=<token>" in message
    assert "~/.ray/auth_token" in message and "RAY_AUTH_TOKEN_PATH" in message


def test_a_refused_token_message_names_where_the_token_came_from():
    message = auth_error_message("http://head:8265", Token("x", "RAY_AUTH_TOKEN_PATH (/secrets/t)"))
    assert "\n" not in message
    assert "refused the auth token from RAY_AUTH_TOKEN_PATH (/secrets/t)" in message
    assert "`ray get-auth-token` on the head" in message


# ------------------------------------------------------------------------------------------------
# Runtime environment and the job's config


def test_the_shipped_runtime_env_loads_and_sets_only_what_code_reads():
    env = load_runtime_env(REPO / "cluster" / "runtime-env.yaml")
    assert env == {"env_vars": {"RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}}


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "expected a YAML mapping"),
    ("working_dir: /elsewhere\n", "working_dir is set by --working-dir"),
    ("env_vars: [unclosed\n", "not valid YAML"),
])
def test_a_bad_runtime_env_file_is_refused(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_runtime_env(write(tmp_path / "env.yaml", text))


@pytest.mark.parametrize("changes, message", [
    ({"address": "127.0.0.1:8265"}, "address must be the head's dashboard URL"),
    ({"entrypoint": "  "}, "entrypoint must be a non-empty command line"),
    ({"working_dir": "/no/such/dir"}, "working_dir must be an existing directory"),
    ({"runtime_env": {"working_dir": "."}}, "runtime_env must be a mapping without working_dir"),
    ({"ready_timeout_s": float("nan")}, "ready_timeout_s must be a finite number >= 0"),
    ({"ready_timeout_s": -1}, "ready_timeout_s must be a finite number >= 0"),
])
def test_job_config_refuses_bad_values(tmp_path, changes, message):
    fields = {"address": "http://127.0.0.1:8265", "entrypoint": "python -c 1", "working_dir": str(tmp_path), **changes}
    with pytest.raises(ConfigError, match=message):
        JobConfig(**fields)


# ------------------------------------------------------------------------------------------------
# Readiness: the head's "No available agent" answer and dropped connections are retried, nothing else


def answering(*answers):
    """A call giving these answers in turn (an exception is raised, anything else returned)."""
    todo = list(answers)

    def call():
        answer = todo.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return call


def test_a_head_not_ready_yet_is_retried_until_it_answers():
    waits = []
    call = answering(RuntimeError(NO_AGENT_ERROR), requests.exceptions.ConnectionError("Connection aborted."),
                     RuntimeError(NO_AGENT_ERROR), "job-1")
    assert retry_while_starting(call, timeout_s=60, sleep=waits.append) == "job-1"
    assert waits == [1.0, 2.0, 4.0]


def test_other_errors_and_a_passed_deadline_are_not_retried():
    with pytest.raises(RuntimeError, match="status code 400"):
        retry_while_starting(answering(RuntimeError("Request failed with status code 400: bad runtime_env")),
                             timeout_s=60, sleep=pytest.fail)
    with pytest.raises(RuntimeError, match=NO_AGENT):
        retry_while_starting(answering(RuntimeError(NO_AGENT_ERROR)), timeout_s=0, sleep=pytest.fail)


def test_a_retry_refused_as_already_submitted_means_the_first_attempt_landed():
    # the job manager's answer to a second submission under the same ID
    refusal = RuntimeError("Request failed with status code 400: Job with submission_id neonray_ab12 already "
                           "exists. Please use a different submission_id..")
    assert landed_before(refusal, "neonray_ab12")
    assert not landed_before(refusal, "neonray_other")
    assert not landed_before(RuntimeError(NO_AGENT_ERROR), "neonray_ab12")


# ------------------------------------------------------------------------------------------------
# The command: every mistake is one line and exit 2, before anything is uploaded


def error_of(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("argv, message", [
    (["submit", "--address", "http://127.0.0.1:8265"], "give a pipeline spec (SPEC.json) or a command after --"),
    (["submit", "--address", "http://127.0.0.1:8265", "--out", "/abs", "--", "python", "-c", "1"],
     "--out and --data-dir go with a pipeline spec"),
    (["submit", "--address", "127.0.0.1:8265", "--", "python", "-c", "1"], "address must be the head's dashboard URL"),
    (["submit", "--address", "http://127.0.0.1:8265", "--working-dir", "/no/such/dir", "--", "true"],
     "--working-dir /no/such/dir: not a directory"),
    (["submit", "--address", "http://127.0.0.1:8265", "no-such-spec.json"], "no-such-spec.json: pipeline spec not found"),
    (["submit", "--address", "http://127.0.0.1:8265", "--working-dir", str(REPO), SMOKE, "--out", "runs/x"],
     "must be an absolute path on the cluster"),
    (["submit", "--address", "http://127.0.0.1:8265", "--working-dir", str(REPO), SMOKE], "no output directory (give --out)"),
])
def test_submit_mistakes_are_one_line_and_exit_2(argv, message, capsys):
    assert message in error_of(argv, capsys)


def test_a_spec_outside_the_working_dir_is_refused(tmp_path, capsys):
    spec = write(tmp_path / "spec.json", '{"out": "/tmp/x"}')
    err = error_of(["submit", "--address", "http://127.0.0.1:8265", "--working-dir", str(REPO), str(spec)], capsys)
    assert f"the spec must lie inside the working directory {REPO}" in err


def test_a_runtime_env_setting_the_working_dir_is_refused(tmp_path, capsys):
    env = write(tmp_path / "env.yaml", "working_dir: /elsewhere\n")
    err = error_of(["submit", "--address", "http://127.0.0.1:8265", "--runtime-env", str(env), "--", "true"], capsys)
    assert "working_dir is set by --working-dir" in err


def test_nothing_answering_at_the_address_is_one_line(capsys):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = error_of(["submit", "--address", f"http://127.0.0.1:{port}", "--", "true"], capsys)
    assert f"no Ray dashboard answers at http://127.0.0.1:{port}" in err


@pytest.mark.parametrize("argv", [
    ["submit", "--", "python", "-c", "1"],  # no --address
    ["submit", "--address", "http://127.0.0.1:8265", "--ready-timeout", "-1", "--", "true"],
])
def test_usage_mistakes_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "neon-ray submit: error:" in capsys.readouterr().err


def test_an_http_server_that_is_not_a_ray_dashboard_is_one_line(capsys):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    with socketserver.TCPServer(("127.0.0.1", 0), Quiet) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        address = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            err = error_of(["submit", "--address", address, "--", "true"], capsys)
        finally:
            server.shutdown()
    assert f"{address} answers, but not as a Ray dashboard taking jobs" in err
