"""Known answers for the DPGMM prior (stick-breaking, stick and concentration terms, mixture KL, numerics)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Beta, Gamma, kl_divergence

from aime_agent.generative_prior import DiagGaussian, DPGMMPrior, GaussianMixture, kl
from aime_agent.generative_prior.sticks import (
    concentration_kl,
    expected_log_weights,
    log_stick_breaking,
    sample_log_sticks,
    stick_breaking,
    stick_terms,
)


def within_4_se(samples: torch.Tensor, expected: float) -> None:
    mean, se = samples.mean().item(), samples.std().item() / math.sqrt(samples.numel())
    assert abs(mean - expected) <= 4 * se, f"Monte Carlo {mean:.5f} ± {se:.5f} vs {expected:.5f}"


# -- stick-breaking ------------------------------------------------------------------------------
def test_stick_weights_hand_computed():
    k = 6
    half = stick_breaking(torch.full((k - 1,), 0.5, dtype=torch.float64))
    expected = torch.tensor([2.0**-i for i in range(1, k)] + [2.0 ** -(k - 1)], dtype=torch.float64)
    torch.testing.assert_close(half, expected)  # π_k = 2^−k, the last takes the remainder 2^−(K−1)
    cut = stick_breaking(torch.tensor([0.3, 1.0, 0.4, 0.9], dtype=torch.float64))
    torch.testing.assert_close(cut, torch.tensor([0.3, 0.7, 0.0, 0.0, 0.0], dtype=torch.float64))


def test_stick_weights_are_a_distribution_and_log_space_agrees_with_linear():
    v = torch.rand(1000, 7, dtype=torch.float64).clamp(1e-3, 1 - 1e-3)
    weights = stick_breaking(v)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(1000, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(log_stick_breaking(v.log(), torch.log1p(-v)).exp(), weights, atol=1e-12, rtol=0)
    a, b = torch.rand(50, 7, dtype=torch.float64) * 3 + 0.1, torch.rand(50, 7, dtype=torch.float64) * 3 + 0.1
    # E[π] of independent sticks = stick_breaking(E[v])
    torch.testing.assert_close(expected_log_weights(a, b).exp(), stick_breaking(a / (a + b)))


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_remainder_mean_matches_the_dp_prior(alpha):
    k, n = 8, 200_000
    torch.manual_seed(0)
    log_v, log_1mv = sample_log_sticks(torch.ones(k - 1), torch.full((k - 1,), alpha), torch.Size([n]))
    remainder = log_stick_breaking(log_v, log_1mv)[:, -1].exp().double()
    within_4_se(remainder, (alpha / (1 + alpha)) ** (k - 1))  # Sethuraman 1994: E[Π(1 − v_j)]


def test_log_stick_samples_follow_the_beta_distribution():
    torch.manual_seed(0)
    a, b = torch.tensor([0.7, 2.0, 1.0]), torch.tensor([3.0, 0.5, 1.0])
    log_v, _ = sample_log_sticks(a, b, torch.Size([200_000]))
    v = log_v.exp().double()
    for j in range(3):
        within_4_se(v[:, j], (a[j] / (a[j] + b[j])).item())
        within_4_se(log_v[:, j].double(), (torch.digamma(a[j]) - torch.digamma(a[j] + b[j])).item())


# -- stick and concentration terms ---------------------------------------------------------------
def test_stick_term_matches_monte_carlo():
    torch.manual_seed(0)
    a, b, w1, w2 = torch.tensor(1.7, dtype=torch.float64), torch.tensor(0.6, dtype=torch.float64), 3.0, 2.0
    closed = stick_terms(a, b, torch.tensor(w1, dtype=torch.float64), torch.tensor(w2, dtype=torch.float64))
    n = 400_000
    v = Beta(a, b).sample((n,)).clamp(1e-12, 1 - 1e-12)
    alpha = Gamma(torch.tensor(w1, dtype=torch.float64), torch.tensor(w2, dtype=torch.float64)).sample((n,))
    log_p = alpha.log() + (alpha - 1) * torch.log1p(-v)  # log Beta(v; 1, α)
    within_4_se(Beta(a, b).log_prob(v) - log_p, closed.item())


def test_stick_term_is_the_beta_kl_when_alpha_is_known():
    """As q(α) → δ(α₀) (w₁ = w₂·α₀ → ∞) the stick term → KL(Beta(a, b) ‖ Beta(1, α₀))."""
    a, b = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64), torch.tensor([3.0, 0.2, 1.0], dtype=torch.float64)
    alpha0, w2 = 2.5, torch.tensor(1e9, dtype=torch.float64)
    term = stick_terms(a, b, w2 * alpha0, w2)
    exact = kl_divergence(Beta(a, b), Beta(torch.ones_like(a), torch.full_like(b, alpha0)))
    torch.testing.assert_close(term, exact, atol=1e-6, rtol=1e-6)


def test_concentration_kl_matches_the_gamma_formula_and_monte_carlo():
    w1, w2, a0, b0 = torch.tensor(3.0, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64), 1.5, 2.0
    formula = ((w1 - a0) * torch.digamma(w1) - torch.lgamma(w1) + math.lgamma(a0) + a0 * (torch.log(w2) - math.log(b0))
               + w1 * (b0 - w2) / w2)  # fmt: skip
    torch.testing.assert_close(concentration_kl(w1, w2, a0, b0), formula)
    torch.manual_seed(0)
    x = Gamma(w1, w2).sample((200_000,))
    p = Gamma(torch.tensor(a0, dtype=torch.float64), torch.tensor(b0, dtype=torch.float64))
    within_4_se(Gamma(w1, w2).log_prob(x) - p.log_prob(x), formula.item())


# -- mixture KL ----------------------------------------------------------------------------------
def test_one_component_mixture_kl_is_the_gaussian_closed_form():
    torch.manual_seed(0)
    q = DiagGaussian(torch.randn(5, 4, dtype=torch.float64), torch.rand(5, 4, dtype=torch.float64) + 0.3)
    mean, std = torch.randn(5, 1, 4, dtype=torch.float64), torch.rand(5, 1, 4, dtype=torch.float64) + 0.3
    mixture = GaussianMixture(torch.zeros(5, 1, dtype=torch.float64), mean, std)
    exact = kl_divergence(q, DiagGaussian(mean[:, 0], std[:, 0]))
    torch.testing.assert_close(mixture.kl_upper_bound(q), exact)
    z = q.sample((50_000,))
    mc = q.log_prob(z) - mixture.log_prob(z)  # (S, 5)
    for row in range(5):
        within_4_se(mc[:, row], exact[row].item())


def test_monte_carlo_mixture_kl_stays_below_the_variational_upper_bound():
    torch.manual_seed(1)
    for _ in range(5):
        n, k, d = 4, 5, 3
        q = DiagGaussian(torch.randn(n, d, dtype=torch.float64), torch.rand(n, d, dtype=torch.float64) + 0.2)
        mixture = GaussianMixture(torch.randn(n, k, dtype=torch.float64).log_softmax(-1),
                                  2 * torch.randn(n, k, d, dtype=torch.float64),
                                  torch.rand(n, k, d, dtype=torch.float64) + 0.3)  # fmt: skip
        z = q.sample((20_000,))
        mc = q.log_prob(z) - mixture.log_prob(z)
        bound = mixture.kl_upper_bound(q)
        convexity = (
            mixture.log_weights.exp()
            * kl_divergence(
                DiagGaussian(q.mean.unsqueeze(1), q.std.unsqueeze(1)), DiagGaussian(mixture.means, mixture.stds)
            )
        ).sum(-1)
        se = mc.std(0) / math.sqrt(z.shape[0])
        assert (mc.mean(0) - 4 * se <= bound).all()
        assert (bound <= convexity + 1e-9).all()  # the variational bound is the tighter of the two


def test_kl_estimators_agree_on_a_dpgmm_prior():
    torch.manual_seed(0)
    prior = DPGMMPrior(deter=6, stoch=3, hidden=16, components=4).double()
    n = 20_000  # 3 rows, each repeated n times: every copy draws its own sticks and z
    dist = prior(torch.randn(3, 6, dtype=torch.float64).repeat(n, 1))
    mean = torch.randn(3, 3, dtype=torch.float64).repeat(n, 1)
    q = DiagGaussian(mean, torch.full_like(mean, 0.5))
    mc = kl(q, dist, estimator="sample").view(n, 3)
    bound = kl(q, dist, estimator="bound").view(n, 3).mean(0)
    assert kl(q, dist, estimator="exact").isfinite().all()  # no closed form: falls back to Monte Carlo
    assert (mc.mean(0) - 4 * mc.std(0) / math.sqrt(n) <= bound).all()
    with pytest.raises(ValueError, match="needs a mixture prior"):
        kl(q, DiagGaussian(torch.zeros(3, 3), torch.ones(3, 3)), estimator="bound")


def test_every_kl_estimator_gives_the_closed_form_when_all_components_coincide():
    """K identical components make the mixture one Gaussian N(μ, σ²), whatever the sticks: the Monte Carlo
    estimate and the variational bound both equal the closed-form Gaussian KL."""
    from aime_agent.generative_prior.dpgmm import DPGMMDistribution

    torch.manual_seed(0)
    n, k, z, draws = 4, 5, 3, 20_000
    f64 = {"dtype": torch.float64}
    mu, sigma = torch.randn(n, 1, z, **f64), torch.rand(n, 1, z, **f64) + 0.5
    a, b = torch.rand(n, k - 1, **f64) + 0.5, torch.rand(n, k - 1, **f64) + 0.5
    one = torch.tensor(1.0, **f64)
    dist = DPGMMDistribution(a, b, mu.expand(n, k, z), sigma.expand(n, k, z), one, one)
    q = DiagGaussian(torch.randn(n, z, **f64), torch.rand(n, z, **f64) + 0.3)
    exact = kl(q, DiagGaussian(mu[:, 0], sigma[:, 0]), estimator="exact")
    torch.testing.assert_close(kl(q, dist, estimator="bound"), exact, rtol=1e-10, atol=1e-10)
    # Monte Carlo: each row repeated `draws` times, every copy with its own sticks and z; within 4 standard errors
    rep = DPGMMDistribution(a.repeat(draws, 1), b.repeat(draws, 1), mu.expand(n, k, z).repeat(draws, 1, 1),
                            sigma.expand(n, k, z).repeat(draws, 1, 1), one, one)  # fmt: skip
    mc = kl(DiagGaussian(q.mean.repeat(draws, 1), q.std.repeat(draws, 1)), rep, estimator="sample").view(draws, n)
    assert ((mc.mean(0) - exact).abs() <= 4 * mc.std(0) / math.sqrt(draws)).all()


# -- numerics ------------------------------------------------------------------------------------
def test_float32_sticks_at_beta_1_0p05_are_finite_with_finite_gradients():
    torch.manual_seed(0)
    a = torch.full((100_000, 7), 1.0, requires_grad=True)
    b = torch.full((100_000, 7), 0.05, requires_grad=True)
    log_v, log_1mv = sample_log_sticks(a, b)
    log_w = log_stick_breaking(log_v, log_1mv)
    assert log_v.dtype == torch.float32 and torch.isfinite(log_w).all()
    # 1 − v ~ Beta(0.05, 1): P(1 − v < δ) = δ^0.05 exactly. torch's float32 Beta pins ~42% of draws at
    # 1 − 2⁻²⁴; here the tail is right down to the clamp at 1e-30.
    for delta in (1e-3, 1e-6, 1e-20, 1.0001e-30):
        within_4_se((log_1mv < math.log(delta)).double(), delta**0.05)
    torch.testing.assert_close(log_w.exp().sum(-1), torch.ones(100_000), atol=1e-5, rtol=0)
    (log_w.exp() * torch.randn_like(log_w)).sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


@pytest.mark.parametrize("a", [0.01, 0.1, 1.0, 100.0, 1e4])
@pytest.mark.parametrize("b", [0.01, 0.1, 1.0, 100.0, 1e4])
def test_no_nan_or_inf_at_extreme_concentrations(a, b):
    torch.manual_seed(0)
    ta, tb = torch.full((2000, 3), a, requires_grad=True), torch.full((2000, 3), b, requires_grad=True)
    log_w = log_stick_breaking(*sample_log_sticks(ta, tb))
    terms = stick_terms(ta, tb, torch.tensor(2.0), torch.tensor(0.5))
    (log_w.exp().sum() + terms.sum() + expected_log_weights(ta, tb).sum()).backward()
    for t in (log_w, terms, ta.grad, tb.grad):
        assert torch.isfinite(t).all()


def test_dpgmm_prior_is_finite_at_extreme_inputs():
    torch.manual_seed(0)
    prior = DPGMMPrior(deter=8, stoch=4, hidden=16, components=5)
    h = torch.randn(64, 8) * 1e3
    dist = prior(h)
    q = DiagGaussian(torch.randn(64, 4) * 1e2, torch.full((64, 4), 1e-2))
    loss = kl(q, dist, estimator="sample").mean() + kl(q, dist, estimator="bound").mean() + prior.regularizer(dist)[0]
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(dist.rsample()).all() and torch.isfinite(dist.mean).all()
    assert all(torch.isfinite(p.grad).all() for p in prior.parameters())


# -- adaptation: K_eff follows the number of modes -----------------------------------------------
def _sequences(modes: int, n: int, steps: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(h_t, z_{t+1}) pairs of sequences z_{t+1} = 0.5 z_t + c_m + 0.05 ε, m ~ U{1..modes}: the next latent
    has exactly ``modes`` modes whatever the past."""
    corners = torch.tensor([[2.0, 2, 0, 0], [-2, 2, 0, 0], [2, -2, 0, 0], [-2, -2, 0, 0]])
    offsets = corners[:modes] if modes > 1 else torch.zeros(1, 4)
    z, hs, zs = torch.randn(n, 4, generator=gen), [], []
    for _ in range(steps):
        nxt = 0.5 * z + offsets[torch.randint(modes, (n,), generator=gen)] + 0.05 * torch.randn(n, 4, generator=gen)
        hs.append(z)
        zs.append(nxt)
        z = nxt
    return torch.cat(hs), torch.cat(zs)


