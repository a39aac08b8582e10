"""SB3's ``ReplayBuffer`` with its image observations held on the torch device (for SAC on a GPU).

SB3's buffer keeps observations in host memory: every SAC update gathers a batch of 256 × 9 × 64 × 64
uint8 observations (and as many next observations) with numpy and copies ~19 MB to the GPU, which bounds
pixel SAC's speed on a GPU machine more than its gradient steps do. This subclass stores the same arrays as
one uint8 tensor on ``device`` (100k × 9 × 64 × 64 = 3.7 GB) and gathers there. Everything else is SB3's:
the same indices, the same random draws (``sample`` and the env-index draw are inherited), the same
``optimize_memory_usage`` layout (the next observation is the following row), so a run differs from SB3's
only in where the bytes live. Tested against SB3's buffer in tests/test_benchmark_suite.py.

    SAC("CnnPolicy", env, replay_buffer_class=DeviceReplayBuffer, optimize_memory_usage=True,
        replay_buffer_kwargs={"handle_timeout_termination": False})
"""

from __future__ import annotations

import numpy as np
import torch as th
from stable_baselines3.common.buffers import ReplayBuffer


class DeviceReplayBuffer(ReplayBuffer):
    """``observations`` (and ``next_observations``): (buffer_size, n_envs, *obs_shape) tensors on ``device``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # its numpy observation arrays are never written, so never paged in
        dtype = th.from_numpy(np.empty(0, dtype=self.observation_space.dtype)).dtype
        self.observations = th.zeros(self.observations.shape, dtype=dtype, device=self.device)
        if not self.optimize_memory_usage:
            self.next_observations = th.zeros_like(self.observations)

    def add(self, obs, next_obs, action, reward, done, infos) -> None:
        """As ``ReplayBuffer.add`` for image (Box) observations, writing the observations to the device."""
        obs, next_obs = (th.as_tensor(np.asarray(x)).reshape(self.n_envs, *self.obs_shape) for x in (obs, next_obs))
        self.observations[self.pos] = obs.to(self.device)
        if self.optimize_memory_usage:
            self.observations[(self.pos + 1) % self.buffer_size] = next_obs.to(self.device)
        else:
            self.next_observations[self.pos] = next_obs.to(self.device)
        self.actions[self.pos] = np.array(action).reshape((self.n_envs, self.action_dim))
        self.rewards[self.pos] = np.array(reward)
        self.dones[self.pos] = np.array(done)
        if self.handle_timeout_termination:
            self.timeouts[self.pos] = np.array([info.get("TimeLimit.truncated", False) for info in infos])
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full, self.pos = True, 0

    def to_torch(self, array, copy: bool = True) -> th.Tensor:
        """The inherited ``_get_samples`` indexes the observation tensors with numpy index arrays, so their
        batch is gathered on the device and arrives here as a tensor (a fresh one): it stays where it is."""
        if isinstance(array, th.Tensor):
            return array.to(self.device)
        return super().to_torch(array, copy)
