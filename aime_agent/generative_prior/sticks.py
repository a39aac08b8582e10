"""Truncated stick-breaking with Beta sticks and a Gamma concentration (Sethuraman 1994; Blei & Jordan 2006).

K components use K − 1 sticks v_1..v_{K−1} ∈ (0, 1); the last component takes the remainder, so Σπ = 1:

    log π_k = log v_k + Σ_{j<k} log(1 − v_j)   (k < K),      log π_K = Σ_{j<K} log(1 − v_j)

Prior: v_k ~ Beta(1, α), α ~ Gamma(a₀, b₀) (shape, rate). Variational: q(v_k) = Beta(a_k, b_k), q(α) = Gamma(w₁, w₂).
Per stick, closed form (Blei & Jordan 2006, §4; E_q[log α] = ψ(w₁) − log w₂, E_q[α] = w₁/w₂, and
E_q[log(1 − v)] = ψ(b) − ψ(a + b)):

    stick_term_k = E_q[log q(v_k) − log p(v_k | α)]
                 = −H[Beta(a_k, b_k)] − (ψ(w₁) − log w₂) − (w₁/w₂ − 1)(ψ(b_k) − ψ(a_k + b_k))

plus KL(Gamma(w₁, w₂) ‖ Gamma(a₀, b₀)) once (torch's closed form).

Numerics. torch's Beta sampler in float32 returns v = 1 − 2⁻²⁴ for ~42% of Beta(1, 0.05) draws, and even
float64 pins ~16% of them at 1, so log(1 − v) cannot be formed from v. ``sample_log_sticks`` draws the
two Gammas behind a Beta (v = X/(X+Y), X ~ Γ(a), Y ~ Γ(b)) in float64 and takes

    log v = log X − log(X + Y),     log(1 − v) = log Y − log(X + Y)

which never cancels; both are clamped to ≥ log ε with ε = 1e-30 (v ∈ [ε, 1 − ε], still a normal float32
after exp). The clamp is a true tail cut, not a rounding artefact: for Beta(1, b), P(1 − v < ε) = ε^b,
which is 0.50 at ε = 1e-6 but 0.03 at 1e-30 when b = 0.05. Gradients are the implicit
reparameterisation of ``torch.distributions.Gamma.rsample``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Beta, Gamma, kl_divergence

LOG_EPS = -69.07755278982137  # log(1e-30): v and 1 − v are kept ≥ 1e-30


def stick_breaking(v: Tensor) -> Tensor:
    """Linear-space weights (..., K) from sticks v (..., K − 1); the last weight is the remainder."""
    one = torch.ones_like(v[..., :1])
    remain = torch.cumprod(torch.cat([one, 1 - v], -1), -1)  # Π_{j<k} (1 − v_j), k = 1..K
    return torch.cat([v, one], -1) * remain


def log_stick_breaking(log_v: Tensor, log_1mv: Tensor) -> Tensor:
    """Log-space weights log π (..., K) from log v and log(1 − v) (..., K − 1)."""
    zero = torch.zeros_like(log_v[..., :1])
    log_remain = torch.cumsum(torch.cat([zero, log_1mv], -1), -1)
    return torch.cat([log_v, zero], -1) + log_remain


def sample_log_sticks(a: Tensor, b: Tensor, sample_shape: tuple[int, ...] = ()) -> tuple[Tensor, Tensor]:
    """Reparameterised (log v, log(1 − v)) for v ~ Beta(a, b), each (*sample_shape, ...) in a's dtype."""
    dtype = a.dtype
    sample_shape = torch.Size(sample_shape)
    log_x = Gamma(a.double(), torch.ones_like(a, dtype=torch.float64)).rsample(sample_shape).clamp_min(1e-300).log()
    log_y = Gamma(b.double(), torch.ones_like(b, dtype=torch.float64)).rsample(sample_shape).clamp_min(1e-300).log()
    log_sum = torch.logaddexp(log_x, log_y)
    return (log_x - log_sum).clamp_min(LOG_EPS).to(dtype), (log_y - log_sum).clamp_min(LOG_EPS).to(dtype)


def expected_log_weights(a: Tensor, b: Tensor) -> Tensor:
    """log E_q[π] (..., K) for independent sticks q(v_k) = Beta(a_k, b_k): E[π_k] = E[v_k] Π_{j<k} E[1 − v_j]."""
    log_total = torch.log(a + b)
    return log_stick_breaking(torch.log(a) - log_total, torch.log(b) - log_total)


def expected_log_1mv(a: Tensor, b: Tensor) -> Tensor:
    """E_q[log(1 − v)] = ψ(b) − ψ(a + b) for v ~ Beta(a, b)."""
    return torch.digamma(b) - torch.digamma(a + b)


def stick_terms(a: Tensor, b: Tensor, w1: Tensor, w2: Tensor) -> Tensor:
    """E_q[log q(v_k) − log p(v_k | α)] per stick (..., K − 1), with q(α) = Gamma(w₁, w₂) (see module doc)."""
    e_log_alpha = torch.digamma(w1) - torch.log(w2)
    return -Beta(a, b).entropy() - e_log_alpha - (w1 / w2 - 1) * expected_log_1mv(a, b)


def concentration_kl(w1: Tensor, w2: Tensor, a0: float, b0: float) -> Tensor:
    """KL(Gamma(w₁, w₂) ‖ Gamma(a₀, b₀)), closed form."""
    return kl_divergence(Gamma(w1, w2), Gamma(torch.full_like(w1, a0), torch.full_like(w2, b0)))
