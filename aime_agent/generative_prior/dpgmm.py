"""The DPGMM prior: a truncated Dirichlet-process Gaussian mixture conditioned on h (AIME's namesake).

    p(z_t | h_t) = Σ_k π_k N(z_t; μ_k(h_t), diag σ_k(h_t)²),   k = 1..K
    π = stick_breaking(v),  v_k ~ q(v_k | h_t) = Beta(a_k(h_t), b_k(h_t)),   prior v_k ~ Beta(1, α)
    α ~ q(α) = Gamma(w₁, w₂): ONE global concentration (a DP has one), hyperprior Gamma(a₀, b₀) from the config.

The state-conditioned sticks ARE the conditional prior: imagination samples v from q(v | h), then a
component, then z. The stick terms (``sticks.py``) regularise q(v | h) toward the DP and q(α) toward
its hyperprior; ``regularizer`` returns their batch mean plus KL(q(α) ‖ p(α)) counted once per batch.

KL(q(z) ‖ p(z | h)) has no closed form (Hershey & Olsen 2007). ``kl`` in ``base.py`` estimates it by
Monte Carlo, log q(z) − log Σ_k π_k N_k(z) with fresh sticks per sample (an unbiased estimate of
E_v E_z, the hierarchical ELBO's term), or by the variational upper bound
−log Σ_k π_k exp(−KL(q ‖ N_k)) (``estimator="bound"``).

Shapes: N rows, K components, Z = stoch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Normal

from aime_agent.generative_prior.base import DiagGaussian
from aime_agent.generative_prior.sticks import (
    concentration_kl,
    expected_log_1mv,
    expected_log_weights,
    log_stick_breaking,
    sample_log_sticks,
    stick_terms,
)
from aime_agent.mlp import mlp

LOG_MAX_CONCENTRATION = 8.0  # a, b ≤ min + e⁸ ≈ 3000


def concentration(raw: Tensor, floor: float) -> Tensor:
    """Beta concentrations floor + exp(8·tanh(raw/8)): log-parameterised, so Adam's roughly constant steps
    move them multiplicatively (a sharp stick, a + b ~ 100, is reachable in hundreds of updates, not
    tens of thousands as with softplus), and smoothly bounded (NVAE's soft clamp, Vahdat & Kautz 2020)."""
    return floor + torch.exp(LOG_MAX_CONCENTRATION * torch.tanh(raw / LOG_MAX_CONCENTRATION))


class GaussianMixture:
    """Σ_k π_k N(μ_k, diag σ_k²) with given weights: log_weights (N, K), mean and std (N, K, Z)."""

    def __init__(self, log_weights: Tensor, means: Tensor, stds: Tensor):
        self.log_weights, self.means, self.stds = log_weights, means, stds

    def component_log_prob(self, z: Tensor) -> Tensor:
        """log N_k(z) (..., N, K) for z (..., N, Z)."""
        return Normal(self.means, self.stds, validate_args=False).log_prob(z.unsqueeze(-2)).sum(-1)

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) (..., N), by logsumexp over components."""
        return torch.logsumexp(self.log_weights + self.component_log_prob(z), -1)

    def rsample(self) -> Tensor:
        """z (N, Z): a component k ~ Cat(π) (no gradient to π), then μ_k + σ_k ε (reparameterised)."""
        k = Categorical(logits=self.log_weights.detach(), validate_args=False).sample()
        index = k[:, None, None].expand(-1, 1, self.means.shape[-1])
        mean, std = self.means.gather(1, index)[:, 0], self.stds.gather(1, index)[:, 0]
        return mean + std * torch.randn_like(mean)

    @property
    def mean(self) -> Tensor:
        """Σ_k π_k μ_k (N, Z)."""
        return torch.einsum("nk,nkz->nz", self.log_weights.exp(), self.means)

    def kl_upper_bound(self, q: DiagGaussian) -> Tensor:
        """−log Σ_k π_k exp(−KL(q ‖ N_k)) (N,) ≥ KL(q ‖ mixture) (Hershey & Olsen 2007)."""
        q_mean, q_var = q.mean.unsqueeze(-2), q.std.pow(2).unsqueeze(-2)
        var = self.stds.pow(2)
        kl_k = 0.5 * (q_var / var + (q_mean - self.means).pow(2) / var - 1 + var.log() - q_var.log()).sum(-1)
        return -torch.logsumexp(self.log_weights - kl_k, -1)


class DPGMMDistribution:
    """p(z | h) for N rows: sticks Beta(a, b) (N, K−1), components (N, K, Z), q(α) = Gamma(w₁, w₂)."""

    def __init__(self, a: Tensor, b: Tensor, means: Tensor, stds: Tensor, w1: Tensor, w2: Tensor):
        self.a, self.b, self.means, self.stds, self.w1, self.w2 = a, b, means, stds, w1, w2

    def mixture(self, sample: bool = True) -> GaussianMixture:
        """The mixture with sticks drawn from q(v | h) (reparameterised) or with the expected weights E_q[π]."""
        if sample:
            log_weights = log_stick_breaking(*sample_log_sticks(self.a, self.b))
        else:
            log_weights = expected_log_weights(self.a, self.b)
        return GaussianMixture(log_weights, self.means, self.stds)

    def rsample(self) -> Tensor:
        return self.mixture().rsample()

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z | v) with fresh sticks v ~ q(v | h): its mean over v is the hierarchical ELBO's term."""
        return self.mixture().log_prob(z)

    def kl_upper_bound(self, q: DiagGaussian) -> Tensor:
        return self.mixture().kl_upper_bound(q)

    @property
    def mean(self) -> Tensor:
        return self.mixture(sample=False).mean

    def expected_weights(self) -> Tensor:
        """E_q[π] (N, K)."""
        return expected_log_weights(self.a, self.b).exp()

    def stick_kl(self) -> Tensor:
        """Σ_k E_q[log q(v_k) − log p(v_k | α)] per row (N,)."""
        return stick_terms(self.a, self.b, self.w1, self.w2).sum(-1)

    def detach(self) -> DPGMMDistribution:
        return DPGMMDistribution(*(t.detach() for t in (self.a, self.b, self.means, self.stds, self.w1, self.w2)))


