"""Shared fixtures: small real DMC batches in the schema of DESIGN.md §2.1."""

from __future__ import annotations

import os

import numpy as np
import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs 2 workers on 2 cores: one torch thread each
    import torch

    torch.set_num_threads(int(os.environ.get("AIME_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def cartpole_episode():
    """One real cartpole-swingup episode of 40 agent steps (41 rows), fast rendering, random actions."""
    import envs
    from envs.collect import random_policy, rollout_episode

    env = envs.make("cartpole-swingup", render_quality="fast", max_env_steps=80, seed=0)
    episode = rollout_episode(env, random_policy(env.action_space, seed=0), seed=0)
    env.close()
    return episode


@pytest.fixture()
def cartpole_batch(cartpole_episode):
    """A (B=2, T=8) batch cut from the episode (row 0 of the first window is the episode start)."""
    starts = [0, 20]
    return {k: np.stack([v[s : s + 8] for s in starts]) for k, v in cartpole_episode.items()}
