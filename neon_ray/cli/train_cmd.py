"""`neon-ray train`: train the pruning agent on a zoo (protocol A, or B with --holdout), resumable."""
from __future__ import annotations

import argparse

from neon_ray.cli.common import add_address, csv_list, float_list, int_list, tolerance_arg

EPILOG = """\
examples:
  # protocol A on two datasets, one agent for every tolerance from 1 to 50 pp, 4 loops
  neon-ray train --zoo runs/zoo --datasets phoneme,diabetes --tolerance 1:50 --loops 4 --out runs/agent
  # protocol B: never train on nursery and kr-vs-k; two EnvRunners sampling in parallel
  neon-ray train --zoo runs/zoo --holdout nursery,kr-vs-k --runners 2 --out runs/agent-b
  # continue a run (same settings; --episodes may grow)
  neon-ray train --zoo runs/zoo --holdout nursery,kr-vs-k --out runs/agent-b --episodes 2000 --resume

RUN/config.json holds the resolved settings, RUN/progress.csv one row per iteration
(episodes, mean return, mean parameter reduction x, mean val accuracy change in pp), and
RUN/checkpoints/ the checkpoints (RUN/checkpoints/latest names the newest).
"""


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
    p.add_argument("--zoo", required=True, help="zoo directory (see `neon-ray zoo build`)")
    p.add_argument("--out", required=True, help="run directory RUN for config.json, progress.csv and checkpoints")
    add_agent_arguments(p)
    p.add_argument("--episodes", type=int, default=None,
                   help="training episodes in total (default: NEON's 10 x training networks + warm-up)")
    p.add_argument("--runners", type=int, default=0,
                   help="EnvRunner processes sampling in parallel (default 0: sample in this process)")
    p.add_argument("--checkpoint-every", type=int, default=10, help="checkpoint every N iterations (default 10)")
    p.add_argument("--keep-checkpoints", type=int, default=3, help="newest checkpoints kept (default 3)")
    p.add_argument("--resume", action="store_true",
                   help="continue RUN from its latest checkpoint (settings must match; --episodes may change)")
    p.add_argument("--quiet", action="store_true", help="no per-iteration lines")
    add_address(p)
    p.set_defaults(func=_train)


def add_agent_arguments(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The agent settings `train` and `tune` share; a sweep (`tune`) sets tolerance and reward by its grid."""
    p.add_argument("--datasets", type=csv_list, default=None, help="comma-separated datasets to use (default: all in the zoo)")
    p.add_argument("--holdout", type=csv_list, default=(),
                   help="comma-separated datasets never trained on (protocol B; reported on all their networks)")
    p.add_argument("--algo", choices=("a2c", "ppo"), default="a2c", help="a2c (NEON's agent, default) or ppo")
    if not sweep:
        p.add_argument("--tolerance", type=tolerance_arg, default=(1.0, 50.0),
                       help="allowed accuracy drop in pp: A (fixed) or LO:HI (drawn per episode; default 1:50)")
    p.add_argument("--tolerance-sampling", choices=("log-uniform", "uniform"), default="log-uniform",
                   help="how LO:HI is drawn (default log-uniform)")
    p.add_argument("--loops", type=int, default=4, help="passes over the hidden layers per episode (default 4)")
    p.add_argument("--keep-rates", type=float_list, default=None,
                   help="keep-rate of each action, comma-separated (default 1.0,0.9,0.8,0.7,0.6)")
    p.add_argument("--remove-layer", action="store_true", help="add an action that merges the current hidden layer away")
    if not sweep:
        p.add_argument("--reward", default="neon",
                       help="NAME or NAME:key=value,... e.g. neon, neon:scale=1, composite:w_params=2,penalty=1 "
                            "(default neon scaled so the largest |reward| is 1)")
    p.add_argument("--importance", choices=("l2", "l1", "activation"), default="l2",
                   help="neuron importance when pruning (default l2)")
    p.add_argument("--finetune-epochs", type=int, default=None, help="fine-tuning epochs at most per step (default 3)")
    p.add_argument("--finetune-rows", type=int, default=None, help="training rows per fine-tuning epoch (default 2048)")
    p.add_argument("--finetune-scope", choices=("affected", "all"), default=None,
                   help="fine-tune the changed layers (default) or the whole network")
    p.add_argument("--warmup", type=int, default=None,
                   help="A2C random-action episodes training the critic only (default min(2N, 500); PPO 0)")
    p.add_argument("--batch-steps", type=int, default=None,
                   help="env steps per update (default about 4 episodes' worth)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default a2c 1e-3, ppo 3e-4)")
    p.add_argument("--gamma", type=float, default=0.99, help="discount (default 0.99)")
    p.add_argument("--entropy", type=float, default=0.01, help="entropy bonus weight (default 0.01)")
    p.add_argument("--hidden", type=int_list, default=(64, 64), help="actor and critic hidden widths (default 64,64)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")


def agent_config_from_args(args: argparse.Namespace, **overrides):
    """AgentTrainConfig from the shared agent arguments (plus `overrides`)."""
    from dataclasses import replace

    from neon_ray.agent.training import AgentTrainConfig, default_finetune
    from neon_ray.tuning import RewardVariant

    reward = RewardVariant.parse(getattr(args, "reward", "neon"))
    finetune = default_finetune()
    changes = {k: v for k, v in (("max_epochs", args.finetune_epochs), ("max_train_rows", args.finetune_rows),
                                 ("scope", args.finetune_scope)) if v is not None}
    optional = {"keep_rates": tuple(args.keep_rates)} if args.keep_rates else {}
    return AgentTrainConfig(
        zoo=args.zoo,
        datasets=tuple(args.datasets) if args.datasets is not None else None,
        holdout=tuple(args.holdout),
        algo=args.algo,
        tolerance=getattr(args, "tolerance", (1.0, 50.0)),
        tolerance_sampling=args.tolerance_sampling,
        loops=args.loops,
        remove_layer=args.remove_layer,
        reward=reward.reward,
        reward_params=dict(reward.params) or None,
        finetune=replace(finetune, **changes),
        importance=args.importance,
        warmup_episodes=args.warmup,
        train_batch_size=args.batch_steps,
        lr=args.lr,
        gamma=args.gamma,
        entropy_coeff=args.entropy,
        hidden=tuple(args.hidden),
        seed=args.seed,
        **optional,
        **overrides,
    )


def _train(args: argparse.Namespace) -> int:
    from neon_ray.agent.training import train_agent

    cfg = agent_config_from_args(args, out=args.out, episodes=args.episodes, num_env_runners=args.runners,
                                 checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints)
    result = train_agent(cfg, address=args.address, resume=args.resume, progress=not args.quiet)
    last = result.history.tail(5)
    print(f"trained {result.iterations} iterations, {result.episodes} episodes in {result.seconds:.0f} s; "
          f"last {len(last)} iterations: return {last['return_mean'].mean():+.4f}, "
          f"reduction x{last['reduction_mean'].mean():.2f}, acc {last['acc_change_pp_mean'].mean():+.2f} pp")
    print(f"checkpoint: {result.checkpoint}")
    return 0
