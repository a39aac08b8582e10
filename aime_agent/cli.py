"""The ``aime`` console script.

Subcommands: ``envs`` (list DMC tasks), ``collect`` (roll out a policy into an HDF5 dataset),
``pretrain`` (train the world model offline on a dataset), ``train`` (train the agent, resumable),
``evaluate`` (evaluate a saved agent).
Heavy imports happen inside each subcommand so ``aime --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys


def _cmd_envs(args: argparse.Namespace) -> int:
    import envs

    tasks = [(d, t) for d, t in envs.all_tasks() if args.domain in (None, d)]
    if not tasks:
        import difflib

        domains = sorted({d for d, _ in envs.all_tasks()})
        close = difflib.get_close_matches(args.domain, domains, n=3, cutoff=0.5) or domains
        raise ValueError(f"unknown domain {args.domain!r}; closest valid domains: {', '.join(close)}")
    for domain, task in tasks:
        print(f"{envs.env_id(domain, task):<40} {domain}-{task}")
    print(f"{len(tasks)} tasks", file=sys.stderr)
    return 0


def _cmd_collect(args: argparse.Namespace) -> int:
    import numpy as np

    import envs
    from envs.collect import collect, random_policy
    from envs.dataset import EpisodeDataset

    env = envs.make(
        args.env,
        image_size=args.image_size,
        action_repeat=args.action_repeat,
        render_quality=args.render_quality,
        seed=args.seed,
    )
    policy = random_policy(env.action_space, seed=args.seed)
    domain, task = envs.parse_task(args.env)
    collect(
        env,
        policy,
        args.episodes,
        args.out,
        seed=args.seed,
        progress=not args.quiet,
        env_id=envs.env_id(domain, task),
        action_repeat=args.action_repeat,
        image_size=args.image_size,
        render_quality=args.render_quality,
        policy_name=args.policy,
    )
    env.close()
    data = EpisodeDataset(args.out)  # read back: the statistics describe what is on disk
    returns = np.array([ep["reward"].sum() for ep in data.episodes()])
    size_mb = data.path.stat().st_size / 2**20
    print(
        f"wrote {data.path} ({size_mb:.1f} MB): {len(data)} episodes, {data.num_steps} rows "
        f"({int((data.lengths - 1).sum()) * args.action_repeat} env steps)"
    )
    print(
        f"episode return: mean {returns.mean():.1f}  std {returns.std():.1f}  "
        f"min {returns.min():.1f}  max {returns.max():.1f}"
    )
    return 0


def parse_overrides(pairs: list[str]) -> dict:
    """``["deter=64", "train.lr=1e-4"]`` → {"deter": 64, "train.lr": 0.0001} (values parsed as Python literals)."""
    import ast

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from aime_agent.allocator import retain_freed_memory
    from aime_agent.config import preset
    from aime_agent.pretrain import Pretrainer, PretrainSettings

    retain_freed_memory()  # this process trains on the CPU or feeds a GPU: large batches, no page faults
    config = preset(args.preset, **parse_overrides(args.set))
    settings = PretrainSettings(steps=args.steps, seed=args.seed, device=args.device)
    trainer = Pretrainer(args.data, config, args.logdir, settings)
    if trainer.step:
        print(f"resuming {trainer.ckpt_path} at update {trainer.step}")
    metrics = trainer.run(progress=not args.quiet)
    print(
        f"{trainer.step} updates; checkpoint {trainer.ckpt_path}; "
        + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k in ("wm_loss", "recon_mse", "kl", "reward"))
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from aime_agent.allocator import retain_freed_memory
    from aime_agent.train import TrainSettings, run

    retain_freed_memory()
    settings = TrainSettings(env=args.env, env_steps=args.env_steps, preset=args.preset, logdir=args.logdir,
                             seed=args.seed, n_envs=args.n_envs, action_repeat=args.action_repeat,
                             render_quality=args.render_quality, distractors=args.distractors,
                             checkpoint_every=args.checkpoint_every,
                             eval_episodes=args.eval_episodes, pretrained=args.pretrained, prefill=args.prefill,
                             progress=not args.quiet, overrides=parse_overrides(args.set))  # fmt: skip
    run(settings)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np
    from stable_baselines3.common.evaluation import evaluate_policy

    from aime_agent.agent import AIME
    from aime_agent.train import TrainSettings, make_env

    settings = TrainSettings(env=args.env, action_repeat=args.action_repeat, render_quality=args.render_quality,
                             distractors=args.distractors)  # fmt: skip
    env = make_env(settings, 1, args.seed)
    model = AIME.load(args.model, env=env)
    returns, lengths = evaluate_policy(model, env, n_eval_episodes=args.episodes, deterministic=not args.stochastic,
                                       return_episode_rewards=True)  # fmt: skip
    print(
        f"{args.env}: return {np.mean(returns):.1f} ± {np.std(returns):.1f} over {args.episodes} episodes "
        f"(per episode: {', '.join(f'{r:.1f}' for r in returns)})"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aime", description="AIME world-model agent for visual RL.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("envs", help="list the DeepMind Control tasks (registered as dmc/<domain>-<task>-v0)")
    p.add_argument("--domain", help="only this domain")
    p.set_defaults(func=_cmd_envs)

    p = sub.add_parser("collect", help="collect episodes into an HDF5 dataset")
    p.add_argument("--env", default="cartpole-swingup", help="DMC task, e.g. cartpole-swingup")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--policy", choices=["random"], default="random")
    p.add_argument("--out", default="data/cartpole-swingup-random.h5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--action-repeat", type=int, default=2)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--render-quality", choices=["paper", "fast"], default="paper")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_collect)

    p = sub.add_parser("pretrain", help="train the world model offline on an HDF5 dataset")
    p.add_argument("--data", required=True, help="HDF5 dataset from `aime collect`")
    p.add_argument("--preset", default="small", help="tiny | small | medium | large")
    p.add_argument("--steps", type=int, default=1000, help="total updates (a resumed run continues to this count)")
    p.add_argument("--logdir", default="runs/pretrain", help="TensorBoard logs and checkpoint.pt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser("train", help="train the AIME agent on a DMC task (resumes from <logdir>/checkpoint.zip)")
    p.add_argument("--env", default="cartpole-swingup")
    p.add_argument("--env-steps", type=int, default=100_000, help="dm_control control steps")
    p.add_argument("--preset", default="small")
    p.add_argument("--logdir", default="runs/aime")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-envs", type=int, default=1)
    p.add_argument("--action-repeat", type=int, default=2)
    p.add_argument("--render-quality", choices=["paper", "fast"], default="fast")
    p.add_argument("--distractors", type=float, default=0.0, help="moving shapes behind the scene, strength 0-1")
    p.add_argument("--checkpoint-every", type=int, default=5_000, help="agent steps between checkpoints")
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--pretrained", help="an `aime pretrain` checkpoint to start the world model from")
    p.add_argument("--prefill", help="an HDF5 dataset to load into the replay before learning")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override, repeatable")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a saved agent with its deterministic policy")
    p.add_argument("--model", required=True, help="checkpoint.zip from `aime train` or model.save()")
    p.add_argument("--env", default="cartpole-swingup")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--action-repeat", type=int, default=2)
    p.add_argument("--render-quality", choices=["paper", "fast"], default="fast")
    p.add_argument("--distractors", type=float, default=0.0, help="moving shapes behind the scene, strength 0-1")
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    p.set_defaults(func=_cmd_evaluate)

    from aime_agent.benchmark.suite import add_arguments
    from aime_agent.benchmark.suite import main as benchmark

    p = sub.add_parser("benchmark", help="agents × tasks × seeds on DMC pixels, resumable; --report for the tables")
    add_arguments(p)
    p.set_defaults(func=benchmark)
    return parser


def main(argv: list[str] | None = None) -> int:
    from aime_agent.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, CheckpointError) as err:  # bad input: a clear message, no traceback
        print(f"aime {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
