"""KL balancing with free bits (DreamerV3, Hafner et al. 2023, eq. 5).

    L_dyn = max(free, mean_{b,t} KL(sg(q) ‖ p))     trains the prior (weight 0.5)
    L_rep = max(free, mean_{b,t} KL(q ‖ sg(p)))     trains the posterior (weight 0.1)

For the "sg(p)" half the prior's parameters (π, μ_k, σ_k) are detached while z stays differentiable.
Free bits clip the *batch mean*, never single values: Monte Carlo KL values of single samples can be
negative, and clipping them one by one would bias the estimate upward.
"""

from __future__ import annotations

from torch import Tensor

from aime_agent.generative_prior import kl


def balanced_kl(post, prior, z: Tensor, free_nats: float, estimator: str = "exact",
                samples: int = 1) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Return (L_dyn, L_rep, raw mean KL) for posteriors ``post`` and priors ``prior`` over N rows.

    ``z`` (N, Z) is the posterior sample used by the rollout (the Monte Carlo estimator evaluates it).
    """
    dyn = kl(post.detach(), prior, z.detach(), estimator, samples).mean()
    rep = kl(post, prior.detach(), z, estimator, samples).mean()
    return dyn.clamp(min=free_nats), rep.clamp(min=free_nats), dyn.detach()
