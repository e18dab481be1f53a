"""`neon-ray train`: train the pruning agent on a zoo (protocol A, or B with --holdout), resumable.

Agent flags default to None, meaning "not given": a new run takes AgentTrainConfig's defaults
for them, and a resumed run takes RUN/config.json's values, so `--resume` needs no flags but
--out, and a flag that contradicts the saved run is refused by name. Training progress comes
as `neon_ray` log lines (stderr); the final result is printed here.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import replace

from neon_ray.cli.common import MAX_SEED, add_address, csv_list, float_in, float_list, int_in, int_list, tolerance_arg

# Same bounds as AgentTrainConfig / FinetuneConfig / EnvConfig check (kept literal: importing them costs seconds).

EPILOG = """\
examples:
  # protocol A on two datasets, one agent for every tolerance from 1 to 50 pp, 4 loops
  neon-ray train --zoo runs/zoo --datasets phoneme,diabetes --tolerance 1:50 --loops 4 --out runs/agent
  # protocol B: never train on nursery and kr-vs-k; two EnvRunners sampling in parallel
  neon-ray train --zoo runs/zoo --holdout nursery,kr-vs-k --runners 2 --out runs/agent-b
  # protocol B, validated on two other datasets every 20 iterations: the best checkpoint is the agent
  neon-ray train --zoo runs/zoo --holdout nursery,kr-vs-k --validate-on adult,credit-g --validate-every 20 --out runs/agent-v
  # continue a run with its saved settings, for more episodes in total
  neon-ray train --out runs/agent-b --resume --episodes 2000
  # train into object storage (credentials from AWS_ACCESS_KEY_ID etc.), staged locally under /scratch
  neon-ray train --zoo runs/zoo --out s3://bucket/agents/a --work-dir /scratch

RUN/config.json holds the resolved settings, RUN/progress.csv one row per iteration
(episodes, mean return, mean parameter reduction x, mean val accuracy change in pp), and
RUN/checkpoints/ the checkpoints (RUN/checkpoints/latest names the newest; with --validate-on,
progress.csv has a val_score column and RUN/checkpoints/best names the best-scoring checkpoint,
which prune and evaluate then use). Each checkpoint also holds policy.json + policy.pt, the
policy in a format that cannot run code: `neon-ray prune` reads only those. A run that stopped
before its first checkpoint can be started again with the same command (it is overwritten);
--resume needs a completed checkpoint.

