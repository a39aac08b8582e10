"""Slow: real training. Run with `make test-slow` (or `pytest -m slow`)."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from aime_agent import AIME

ENV = "envs:dmc/cartpole-balance-v0"


def vec(seed):
    return make_vec_env(ENV, n_envs=1, seed=seed, env_kwargs={"render_quality": "fast"})


@pytest.mark.slow
def test_tiny_preset_learns_cartpole_balance_in_20k_env_steps():
    eval_env = vec(100)
    rng = np.random.default_rng(0)
    random_returns = []
    for _ in range(5):  # the random policy on the same eval env
        eval_env.reset()
        total, done = 0.0, False
        while not done:
            _, reward, dones, _ = eval_env.step(rng.uniform(-1, 1, (1, 1)).astype(np.float32))
            total, done = total + float(reward[0]), bool(dones[0])
        random_returns.append(total)
    model = AIME("CnnPolicy", vec(0), preset="tiny", seed=0)
    model.learn(10_000)  # agent steps = 20k env steps at action repeat 2
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=5, deterministic=True)
    print(f"random {np.mean(random_returns):.1f}, AIME tiny after 20k env steps {mean:.1f}")
    assert mean >= 2 * np.mean(random_returns)
