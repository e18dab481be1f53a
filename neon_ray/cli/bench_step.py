"""`neon-ray bench step`: seconds per pruning step / episode by piece, and the FLOP rate of fine-tuning.

    neon-ray bench step --zoo ZOO --dataset phoneme --episodes 5 --out bench/step.json
    neon-ray bench step --reference --data-dir ../shared/datasets --out bench/step_reference.json

What is measured and how: neon_ray/bench/step.py (and timed_episodes.py, flops.py next to it). This
module checks the options, prints the figures as tables and writes them as JSON.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from neon_ray.cli.common import MAX_SEED, float_in, int_in
from neon_ray.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("step", help="seconds per pruning step / episode by piece, and the FLOP rate of fine-tuning")
    p.add_argument("--zoo", default=None, help="zoo directory (not needed with --reference)")
    p.add_argument("--out", required=True, help="JSON file for the figures")
    p.add_argument("--dataset", default=None, help="dataset of the zoo to run on (default phoneme if present, else the first)")
    p.add_argument("--episodes", type=int_in(1), default=None,
                   help="episodes to run (default 5); with --reference, episodes per reference network (default 3)")
    p.add_argument("--keep-rate", type=float_in(0, 1, lo_open=True), default=0.8,
                   help="keep-rate taken at every step, in (0, 1] (default 0.8)")
    p.add_argument("--loops", type=int_in(1), default=4, help="loops over the hidden layers per episode, >= 1 (default 4)")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help=f"env seed (network order, fine-tuning), 0 to {MAX_SEED}")
    p.add_argument("--finetune", action="append", default=[], metavar="KEY=VALUE",
                   help="FinetuneConfig override, repeatable (e.g. --finetune batch_size=256)")
    p.add_argument("--reference", action="store_true",
                   help="build/reuse method.md §9's reference networks A, B, C on phoneme and satimage and compare with the original")
    p.add_argument("--data-dir", default=None, help="datasets directory (MANIFEST.csv), for --reference")
    p.add_argument("--cache-dir", default=None,
                   help="where --reference keeps its trained networks (default: reference_zoo next to --out)")
    p.add_argument("--profile", default=None, metavar="FILE.prof",
                   help="run the episodes under cProfile, write the stats there and print the top functions")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: `neon-ray --help` must stay fast (bench/ pulls in torch and Ray)
    from neon_ray.bench.io import check_out, write_json
    from neon_ray.bench.step import StepBenchConfig, measure_reference, measure_step
    from neon_ray.pruning.finetune import FinetuneConfig
    from neon_ray.runtime.files import check_output_dir, check_output_file

    # everything a user can get wrong is checked before the first network is trained or timed
    check_out(args.out)
    if args.profile:
        check_output_file(args.profile, "--profile (cProfile stats file)")
    finetune = finetune_overrides(args.finetune)
    FinetuneConfig.from_dict(finetune)
    if args.reference:
        check_output_dir(_reference_cache(args), "--cache-dir (reference networks)")
    cfg = StepBenchConfig(keep_rate=args.keep_rate, loops=args.loops, seed=args.seed, finetune=finetune,
                          profile=args.profile)
    if args.reference:
        if not args.data_dir:
            raise ConfigError("bench step --reference needs --data-dir (the directory with MANIFEST.csv holding phoneme and satimage)")
        datasets = (args.dataset,) if args.dataset else None
        figures = measure_reference(_reference_cache(args), args.data_dir, datasets, args.episodes, cfg, log=_print)
        print(reference_table(figures))
    else:
        if not args.zoo:
            raise ConfigError("bench step needs --zoo (or --reference with --data-dir)")
        figures = measure_step(args.zoo, args.dataset, args.episodes, cfg, log=_print)
        print(step_table(figures))
    write_json(args.out, figures)
    print(f"figures written to {args.out}")
    return 0


def _print(line: str) -> None:
    print(line, flush=True)


def finetune_overrides(items: list[str]) -> dict:
    """`--finetune KEY=VALUE` items as a dict, each value read as JSON where it parses (else the string)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--finetune expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _reference_cache(args: argparse.Namespace) -> Path:
    """Where --reference keeps its trained networks: --cache-dir, else reference_zoo next to --out."""
    return Path(args.cache_dir) if args.cache_dir else Path(args.out).resolve().parent / "reference_zoo"


