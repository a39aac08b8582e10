"""The actor π(a | s): a bounded Normal over continuous actions in [−1, 1] (DreamerV3's continuous head).

    mean = tanh(m(s)),  std = (σ_max − σ_min)·sigmoid(ŝ(s) + 2) + σ_min,  a ~ N(mean, diag std²)

Samples go to the environment clipped to [−1, 1]; log-probabilities (REINFORCE) and the entropy
bonus use the unclipped Normal, whose entropy is closed form. ``mode`` = tanh(m(s)).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from aime_agent.mlp import mlp


class Actor(nn.Module):
    """(N, F) → ``Independent(Normal)`` over (N, A)."""

    def __init__(self, feat_dim: int, action_dim: int, hidden: int, layers: int = 2, min_std: float = 0.1,
                 max_std: float = 1.0):  # fmt: skip
        super().__init__()
        self.net = mlp(feat_dim, 2 * action_dim, hidden, layers)
        self.min_std, self.max_std = min_std, max_std

    def forward(self, feat: Tensor) -> Independent:
        mean, raw_std = self.net(feat).float().chunk(2, dim=-1)
        std = (self.max_std - self.min_std) * torch.sigmoid(raw_std + 2.0) + self.min_std
        return Independent(Normal(torch.tanh(mean), std, validate_args=False), 1, validate_args=False)

    def act(self, feat: Tensor, deterministic: bool) -> Tensor:
        """An action for the environment: the mode, or a sample clipped to [−1, 1]."""
        dist = self(feat)
        return dist.mean if deterministic else dist.sample().clamp(-1.0, 1.0)
