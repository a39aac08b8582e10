"""Diagnostic: how well a trained agent's world model predicts the reward along the agent's own episodes.

Runs ``--episodes`` on-policy episodes (sampled actions, as when collecting) in a fresh env, then compares
the real rewards with (1) the reward head on the posterior states (the frames observed) and (2) open-loop
``--horizon``-step reward sums from every 10th posterior state, driven by the recorded actions through the
prior mean (what imagination sees). Low correlation in (2) means the actor is trained on rewards that do
not track the real ones; a bias means imagined returns are systematically off.

    python benchmarks/reward_fidelity.py --checkpoint runs/learning/aime-cartpole-swingup-s0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def record_episode(model, env) -> dict:
    """One on-policy episode as a batch in the schema, (1, T, ...): row t holds o_t, a_t, r_t."""
    obs, state, start = env.reset(), None, np.ones(1, bool)
    frames, actions, rewards = [obs[0]], [np.zeros(env.action_space.shape, np.float32)], [0.0]
    while True:
        action, state = model.predict(obs, state, start, deterministic=False)
        start = np.zeros(1, bool)
        obs, reward, done, info = env.step(action)
        frames.append(info[0]["terminal_observation"] if done[0] else obs[0])  # the VecEnv has already reset
        actions.append(model.policy.scale_action(action[0]))
        rewards.append(float(reward[0]))
        if done[0]:
            break
    return episode_batch(frames, actions, rewards)


def episode_batch(frames: list, actions: list, rewards: list) -> dict:
    """One unterminated episode's rows (o_t, the action that produced it, the reward received on arrival;
    row 0 has action 0 and reward 0) as a batch in the schema, (1, T, ...)."""
    t = len(frames)
    return {"obs": np.stack(frames)[None], "action": np.stack(actions)[None].astype(np.float32),
            "reward": np.array(rewards, np.float32)[None], "is_first": np.eye(1, t, dtype=bool),
            "is_last": np.zeros((1, t), bool), "is_terminal": np.zeros((1, t), bool),
            "discount": np.ones((1, t), np.float32)}  # fmt: skip


@torch.no_grad()
def fidelity(wm, batch: dict, horizon: int, every: int = 10) -> dict:
    from aime_agent.world_model import LatentState

    inputs = wm.preprocess(batch)
    out = wm.observe(inputs)
    real = inputs["reward"][0].cpu().numpy()
    posterior = wm.reward_head.predict(out["feat"])[0].cpu().numpy()
    predicted, actual = [], []
    for s in range(every // 2, len(real) - horizon, every):
        state, total = LatentState(out["rnn"][:, s], out["stoch"][:, s]), 0.0
        for k in range(1, horizon + 1):
            rnn, prior = wm.img_step(state, inputs["action"][:, s + k])
            state = LatentState(rnn, prior.mean)
            total += wm.reward_head.predict(wm.feat(state)).item()
        predicted.append(total)
        actual.append(real[s + 1 : s + horizon + 1].sum())
    return {"real": real[1:], "posterior": posterior[1:], "open_pred": np.array(predicted),
            "open_real": np.array(actual)}  # fmt: skip


def main(argv=None) -> None:
    from aime_agent import AIME
    from aime_agent.benchmark.runs import ACTION_REPEAT, parse_run
    from aime_agent.train import TrainSettings, make_env

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a run folder with checkpoint.zip")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument("--seed", type=int, default=777)
    args = parser.parse_args(argv)
    task = parse_run(args.checkpoint.name)[1]
    model = AIME.load(args.checkpoint / "checkpoint.zip")
    env = make_env(TrainSettings(env=task, render_quality="fast"), 1, args.seed)
    parts = [fidelity(model.policy.world_model, record_episode(model, env), args.horizon) for _ in range(args.episodes)]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    result = {
        "checkpoint": str(args.checkpoint), "env_steps": model.num_timesteps * ACTION_REPEAT, "episodes": args.episodes,
        "real_return_mean": float(cat["real"].sum() / args.episodes),
        "posterior_return_mean": float(cat["posterior"].sum() / args.episodes),
        "posterior_reward_corr": float(np.corrcoef(cat["posterior"], cat["real"])[0, 1]),
        f"open_loop_{args.horizon}_corr": float(np.corrcoef(cat["open_pred"], cat["open_real"])[0, 1]),
        f"open_loop_{args.horizon}_bias": float((cat["open_pred"] - cat["open_real"]).mean()),
        f"open_loop_{args.horizon}_real_mean": float(cat["open_real"].mean()),
    }  # fmt: skip
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
