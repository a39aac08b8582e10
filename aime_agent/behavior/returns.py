"""λ-returns and DreamerV3's percentile return normalisation.

Trajectory convention (the batch schema's): states s_0..s_H; reward r_k and continue flag c_k are
predicted AT s_k (the reward received on arriving there), so the return from s_k starts with r_{k+1}:

    R^λ_k = r_{k+1} + γ c_{k+1} [(1 − λ) v(s_{k+1}) + λ R^λ_{k+1}],   R^λ_H = v(s_H)

(Sutton & Barto eq. 12.3 in recursive form; Hafner et al. 2020, eq. 6). λ = 0 gives the one-step TD
target r_{k+1} + γ c_{k+1} v(s_{k+1}); λ = 1 the discounted reward sum plus the discounted bootstrap.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def lambda_returns(reward: Tensor, cont: Tensor, value: Tensor, gamma: float, lam: float) -> Tensor:
    """reward, cont, value: (H+1, N) at s_0..s_H → returns (H, N) for s_0..s_{H−1}."""
    if not reward.shape == cont.shape == value.shape or reward.ndim < 1 or reward.shape[0] < 2:
        raise ValueError(f"reward, cont, value must share a shape (H+1, ...) with H >= 1; got "
                         f"{tuple(reward.shape)}, {tuple(cont.shape)}, {tuple(value.shape)}")  # fmt: skip
    discount = gamma * cont[1:]
    next_value = value[1:]
    returns = [value[-1]]
    for k in reversed(range(reward.shape[0] - 1)):
        returns.append(reward[k + 1] + discount[k] * ((1 - lam) * next_value[k] + lam * returns[-1]))
    return torch.stack(returns[1:][::-1])


class ReturnNormalizer(nn.Module):
    """S = max(1, P95 − P5) of λ-returns, both percentiles tracked by an EMA (rate 0.01; DreamerV3).

    Advantages are divided by S: returns of large scale are squashed, small ones are not amplified.
    The EMAs are buffers, so they travel with the policy's state dict.
    """

    def __init__(self, rate: float = 0.01, low: float = 0.05, high: float = 0.95, limit: float = 1.0):
        super().__init__()
        self.rate, self.low, self.high, self.limit = rate, low, high, limit
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, returns: Tensor) -> Tensor:
        """Update the EMAs with a batch of returns; return the current scale S (a scalar tensor)."""
        flat = returns.detach().float().flatten()
        lo, hi = torch.quantile(flat, self.low), torch.quantile(flat, self.high)
        rate = 1.0 if self.count == 0 else self.rate
        self.lo.lerp_(lo, rate)
        self.hi.lerp_(hi, rate)
        self.count += 1
        return self.scale()

    def scale(self) -> Tensor:
        if self.count == 0:
            return torch.ones((), device=self.lo.device)
        return torch.clamp(self.hi - self.lo, min=self.limit)
