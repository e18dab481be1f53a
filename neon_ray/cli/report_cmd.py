"""`neon-ray report`: one self-contained HTML page (and markdown) of a sweep or a results directory."""
from __future__ import annotations

import argparse
import shutil
import subprocess

from neon_ray.cli.common import fixed_tolerance_arg

EPILOG = """\
examples:
  neon-ray report runs/sweeps/b-optuna --out runs/report-sweep     # a sweep (OUT/NAME of `neon-ray tune`)
  neon-ray report runs/results --out runs/report --tolerance 5     # a results directory
  neon-ray report s3://bucket/sweeps/b-optuna --out runs/report-s3  # either by URI (credentials from the environment)

A sweep's page: its settings, the trials table sorted by validation score, every trial's mean
reduction against its mean accuracy change (marker: reward, colour: tolerance, dashed lines at
-a), the validation score of every trial per iteration, and the best agent's held-out
evaluation when the sweep has one. A results directory's page: the per-method and per-dataset
tables (score, reductions, accuracy changes, share within tolerance), every network's reduction
against its test accuracy change, and which runs are complete.

DIR/report.html embeds its images (base64 PNG): one file to open, mail or attach.
DIR/report.md has the same content, tables in fenced blocks and the PNGs next to it. With
--png and Chromium installed (Debian package `chromium`), DIR/report.png is a screenshot of the page.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write one HTML page (and markdown) of a sweep or a results directory",
        description="Summarise a sweep (`neon-ray tune` OUT/NAME) or a results directory as DIR/report.html, "
                    "self-contained, and DIR/report.md.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SWEEP_OR_RESULTS",
                   help="a sweep directory (with sweep.json) or a results directory; a path or a URI (s3://...)")
    p.add_argument("--out", required=True, help="directory for report.html, report.md and the PNGs")
    p.add_argument("--tolerance", type=fixed_tolerance_arg, default=None,
                   help="results only: tolerance (pp, in [0, 100]) scoring rows without one (unguarded baselines)")
    p.add_argument("--png", action="store_true", help="also render the page to DIR/report.png with headless Chromium")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    # imported here: they load pandas and matplotlib, and `neon-ray --help` must stay fast
    from neon_ray.errors import ConfigError
    from neon_ray.results.html_report import results_page, write_page
    from neon_ray.runtime.files import check_output_dir, display, is_dir, is_file, join, resolved

    out = check_output_dir(args.out, "report directory (--out)")
    source = resolved(args.source)
    if not is_dir(source):
        raise ConfigError(f"{display(source)}: no such sweep or results directory")
    if is_file(join(source, "sweep.json")):
        if args.tolerance is not None:
            raise ConfigError("--tolerance applies to results directories; a sweep's trials carry their own")
        page = _sweep_page(source)
    else:
        page = results_page(source, args.tolerance)
    html_path, md_path = write_page(page, out)
    print(f"report written to {html_path} (self-contained) and {md_path}")
    if args.png:
        print(f"screenshot: {_screenshot(html_path, out / 'report.png')}")
    return 0


def _sweep_page(source):
    from neon_ray.errors import NeonRayError
    from neon_ray.results.html_report import sweep_page
    from neon_ray.runtime.files import base_name, display, join
    from neon_ray.tune.sweep import load_sweep
    from neon_ray.tune.table import read_curves, read_heldout, read_summary
    from neon_ray.zoo.store import open_zoo

    cfg = load_sweep(source)
    trials = read_summary(source)
    heldout, images = read_heldout(source)
    base = cfg.trial_base()
    try:
        training = ", ".join(base.select(open_zoo(base.zoo)).train_datasets)
    except NeonRayError as exc:  # the zoo moved or is gone: the report needs only the sweep's own files
        training = f"(zoo not readable: {exc})"
    facts = {"zoo": base.zoo, "training datasets": training,
             "validation datasets": ", ".join(base.validation_datasets), "held out": ", ".join(base.holdout) or "-",
             "search": f"{cfg.search} ({cfg.trial_count()} trials, {cfg.samples} seed(s) each)",
             "scheduler": cfg.scheduler, "scored every": f"{cfg.reports_every} iterations",
             "iterations": cfg.iterations or f"until {cfg.base.episodes or 'the default'} episodes",
             "varied": ", ".join(cfg.space.varied(cfg.samples)) or "-", "best agent": display(join(source, "best"))}
    return sweep_page(base_name(source), trials, read_curves(trials, source), facts, heldout, images)


def _screenshot(html_path, png_path) -> str:
    from neon_ray.errors import ConfigError

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise ConfigError("--png needs Chromium (Debian: apt-get install chromium); the HTML page was written")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={png_path}", "--window-size=1280,3000", html_path.as_uri()],
                   check=True, capture_output=True, timeout=120)
    return str(png_path)
