"""The diagonal Gaussian prior p(z_t | h_t) = N(μ(h_t), diag σ(h_t)²) (PlaNet/Dreamer V1)."""

from __future__ import annotations

from torch import Tensor, nn

from aime_agent.generative_prior.base import DiagGaussian, GaussianHead


class GaussianPrior(nn.Module):
    """(N, deter) → ``DiagGaussian`` over (N, stoch)."""

    def __init__(self, deter: int, stoch: int, hidden: int, min_std: float = 0.1):
        super().__init__()
        self.head = GaussianHead(deter, stoch, hidden, min_std)

    def forward(self, h: Tensor) -> DiagGaussian:
        return self.head(h)

    def regularizer(self, dist: DiagGaussian) -> tuple[Tensor, dict[str, float]]:
        """Extra prior terms of the loss: none for a Gaussian."""
        return dist.mean.new_zeros(()), {}

    def stats(self, dist: DiagGaussian) -> dict[str, float]:
        """Scalars to log for a batch of prior distributions."""
        return {"prior_std": dist.std.detach().mean().item()}
