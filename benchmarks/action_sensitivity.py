"""Diagnostic: does a trained agent's world model respond to actions the way the environment does?

Imagination trains the actor only through the model's response to actions. This script branches the REAL
environment and the MODEL from the same moments of an on-policy episode and drives both with the constant
actions +1 and −1 for ``--horizon`` agent steps:

* real: the MuJoCo state is saved every ``--every`` steps, restored, and stepped with each action;
* model: the posterior state at that step (the episode observed up to there) is rolled forward with the
  prior mean under the same actions (as ``WorldModel.open_loop``).

Per branch point it records the reward sums R(+1), R(−1) and the final frames. Reported:

* ``reward_gap_corr``: correlation over branch points of the real gap R(+1) − R(−1) with the model's;
  ``reward_gap_sign_agree``: how often the model picks the better action; ``reward_gap_abs_real/model``;
* ``frame_gap_real / frame_gap_model``: mean |frame(+1) − frame(−1)| of the final frames (pixels in [0, 1]);
* ``err_matched / err_swapped``: mean |model frame − real frame| against the real frame of the SAME action
  and of the OPPOSITE action. A model that ignores actions has err_matched ≈ err_swapped.

    python benchmarks/action_sensitivity.py --checkpoint runs/learning/aime-cartpole-swingup-s0

``--world-model runs/pretrain/checkpoint.pt`` branches another world model (an ``aime pretrain`` checkpoint,
e.g. one trained on the run's replay with other settings) along the same agent's episodes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def branch_real(env, state: np.ndarray, action: float, horizon: int) -> tuple[float, np.ndarray]:
    """Restore the MuJoCo ``state`` in the DMCEnv ``env`` and apply ``action`` for ``horizon`` agent steps."""
    env.reset()
    physics = env._physics
    with physics.reset_context():
        physics.set_state(state)
    total, frame = 0.0, None
    for _ in range(horizon):
        frame, reward, *_ = env.step(np.full(env.action_space.shape, action, np.float32))
        total += reward
    return total, frame


@torch.no_grad()
def branch_model(wm, out: dict, t: int, action: float, horizon: int) -> tuple[float, np.ndarray]:
    """From the posterior state at row ``t`` of ``out`` (``WorldModel.observe``), roll the prior mean forward."""
    from aime_agent.world_model import LatentState

    state = LatentState(out["rnn"][:, t], out["stoch"][:, t])
    act = torch.full((1, wm.action_dim), action, device=wm.device)
    total = 0.0
    for _ in range(horizon):
        rnn, prior = wm.img_step(state, act)
        state = LatentState(rnn, prior.mean)
        total += wm.reward_head.predict(wm.feat(state)).item()
    image = (wm.decode(wm.feat(state)) + 0.5).clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
    return total, image


def episode(model, env, horizon: int, every: int, rng: np.random.Generator, wm=None) -> list[dict]:
    """One on-policy episode of ``model`` in ``env`` (a DMCEnv); branch points every ``every`` agent steps.
    ``wm``: the world model to branch (default: the agent's own)."""
    from reward_fidelity import episode_batch  # the sibling script (benchmarks/ is on sys.path when run)

    wm = wm or model.policy.world_model
    obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
    frames, actions, rewards, saved = [obs], [np.zeros(env.action_space.shape, np.float32)], [0.0], {}
    state, start, done = None, np.ones(1, bool), False
    while not done:
        if len(frames) % every == every // 2:
            saved[len(frames) - 1] = env._physics.get_state().copy()
        action, state = model.predict(obs[None], state, start, deterministic=False)
        start = np.zeros(1, bool)
        obs, reward, terminated, truncated, _ = env.step(action[0])
        frames.append(obs)
        actions.append(action[0].astype(np.float32))
        rewards.append(reward)
        done = terminated or truncated
    with torch.no_grad():
        out = wm.observe(wm.preprocess(episode_batch(frames, actions, rewards)))
    rows = []
    for step, physics_state in saved.items():
        row = {}
        for sign in (1.0, -1.0):
            real_r, real_f = branch_real(env, physics_state, sign, horizon)
            model_r, model_f = branch_model(wm, out, step, sign, horizon)
            row[sign] = {"real_r": real_r, "model_r": model_r, "real_f": real_f / 255.0, "model_f": model_f}
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> dict:
    gap_real = np.array([r[1.0]["real_r"] - r[-1.0]["real_r"] for r in rows])
    gap_model = np.array([r[1.0]["model_r"] - r[-1.0]["model_r"] for r in rows])

    def mad(a, b):
        return float(np.abs(a - b).mean())

    return {
        "branch_points": len(rows),
        "reward_gap_corr": float(np.corrcoef(gap_real, gap_model)[0, 1]),
        "reward_gap_sign_agree": float(np.mean(np.sign(gap_real) == np.sign(gap_model))),
        "reward_gap_abs_real": float(np.abs(gap_real).mean()),
        "reward_gap_abs_model": float(np.abs(gap_model).mean()),
        "frame_gap_real": float(np.mean([mad(r[1.0]["real_f"], r[-1.0]["real_f"]) for r in rows])),
        "frame_gap_model": float(np.mean([mad(r[1.0]["model_f"], r[-1.0]["model_f"]) for r in rows])),
        "err_matched": float(np.mean([mad(r[s]["model_f"], r[s]["real_f"]) for r in rows for s in (1.0, -1.0)])),
        "err_swapped": float(np.mean([mad(r[s]["model_f"], r[-s]["real_f"]) for r in rows for s in (1.0, -1.0)])),
    }  # fmt: skip


def load_world_model(path: Path, action_dim: int):
    """A WorldModel from an ``aime pretrain`` checkpoint (on the CPU)."""
    from aime_agent.checkpoint import load_checkpoint
    from aime_agent.config import AIMEConfig
    from aime_agent.pretrain import KIND
    from aime_agent.world_model import WorldModel

    ckpt = load_checkpoint(path, KIND, "cpu")
    wm = WorldModel(AIMEConfig.from_dict(ckpt["config"]), action_dim)
    wm.load_state_dict(ckpt["model"])
    return wm.eval()


def main(argv=None) -> None:
    import envs
    from aime_agent import AIME
    from aime_agent.benchmark.runs import ACTION_REPEAT, parse_run

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a run folder with checkpoint.zip")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument("--every", type=int, default=25, help="agent steps between branch points")
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--world-model", type=Path, help="branch this `aime pretrain` checkpoint instead")
    parser.add_argument("--env", help="the task; default: read from the run folder's name (the suite's naming)")
    args = parser.parse_args(argv)
    task = args.env or parse_run(args.checkpoint.name)[1]
    model = AIME.load(args.checkpoint / "checkpoint.zip", device="cpu")
    env = envs.make(task, action_repeat=ACTION_REPEAT, render_quality="fast")
    wm = load_world_model(args.world_model, model.action_space.shape[0]) if args.world_model else None
    rng = np.random.default_rng(args.seed)
    rows = [row for _ in range(args.episodes) for row in episode(model, env, args.horizon, args.every, rng, wm)]
    result = {"checkpoint": str(args.checkpoint), "world_model": str(args.world_model or args.checkpoint),
              "env_steps": model.num_timesteps * ACTION_REPEAT,
              "horizon": args.horizon, **summarise(rows)}  # fmt: skip
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
