"""Reward head (symlog two-hot, DreamerV3) and continue head (Bernoulli) on the feature [h, z]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aime_agent.distributions import TwoHot
from aime_agent.mlp import mlp


class RewardHead(nn.Module):
    """(N, F) → logits over ``bins`` symlog bins; ``predict`` gives E[r]. Output layer starts at zero."""

    def __init__(self, feat_dim: int, hidden: int, layers: int = 1, bins: int = 255):
        super().__init__()
        self.net = mlp(feat_dim, bins, hidden, layers)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.twohot = TwoHot(bins)

    def forward(self, feat: Tensor) -> Tensor:
        return self.net(feat)

    def loss(self, feat: Tensor, reward: Tensor) -> Tensor:
        return self.twohot.loss(self(feat), reward)

    def predict(self, feat: Tensor) -> Tensor:
        return self.twohot.decode(self(feat))


class ContinueHead(nn.Module):
    """(N, F) → logit of c = 1 − is_terminal (DMC ends by time limit only: c stays 1 on truncation)."""

    def __init__(self, feat_dim: int, hidden: int, layers: int = 1):
        super().__init__()
        self.net = mlp(feat_dim, 1, hidden, layers)

    def forward(self, feat: Tensor) -> Tensor:
        return self.net(feat).squeeze(-1)

    def loss(self, feat: Tensor, cont: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(self(feat).float(), cont.float(), reduction="none")

    def predict(self, feat: Tensor) -> Tensor:
        return torch.sigmoid(self(feat))
