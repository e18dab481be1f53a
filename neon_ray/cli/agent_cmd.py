"""`neon-ray agent upload RUN URI`: copy a trained agent to where every node reads it (s3://... or a path).

Library modules are imported inside the handlers: `neon-ray --help` must not pay for torch and Ray.
"""
from __future__ import annotations

import argparse


def register(sub) -> None:
    agent = sub.add_parser("agent", help="manage trained agents (upload a run for prune tasks on every node)")
    asub = agent.add_subparsers(dest="agent_command", required=True, metavar="ACTION")
    upload = asub.add_parser(
        "upload",
        help="copy what applying a run's agent reads to a URI (s3://bucket/run) or another directory",
        description=(
            "Copy the checkpoints the run's best and latest pointers name (policy.json + policy.pt only, never "
            "RLlib's pickles), config.json and progress.csv, then the pointers, so `neon-ray prune --agent URI` "
            "reads the agent on every node. Credentials and endpoint come the way pyarrow takes them "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL or ?endpoint_override=)."
        ),
    )
    upload.add_argument("run", help="training run directory (RUN with config.json and checkpoints/)")
    upload.add_argument("dest", help="destination: a URI such as s3://bucket/agents/run, or a directory")
    upload.set_defaults(func=_upload)


def _upload(args: argparse.Namespace) -> int:
    from neon_ray.agent.run_dir import upload_run
    from neon_ray.runtime.files import display

    dest = upload_run(args.run, args.dest)
    print(f"agent of {args.run} uploaded to {display(dest)} (neon-ray prune --agent {display(dest)} ...)")
    return 0
