"""Sequence replay in the batch schema (DESIGN.md §2.1), for ``AIME`` (an SB3 ``ReplayBuffer`` subclass).

Each env writes its own ring of ``buffer_size // n_envs`` rows; row t holds o_t, the action that produced
it, the reward received on arriving there, the discount and the is_first / is_last / is_terminal flags.
Every frame is stored once (no obs/next_obs pair), as uint8, and the arrays are allocated at the first
``add_rows`` (so ``AIME.load`` and rl-zoo3's ``enjoy`` allocate nothing). ``sample_sequences(B, T)``
returns (B, T, ...) numpy arrays of windows that lie inside one episode and never cross a ring's write
position. Episodes round-trip through HDF5 (``save_hdf5``, ``add_dataset``) in the dataset schema.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer

from envs.dataset import KEYS, EpisodeDataset, EpisodeWriter


class NoWindowError(ValueError):
    """No ring holds a window of the requested length inside one episode yet."""


class SequenceReplayBuffer(ReplayBuffer):
    """Rows of the batch schema per env; see the module docstring.

    Accepts SB3's ``ReplayBuffer`` constructor arguments (``optimize_memory_usage`` and
    ``handle_timeout_termination`` are implied: frames are stored once and truncations keep discount 1).
    """

    def __init__(self, buffer_size: int, observation_space: spaces.Space, action_space: spaces.Space,
                 device="auto", n_envs: int = 1, optimize_memory_usage: bool = False,
                 handle_timeout_termination: bool = True):  # fmt: skip
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        if not isinstance(observation_space, spaces.Box) or observation_space.dtype != np.uint8:
            raise ValueError(f"SequenceReplayBuffer stores uint8 image observations, got {observation_space}")
        self.capacity = max(buffer_size // n_envs, 1)  # rows per env
        self.handle_timeout_termination = True
        self.optimize_memory_usage = False
        self.storage: dict[str, np.ndarray] | None = None
        self.positions = np.zeros(n_envs, dtype=np.int64)  # next row to write, per env
        self.counts = np.zeros(n_envs, dtype=np.int64)  # rows stored, per env (<= capacity)
        self.open = np.zeros(n_envs, dtype=bool)  # an episode is in progress in this env's ring
        self.written = np.zeros(n_envs, dtype=np.int64)  # rows ever written, per env (the ring keeps the last ones)

    # -- writing -------------------------------------------------------------------------------
    def _allocate(self) -> None:
        n, c = self.n_envs, self.capacity
        self.storage = {
            "obs": np.zeros((n, c, *self.obs_shape), np.uint8),
            "action": np.zeros((n, c, self.action_dim), np.float32),
            "reward": np.zeros((n, c), np.float32), "discount": np.ones((n, c), np.float32),
            "is_first": np.zeros((n, c), bool), "is_last": np.zeros((n, c), bool),
            "is_terminal": np.zeros((n, c), bool),
        }  # fmt: skip

    def add_row(self, env: int, obs: np.ndarray, action: np.ndarray | None = None, reward: float = 0.0,
                is_first: bool = False, is_last: bool = False, is_terminal: bool = False) -> None:  # fmt: skip
        """Append one row to ``env``'s ring (``action=None`` means zeros, for is_first rows)."""
        if self.storage is None:
            self._allocate()
        s, i = self.storage, self.positions[env]
        s["obs"][env, i] = obs
        s["action"][env, i] = 0.0 if action is None else action
        s["reward"][env, i] = reward
        s["discount"][env, i] = 0.0 if is_terminal else 1.0
        s["is_first"][env, i], s["is_last"][env, i], s["is_terminal"][env, i] = is_first, is_last, is_terminal
        self.positions[env] = (i + 1) % self.capacity
        self.counts[env] = min(self.counts[env] + 1, self.capacity)
        self.written[env] += 1
        self.open[env] = not is_last
        self.pos, self.full = int(self.positions[0]), bool(self.counts.min() == self.capacity)

    def close_open_episodes(self) -> None:
        """Mark the newest row of every unfinished episode as its last (truncated, not terminal)."""
        if self.storage is None:
            return
        for env in np.flatnonzero(self.open):
            self.storage["is_last"][env, (self.positions[env] - 1) % self.capacity] = True
            self.open[env] = False

    def add(self, *args, **kwargs) -> None:
        raise TypeError("SequenceReplayBuffer stores schema rows: use add_row() (AIME._store_transition does)")

    def add_episode(self, episode: dict[str, np.ndarray], env: int = 0) -> None:
        """Append a whole episode (dict of (T, ...) arrays in the schema) to ``env``'s ring."""
        obs = episode["obs"]
        if obs.shape[1:] != self.obs_shape:  # datasets store HWC; the replay stores what the env gives
            obs = obs.transpose(0, 3, 1, 2) if obs.shape[1:] == tuple(np.roll(self.obs_shape, -1)) else obs
        if obs.shape[1:] != self.obs_shape:
            raise ValueError(f"episode frames {episode['obs'].shape[1:]} do not fit the replay's {self.obs_shape}")
        for t in range(len(obs)):
            self.add_row(env, obs[t], episode["action"][t], float(episode["reward"][t]), bool(episode["is_first"][t]),
                         bool(episode["is_last"][t]), bool(episode["is_terminal"][t]))  # fmt: skip

    # -- reading -------------------------------------------------------------------------------
    def size(self) -> int:
        return int(self.counts.sum())

    def _logical(self, env: int) -> np.ndarray:
        """Physical row indices of ``env``'s ring, oldest first."""
        count, pos = self.counts[env], self.positions[env]
        start = pos - count if count < self.capacity else pos
        return (start + np.arange(count)) % self.capacity

    def _valid_starts(self, env: int, order: np.ndarray, length: int) -> np.ndarray:
        """Logical start indices of windows of ``length`` rows inside one episode (``order`` = ``_logical(env)``)."""
        if self.storage is None or len(order) < length:
            return np.zeros(0, dtype=np.int64)
        first = self.storage["is_first"][env, order].astype(np.int64)
        # A window [s, s+length) is valid if no row after s starts an episode; the oldest rows of a
        # wrapped ring may begin mid-episode, which is fine (the window still lies inside one episode).
        cum = np.concatenate([[0], np.cumsum(first)])
        s = np.arange(len(order) - length + 1)
        return s[cum[s + length] - cum[s + 1] == 0]

    def sample_sequences(self, batch_size: int, length: int, rng: np.random.Generator | None = None) -> dict:
        """``batch_size`` windows of ``length`` rows, uniform over valid (env, start) pairs: (B, T, ...)."""
        rng = rng if rng is not None else np.random.default_rng()
        orders = [self._logical(e) for e in range(self.n_envs)]  # once per call, not per window
        starts = [self._valid_starts(e, orders[e], length) for e in range(self.n_envs)]
        sizes = np.array([len(s) for s in starts], dtype=np.float64)
        if sizes.sum() == 0:
            raise NoWindowError(f"the replay holds no window of {length} rows inside one episode yet "
                             f"({self.size()} rows stored); raise learning_starts")  # fmt: skip
        envs = rng.choice(self.n_envs, size=batch_size, p=sizes / sizes.sum())
        out = {k: [] for k in KEYS}
        for env in envs:
            s = starts[env][rng.integers(len(starts[env]))]
            rows = orders[env][s : s + length]
            for key in KEYS:
                out[key].append(self.storage[key][env, rows])
        return {k: np.stack(v) for k, v in out.items()}

    def episodes(self, env: int):
        """Yield the complete episodes (is_first … is_last) stored in ``env``'s ring, oldest first."""
        if self.storage is None:
            return
        order = self._logical(env)
        firsts = np.flatnonzero(self.storage["is_first"][env, order])
        for a in firsts:
            lasts = np.flatnonzero(self.storage["is_last"][env, order[a:]])
            if len(lasts) == 0:
                break
            rows = order[a : a + lasts[0] + 1]
            yield {k: self.storage[k][env, rows] for k in KEYS}

    # -- persistence ----------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        """Pickle (SB3's ``save_replay_buffer``) only the rows written so far: a ring that has not wrapped
        fills rows [0, count) of each env, so a buffer 10% full pickles 10% of its capacity."""
        state = self.__dict__.copy()
        if self.storage is not None:
            used = int(self.counts.max())
            state["storage"] = {k: v[:, :used] for k, v in self.storage.items()}
        return state

    def __setstate__(self, state: dict) -> None:
        state.setdefault("written", state["counts"].copy())  # pickled before the counter existed
        self.__dict__.update(state)
        stored = self.storage
        if stored is not None and stored["obs"].shape[1] < self.capacity:
            self._allocate()
            for key, value in stored.items():
                self.storage[key][:, : value.shape[1]] = value

    def save_hdf5(self, path: str | os.PathLike, **metadata) -> int:
        """Write every complete stored episode to an HDF5 dataset (atomically). Returns the count."""
        count = 0
        with EpisodeWriter(path, **metadata) as writer:
            for env in range(self.n_envs):
                for episode in self.episodes(env):
                    if episode["obs"].shape[-1] != 3:  # datasets hold (T, H, W, 3)
                        episode = {**episode, "obs": episode["obs"].transpose(0, 2, 3, 1)}
                    writer.add(episode)
                    count += 1
        return count

    def add_dataset(self, path: str | os.PathLike, max_episodes: int | None = None) -> int:
        """Prefill from an HDF5 dataset (episodes go round-robin to the envs' rings). Returns the count."""
        data = EpisodeDataset(Path(path))
        n = len(data) if max_episodes is None else min(max_episodes, len(data))
        for i in range(n):
            self.add_episode(data.episode(i), env=i % self.n_envs)
        return n
