"""Priors p(z_t | h_t) behind one interface, and KL estimators to a diagonal Gaussian posterior.

A prior is an ``nn.Module`` mapping h (N, deter) to a distribution over z (N, stoch) with ``rsample``,
``log_prob`` (N,) and ``detach``; ``kl(q, p)`` is exact where a closed form exists, Monte Carlo
otherwise. The diagonal Gaussian prior is the first implementation; the DPGMM prior plugs in here.
"""

from aime_agent.generative_prior.base import DiagGaussian, GaussianHead, kl
from aime_agent.generative_prior.gaussian import GaussianPrior

PRIORS = {"gaussian": GaussianPrior}


def make_prior(name: str, deter: int, stoch: int, hidden: int, min_std: float):
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; choose from {sorted(PRIORS)}")
    return PRIORS[name](deter, stoch, hidden, min_std)


__all__ = ["DiagGaussian", "GaussianHead", "GaussianPrior", "PRIORS", "kl", "make_prior"]
