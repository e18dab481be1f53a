"""`neon-ray demo` and `neon-ray pipeline`: the whole pipeline on the embedded default or a spec."""
from __future__ import annotations

import argparse

from neon_ray.cli.common import add_address, float_list, int_in


def register(sub) -> None:
    demo = sub.add_parser(
        "demo",
        help="the whole pipeline on scikit-learn datasets with a local Ray (a few minutes on 2 CPUs)",
        description="Build small zoos for breast_cancer, digits, iris and wine, train the agent on all but digits, "
        "then evaluate it on every digits network against the baselines (random, random-guard, uniform-search, "
        "magnitude) as `neon-ray evaluate` does, and print one scored table per tolerance.",
    )
    demo.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    demo.add_argument("--episodes", type=int_in(1), default=None, help="agent training episodes, >= 1 (default 150)")
    demo.add_argument("--tolerances", type=float_list, default=None,
                      help="comma-separated tolerances in pp to evaluate at (default 1,5,50)")
    add_address(demo)
    demo.set_defaults(func=_demo)

    pipe = sub.add_parser("pipeline", help="the whole pipeline from a JSON spec (see jobs/specs/)")
    pipe.add_argument("--spec", required=True, help="pipeline spec (JSON with PipelineConfig fields)")
    pipe.add_argument("--out", default=None, help="run directory (overrides the spec)")
    pipe.add_argument("--data-dir", default=None, help="directory with MANIFEST.csv (overrides the spec)")
    pipe.add_argument("--episodes", type=int_in(1), default=None, help="agent training episodes, >= 1 (overrides the spec)")
    pipe.add_argument("--tolerances", type=float_list, default=None,
                      help="comma-separated tolerances in pp to evaluate at, e.g. 1,5,50 (overrides the spec)")
    add_address(pipe)
    pipe.set_defaults(func=run_spec)


def _demo(args: argparse.Namespace) -> int:
    # imported here, as in the other handlers: the pipeline loads torch and Ray, and `neon-ray --help` must stay fast
    from neon_ray.pipeline import PipelineConfig, run_pipeline
    from neon_ray.runtime.files import check_output_dir

    check_output_dir(args.out, "--out (run directory)")
    changes = {k: v for k, v in (("episodes", args.episodes), ("tolerances", args.tolerances)) if v is not None}
    _print_result(run_pipeline(PipelineConfig(out=args.out, **changes), address=args.address))
    return 0


def run_spec(args: argparse.Namespace) -> int:
    from neon_ray.pipeline import load_spec, run_pipeline
    from neon_ray.runtime.files import check_output_dir

    if args.out is not None:
        check_output_dir(args.out, "--out (run directory)")
    cfg = load_spec(args.spec, out=args.out, data_dir=args.data_dir, episodes=args.episodes, tolerances=args.tolerances)
    check_output_dir(cfg.out, "run directory (the spec's out)")
    _print_result(run_pipeline(cfg, address=args.address))
    return 0


def _print_result(result) -> None:
    """The evaluation's tables (one per tolerance, as `neon-ray evaluate` prints them) and where the outputs are."""
    from neon_ray.cli.evaluate_cmd import print_tables

    root = result.root
    print_tables(result.evaluation.tables)
    reports = "\n".join(f"  a = {tol:g} pp: {path}" for tol, path in result.reports.items())
    print(f"\nresults (Parquet): {result.results}\nevaluation.json and Pareto plots: {result.evaluation.out}"
          f"\nreports:\n{reports}\nagent: {root / 'agent'}  zoo: {root / 'zoo'}")
