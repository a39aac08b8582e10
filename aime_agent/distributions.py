"""Likelihoods and value encodings shared by the world model and the actor-critic.

* ``gaussian_log_prob``: log N(x; μ, σ²) summed over event dimensions (the decoder's unit-variance
  image likelihood, Dreamer's choice: a learned per-pixel σ lets the NLL run to −∞).
* ``symlog`` / ``symexp`` and ``TwoHot``: DreamerV3's (Hafner et al. 2023, §"Robust predictions")
  symlog two-hot categorical for rewards and values: bins equally spaced in symlog space, the
  target spread over its two neighbouring bins so that the expectation recovers it exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(x: Tensor, mean: Tensor, std: Tensor | float = 1.0, event_dims: int = 0) -> Tensor:
    """log N(x; mean, std²), summed over the last ``event_dims`` dimensions."""
    std = torch.as_tensor(std, dtype=mean.dtype, device=mean.device)
    logp = -0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * LOG_2PI
    return logp.sum(dim=tuple(range(-event_dims, 0))) if event_dims else logp


def symlog(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class TwoHot:
    """Symlog two-hot encoding over ``bins`` equally spaced bins in [-limit, limit] (symlog space).

    ``encode(y)`` → (..., bins) target weights; ``decode(logits)`` → E[y] = symexp(Σ softmax·bins);
    ``loss(logits, y)`` → cross-entropy against the two-hot target.
    """

    def __init__(self, bins: int = 255, limit: float = 20.0):
        if bins < 2 or bins % 2 == 0:
            raise ValueError(f"bins must be odd and >= 3 so that 0 is a bin, got {bins}")
        self.bins, self.limit = bins, limit

    def points(self, like: Tensor) -> Tensor:
        return torch.linspace(-self.limit, self.limit, self.bins, device=like.device, dtype=torch.float32)

    def encode(self, y: Tensor) -> Tensor:
        points = self.points(y)
        x = symlog(y.float()).clamp(-self.limit, self.limit)
        step = points[1] - points[0]
        pos = ((x + self.limit) / step).clamp(0, self.bins - 1)
        below = pos.floor().long().clamp(max=self.bins - 2)
        w_above = pos - below
        target = torch.zeros(*x.shape, self.bins, device=y.device)
        target.scatter_(-1, below.unsqueeze(-1), (1 - w_above).unsqueeze(-1))
        target.scatter_add_(-1, (below + 1).unsqueeze(-1), w_above.unsqueeze(-1))
        return target

    def decode(self, logits: Tensor) -> Tensor:
        return symexp((F.softmax(logits.float(), -1) * self.points(logits)).sum(-1))

    def loss(self, logits: Tensor, y: Tensor) -> Tensor:
        """Cross-entropy per element (shape of ``y``)."""
        return -(self.encode(y) * F.log_softmax(logits.float(), -1)).sum(-1)
