"""Ray Job entry point: a Ray Tune sweep of the agent from a spec (`neon-ray tune`), resumable.

Build the zoo first (for example the pipeline job of jobs/specs/protocol_b_small.json writes
OUT/zoo), then run the sweep on the cluster (token auth stays on; see cluster/):

    export RAY_AUTH_MODE=token
    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python -m jobs.sweep --spec jobs/specs/sweep_b_small.json \\
        --zoo /mnt/shared/neon-ray/pb-small/zoo --out /mnt/shared/neon-ray/sweeps

and after a stopped job (`ray job stop` sends SIGTERM: the sweep saves its state and exits 130):

    ray job submit --address http://HEAD:8265 --working-dir . -- \\
        python -m jobs.sweep --resume /mnt/shared/neon-ray/sweeps/sweep-b-small

Inside a job Ray sets RAY_ADDRESS, so the sweep joins the job's cluster and Tune places as many
trials as its CPUs hold. `out` and the zoo must be on storage every node shares. Expect the
trials table (best validation score first), OUT/NAME/best (the best agent) and its evaluation
on the held-out datasets; `neon-ray report OUT/NAME --out DIR` makes the HTML page.
"""
import sys

from neon_ray.cli import main as cli_main


def main(argv=None) -> int:
    """`neon-ray tune ...`: the same options, checks, logging, output and exit status as the CLI command."""
    return cli_main(["tune", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
