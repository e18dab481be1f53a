"""Ray Job entry point: the whole protocol-B pipeline from a spec (zoo, agent, prune, baselines, summary).

Run it on a cluster (token auth stays on; see cluster/):

    export RAY_AUTH_MODE=token
    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python -m jobs.pipeline --spec jobs/specs/protocol_b_small.json \
        --data-dir /mnt/shared/datasets --out /mnt/shared/neon-ray/pb-small

or locally (`python -m jobs.pipeline --spec jobs/specs/smoke.json --out runs/smoke`). Inside a
job, Ray sets RAY_ADDRESS, so the pipeline joins the job's cluster instead of starting one.
Expect the summary table of the agent and the baselines on the held-out networks, and
Parquet results under OUT/results (smoke.json: about a minute on 2 CPUs).
"""
import argparse
import sys

from neon_ray.cli.common import int_in
from neon_ray.cli.demo_cmd import run_spec
from neon_ray.errors import NeonRayError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="pipeline spec (JSON, see jobs/specs/)")
    parser.add_argument("--out", default=None, help="run directory (overrides the spec)")
    parser.add_argument("--data-dir", default=None, help="directory with MANIFEST.csv (overrides the spec)")
    parser.add_argument("--episodes", type=int_in(1), default=None, help="agent training episodes, >= 1 (overrides the spec)")
    parser.add_argument("--address", default=None, help="Ray cluster to join (default: the job's cluster, or a local Ray)")
    args = parser.parse_args(argv)
    try:
        return run_spec(args)
    except NeonRayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
