"""`neon-ray tune`: sweep agent settings with Ray Tune, ranked by the validation score; resumable."""
from __future__ import annotations

import argparse

from neon_ray.cli.common import add_address, csv_list, float_in, float_list, int_in
from neon_ray.cli.train_cmd import add_agent_arguments, agent_config_from_args
from neon_ray.pruning.tolerance import parse_tolerance

EPILOG = """\
examples:
  # 2 tolerances x 2 rewards x 2 seeds, validated on breast_cancer every 5 iterations, 20 iterations each
  neon-ray tune --zoo runs/zoo --out runs/sweeps --name t --validate-on sklearn:breast_cancer \\
      --tolerances 5,1:50 --grid-reward neon --grid-reward composite:w_params=2 --samples 2 \\
      --iterations 20 --report-every 5
  # protocol B: Optuna over lr, entropy and the composite weight, ASHA stopping weak trials early;
  # the best agent is then evaluated on the held-out datasets
  neon-ray tune --zoo runs/zoo28 --holdout nursery,kr-vs-k --validate-on adult,credit-g --out runs/sweeps \\
      --name b-optuna --search optuna --trials 16 --scheduler asha --grid-reward composite:w_params=1 \\
      --space lr=1e-4:3e-3:log --space entropy=0:0.05 --space reward.w_params=0.5:4:log --runners 1
  # continue a sweep stopped by Ctrl-C, SIGTERM, a failure or a lost cluster
  neon-ray tune --resume runs/sweeps/b-optuna
  # a sweep from a spec file (jobs/sweep.py runs the same as a Ray Job)
  neon-ray tune --spec jobs/specs/sweep_b_small.json --zoo runs/pb-small/zoo --out runs/sweeps
  # a sweep stored in object storage (credentials from AWS_ACCESS_KEY_ID etc., on every node), then resumed
  neon-ray tune --spec jobs/specs/sweep_b_small.json --zoo runs/pb-small/zoo --out s3://bucket/sweeps
  neon-ray tune --resume s3://bucket/sweeps/sweep_b_small

What a trial does: it trains one agent on the training datasets (every dataset of the zoo, or
--datasets, minus --holdout and --validate-on) and every --report-every iterations scores its
newest checkpoint on every network of the --validate-on datasets (the geometric-mean parameter
reduction within the tolerance, see `neon-ray results summary`). That score is the metric Tune
ranks trials by (mode max); each trial's agent is its best-scoring checkpoint.

Search space: --tolerances and --grid-reward give the reward trade-off; --space NAME=VALUES adds
agent settings: loops, lr, entropy, batch_episodes (update size in episodes), algo, or
reward.PARAM (a parameter of the reward variants that take it). VALUES is V1,V2,... (choices)
or LO:HI / LO:HI:log (a range, for --search random or optuna). --samples repeats every
configuration with seeds --seed, --seed + 1, ...

Output, under OUT/NAME: one folder per trial (Tune's progress.csv, result.json and events, and
the agent's run directory TRIAL/agent), summary.parquet (one row per trial, printed best first),
best/ (the best trial's agent: `neon-ray prune --agent OUT/NAME/best`, `neon-ray evaluate
--agent OUT/NAME/best`), sweep.json (the settings --resume uses) and, with --holdout, heldout/
(the best agent's evaluation on the held-out datasets). `tensorboard --logdir OUT/NAME` shows
every trial's curves; `neon-ray report OUT/NAME --out DIR` writes an HTML page.

OUT may be a URI (s3://bucket/sweeps, or any URI pyarrow opens): Tune stores the experiment
there, each trial trains in a local staging copy under --work-dir and publishes its agent run
to its trial folder as it goes; --resume, prune/evaluate --agent and report take the URIs.

Exit status: 0 when every trial finished, 1 when a trial failed after its retries, 130 when the
sweep was interrupted (Ctrl-C or SIGTERM; the unfinished trials are listed: --resume continues them).
"""

# what --resume may be combined with; everything else comes from OUT/NAME/sweep.json
_RESUME_FLAGS = {"resume", "address", "func", "command", "verbose", "work_dir"}
# what --spec may be combined with; everything else comes from the spec
_SPEC_FLAGS = _RESUME_FLAGS | {"spec", "zoo", "out", "name"}