--out may be a URI (s3://bucket/run, or any URI pyarrow opens): the run is trained in a local
staging copy under --work-dir and published as it goes, each checkpoint whole before the
`latest`/`best` pointers that name it; --resume fetches it from there first. prune and
evaluate --agent read it from the URI.
"""

# flag dest -> AgentTrainConfig field, for flags whose value is used as given
_AGENT = {
    "zoo": "zoo", "algo": "algo", "warmup": "warmup_episodes", "batch_steps": "train_batch_size",
    "lr": "lr", "gamma": "gamma", "entropy": "entropy_coeff", "seed": "seed", "episodes": "episodes",
    "runners": "num_env_runners", "checkpoint_every": "checkpoint_every", "keep_checkpoints": "keep_checkpoints",
    "validate_every": "validate_every", "balance_runners": "balance_runners",
}
_AGENT_TUPLES = ("datasets", "holdout", "hidden", "validate_on")
_TUPLE_FIELDS = {"validate_on": "validation_datasets"}
# flag dest -> EpisodeConfig field (the episode the agent trains in)
_EPISODE = {
    "tolerance": "tolerance", "tolerance_sampling": "tolerance_sampling", "loops": "loops", "importance": "importance",
    "keep_rates": "keep_rates", "remove_layer": "remove_layer_action",
}
_FINETUNE = {"finetune_epochs": "max_epochs", "finetune_rows": "max_train_rows", "finetune_scope": "scope",
             "finetune_targets": "targets"}


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train the pruning agent (A2C or PPO on RLlib) on a zoo's training networks",
        description="Train one agent on the 'train'-role networks of the chosen datasets (protocol A) or of all "
                    "datasets except --holdout (protocol B). Progress is printed per iteration and written to "
                    "RUN/progress.csv; checkpoints go to RUN/checkpoints.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--zoo", default=None, help="zoo directory (see `neon-ray zoo build`); required unless --resume")
    p.add_argument("--out", required=True,
                   help="run directory RUN for config.json, progress.csv and checkpoints (a run there without a "
                        "completed checkpoint is started again from scratch); a path or a URI such as s3://bucket/run")
    p.add_argument("--work-dir", default=None,
                   help="with a URI --out: local folder for the run's staging copy, deleted at the end "
                        "(default: the system's temporary folder, $TMPDIR)")
    add_agent_arguments(p)
    p.add_argument("--episodes", type=int_in(1), default=None,
                   help="training episodes in total (default: NEON's 10 x training networks + warm-up)")
    p.add_argument("--runners", type=int_in(0), default=None,
                   help="EnvRunner processes sampling in parallel (default 0: sample in this process)")
    p.add_argument("--balance-runners", choices=("measured", "model"), default=None,
                   help="with 2+ runners: each runner's share of a batch from its measured seconds per step "
                        "(default; runners finish together) or from the zoo's figures ('model': reproducible runs)")
    p.add_argument("--checkpoint-every", type=int_in(1), default=None, help="checkpoint every N iterations (default 10)")
    p.add_argument("--keep-checkpoints", type=int_in(1), default=None, help="newest checkpoints kept (default 3)")
    p.add_argument("--validate-on", type=csv_list, default=None,
                   help="comma-separated validation datasets: never trained on, not in --holdout; with "
                        "--validate-every the checkpoint of the best validation score becomes the run's agent")
    p.add_argument("--validate-every", type=int_in(1), default=None,
                   help="score the policy on --validate-on every N iterations (and at the end; default: never)")
    p.add_argument("--resume", action="store_true",
                   help="continue RUN from its latest checkpoint with its saved settings; only --episodes, "
                        "--runners, --balance-runners, --checkpoint-every and --keep-checkpoints may change. Resuming loads RLlib's own "
                        "checkpoint, which contains Python pickles that run code when loaded: resume only runs "
                        "you trust (prune never loads them)")
    p.add_argument("--quiet", action="store_true", help="no per-iteration lines")
    add_address(p)
    p.set_defaults(func=_train)


def add_agent_arguments(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The agent settings `train` and `tune` share; a sweep (`tune`) sets tolerance and reward by its grid."""
    p.add_argument("--datasets", type=csv_list, default=None, help="comma-separated datasets to use (default: all in the zoo)")
    p.add_argument("--holdout", type=csv_list, default=None,
                   help="comma-separated datasets never trained on (protocol B; reported on all their networks)")
    p.add_argument("--algo", choices=("a2c", "ppo"), default=None, help="a2c (NEON's agent, default) or ppo")
    if not sweep:
        p.add_argument("--tolerance", type=tolerance_arg, default=None,
                       help="allowed accuracy drop in pp: A (fixed) or LO:HI (drawn per episode; default 1:50)")
    p.add_argument("--tolerance-sampling", choices=("log-uniform", "uniform"), default=None,
                   help="how LO:HI is drawn (default log-uniform)")
    p.add_argument("--loops", type=int_in(1), default=None, help="passes over the hidden layers per episode (default 4)")
    p.add_argument("--keep-rates", type=keep_rates_arg, default=None,
                   help="keep-rate of each action, comma-separated (default 1.0,0.9,0.8,0.7,0.6)")
    p.add_argument("--remove-layer", action="store_true", default=None,
                   help="add an action that merges the current hidden layer away")
    if not sweep:
        p.add_argument("--reward", default=None,
                       help="NAME or NAME:key=value,... e.g. neon, neon:scale=1, composite:w_params=2,penalty=1 "
                            "(default neon scaled so the largest |reward| is 1)")
    p.add_argument("--importance", choices=("l2", "l1", "activation"), default=None,
                   help="neuron importance when pruning (default l2)")
    p.add_argument("--finetune-epochs", type=int_in(1), default=None, help="fine-tuning epochs at most per step (default 3)")
    p.add_argument("--finetune-rows", type=int_in(2), default=None, help="training rows per fine-tuning epoch (default 2048)")
    p.add_argument("--finetune-targets", choices=("labels", "original"), default=None,
                   help="fit each step's fine-tuning to the dataset's labels or to the unpruned network's predictions "
                        "(distillation)")
    p.add_argument("--finetune-scope", choices=("affected", "all"), default=None,
                   help="fine-tune the changed layers (default) or the whole network")
    p.add_argument("--warmup", type=int_in(0), default=None,
                   help="A2C random-action episodes training the critic only (default min(2N, 500); PPO 0)")
    p.add_argument("--batch-steps", type=int_in(1), default=None,
                   help="env steps per update (default about 4 episodes' worth)")
    p.add_argument("--lr", type=float_in(0, None, lo_open=True), default=None, help="learning rate (default a2c 1e-3, ppo 3e-4)")
    p.add_argument("--gamma", type=float_in(0, 1, lo_open=True), default=None, help="discount (default 0.99)")
    p.add_argument("--entropy", type=float_in(0), default=None, help="entropy bonus weight (default 0.01)")
    p.add_argument("--hidden", type=hidden_arg, default=None, help="actor and critic hidden widths (default 64,64)")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=None, help="seed (default 0)")