def _fmt(v, spec=".3f") -> str:
    return "-" if v is None else format(v, spec)


def _pct(share):
    return None if share is None else 100 * share


def _matmul_target(n: dict, t: dict) -> str:
    if not n["wide"]:
        return f"n/a (w<{t['wide_from_width']})"
    return "meets" if n["meets_matmul_target"] else "MISSES"


def step_table(f: dict) -> str:
    """The figures of `measure_step` as the lines `bench step` prints."""
    s, e, mm, t = f["step"], f["episode"], f["matmul_gflops"], f["targets"]
    ok = "meets" if f["obs_eval_share_meets_target"] else "MISSES"
    lines = [
        f"steps {s['steps']} ({s['finetuned_steps']} fine-tuned), episodes {e['episodes']}; load {f['load_avg_start']} -> {f['load_avg_end']}",
        f"median step   {_fmt(s['median_step_s'])} s = finetune {_fmt(s['median_step_finetune_s'])} + eval "
        f"{_fmt(s['median_step_eval_s'], '.4f')} + observe {_fmt(s['median_step_observe_s'], '.4f')} + compress "
        f"{_fmt(s['median_step_compress_s'], '.4f')} + other {_fmt(s['median_step_other_s'], '.4f')} (medians of each piece)",
        f"median episode {_fmt(e['median_episode_s'], '.2f')} s = finetune {_fmt(e['median_episode_finetune_s'], '.2f')} + eval "
        f"{_fmt(e['median_episode_eval_s'])} + observe {_fmt(e['median_episode_observe_s'])} + compress "
        f"{_fmt(e['median_episode_compress_s'])} + other {_fmt(e['median_episode_other_s'])}",
        f"observation+evaluation share of step time: {100 * s['obs_eval_share']:.2f}% "
        f"(median per step {100 * s['obs_eval_share_median']:.2f}%; target < {100 * t['obs_eval_share_below']:.0f}%: {ok})",
        f"matmul [{mm['batch']} x w] @ [w x w], 1 thread, GFLOP/s wall (cpu-time): "
        + ", ".join(f"w={w}: {r:.1f} ({mm['by_width_cpu'][w]:.1f})" for w, r in mm["by_width"].items()),
        f"fine-tuning, all networks: {_fmt(s['finetune_gflops'], '.1f')} GFLOP/s wall, "
        f"{_fmt(s['finetune_gflops_cpu'], '.1f')} GFLOP/s cpu-time (the process had a core {100 * s['cpu_over_wall']:.0f}% of the time)",
        f"{'network':<22} {'arch (original)':<50} {'ep s':>7} {'step s':>7} {'ft s':>7} {'ep':>3} {'obs+ev%':>7} "
        f"{'ft GF/s':>12} {'mm GF/s':>12} {'mm/ft':>11} {'ft/mm':>6}  target (cpu)",
    ]
    for n in f["networks"]:
        target = _matmul_target(n, t)
        lines.append(
            f"{n['network_id']:<22} {n['arch_orig'][:50]:<50} {_fmt(n['median_episode_s'], '.2f'):>7} "
            f"{_fmt(n['median_step_s']):>7} {_fmt(n['median_step_finetune_s']):>7} {_fmt(n['median_finetune_epochs'], '.0f'):>3} "
            f"{_fmt(100 * n['obs_eval_share'], '.2f'):>7} "
            f"{_fmt(n['finetune_gflops'], '.1f'):>5} ({_fmt(n['finetune_gflops_cpu'], '.1f'):>4}) "
            f"{n['matmul_gflops']:>5.1f} ({n['matmul_gflops_cpu']:>4.1f}) "
            f"{_fmt(n['matmul_over_finetune'], '.2f'):>4} ({_fmt(n['matmul_over_finetune_cpu'], '.2f'):>4}) "
            f"{_fmt(_pct(n['finetune_share_of_matmul']), '.0f'):>5}%  {target}")
    lines.append(f"(wall-clock, cpu-time in parentheses; target: fine-tuning at >= {100 * t['finetune_share_of_matmul_at_least']:.0f}% "
                 "of the matmul's cpu-time rate on networks at least "
                 f"{t['wide_from_width']} wide)")
    return "\n".join(lines)


