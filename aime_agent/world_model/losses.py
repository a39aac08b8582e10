"""KL balancing with per-step free bits (DreamerV3, Hafner et al. 2023, eq. 5 and its code).

    L_dyn = mean_{b,t} max(free, KL(sg(q_bt) ‖ p_bt))     trains the prior (weight 0.5)
    L_rep = mean_{b,t} max(free, KL(q_bt ‖ sg(p_bt)))     trains the posterior (weight 0.1)

Each step's KL is clipped on its own, so steps already below ``free`` nats stop pulling while the others
still train the prior. (Clipping the batch mean instead gives the prior no gradient anywhere once the mean
is below ``free``.) For the "sg(p)" half the prior's parameters (π, μ_k, σ_k) are detached while z stays
differentiable. A Monte Carlo value is clipped after averaging its S samples (``kl`` returns that mean):
a single-sample estimate can be negative, and clipping samples one by one would bias it upward.
"""

from __future__ import annotations

from torch import Tensor

from aime_agent.generative_prior import kl


def balanced_kl(post, prior, z: Tensor, free_nats: float, estimator: str = "exact",
                samples: int = 1) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Return (L_dyn, L_rep, raw mean KL) for posteriors ``post`` and priors ``prior`` over N rows.

    ``z`` (N, Z) is the posterior sample used by the rollout (the Monte Carlo estimator evaluates it).
    """
    dyn = kl(post.detach(), prior, z.detach(), estimator, samples)  # (N,)
    rep = kl(post, prior.detach(), z, estimator, samples)  # (N,)
    return dyn.clamp(min=free_nats).mean(), rep.clamp(min=free_nats).mean(), dyn.detach().mean()