def keep_rates_arg(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated keep-rates, each a finite number in (0, 1]."""
    rates = float_list(text)
    if not rates or not all(math.isfinite(r) and 0 < r <= 1 for r in rates):
        raise argparse.ArgumentTypeError(f"expected comma-separated keep-rates in (0, 1], got {text!r}")
    return rates


def hidden_arg(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated hidden widths, each an integer >= 1."""
    widths = int_list(text)
    if not widths or not all(w >= 1 for w in widths):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return widths


def given_fields(args: argparse.Namespace, episode) -> dict:
    """AgentTrainConfig fields for the flags that were given; the episode flags change `episode` (an EpisodeConfig)."""
    # imported here, as every import of the project's modules below: they load torch and Ray,
    # and `neon-ray --help` must stay fast
    from neon_ray.tune.sweep import RewardVariant

    fields = {f: getattr(args, a) for a, f in _AGENT.items() if getattr(args, a, None) is not None}
    fields |= {_TUPLE_FIELDS.get(a, a): tuple(getattr(args, a)) for a in _AGENT_TUPLES if getattr(args, a, None) is not None}
    changes = {f: getattr(args, a) for a, f in _EPISODE.items() if getattr(args, a, None) is not None}
    if getattr(args, "reward", None) is not None:
        reward = RewardVariant.parse(args.reward)
        changes |= {"reward": reward.reward, "reward_params": dict(reward.params) or None}
    finetune = {f: getattr(args, a) for a, f in _FINETUNE.items() if getattr(args, a) is not None}
    if finetune:
        changes["finetune"] = replace(episode.finetune, **finetune)
    if changes:
        fields["episode"] = replace(episode, **changes)
    return fields


def agent_config_from_args(args: argparse.Namespace, **overrides):
    """A new AgentTrainConfig: AgentTrainConfig's defaults, the given flags, then `overrides`."""
    from neon_ray.agent.config import AgentTrainConfig, default_agent_episode
    from neon_ray.errors import ConfigError

    if not args.zoo:
        raise ConfigError("--zoo is required to start a run (only --resume reads it from RUN/config.json)")
    return AgentTrainConfig(**{**given_fields(args, default_agent_episode()), **overrides})


def _resumed_config(args: argparse.Namespace):
    """RUN/config.json's settings with the given flags applied (train_agent refuses contradicting ones)."""
    from neon_ray.agent.run_dir import RunDir

    saved = RunDir(args.out).read_config()
    return replace(saved, **given_fields(args, saved.episode), out=args.out)


def _train(args: argparse.Namespace) -> int:
    from neon_ray.agent.run_dir import CONFIG_FILE
    from neon_ray.agent.training import train_agent
    from neon_ray.errors import ConfigError
    from neon_ray.runtime.files import check_output_dir, display, is_file, join

    out = check_output_dir(args.out, "run directory (--out)")
    args.out = str(out)
    if args.resume:
        if not is_file(join(out, CONFIG_FILE)):
            raise ConfigError(f"--resume: {display(out)} holds no training run ({CONFIG_FILE} is missing); "
                              "run without --resume")
        cfg = _resumed_config(args)
    else:
        cfg = agent_config_from_args(args, out=args.out)
    result = train_agent(cfg, address=args.address, resume=args.resume, progress=not args.quiet, work_dir=args.work_dir)
    last = result.history.tail(5)
    print(f"trained {result.iterations} iterations, {result.episodes} episodes in {result.seconds:.0f} s; "
          f"last {len(last)} iterations: return {last['return_mean'].mean():+.4f}, "
          f"reduction x{last['reduction_mean'].mean():.2f}, acc {last['acc_change_pp_mean'].mean():+.2f} pp")
    print(f"checkpoint: {display(result.checkpoint)}")
    if result.best is not None:
        scores = result.history["val_score"].dropna()
        print(f"best checkpoint (the run's agent): {display(result.best)}, validation score x{scores.max():.3f} "
              f"(last x{scores.iloc[-1]:.3f})")
    return 0
