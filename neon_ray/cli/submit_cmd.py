"""`neon-ray submit`: the pipeline of a spec, or any command, as a Ray Job on a running cluster."""
from __future__ import annotations

import argparse
import signal
import shlex
import sys
from pathlib import Path

from neon_ray.cli.common import float_in, require

EPILOG = """\
examples:
  # the pipeline of a spec; outputs go to storage that every node sees
  neon-ray submit jobs/specs/protocol_b.json --address http://HEAD:8265 \\
      --data-dir /mnt/shared/datasets --out /mnt/shared/neon-ray/pb
  # any command, run in the job's copy of the working directory
  neon-ray submit --address http://127.0.0.1:8265 -- python -m jobs.pipeline --spec jobs/specs/smoke.json --out /tmp/smoke

The working directory (default .) is uploaded without its .gitignore'd files (.venv, runs/), with
the settings of WORKING_DIR/cluster/runtime-env.yaml (or --runtime-env). The job's output is
streamed here and the exit status is the job's: 0 succeeded, 1 failed or stopped; 2 is a mistake
found before submitting (a bad option or spec, no token, nothing answering at --address).
Ctrl-C stops the job on the cluster and exits with 130. While the head's job agent is still
starting, the submission is retried for up to --ready-timeout seconds.

Token: Ray 2.60 clusters require theirs. Run `ray get-auth-token` on the head, then
`export RAY_AUTH_TOKEN=<token>` here (or save it in ~/.ray/auth_token, or name a file holding it
in RAY_AUTH_TOKEN_PATH); RAY_AUTH_MODE need not be set on this side.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "submit",
        help="run the pipeline of a spec (or any command) as a Ray Job on a cluster, streaming its output",
        description="Submit SPEC.json's pipeline (`python -m jobs.pipeline --spec SPEC ...`) or the command "
                    "after `--` to the Ray cluster at --address, with this working directory uploaded; "
                    "follow its output and exit with its status.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", nargs="*", metavar="SPEC.json | -- CMD",
                   help="a pipeline spec (one argument ending in .json, inside the working directory), or a command "
                        "after -- (each word passed as given)")
    p.add_argument("--address", required=True, metavar="URL",
                   help="the head's dashboard URL, http(s)://HOST:PORT (port 8265 by default); it wins over RAY_ADDRESS")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="run directory on the cluster, an absolute path on storage every node sees "
                        "(a spec only; overrides the spec's out)")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="directory with MANIFEST.csv on the cluster (a spec only; overrides the spec)")
    p.add_argument("--working-dir", default=".", metavar="DIR", help="directory uploaded as the job's working directory (default .)")
    p.add_argument("--runtime-env", default=None, metavar="FILE",
                   help="runtime environment YAML (default: WORKING_DIR/cluster/runtime-env.yaml if it exists)")
    p.add_argument("--ready-timeout", type=float_in(0), default=120.0, metavar="SECONDS",
                   help="seconds to keep retrying while the head's job agent is starting, >= 0 (default 120)")
    p.set_defaults(func=_submit)


def _submit(args: argparse.Namespace) -> int:
    # imported here: Ray's job client and the pipeline's checks load Ray and torch, and `neon-ray --help` must stay fast
    from neon_ray.runtime.jobs import JobConfig, find_token, run_job

    working_dir = Path(args.working_dir).expanduser().resolve()
    require(working_dir.is_dir(), f"--working-dir {args.working_dir}: not a directory")
    cfg = JobConfig(
        address=args.address.rstrip("/"),
        entrypoint=_entrypoint(args, working_dir),
        working_dir=str(working_dir),
        runtime_env=_runtime_env(args.runtime_env, working_dir),
        ready_timeout_s=args.ready_timeout,
    )
    # A shell starts a background command with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: submit promises to stop its job on SIGINT wherever it runs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return run_job(cfg, write=_write, token=find_token()).exit_status


def _entrypoint(args: argparse.Namespace, working_dir: Path) -> str:
    target = args.target
    require(bool(target), "give a pipeline spec (SPEC.json) or a command after -- (see neon-ray submit --help)")
    if len(target) == 1 and target[0].endswith(".json"):
        return _pipeline_entrypoint(target[0], args, working_dir)
    require(args.out is None and args.data_dir is None,
            "--out and --data-dir go with a pipeline spec (SPEC.json); give a command its own options after --")
    return shlex.join(target)


def _pipeline_entrypoint(text: str, args: argparse.Namespace, working_dir: Path) -> str:
    """`python -m jobs.pipeline --spec SPEC ...`, once the spec is checked here as the job would check it."""
    from neon_ray.pipeline import load_spec

    spec = Path(text).expanduser().resolve()
    require(spec.is_file(), f"{text}: pipeline spec not found")
    require(spec.is_relative_to(working_dir),
            f"{text}: the spec must lie inside the working directory {working_dir}, which is what the job receives")
    cfg = load_spec(spec, out=args.out, data_dir=args.data_dir)
    require(Path(cfg.out).is_absolute(),
            f"run directory {cfg.out!r} must be an absolute path on the cluster (give --out on storage every node "
            "sees): a relative one would land in the job's temporary copy of the working directory")
    words = ["python", "-m", "jobs.pipeline", "--spec", spec.relative_to(working_dir).as_posix()]
    words += ["--out", args.out] if args.out is not None else []
    words += ["--data-dir", args.data_dir] if args.data_dir is not None else []
    return shlex.join(words)


def _runtime_env(path: str | None, working_dir: Path) -> dict:
    from neon_ray.runtime.jobs import load_runtime_env

    if path is not None:
        return load_runtime_env(path)
    default = working_dir / "cluster" / "runtime-env.yaml"
    return load_runtime_env(default) if default.is_file() else {}


def _write(chunk: str) -> None:
    sys.stdout.write(chunk)
    sys.stdout.flush()