def register(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="sweep agent settings with Ray Tune, ranked by the validation score; resumable",
        description="Train one agent per trial (tolerance x reward x --space, each --samples times), score each "
                    "on validation datasets no trial trains on, keep the best agent and evaluate it on the held-out "
                    "datasets.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--resume", metavar="OUT/NAME", default=None,
                   help="continue the sweep in OUT/NAME (a path or URI) with its saved settings (only --address and "
                        "--work-dir may be added); "
                        "finished trials stay, the others go on from their last report. Loads RLlib checkpoints, "
                        "which contain pickles: resume only sweeps you trust")
    p.add_argument("--spec", metavar="FILE", default=None,
                   help="a JSON sweep spec (e.g. jobs/specs/sweep_b_small.json: sweep.json's fields without out); "
                        "only --zoo, --out, --name and --address may be added")
    p.add_argument("--zoo", default=None, help="zoo directory (see `neon-ray zoo build`); required unless --resume")
    p.add_argument("--out", default=None,
                   help="Tune storage directory or URI (s3://bucket/sweeps); the sweep goes to OUT/NAME (required unless "
                        "--resume)")
    p.add_argument("--work-dir", default=None,
                   help="with a URI OUT: local folder of the trials' staging copies, deleted as each ends (default: "
                        "the system's temporary folder, $TMPDIR, on each node)")
    p.add_argument("--name", default="sweep", help="experiment name, the folder under OUT (default sweep)")
    p.add_argument("--validate-on", dest="validation", type=csv_list, default=None, metavar="DATASETS",
                   help="comma-separated validation datasets: every trial is scored on all their networks, none "
                        "trains on them; not in --holdout (required unless --resume)")
    p.add_argument("--report-every", type=int_in(1), default=10,
                   help="validate, checkpoint and report every N iterations (default 10; at most --iterations)")
    _space_arguments(p)
    _run_arguments(p)
    p.add_argument("--final-tolerances", type=float_list, default=(1.0, 5.0, 50.0),
                   help="tolerances (pp) of the best agent's held-out evaluation (default 1,5,50)")
    p.add_argument("--final-baselines", type=csv_list, default=None,
                   help="baselines pruned next to it, comma-separated, or none (default: evaluate's: random, "
                        "random-guard, uniform-search, magnitude)")
    p.add_argument("--no-final-evaluation", action="store_true",
                   help="skip the held-out evaluation of the best agent (with --holdout it runs by default)")
    add_agent_arguments(p, sweep=True)
    add_address(p)
    p.set_defaults(func=lambda args: _tune(args, p))


def _space_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tolerances", default=None,
                   help="comma-separated tolerances to sweep, each A (fixed, pp) or LO:HI (drawn per episode) "
                        "(default 1,5,50)")
    p.add_argument("--grid-reward", action="append", default=None, metavar="REWARD",
                   help="a reward variant to sweep, NAME or NAME:key=value,...; repeat for several "
                        "(default: neon, composite:w_params=1, composite:w_params=3)")
    p.add_argument("--space", action="append", default=None, metavar="NAME=VALUES",
                   help="a further searched setting: loops, lr, entropy, batch_episodes, algo or reward.PARAM, as "
                        "V1,V2,... or LO:HI[:log] (ranges need --search random or optuna); repeat for several")
    p.add_argument("--search", choices=("grid", "random", "optuna"), default="grid",
                   help="grid: every combination (default); random: --trials random draws; optuna: --trials "
                        "suggestions by Optuna's TPE (needs optuna: pip install 'neon-ray[tune]')")
    p.add_argument("--trials", type=int_in(1), default=8,
                   help="configurations drawn by random or optuna search, each run --samples times (default 8)")
    p.add_argument("--samples", type=int_in(1), default=1,
                   help="runs of every configuration, with seeds --seed, --seed + 1, ... (default 1)")
    p.add_argument("--scheduler", choices=("fifo", "asha"), default="fifo",
                   help="fifo: every trial runs to its end (default); asha: stop trials whose score is in the "
                        "lower half at each rung (after --grace reports, then every doubling)")
    p.add_argument("--grace", type=int_in(1), default=2, help="asha: reports every trial gets before it may be stopped (default 2)")


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--iterations", type=int_in(1), default=None,
                   help="training iterations per trial, >= 1, a multiple of --report-every (default: until --episodes)")
    p.add_argument("--episodes", type=int_in(1), default=None,
                   help="episodes per trial when --iterations is not given (default: 10 x training networks + warm-up)")
    p.add_argument("--runners", type=int_in(0), default=None,
                   help="EnvRunner processes sampling in parallel in each trial (default 0: the trial's process samples)")
    p.add_argument("--cpus-per-trial", type=float_in(0, None, lo_open=True), default=1.0,
                   help="logical CPUs of each trial's process, > 0, fractions allowed (default 1)")
    p.add_argument("--cpus-per-runner", type=float_in(0, None, lo_open=True), default=1.0,
                   help="logical CPUs of each EnvRunner, > 0 (default 1; 0.5 fits a trial with one runner on 1 CPU)")
    p.add_argument("--concurrent", type=int_in(1), default=None,
                   help="trials at once, >= 1 (default: as many as the cluster's CPUs hold)")
    p.add_argument("--max-failures", type=int_in(0), default=1,
                   help="retries of a failed trial from its last report (default 1)")


