"""Ray Job entry point: the whole protocol-B pipeline from a spec (zoo, agent, evaluation).

Run it on a cluster (token auth stays on; see cluster/):

    export RAY_AUTH_MODE=token
    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python -m jobs.pipeline --spec jobs/specs/protocol_b_small.json \
        --data-dir /mnt/shared/datasets --out /mnt/shared/neon-ray/pb-small

or locally (`python -m jobs.pipeline --spec jobs/specs/smoke.json --out runs/smoke`). Inside a
job, Ray sets RAY_ADDRESS, so the pipeline joins the job's cluster instead of starting one.
Expect one scored table per tolerance of the agent and the baselines on the held-out networks
(the tables `neon-ray evaluate` prints), Parquet results under OUT/results, evaluation.json and
Pareto plots under OUT/results/_evaluation, and a report per tolerance under OUT/report/a<A>/
(smoke.json: under two minutes on 2 CPUs).
"""
import sys

from neon_ray.cli import main as cli_main


def main(argv=None) -> int:
    """`neon-ray pipeline ...`: the same options, checks, logging and output as the CLI command."""
    return cli_main(["pipeline", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
