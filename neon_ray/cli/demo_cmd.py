"""`neon-ray demo` and `neon-ray pipeline`: the whole pipeline on the embedded default or a spec."""
from __future__ import annotations

import argparse

from neon_ray.cli.common import add_address, int_in


def register(sub) -> None:
    demo = sub.add_parser(
        "demo",
        help="the whole pipeline on scikit-learn datasets with a local Ray (a few minutes on 2 CPUs)",
        description="Build small zoos for breast_cancer, digits, iris and wine, train the agent on all but wine, "
        "prune every wine network with it, run the random and uniform baselines on the same networks, "
        "and print the summary.",
    )
    demo.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    demo.add_argument("--episodes", type=int_in(1), default=None, help="agent training episodes, >= 1 (default 150)")
    add_address(demo)
    demo.set_defaults(func=_demo)

    pipe = sub.add_parser("pipeline", help="the whole pipeline from a JSON spec (see jobs/specs/)")
    pipe.add_argument("--spec", required=True, help="pipeline spec (JSON with PipelineConfig fields)")
    pipe.add_argument("--out", default=None, help="run directory (overrides the spec)")
    pipe.add_argument("--data-dir", default=None, help="directory with MANIFEST.csv (overrides the spec)")
    pipe.add_argument("--episodes", type=int_in(1), default=None, help="agent training episodes, >= 1 (overrides the spec)")
    add_address(pipe)
    pipe.set_defaults(func=run_spec)


def _demo(args: argparse.Namespace) -> int:
    # imported here, as in the other handlers: the pipeline loads torch and Ray, and `neon-ray --help` must stay fast
    from dataclasses import replace

    from neon_ray.runtime.files import check_output_dir
    from neon_ray.pipeline import PipelineConfig, run_pipeline

    check_output_dir(args.out, "--out (run directory)")
    cfg = PipelineConfig(out=args.out)
    if args.episodes is not None:
        cfg = replace(cfg, episodes=args.episodes)
    _print_result(run_pipeline(cfg, address=args.address))
    return 0


def run_spec(args: argparse.Namespace) -> int:
    from neon_ray.runtime.files import check_output_dir
    from neon_ray.pipeline import load_spec, run_pipeline

    if args.out is not None:
        check_output_dir(args.out, "--out (run directory)")
    cfg = load_spec(args.spec, out=args.out, data_dir=args.data_dir, episodes=args.episodes)
    check_output_dir(cfg.out, "run directory (the spec's out)")
    _print_result(run_pipeline(cfg, address=args.address))
    return 0


def _print_result(result) -> None:
    """The summary table of a finished pipeline run and where its outputs are."""
    from neon_ray.results.summary import format_summary

    root = result.root
    print(format_summary(result.summary))
    print(f"\nresults (Parquet): {result.results}\nreport: {result.report}\nagent: {root / 'agent'}  zoo: {root / 'zoo'}")
