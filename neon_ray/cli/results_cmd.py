"""`neon-ray results summary|report`: summarise result Parquet files.

Library modules are imported inside the handlers: `neon-ray --help` must not pay for pandas and pyarrow.
"""
from __future__ import annotations

import argparse
import json
import sys

from neon_ray.cli.common import float_in

_TOLERANCE = float_in(0, 100)


def register(sub) -> None:
    res = sub.add_parser("results", help="summarise results written by prune, baseline and compress")
    rsub = res.add_subparsers(dest="results_command", required=True, metavar="ACTION")

    summary = rsub.add_parser(
        "summary",
        help="mean / median / geometric-mean reduction, accuracy change and share within tolerance",
    )
    summary.add_argument("results", help="results directory (Hive-partitioned Parquet)")
    summary.add_argument("--by", choices=["dataset", "role"], default=None, help="also break down by this column")
    summary.add_argument("--tolerance", type=_TOLERANCE, default=None,
                         help="tolerance (pp, in [0, 100]) for rows without one, e.g. baselines")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    summary.set_defaults(func=_summary)

    report = rsub.add_parser("report", help="write a markdown table and plots of the results")
    report.add_argument("results", help="results directory")
    report.add_argument("--out", required=True, help="directory for report.md and PNG plots")
    report.add_argument("--tolerance", type=_TOLERANCE, default=None, help="tolerance (pp, in [0, 100]) for rows without one")
    report.set_defaults(func=_report)


def _warn_incomplete(runs) -> None:
    from neon_ray.results.summary import incomplete_messages

    for line in incomplete_messages(runs):
        print(f"neon-ray: warning: {line}", file=sys.stderr)


def _summary(args: argparse.Namespace) -> int:
    from neon_ray.results.store import read_results
    from neon_ray.results.summary import format_summary, run_status, summarise

    frame = read_results(args.results)
    runs = run_status(args.results, frame)
    overall = summarise(frame, tolerance=args.tolerance)
    by = summarise(frame, by=args.by, tolerance=args.tolerance) if args.by else None
    _warn_incomplete(runs)
    if args.json:
        doc = {"overall": overall.to_dict(orient="records")}
        if by is not None:
            doc[f"by_{args.by}"] = by.to_dict(orient="records")
        doc["runs"] = json.loads(runs.to_json(orient="records"))
        print(json.dumps(doc, indent=1, default=float))
        return 0
    print(format_summary(overall))
    if by is not None:
        print()
        print(format_summary(by))
    return 0


def _report(args: argparse.Namespace) -> int:
    from neon_ray.results.report import write_report_and_runs

    path, runs = write_report_and_runs(args.results, args.out, tolerance=args.tolerance)
    _warn_incomplete(runs)
    print(f"report written to {path}")
    return 0