def _trained_k_eff(modes: int) -> float:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    h, z = _sequences(modes, 256, 16, gen)
    prior = DPGMMPrior(deter=4, stoch=4, hidden=32, components=8, alpha_prior=(0.2, 1.0))  # the default hyperprior
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    for _ in range(800):
        idx = torch.randint(len(h), (512,), generator=gen)
        dist = prior(h[idx])
        post = DiagGaussian(z[idx], torch.full_like(z[idx], 0.05))
        loss = kl(post, dist, estimator="sample").mean() + prior.regularizer(dist)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return prior.stats(prior(h))["prior_k_eff"]


def test_k_eff_adapts_to_the_number_of_modes():
    from aime_agent.config import ModelConfig

    assert (ModelConfig.alpha_shape, ModelConfig.alpha_rate) == (0.2, 1.0)
    one, four = _trained_k_eff(1), _trained_k_eff(4)
    assert one <= 2.0 and one <= 0.6 * four, f"K_eff: {one:.2f} for 1 mode, {four:.2f} for 4 modes"


def test_concentration_update_is_the_coordinate_ascent_optimum():
    """q(α) after ``regularizer`` minimises stick terms + KL(q(α) ‖ p(α)) over (w₁, w₂): a grid finds nothing lower."""
    torch.manual_seed(0)
    prior = DPGMMPrior(deter=4, stoch=2, hidden=8, components=5, alpha_prior=(0.5, 2.0)).double()
    dist = prior(torch.randn(64, 4, dtype=torch.float64))
    prior.regularizer(dist)  # training mode: moves q(α) to its optimum for this batch
    w1, w2 = prior.concentration_posterior()

    def objective(a, b):
        return stick_terms(dist.a, dist.b, a, b).sum(-1).mean() + concentration_kl(a, b, 0.5, 2.0)

    best = objective(w1, w2)
    for f1 in (0.8, 0.95, 1.05, 1.25):
        for f2 in (0.8, 0.95, 1.05, 1.25):
            assert objective(w1 * f1, w2 * f2) > best


def test_loss_under_no_grad_changes_no_buffer(cartpole_batch):
    """Evaluation (``loss`` under no_grad in train mode: pretrain evaluation, image logging) leaves q(α) and the
    input standardiser alone; a training step moves them."""
    from aime_agent.config import preset
    from aime_agent.world_model import WorldModel

    torch.manual_seed(0)
    model = WorldModel(preset("tiny", prior="dpgmm"), action_dim=1).train()
    before = {k: v.clone() for k, v in model.named_buffers()}
    assert any("prior" in k for k in before)
    with torch.no_grad():
        model.loss(cartpole_batch)
    for key, value in model.named_buffers():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)
    model.loss(cartpole_batch)
    changed = {k for k, v in model.named_buffers() if not torch.equal(v, before[k])}
    assert any("prior" in k for k in changed) and any("input_norm" in k for k in changed), changed
