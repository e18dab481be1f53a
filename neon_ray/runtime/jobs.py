"""Ray Jobs on a running cluster: submit a command with the working dir, follow its logs, stop it.

`neon-ray submit` drives it; it talks to the head's dashboard (the Jobs API, `http://HEAD:8265`)
through Ray's `JobSubmissionClient`.

- Token. Ray 2.60 clusters run in token mode, and Ray's client sends a token only when the
  client also sets RAY_AUTH_MODE=token. Here the token is looked up where Ray looks for it
  (RAY_AUTH_TOKEN, then the file named by RAY_AUTH_TOKEN_PATH, then ~/.ray/auth_token, surrounding
  whitespace stripped) and always sent as `Authorization: Bearer ...`, so no mode is needed on
  the client. A cluster refusing the request (401 without a token, 403 with a wrong one) becomes
  one `JobSubmitError` line that says where the token comes from.
- Readiness. Right after `ray start --head` the dashboard answers before its job agent does, and
  a submission fails with "No available agent to submit job"; `submit` retries that answer, and a
  connection the dashboard dropped, until `JobConfig.ready_timeout_s` has passed. The submission
  ID is chosen here, so a retry of a submission that did land is recognised, not run twice.
- The address given wins over RAY_ADDRESS / RAY_API_SERVER_ADDRESS, which Ray's client would
  otherwise prefer to its argument.
- Ctrl-C while submitting or following stops the job on the cluster, then lets the
  KeyboardInterrupt through.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import requests
import yaml
from ray.exceptions import AuthenticationError
from ray.job_submission import JobStatus, JobSubmissionClient

from neon_ray.errors import ConfigError, NeonRayError
from neon_ray.runtime.ray_session import verbose

log = logging.getLogger(__name__)

TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = Path(".ray") / "auth_token"
"""Ray's default token file, under the home directory."""
ADDRESS_ENVS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
NO_AGENT = "No available agent to submit job"
EXIT_STATUS = {JobStatus.SUCCEEDED: 0, JobStatus.FAILED: 1, JobStatus.STOPPED: 1}
CLIENT_LOGGERS = ("ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk",
                  "ray._private.runtime_env.packaging", "ray._private.runtime_env.working_dir")
"""Ray's job client loggers: upload steps, default excludes (.git, .venv), websocket closes. Errors only,
unless verbose; the job's own output and this module's lines say what happens."""
TOKEN_HELP = ("run `ray get-auth-token` on the head, then `export RAY_AUTH_TOKEN=<token>` here "
              "(or save it in ~/.ray/auth_token, or name a file holding it in RAY_AUTH_TOKEN_PATH)")


class JobSubmitError(NeonRayError):
    """The cluster could not be reached or refused us (no token, wrong token, not a Ray dashboard)."""


@dataclass(frozen=True)
class Token:
    value: str
    source: str
    """Where it came from, for messages: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH (file) or the default file."""


@dataclass(frozen=True)
class JobConfig:
    """One job: what runs, where, with which runtime environment."""

    address: str
    """The head's dashboard URL, http(s)://HOST:PORT (port 8265 unless the head chose another)."""
    entrypoint: str
    """Shell command line the job runs, in its copy of `working_dir`."""
    working_dir: str
    """Local directory uploaded as the job's working directory (.gitignore'd files left out)."""
    runtime_env: Mapping = field(default_factory=dict)
    """Further runtime environment settings (env_vars, ...); `working_dir` is set from the field above."""
    ready_timeout_s: float = 120.0
    """How long to keep retrying while the head's job agent is not up yet."""

    def __post_init__(self):
        if not isinstance(self.address, str) or not self.address.startswith(("http://", "https://")):
            raise ConfigError(f"JobConfig.address must be the head's dashboard URL, http(s)://HOST:PORT "
                              f"(e.g. http://127.0.0.1:8265), got {self.address!r}")
        if not isinstance(self.entrypoint, str) or not self.entrypoint.strip():
            raise ConfigError(f"JobConfig.entrypoint must be a non-empty command line, got {self.entrypoint!r}")
        if not Path(self.working_dir).is_dir():
            raise ConfigError(f"JobConfig.working_dir must be an existing directory, got {self.working_dir!r}")
        if not isinstance(self.runtime_env, Mapping) or "working_dir" in self.runtime_env:
            raise ConfigError("JobConfig.runtime_env must be a mapping without working_dir (set by "
                              f"JobConfig.working_dir), got {self.runtime_env!r}")
        if not isinstance(self.ready_timeout_s, (int, float)) or not math.isfinite(self.ready_timeout_s) \
                or self.ready_timeout_s < 0:
            raise ConfigError(f"JobConfig.ready_timeout_s must be a finite number >= 0, got {self.ready_timeout_s!r}")


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    status: JobStatus
    message: str

    @property
    def exit_status(self) -> int:
        """0 if the job succeeded, 1 if it failed, was stopped or never ended."""
        return EXIT_STATUS.get(self.status, 1)


