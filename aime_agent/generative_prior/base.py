"""Diagonal Gaussians, the head that produces them, and the KL estimator used by every prior."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent, Normal, kl_divergence

from aime_agent.mlp import mlp


class DiagGaussian(Independent):
    """N(μ, diag σ²) over the last dimension: batch shape (N,), event shape (Z,)."""

    def __init__(self, mean: Tensor, std: Tensor):
        super().__init__(Normal(mean, std, validate_args=False), 1, validate_args=False)

    @property
    def std(self) -> Tensor:
        return self.base_dist.scale

    def detach(self) -> DiagGaussian:
        return DiagGaussian(self.mean.detach(), self.std.detach())


class GaussianHead(nn.Module):
    """MLP → (μ, σ = softplus(·) + min_std) → ``DiagGaussian``: (N, inp) → distribution over (N, out)."""

    def __init__(self, inp: int, out: int, hidden: int, min_std: float = 0.1, layers: int = 1):
        super().__init__()
        self.net = mlp(inp, 2 * out, hidden, layers)
        self.min_std = min_std

    def forward(self, x: Tensor) -> DiagGaussian:
        mean, raw = self.net(x).float().chunk(2, dim=-1)
        return DiagGaussian(mean, F.softplus(raw) + self.min_std)


def kl(q: DiagGaussian, p, z: Tensor | None = None, estimator: str = "exact") -> Tensor:
    """KL(q ‖ p) per row (N,).

    ``exact``: the closed form where torch has one (Gaussian–Gaussian), else Monte Carlo.
    ``sample``: log q(z) − log p(z) at ``z`` (a reparameterised sample of q; drawn if None). Its mean is
    the KL; single values can be negative, which is why free bits apply to batch means only.
    """
    if estimator not in ("exact", "sample"):
        raise ValueError(f"unknown KL estimator {estimator!r}; use 'exact' or 'sample'")
    if estimator == "exact":
        try:
            return kl_divergence(q, p)
        except NotImplementedError:
            pass  # no closed form for this pair: fall through to Monte Carlo
    if z is None:
        z = q.rsample()
    return q.log_prob(z) - p.log_prob(z)
