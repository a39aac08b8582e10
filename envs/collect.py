"""Collect episodes from a Gymnasium pixel env into the batch schema (DESIGN.md §2.1) and HDF5.

The row convention (which the original AIME got wrong by storing rewards one step late): the reset
observation is row 0 with a zero action and zero reward; after ``env.step(a_t)`` returns
(o_{t+1}, r_{t+1}), row t+1 holds o_{t+1}, a_t and r_{t+1}.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from envs.dataset import EpisodeWriter

Policy = Callable[[np.ndarray], np.ndarray]


def random_policy(action_space: gym.spaces.Box, seed: int | None = None) -> Policy:
    """Uniform random actions from ``action_space``, seeded."""
    rng = np.random.default_rng(seed)
    low, high = action_space.low, action_space.high
    return lambda obs: rng.uniform(low, high).astype(np.float32)


def rollout_episode(env: gym.Env, policy: Policy, seed: int | None = None) -> dict[str, np.ndarray]:
    """Run one episode; return it as a dict of arrays in the batch schema."""
    obs, _ = env.reset(seed=seed)
    if not (isinstance(obs, np.ndarray) and obs.dtype == np.uint8 and obs.ndim == 3 and obs.shape[-1] == 3):
        raise ValueError(
            "collection needs single-frame (H, W, 3) uint8 observations (frame_stack=1, proprio=False); "
            f"got {getattr(obs, 'shape', type(obs))}"
        )
    action_dim = int(np.prod(env.action_space.shape))
    rows = {
        "obs": [obs],
        "action": [np.zeros(action_dim, np.float32)],
        "reward": [0.0],
        "discount": [1.0],
        "is_first": [True],
        "is_last": [False],
        "is_terminal": [False],
    }
    done = False
    while not done:
        action = np.asarray(policy(obs), dtype=np.float32).reshape(action_dim)
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        rows["obs"].append(obs)
        rows["action"].append(action)
        rows["reward"].append(reward)
        rows["discount"].append(float(info.get("discount", 0.0 if terminated else 1.0)))
        rows["is_first"].append(False)
        rows["is_last"].append(done)
        rows["is_terminal"].append(bool(terminated))
    return {
        "obs": np.stack(rows["obs"]),
        "action": np.stack(rows["action"]),
        "reward": np.asarray(rows["reward"], np.float32),
        "discount": np.asarray(rows["discount"], np.float32),
        "is_first": np.asarray(rows["is_first"], bool),
        "is_last": np.asarray(rows["is_last"], bool),
        "is_terminal": np.asarray(rows["is_terminal"], bool),
    }


def collect(
    env: gym.Env,
    policy: Policy,
    episodes: int,
    out: str | os.PathLike,
    seed: int | None = None,
    progress: bool = True,
    **metadata,
) -> list[float]:
    """Collect ``episodes`` episodes into ``out`` (written atomically). Returns the episode returns.

    The first reset is seeded with ``seed``; later episodes continue the env's random stream.
    """
    returns = []
    with EpisodeWriter(out, seed=seed, **metadata) as writer:
        for i in tqdm(range(episodes), desc="collect", unit="ep", disable=not progress):
            episode = rollout_episode(env, policy, seed=seed if i == 0 else None)
            writer.add(episode)
            returns.append(float(episode["reward"].sum()))
    return returns