def _tolerances(text: str) -> tuple:
    return tuple(parse_tolerance(item.strip(), "--tolerances: tolerance") for item in text.split(",") if item.strip())


def _config(args: argparse.Namespace):
    from neon_ray.errors import ConfigError
    from neon_ray.tune.sweep import DEFAULT_REWARDS, DEFAULT_TOLERANCES, Dim, RewardVariant, SweepConfig

    if not args.validation:
        raise ConfigError("a new sweep needs --zoo, --out and --validate-on (or --spec, or --resume OUT/NAME)")
    dims = tuple(Dim.parse(text) for text in args.space or ())
    for dim in dims:
        flag = {"loops": "loops", "lr": "lr", "entropy": "entropy", "algo": "algo", "batch_episodes": "batch_steps"}.get(dim.name)
        if flag and getattr(args, flag) is not None:
            raise ConfigError(f"--{flag.replace('_', '-')} fixes what --space {dim.text} searches: give one of them")
    base = agent_config_from_args(args)  # --runners and --episodes included
    baselines = args.final_baselines
    extra = {"final_baselines": tuple(b for b in baselines if b != "none")} if baselines is not None else {}
    return SweepConfig(
        base=base, out=args.out, name=args.name, validation_datasets=tuple(args.validation),
        tolerances=_tolerances(args.tolerances) if args.tolerances else DEFAULT_TOLERANCES,
        rewards=tuple(RewardVariant.parse(r) for r in args.grid_reward) if args.grid_reward else DEFAULT_REWARDS,
        dims=dims, search=args.search, samples=args.samples, trials=args.trials, scheduler=args.scheduler,
        grace_reports=args.grace, report_every=args.report_every, iterations=args.iterations,
        cpus_per_trial=args.cpus_per_trial, cpus_per_runner=args.cpus_per_runner, concurrent=args.concurrent,
        max_failures=args.max_failures, final_tolerances=tuple(args.final_tolerances),
        final_evaluation=not args.no_final_evaluation, **extra,
    )


def _tune(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    # imported here: they load torch and Ray, and `neon-ray --help` must stay fast
    from neon_ray.errors import ConfigError
    from neon_ray.runtime.files import check_output_dir
    from neon_ray.tune.sweep import format_trials, resume_sweep, run_sweep

    if args.resume:
        _only(args, parser, _RESUME_FLAGS, "--resume takes the sweep's saved settings (OUT/NAME/sweep.json)")
        return _print_result(resume_sweep(args.resume, address=args.address, work_dir=args.work_dir), format_trials)
    if not args.out:
        raise ConfigError("a new sweep needs --out (and --zoo and --validate-on, or --spec), or --resume OUT/NAME")
    check_output_dir(args.out, "--out (sweep storage directory)")
    if args.spec:
        from neon_ray.tune.sweep import load_sweep_spec

        _only(args, parser, _SPEC_FLAGS, "--spec gives the sweep's settings")
        name = args.name if args.name != parser.get_default("name") else None
        cfg = load_sweep_spec(args.spec, out=args.out, name=name, zoo=args.zoo)
    else:
        cfg = _config(args)
    return _print_result(run_sweep(cfg, address=args.address, work_dir=args.work_dir), format_trials)


def _only(args: argparse.Namespace, parser: argparse.ArgumentParser, allowed: set, why: str) -> None:
    from neon_ray.errors import ConfigError

    given = sorted(k for k, v in vars(args).items() if k not in allowed and v != parser.get_default(k))
    if given:
        raise ConfigError(f"{why}; drop {', '.join('--' + g.replace('_', '-') for g in given)}")


def _print_result(result, format_trials) -> int:
    from neon_ray.runtime.files import display

    print(format_trials(result.table))
    print(f"\ntrials table: {display(result.summary_path)}")
    if result.best is not None:
        print(f"best agent: {display(result.best)} (neon-ray prune --agent {display(result.best)} ...)")
    if result.evaluation is not None:
        from neon_ray.cli.evaluate_cmd import print_tables

        print(f"\nthe best agent on the held-out datasets (evaluation.json and plots in {display(result.evaluation.out)}):")
        print_tables(result.evaluation.tables)
    if result.unfinished:
        print(f"\ninterrupted: {len(result.unfinished)} trial(s) unfinished: {', '.join(result.unfinished)}")
        print(f"continue with: neon-ray tune --resume {display(result.experiment_dir)}")
        return 130
    if result.failed:
        print(f"\n{len(result.failed)} trial(s) failed: {', '.join(result.failed)}; see the error column of "
              f"{display(result.summary_path)} and each trial's error.txt")
        return 1
    return 0