def _speedup_verdict(f: dict) -> str:
    timed = [n for n in f["networks"] if "speedup" in n]
    missed = [f"{n['dataset']} {n['reference']}" for n in timed if not n["meets_speedup_target"]]
    return "met" if timed and not missed else "missed on " + ", ".join(missed) if missed else "nothing timed"


def reference_table(f: dict) -> str:
    """The figures of `measure_reference` as the lines `bench step --reference` prints."""
    lines = [
        f"load {f['load_avg_start']} -> {f['load_avg_end']}; reference networks built/loaded in {f['build_seconds']:.1f} s",
        f"{'network':<11} {'params':>9} {'steps':>5} {'ft s/step':>15} {'epochs/step':>13} {'state s/step':>15} "
        f"{'episode s':>15} {'cpu s':>6} {'speed-up':>14} {'test acc unpruned -> pruned':>28} {'params after':>12} "
        f"{'ft GF/s (mm)':>14} {'ft/mm':>6}",
    ]
    for n in f["networks"]:
        o = n.get("original", {})

        def pair(ours, key, spec):
            return f"{format(ours, spec)}/{format(o[key], spec) if key in o else '-'}"

        speed = f"x{n['speedup']:.1f} (x{n['speedup_cpu']:.1f})" if "speedup" in n else "-"
        lines.append(
            f"{n['dataset'] + ' ' + n['reference']:<11} {n['params_orig']:>9,} {n['steps']:>5} "
            f"{pair(n['finetune_s_step'], 'finetune_s_step', '.2f'):>15} {pair(n['epochs_step'], 'epochs_step', '.1f'):>13} "
            f"{pair(n['state_s_step'], 'state_s_step', '.3f'):>15} {pair(n['episode_s'], 'episode_s', '.1f'):>15} "
            f"{n['episode_cpu_s']:>6.1f} {speed:>14} "
            f"{n['test_acc_orig']:>13.4f} -> {n['test_acc']:.4f} ({n['test_acc_delta_pp']:+.2f}) {n['params']:>10,} "
            f"{_fmt(n['finetune_gflops_cpu'], '.0f'):>6} ({n['matmul_gflops_cpu']:>5.0f}) "
            f"{_fmt(_pct(n['finetune_share_of_matmul']), '.0f'):>5}% {_matmul_target(n, f['targets'])}")
    s, t = f["step"], f["targets"]
    lines += [
        "(ours/original; original = method.md §9, the original environment on this project's machines, timed with a core "
        "to itself; speed-up on wall-clock, in parentheses on our CPU seconds, i.e. as if we had had a core to ourselves)",
        f"all steps: observation+evaluation {100 * s['obs_eval_share']:.2f}% of step time, fine-tuning "
        f"{100 * s['finetune_share']:.1f}% at {_fmt(s['finetune_gflops'], '.1f')} GFLOP/s wall, "
        f"{_fmt(s['finetune_gflops_cpu'], '.1f')} cpu-time; the process had a core {100 * s['cpu_over_wall']:.0f}% of the time",
        f"targets: every episode >= x{t['speedup_at_least']} the original's ({_speedup_verdict(f)}); fine-tuning >= "
        f"{100 * t['finetune_share_of_matmul_at_least']:.0f}% of the matmul [{f['matmul_gflops']['batch']} x w] @ [w x w] "
        f"cpu-time rate on networks at least {t['wide_from_width']} wide",
    ]
    return "\n".join(lines)
