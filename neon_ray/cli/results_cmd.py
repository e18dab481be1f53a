"""`neon-ray results summary|report`: summarise result Parquet files."""
from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    res = sub.add_parser("results", help="summarise results written by prune, baseline and compress")
    rsub = res.add_subparsers(dest="results_command", required=True, metavar="ACTION")

    summary = rsub.add_parser(
        "summary",
        help="mean / median / geometric-mean reduction, accuracy change and share within tolerance",
    )
    summary.add_argument("results", help="results directory (Hive-partitioned Parquet)")
    summary.add_argument("--by", choices=["dataset", "role"], default=None, help="also break down by this column")
    summary.add_argument("--tolerance", type=float, default=None, help="tolerance (pp) for rows without one, e.g. baselines")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    summary.set_defaults(func=_summary)

    report = rsub.add_parser("report", help="write a markdown table and plots of the results")
    report.add_argument("results", help="results directory")
    report.add_argument("--out", required=True, help="directory for report.md and PNG plots")
    report.add_argument("--tolerance", type=float, default=None, help="tolerance (pp) for rows without one")
    report.set_defaults(func=_report)


def _summary(args: argparse.Namespace) -> int:
    from neon_ray.results import format_table, read_results, summarise

    frame = read_results(args.results)
    overall = summarise(frame, tolerance=args.tolerance)
    if args.json:
        doc = {"overall": overall.to_dict(orient="records")}
        if args.by:
            doc[f"by_{args.by}"] = summarise(frame, by=args.by, tolerance=args.tolerance).to_dict(orient="records")
        print(json.dumps(doc, indent=1, default=float))
        return 0
    print(format_table(overall))
    if args.by:
        print()
        print(format_table(summarise(frame, by=args.by, tolerance=args.tolerance)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from neon_ray.report import write_report

    path = write_report(args.results, args.out, tolerance=args.tolerance)
    print(f"report written to {path}")
    return 0
