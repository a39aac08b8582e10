"""Priors p(z_t | h_t) behind one interface, and KL estimators to a diagonal Gaussian posterior.

A prior is an ``nn.Module`` mapping h (N, deter) to a distribution over z (N, stoch) with ``rsample``,
``log_prob`` (N,), ``mean`` and ``detach``; ``regularizer(dist)`` returns the prior's own loss terms
(the DPGMM's stick and concentration KLs) and ``stats(dist)`` its scalars to log. ``kl(q, p)`` is exact
where a closed form exists, Monte Carlo otherwise, or a closed-form upper bound for mixtures.
"""

from aime_agent.generative_prior.base import ESTIMATORS, DiagGaussian, GaussianHead, kl
from aime_agent.generative_prior.dpgmm import DPGMMDistribution, DPGMMPrior, GaussianMixture
from aime_agent.generative_prior.gaussian import GaussianPrior

PRIORS = {"gaussian": GaussianPrior, "dpgmm": DPGMMPrior}


def make_prior(model):
    """The prior named by ``model.prior`` (a ``ModelConfig``)."""
    if model.prior not in PRIORS:
        raise ValueError(f"unknown prior {model.prior!r}; choose from {sorted(PRIORS)}")
    if model.prior == "dpgmm":
        return DPGMMPrior(model.deter, model.stoch, model.hidden, model.min_std, model.prior_components,
                          model.prior_min_concentration, (model.alpha_shape, model.alpha_rate))  # fmt: skip
    return GaussianPrior(model.deter, model.stoch, model.hidden, model.min_std)


__all__ = ["ESTIMATORS", "DPGMMDistribution", "DPGMMPrior", "DiagGaussian", "GaussianHead", "GaussianMixture",
           "GaussianPrior", "PRIORS", "kl", "make_prior"]  # fmt: skip
