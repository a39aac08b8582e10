"""Diagnostic: the actor-critic alone, on a frozen world model pretrained on a random-policy dataset.

Separates behaviour learning from data collection: pretrain the world model for ``--wm-updates`` on an
``aime collect`` dataset (cached under runs/), freeze it, then run ``--updates`` actor-critic updates from
replayed posterior states. Every ``--every`` updates it prints the real deterministic evaluation return
and, from the same replayed starts, the world model's predicted 15-step reward sum under the actor (mode
and sample), uniform random actions and zero actions: if the actor does not beat random *inside the
model*, the actor-critic is at fault; if it does there but not in the env, the model is.

    aime collect --env cartpole-balance --episodes 40 --render-quality fast --out data/cartpole-balance-random-40.h5
    python benchmarks/behavior_offline.py --data data/cartpole-balance-random-40.h5 --set gamma=0.99 horizon=15

``--checkpoint runs/learning/<run>`` instead takes the world model and replay of an online run (its
``checkpoint.zip`` and replay, e.g. from ``aime benchmark``) and trains a fresh actor-critic
on them, so behaviour settings can be compared on the data and model an online run really had.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def imagined_reward_sums(wm, actor, start, horizon: int = 15) -> dict[str, float]:
    action_dim = wm.action_dim
    policies = {
        "actor_mode": lambda f: actor.act(f, True),
        "actor_sample": lambda f: actor.act(f, False),
        "random": lambda f: torch.rand(f.shape[0], action_dim) * 2 - 1,
        "zero": lambda f: torch.zeros(f.shape[0], action_dim),
    }
    out = {}
    for name, policy in policies.items():
        torch.manual_seed(0)  # the same prior noise for every policy
        traj = wm.imagine(start, policy, horizon)
        out[name] = round(wm.reward_head.predict(traj["feat"][1:]).sum(0).mean().item(), 3)
    return out


def pretrain(model, cache: Path, updates: int, rng: np.random.Generator) -> None:
    """Train the agent's world model for ``updates`` on its replay, or load the result cached at ``cache``."""
    from aime_agent.world_model import train_step

    wm = model.policy.world_model
    if cache.exists():
        wm.load_state_dict(torch.load(cache, weights_only=True))
        return
    for _ in range(updates):
        train_step(wm, model.policy.wm_optimizer, model.replay_buffer.sample_sequences(16, 16, rng))
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(wm.state_dict(), cache)


def main(argv=None) -> None:
    from stable_baselines3.common.evaluation import evaluate_policy

    from aime_agent import AIME
    from aime_agent.benchmark.runs import parse_run
    from aime_agent.cli import parse_overrides
    from aime_agent.train import TrainSettings, load_run_replay, make_env
    from aime_agent.world_model import LatentState
    from envs.dataset import EpisodeDataset

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="an `aime collect` dataset: pretrain a world model on it")
    source.add_argument("--checkpoint", type=Path, help="a run folder with checkpoint.zip and its replay")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--wm-updates", type=int, default=3000)
    parser.add_argument("--updates", type=int, default=4000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--eval-episodes", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=[], help="config overrides, key=value")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    if args.checkpoint:
        online = AIME.load(args.checkpoint / "checkpoint.zip")
        task = parse_run(args.checkpoint.name)[1]
        config = online.policy.config
        args.preset = config.preset
        overrides = {**{f"model.{k}": v for k, v in config.to_dict()["model"].items()}, **overrides}
    else:
        task = EpisodeDataset(args.data).metadata["env_id"].split("/")[1].removesuffix("-v0")
    settings = TrainSettings(env=task, render_quality="fast")
    model = AIME("CnnPolicy", make_env(settings, 1, 0), preset=args.preset, seed=0, batch_size=16, batch_length=16,
                 **overrides)  # fmt: skip
    wm, behavior = model.policy.world_model, model.policy.behavior
    rng, start_time = np.random.default_rng(0), time.perf_counter()
    if args.checkpoint:
        load_run_replay(model, args.checkpoint)
        wm.load_state_dict(online.policy.world_model.state_dict())
    else:
        model.replay_buffer.add_dataset(str(args.data))
        pretrain(model, ROOT / "runs" / "behavior_offline" / f"{args.data.stem}-{args.preset}-{args.wm_updates}.pt",
                 args.wm_updates, rng)  # fmt: skip
    probe = model.replay_buffer.sample_sequences(32, 16, np.random.default_rng(99))
    with torch.no_grad():
        out = wm.observe(wm.preprocess(probe))
    probe_start = LatentState(out["rnn"].flatten(0, 1), out["stoch"].flatten(0, 1))
    eval_env = make_env(settings, 1, 100)
    metrics: dict = {}
    for i in range(args.updates + 1):
        if i % args.every == 0:
            ret, _ = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True)
            keep = ("imag_return", "imag_reward", "return_scale", "entropy", "action_std")
            print(f"update {i}: eval {ret:.1f}; imagined 15-step reward sums "
                  f"{imagined_reward_sums(wm, behavior.actor, probe_start)}; "
                  f"{ {k: round(v, 3) for k, v in metrics.items() if k in keep} }; "
                  f"{time.perf_counter() - start_time:.0f}s", flush=True)  # fmt: skip
            model.policy.set_training_mode(True)
        batch = model.replay_buffer.sample_sequences(16, 16, rng)
        with torch.no_grad():
            inputs = wm.preprocess(batch)
            out = wm.observe(inputs)
        start = LatentState(out["rnn"].flatten(0, 1), out["stoch"].flatten(0, 1))
        metrics = behavior.train_step(wm, start, {"feat": out["feat"], "reward": inputs["reward"],
                                                  "cont": inputs["cont"]})  # fmt: skip


if __name__ == "__main__":
    main()
