"""Diagnostic: is the world model informative enough for the actor to follow it?

Two quick, model-only checks on replayed windows (no environment branching; see action_sensitivity.py for that):

* **posterior health**: the world-model loss terms on a batch, the spread of the posterior means across
  states (≈ 0 with a collapsed posterior, when the KL sits under the free nats and z ignores the image), and
  the correlation of the reward head with the real rewards on posterior states;
* **J(c)**: the imagined λ-return from the batch's posterior states (N = B·T starts) when every imagined action
  is the constant c, for c in −1, −0.5, 0, 0.5, 1, and under the actor's mode; split into the H-step reward sum
  and the bootstrap value v(s_H). J(c) that does not depend on c means the model ignores actions, and the
  pathwise actor gradient is then noise plus a tiny slope that Adam turns into full steps
  (docs/investigations/agent_learning.md).

``--train N`` instead trains a fresh agent in chunks of N agent steps (``--chunks`` of them; ``--preset``,
``--override``) and after each prints one deterministic evaluation episode (return, and the spread of its
actions: a constant action is the signature of a saturated actor) and both checks:

    python benchmarks/action_probe.py --checkpoint runs/learning/aime-cartpole-swingup-s0
    python benchmarks/action_probe.py --train 1250 --env cartpole-balance --preset tiny --override free_nats=0.1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

CONSTANTS = (-1.0, -0.5, 0.0, 0.5, 1.0)


@torch.no_grad()
def probe(model, batch_size: int = 16, seed: int = 0) -> dict:
    """Posterior health and J(c) of an ``AIME`` agent on ``batch_size`` replayed windows."""
    from aime_agent.world_model import LatentState

    wm, behavior, cfg = model.policy.world_model, model.policy.behavior, model.policy.behavior.config
    batch = model.replay_buffer.sample_sequences(batch_size, model.batch_length, np.random.default_rng(seed))
    _, metrics, out = wm.loss(batch)
    reward_pred = wm.reward_head.predict(out["feat"]).flatten().cpu().numpy()
    reward_real = out["reward"].flatten().cpu().numpy()
    result = {
        "kl": metrics["kl"], "recon_mse": metrics["recon_mse"],
        "post_mean_spread": out["post_mean"].std((0, 1)).mean().item(),
        "reward_corr": float(np.corrcoef(reward_pred, reward_real)[0, 1]) if reward_real.std() > 0 else float("nan"),
    }  # fmt: skip
    start = LatentState(out["rnn"].flatten(0, 1), out["stoch"].flatten(0, 1))
    action_dim = model.action_space.shape[0]
    for c in (*CONSTANTS, "actor"):

        def policy(feat, c=c):
            if c == "actor":
                return behavior.actor(feat).mean
            return torch.full((feat.shape[0], action_dim), c, device=feat.device)

        with torch.random.fork_rng(devices=[wm.device] if wm.device.type == "cuda" else []):
            torch.manual_seed(seed)  # the same prior noise for every c (common random numbers)
            feat = wm.imagine(start, policy, cfg.horizon)["feat"]  # (H+1, N, F)
        reward, _, value, returns = behavior.imagined_returns(wm, feat)
        result[f"J({c})"] = (returns[0].mean().item(), reward[1:].sum(0).mean().item(), value[-1].mean().item())
    return result


def format_probe(result: dict) -> str:
    head = (f"KL {result['kl']:.2f}  posterior-mean spread {result['post_mean_spread']:.3f}  "
            f"reward corr {result['reward_corr']:.2f}")  # fmt: skip
    js = " | ".join(f"{k}: {v[0]:.2f} (r {v[1]:.2f}, v {v[2]:.2f})" for k, v in result.items() if k.startswith("J("))
    return f"{head}\n    {js}"


def eval_episode(model, env) -> tuple[float, np.ndarray]:
    obs, state, start, done, total, actions = env.reset(), None, np.ones(1, bool), False, 0.0, []
    while not done:
        action, state = model.predict(obs, state, start, deterministic=True)
        obs, reward, dones, _ = env.step(action)
        start = np.zeros(1, bool)
        actions.append(action[0])
        total, done = total + float(reward[0]), bool(dones[0])
    return total, np.array(actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="an `aime benchmark` run folder (checkpoint.zip, replay)")
    parser.add_argument("--train", type=int, default=0, help="agent steps per chunk of a fresh run")
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--env", default="cartpole-balance")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--override", nargs="*", default=[], help="config fields, key=value")
    args = parser.parse_args()
    from stable_baselines3.common.env_util import make_vec_env

    from aime_agent import AIME
    from aime_agent.cli import parse_overrides
    from aime_agent.train import load_run_replay

    if args.checkpoint is not None:
        model = AIME.load(args.checkpoint / "checkpoint.zip", device="cpu")
        load_run_replay(model, args.checkpoint)
        print(format_probe(probe(model)))
        return
    if args.train <= 0:
        parser.error("give --checkpoint or --train N")

    def make(seed):
        return make_vec_env(f"envs:dmc/{args.env}-v0", n_envs=1, seed=seed, env_kwargs={"render_quality": "fast"})

    model = AIME("CnnPolicy", make(args.seed), preset=args.preset, seed=args.seed, **parse_overrides(args.override))
    eval_env, t0 = make(args.seed + 100), time.time()
    for _ in range(args.chunks):
        model.learn(args.train, reset_num_timesteps=False)
        total, actions = eval_episode(model, eval_env)
        steps = model.num_timesteps * model._action_repeat
        print(f"{steps} env steps, {model._n_updates} updates, {time.time() - t0:.0f} s: return {total:.1f}, "
              f"action mean {actions.mean():+.2f} std over the episode {actions.std():.3f}, "
              f"|a| > 0.95 {np.mean(np.abs(actions) > 0.95):.2f}", flush=True)  # fmt: skip
        print("   ", format_probe(probe(model)), flush=True)


if __name__ == "__main__":
    main()