# ------------------------------------------------------------------------------------------------
# Token and runtime environment


def find_token(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Token | None:
    """The token Ray itself would use on this machine, or None; a RAY_AUTH_TOKEN_PATH that cannot be
    read is an error, as it is for Ray (no silent fallback to the default file)."""
    env = os.environ if environ is None else environ
    if value := env.get(TOKEN_ENV, "").strip():
        return Token(value, TOKEN_ENV)
    if path := env.get(TOKEN_PATH_ENV):
        value = _read_token_file(Path(path))
        if not value:
            raise ConfigError(f"{TOKEN_PATH_ENV}={path}: no token in that file (missing, unreadable or empty)")
        return Token(value, f"{TOKEN_PATH_ENV} ({path})")
    default = (Path.home() if home is None else home) / DEFAULT_TOKEN_FILE
    if value := _read_token_file(default):
        return Token(value, str(default))
    return None


def _read_token_file(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def auth_error_message(address: str, token: Token | None) -> str:
    """One line for a cluster that refused us: no token found, or the one found was wrong."""
    if token is None:
        return f"the Ray cluster at {address} requires an auth token and none was found: {TOKEN_HELP}"
    return f"the Ray cluster at {address} refused the auth token from {token.source}: {TOKEN_HELP}"


def load_runtime_env(path: str | Path) -> dict:
    """A runtime environment YAML file (for example cluster/runtime-env.yaml) as a dict, checked."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: runtime environment file cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a YAML mapping of runtime environment settings, got {type(doc).__name__}")
    if "working_dir" in doc:
        raise ConfigError(f"{path}: working_dir is set by --working-dir, not by the runtime environment file")
    return doc


# ------------------------------------------------------------------------------------------------
# Talking to the cluster


@contextlib.contextmanager
def _address_as_given():
    """Hide RAY_ADDRESS / RAY_API_SERVER_ADDRESS while the client resolves its address (read only then)."""
    saved = {name: os.environ.pop(name) for name in ADDRESS_ENVS if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def connect(address: str, token: Token | None) -> JobSubmissionClient:
    headers = {"Authorization": f"Bearer {token.value}"} if token else None
    try:
        with _address_as_given():
            return JobSubmissionClient(address, headers=headers)
    except AuthenticationError:
        raise JobSubmitError(auth_error_message(address, token)) from None
    except ConnectionError as exc:
        raise JobSubmitError(f"no Ray dashboard answers at {address} ({exc}); is the head running, "
                             "and is this its dashboard address (port 8265 by default)?") from None
    except (RuntimeError, ValueError) as exc:  # an HTTP server, but not a Jobs API (404, not JSON)
        raise JobSubmitError(f"{address} answers, but not as a Ray dashboard taking jobs: {_first_line(exc)}") from None


def submit(client: JobSubmissionClient, cfg: JobConfig, job_id: str, token: Token | None) -> str:
    """Submit under `job_id`, retrying while the head is not ready (see `retry_while_starting`)."""
    runtime_env = {**cfg.runtime_env, "working_dir": str(Path(cfg.working_dir).resolve())}
    attempts = 0

    def once() -> str:
        nonlocal attempts
        attempts += 1
        try:
            return client.submit_job(entrypoint=cfg.entrypoint, runtime_env=runtime_env, submission_id=job_id)
        except AuthenticationError:
            raise JobSubmitError(auth_error_message(cfg.address, token)) from None
        except RuntimeError as exc:
            if attempts > 1 and landed_before(exc, job_id):
                return job_id
            raise

    return retry_while_starting(once, cfg.ready_timeout_s)


def landed_before(exc: Exception, job_id: str) -> bool:
    """Whether a retried submission was refused because an earlier attempt created the job after all
    (its answer was lost with a dropped connection): the submission ID is ours, so the job is too."""
    return f"Job with submission_id {job_id} already exists" in str(exc)


def retry_while_starting(call: Callable[[], str], timeout_s: float,
                         sleep: Callable[[float], None] = time.sleep) -> str:
    """`call()`, again while the head is not ready, for up to `timeout_s` (waits of 1, 2, 4, 8, 8, ... s).

    Not ready: its "No available agent" answer while the job agent starts, or a connection it dropped
    (seen from a dashboard on an overloaded machine). Any other error, or these past the deadline, go through.
    """
    deadline, delay = time.monotonic() + timeout_s, 1.0
    while True:
        try:
            return call()
        except (RuntimeError, requests.exceptions.ConnectionError) as exc:
            left = deadline - time.monotonic()
            if not _not_ready(exc) or left <= 0:
                raise
            log.info("the head is not ready (%s); retrying in %.0f s", _first_line(exc), min(delay, left))
            sleep(min(delay, left))
            delay = min(delay * 2, 8.0)


def _not_ready(exc: Exception) -> bool:
    return isinstance(exc, requests.exceptions.ConnectionError) or NO_AGENT in str(exc)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


async def _tail(client: JobSubmissionClient, job_id: str, write: Callable[[str], None]) -> None:
    async for chunk in client.tail_job_logs(job_id):
        write(chunk)


def _stream(client: JobSubmissionClient, job_id: str, write: Callable[[str], None]) -> None:
    """Run `_tail` in a thread of its own and wait for it here, where Ctrl-C lands.

    Run in the main thread, asyncio turns SIGINT into a cancellation of the tail, and a websocket
    read inside Ray's client can absorb that cancellation and go on streaming: Ctrl-C then did
    nothing until the job ended. A thread's event loop installs no signal handler, and the main
    thread's short joins let KeyboardInterrupt through at once.
    """
    errors: list[BaseException] = []

    def tail() -> None:
        try:
            asyncio.run(_tail(client, job_id, write))
        except BaseException as exc:  # handed to the main thread, which decides
            errors.append(exc)

    thread = threading.Thread(target=tail, name=f"tail-{job_id}", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if errors:
        raise errors[0]


def wait_terminal(client: JobSubmissionClient, job_id: str, timeout_s: float | None = 30.0) -> JobStatus:
    """The job's status once terminal, or the last one seen after `timeout_s` (None: no limit)."""
    end = math.inf if timeout_s is None else time.monotonic() + timeout_s
    while not (status := client.get_job_status(job_id)).is_terminal() and time.monotonic() < end:
        time.sleep(0.5 if timeout_s is not None else 5.0)
    return status


def follow(client: JobSubmissionClient, job_id: str, write: Callable[[str], None]) -> JobOutcome:
    """Stream the job's output to `write` until it ends; its final status and message.

    The status can lag the end of the log stream by a moment, hence the short wait; a stream lost
    midway (the head dropped it) leaves the job running, so then its end is awaited without output.
    """
    try:
        _stream(client, job_id, write)
        status = wait_terminal(client, job_id)
    except (RuntimeError, aiohttp.ClientError) as exc:
        log.warning("lost the output stream of job %s (%s); waiting for it to end", job_id, _first_line(exc))
        status = wait_terminal(client, job_id, timeout_s=None)
    message = (client.get_job_info(job_id).message or "").strip()
    # Ray appends the log's tail to a failure's message, and it was streamed already
    first = message.splitlines()[0].split(", last available logs")[0] if message else ""
    return JobOutcome(job_id, status, first)


def stop(client: JobSubmissionClient, job_id: str) -> None:
    """Ask the cluster to stop the job (a no-op if it never started or already ended)."""
    try:
        client.stop_job(job_id)
    except (RuntimeError, requests.exceptions.RequestException) as exc:
        # not found: the interrupt came before the submission landed; or the head is gone
        log.warning("could not stop job %s: %s", job_id, exc)
        return
    log.info("stopped job %s", job_id)


@contextlib.contextmanager
def _quiet_client_logs():
    loggers = [logging.getLogger(name) for name in CLIENT_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers if not verbose() else ():
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def run_job(cfg: JobConfig, write: Callable[[str], None], token: Token | None = None) -> JobOutcome:
    """Submit the job, stream its output to `write`, and return how it ended; Ctrl-C stops it."""
    with _quiet_client_logs():
        return _run(cfg, write, token)


def _run(cfg: JobConfig, write: Callable[[str], None], token: Token | None) -> JobOutcome:
    client = connect(cfg.address, token)
    job_id = f"neonray_{uuid.uuid4().hex[:16]}"
    try:
        submit(client, cfg, job_id, token)
        log.info("submitted job %s to %s; following its output (Ctrl-C stops it)", job_id, cfg.address)
        outcome = follow(client, job_id, write)
    except KeyboardInterrupt:
        stop(client, job_id)
        raise
    log.info("job %s %s%s", job_id, outcome.status.value.lower(), f": {outcome.message}" if outcome.exit_status else "")
    return outcome
