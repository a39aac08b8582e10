"""Diagonal Gaussians, the head that produces them, and the KL estimator used by every prior."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from aime_agent.mlp import mlp

ESTIMATORS = ("exact", "sample", "bound")


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


def kl(q: DiagGaussian, p, z: Tensor | None = None, estimator: str = "exact", samples: int = 1) -> Tensor:
    """KL(q ‖ p) per row (N,).

    ``exact``: the closed form where torch has one (Gaussian–Gaussian), else ``sample``.
    ``sample``: the mean over ``samples`` draws z_s ~ q of log q(z_s) − log p(z_s); the first is ``z`` (the
    rollout's reparameterised sample) when given. Unbiased; single values can be negative, which is why
    free bits clip each row's mean over its S samples, never a single sample.
    ``bound``: a closed-form upper bound, for priors that have one (mixtures: ``p.kl_upper_bound``).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}; choose from {ESTIMATORS}")
    if estimator == "bound":
        if not hasattr(p, "kl_upper_bound"):
            raise ValueError(f"KL estimator 'bound' needs a mixture prior; {type(p).__name__} has no upper bound")
        return p.kl_upper_bound(q)
    if estimator == "exact" and isinstance(p, Distribution):  # a mixture prior is not one: no closed form
        try:
            return kl_divergence(q, p)
        except NotImplementedError:
            pass  # torch has no closed form for this pair: fall through to Monte Carlo
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    draws = [q.rsample() if z is None else z] + [q.rsample() for _ in range(samples - 1)]
    return torch.stack([q.log_prob(d) - p.log_prob(d) for d in draws]).mean(0)
