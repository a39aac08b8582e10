"""The critic v(s): a symlog two-hot categorical (DreamerV3), with a slow EMA copy for bootstrapping.

Loss: cross-entropy against the two-hot encoding of sg(R^λ), plus a regulariser toward the slow
critic's own prediction (DreamerV3's ``slowreg``). ``update_slow`` moves the slow copy toward the
online weights by ``rate`` (0.02) per update.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from aime_agent.distributions import TwoHot
from aime_agent.mlp import mlp


class Critic(nn.Module):
    def __init__(self, feat_dim: int, hidden: int, layers: int = 2, bins: int = 255):
        super().__init__()
        self.net = mlp(feat_dim, bins, hidden, layers)
        nn.init.zeros_(self.net[-1].weight)  # starts predicting 0
        nn.init.zeros_(self.net[-1].bias)
        self.twohot = TwoHot(bins)
        self.slow = copy.deepcopy(self.net).requires_grad_(False)

    def forward(self, feat: Tensor) -> Tensor:
        """Logits (..., bins)."""
        return self.net(feat)

    def value(self, feat: Tensor, slow: bool = False) -> Tensor:
        """E[v(s)] (...,) from the online or the slow network."""
        return self.twohot.decode((self.slow if slow else self.net)(feat))

    def loss(self, feat: Tensor, target: Tensor, slow_reg: float = 1.0) -> Tensor:
        """Per-element loss (...,): CE to sg(target) + slow_reg · CE to the slow critic's value."""
        logits = self(feat)
        loss = self.twohot.loss(logits, target.detach())
        if slow_reg:
            with torch.no_grad():
                slow_value = self.value(feat, slow=True)
            loss = loss + slow_reg * self.twohot.loss(logits, slow_value)
        return loss

    @torch.no_grad()
    def update_slow(self, rate: float) -> None:
        for slow, online in zip(self.slow.parameters(), self.net.parameters(), strict=True):
            slow.lerp_(online, rate)