class DPGMMPrior(nn.Module):
    """(N, deter) → ``DPGMMDistribution`` over (N, stoch).

    components: K; min_std: floor of σ_k; min_concentration: floor of the Beta concentrations a, b
    (``concentration``; DESIGN.md: torch's Beta is unreliable below ~0.1); alpha_prior: (a₀, b₀).
    """

    def __init__(self, deter: int, stoch: int, hidden: int, min_std: float = 0.1, components: int = 8,
                 min_concentration: float = 0.1, alpha_prior: tuple[float, float] = (0.2, 1.0)):  # fmt: skip
        super().__init__()
        if components < 2:
            raise ValueError(f"a DPGMM prior needs at least 2 components, got {components}")
        a0, b0 = alpha_prior
        if not (a0 > 0 and b0 > 0):
            raise ValueError(f"the Gamma hyperprior of α needs positive (a0, b0), got {alpha_prior}")
        self.k, self.stoch, self.min_std, self.min_conc = components, stoch, min_std, min_concentration
        self.alpha_prior = (float(a0), float(b0))
        self.net = mlp(deter, 2 * components * stoch + 2 * (components - 1), hidden, 1)
        out = self.net[-1]
        n_means, n_comp = components * stoch, 2 * components * stoch
        with torch.no_grad():  # components start spread apart; sticks start near Beta(1, 1)
            out.bias[:n_means].normal_(0.0, 1.0)
            out.weight[n_comp:].mul_(0.1)
            out.bias[n_comp:].fill_(math.log(1.0 - min_concentration))
        # q(α) = Gamma(w₁, w₂), as if the sticks were Beta(1, 1) (E[log(1 − v)] = −1); see ``update_concentration``
        self.register_buffer("w", torch.tensor([a0 + components - 1, b0 + components - 1]))

    def concentration_posterior(self) -> tuple[Tensor, Tensor]:
        """(w₁, w₂) of q(α) = Gamma(w₁, w₂)."""
        return self.w[0], self.w[1]

    @torch.no_grad()
    def update_concentration(self, dist: DPGMMDistribution) -> None:
        """The closed-form coordinate-ascent step for q(α) (Blei & Jordan 2006, §4), given this batch's sticks:

            w₁ = a₀ + (K − 1),   w₂ = b₀ − mean_rows Σ_k E_q[log(1 − v_k)]

        It maximises −(mean_rows Σ_k stick_term_k + KL(q(α) ‖ p(α))) over q(α) exactly, which gradient
        steps on (w₁, w₂) would take thousands of updates to reach (w₂ grows like (K − 1)/α)."""
        e_log_1mv = expected_log_1mv(dist.a, dist.b).sum(-1).mean()
        a0, b0 = self.alpha_prior
        self.w.copy_(torch.stack([self.w.new_tensor(a0 + self.k - 1), b0 - e_log_1mv.to(self.w)]))

    def forward(self, h: Tensor) -> DPGMMDistribution:
        out = self.net(h).float()
        n_comp = 2 * self.k * self.stoch
        mean, raw_std = out[:, :n_comp].unflatten(-1, (2, self.k, self.stoch)).unbind(1)  # 2 × (N, K, Z)
        a, b = concentration(out[:, n_comp:], self.min_conc).chunk(2, -1)
        w1, w2 = self.concentration_posterior()
        return DPGMMDistribution(a, b, mean, F.softplus(raw_std) + self.min_std, w1, w2)

    def regularizer(self, dist: DPGMMDistribution) -> tuple[Tensor, dict[str, float]]:
        """mean_rows Σ_k stick_term_k + KL(q(α) ‖ Gamma(a₀, b₀)), the latter once per batch (DESIGN.md §2).

        Weighted so, the hyperprior is as strong as one row's sticks: where the likelihood does not care
        how the weight is split (all components alike), q(α) settles at its prior mean a₀/b₀ and the
        sticks follow Beta(1, α); rows that need several components pull α up. q(α) is not a parameter:
        in a training step (train mode with gradients on, as the input standardiser) this call moves it to
        its optimum for the batch (``update_concentration``); evaluation under ``no_grad`` leaves it alone.
        The KL(q(α) ‖ p(α)) term carries no gradient and is returned for logging."""
        stick = dist.stick_kl().mean()
        alpha = concentration_kl(dist.w1, dist.w2, *self.alpha_prior)
        if self.training and torch.is_grad_enabled():
            self.update_concentration(dist)
        return stick + alpha, {"stick_kl": stick.item(), "alpha_kl": alpha.item()}

    @torch.no_grad()
    def stats(self, dist: DPGMMDistribution) -> dict[str, float]:
        """K_eff = exp(H(E_q[π | h])) averaged over rows, E_q[α], the count of components whose mean weight
        is > 0.01, and each component's mean weight (``prior_usage_k``)."""
        weights = dist.expected_weights()
        entropy = -(weights * weights.clamp_min(1e-12).log()).sum(-1)
        usage = weights.mean(0)
        out = {"prior_k_eff": entropy.exp().mean().item(), "prior_alpha": (dist.w1 / dist.w2).item(),
               "prior_used": float((usage > 0.01).sum()), "prior_std": dist.stds.mean().item()}  # fmt: skip
        out.update({f"prior_usage_{k}": float(u) for k, u in enumerate(usage)})
        return out
