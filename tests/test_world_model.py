"""World-model core: known answers (exact ELBO, KL balancing), causality, resets, imagination, learning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aime_agent.config import preset
from aime_agent.distributions import gaussian_log_prob
from aime_agent.generative_prior import DiagGaussian, kl
from aime_agent.world_model import LatentState, WorldModel, balanced_kl


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return WorldModel(preset("tiny", **overrides), action_dim=1)


def test_exact_posterior_gives_elbo_equal_to_log_evidence_on_every_sample():
    """Linear-Gaussian toy: p(z) = N(0, I), p(x|z) = N(w⊙z, s²I) ⇒ p(x) = N(0, w² + s²)."""
    torch.manual_seed(0)
    w, s = torch.tensor([1.5, -0.7, 2.0], dtype=torch.float64), 0.8
    x = torch.randn(6, 3, dtype=torch.float64) * 2
    log_px = gaussian_log_prob(x, torch.zeros_like(x), torch.sqrt(w**2 + s**2), event_dims=1)
    prior = DiagGaussian(torch.zeros_like(x), torch.ones_like(x))
    var = s**2 / (w**2 + s**2)
    exact = DiagGaussian(w * x / (w**2 + s**2), torch.sqrt(var).expand_as(x))
    for _ in range(20):
        z = exact.rsample()
        elbo = gaussian_log_prob(x, w * z, s, event_dims=1) - kl(exact, prior, z, estimator="sample")
        torch.testing.assert_close(elbo, log_px, atol=1e-5, rtol=0)
    # Any other posterior: the mean ELBO (closed-form KL) is lower, by exactly KL(q ‖ exact posterior).
    other = DiagGaussian(exact.mean + 0.3, exact.std * 1.5)
    z = other.rsample((20000,))
    elbo = gaussian_log_prob(x, w * z, s, event_dims=1) - kl(other, prior, estimator="exact")
    gap = kl(other, exact, estimator="exact")
    se = elbo.std(0) / math.sqrt(20000)
    assert (elbo.mean(0) < log_px).all()
    assert ((elbo.mean(0) - (log_px - gap)).abs() < 4 * se).all()


def test_kl_balancing_and_free_bits_hand_computed():
    """Two rows, p = N(0, 1); q1 = N(1, 1) has KL 0.5, q2 = N(1, 2²) has KL (4 − ln 4)/2 = 1.3068528.
    Their mean (0.9034) is below 1 nat, yet per-step free bits keep row 2's gradient (DreamerV3)."""
    prior_mean = torch.zeros(2, 1, requires_grad=True)
    post_mean = torch.tensor([[1.0], [1.0]], requires_grad=True)
    prior = DiagGaussian(prior_mean, torch.ones(2, 1))
    post = DiagGaussian(post_mean, torch.tensor([[1.0], [2.0]]))
    z = post.rsample()
    kl2 = 0.5 * (4 - math.log(4))
    dyn, rep, raw = balanced_kl(post, prior, z, free_nats=1.0)
    assert raw.item() == pytest.approx((0.5 + kl2) / 2, abs=1e-6)
    assert dyn.item() == pytest.approx((1.0 + kl2) / 2, abs=1e-6) and rep.item() == pytest.approx(dyn.item())
    dyn.backward(retain_graph=True)  # L_dyn trains the prior only; row 1 is clipped: d/dμ_p = [0, (0 − 1)/2]
    torch.testing.assert_close(prior_mean.grad, torch.tensor([[0.0], [-0.5]]))
    assert post_mean.grad is None or post_mean.grad.abs().sum() == 0
    rep.backward()  # L_rep trains the posterior only: d/dμ_q = [0, (1 − 0)/2]
    torch.testing.assert_close(post_mean.grad, torch.tensor([[0.0], [0.5]]))
    torch.testing.assert_close(prior_mean.grad, torch.tensor([[0.0], [-0.5]]))
    prior_mean.grad, post_mean.grad = None, None
    dyn, rep, _ = balanced_kl(post, prior, z, free_nats=2.0)  # both rows below the free bits
    assert dyn.item() == rep.item() == 2.0
    (0.5 * dyn + 0.1 * rep).backward()
    assert prior_mean.grad.abs().sum() == 0 and post_mean.grad.abs().sum() == 0


def observe(model, batch, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.observe(model.preprocess(batch))
    return out, out["prior"].mean.view(*out["deter"].shape[:2], -1), out["prior"].std.view(*out["deter"].shape[:2], -1)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_future_frames_do_not_change_the_past(cartpole_batch, cell):
    model = tiny_model(cell=cell)
    out, prior_mean, prior_std = observe(model, cartpole_batch)
    perturbed = {k: v.copy() for k, v in cartpole_batch.items()}
    perturbed["obs"][:, 5:] = 255 - perturbed["obs"][:, 5:]
    perturbed["action"][:, 6:] = -perturbed["action"][:, 6:] + 0.5
    out2, prior_mean2, prior_std2 = observe(model, perturbed)
    for key in ("post_mean", "post_std", "rnn", "stoch"):
        torch.testing.assert_close(out[key][:, :5], out2[key][:, :5], atol=0, rtol=0)
        assert not torch.equal(out[key][:, 5:], out2[key][:, 5:])
    torch.testing.assert_close(prior_mean[:, :6], prior_mean2[:, :6], atol=0, rtol=0)  # prior at 5: h_5 only
    torch.testing.assert_close(prior_std[:, :6], prior_std2[:, :6], atol=0, rtol=0)


def test_outputs_after_is_first_ignore_earlier_inputs(cartpole_batch):
    model = tiny_model()
    batch = {k: v.copy() for k, v in cartpole_batch.items()}
    batch["is_first"][:, 4] = True
    batch["action"][:, 4] = 0.0
    out, prior_mean, _ = observe(model, batch)
    perturbed = {k: v.copy() for k, v in batch.items()}
    perturbed["obs"][:, :4] = 255 - perturbed["obs"][:, :4]
    perturbed["action"][:, :4] = 0.9
    out2, prior_mean2, _ = observe(model, perturbed)
    for key in ("post_mean", "rnn", "stoch"):
        torch.testing.assert_close(out[key][:, 4:], out2[key][:, 4:], atol=0, rtol=0)
    torch.testing.assert_close(prior_mean[:, 4:], prior_mean2[:, 4:], atol=0, rtol=0)
    init = model.cell.initial(2)
    torch.testing.assert_close(model.cell.reset(out["rnn"][:, 3], torch.tensor([True, False]))[0], init[0])


def test_imagine_runs_without_frames():
    model = tiny_model()

    def no_frames(*args, **kwargs):
        raise AssertionError("imagination touched the encoder")

    model.encoder.forward = no_frames
    start = model.initial(3)
    start = LatentState(start.rnn + 0.1 * torch.randn_like(start.rnn), torch.randn(3, 8))
    out = model.imagine(start, lambda feat: torch.tanh(feat[:, :1]), horizon=6)
    assert out["feat"].shape == (7, 3, model.feat_dim) and out["action"].shape == (6, 3, 1)
    torch.testing.assert_close(out["feat"][0], model.feat(start))
    assert torch.isfinite(out["feat"]).all()


def test_tiny_preset_learns_to_reconstruct_a_fixed_batch(cartpole_batch):
    model = tiny_model(seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=model.config.train.lr)
    first = None
    for _ in range(300):
        loss, metrics, _ = model.loss(cartpole_batch)
        first = metrics["recon_mse"] if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        _, final, _ = model.loss(cartpole_batch)
    assert final["recon_mse"] <= 0.2 * first, (first, final["recon_mse"])
    assert np.isfinite(list(final.values())).all()


@pytest.mark.parametrize("prior", ["gaussian", "dpgmm"])
def test_loss_returns_named_finite_terms(cartpole_batch, prior):
    model = tiny_model(prior=prior)
    total, metrics, out = model.loss(cartpole_batch)
    for key in ("wm_loss", "recon", "recon_mse", "kl", "kl_dyn_loss", "kl_rep_loss", "reward", "cont"):
        assert np.isfinite(metrics[key]), key
    cfg = model.config.loss
    prior_reg = metrics.get("stick_kl", 0.0) + metrics.get("alpha_kl", 0.0)  # the DPGMM's own regulariser
    expected = (cfg.recon * metrics["recon"] + cfg.kl_dyn * (metrics["kl_dyn_loss"] + prior_reg)
                + cfg.kl_rep * metrics["kl_rep_loss"] + cfg.reward * metrics["reward"]
                + cfg.cont * metrics["cont"])  # fmt: skip
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert (prior == "dpgmm") == ("stick_kl" in metrics)
    assert out["feat"].shape == (2, 8, model.feat_dim)
    total.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("cell.init"))


@pytest.mark.parametrize("fraction", [1.0, 0.25])
def test_recon_loss_decodes_a_random_subset_and_its_mse_is_exact(cartpole_batch, fraction):
    """decode_fraction f decodes ⌈f·B·T⌉ rows drawn by randperm; the NLL is their mean −log N(x; Dec, I) and
    the MSE, derived from it in closed form, equals the mean squared error of those rows."""
    model = tiny_model(decode_fraction=fraction)
    inputs = model.preprocess(cartpole_batch)
    with torch.no_grad():
        feat = model.observe(inputs)["feat"]
        torch.manual_seed(3)
        nll, mse = model.recon_loss(feat, inputs["image"])
        rows = 2 * 8
        torch.manual_seed(3)
        index = torch.randperm(rows)[: math.ceil(fraction * rows)] if fraction < 1 else torch.arange(rows)
        assert len(index) == (4 if fraction < 1 else 16)
        mean = model.decode(feat.flatten(0, 1)[index])
        image = inputs["image"].flatten(0, 1)[index]
    sq = (mean - image).pow(2)
    assert mse == pytest.approx(sq.mean().item(), rel=1e-3)
    expected = 0.5 * sq.sum((1, 2, 3)) + 0.5 * 3 * 64 * 64 * math.log(2 * math.pi)
    assert nll.item() == pytest.approx(expected.mean().item(), rel=1e-5)


def test_a_window_starts_as_an_episode_start(cartpole_batch):
    """A window from mid-episode (is_first false, a real action on row 0) is observed exactly as the same
    frames with row 0 marked is_first: the learned initial state and a zero action, as acting sees it."""
    model = tiny_model()
    mid = {k: np.array(v) for k, v in cartpole_batch.items()}
    mid["is_first"][:, 0] = False
    mid["action"][:, 0] = 0.7
    first = {**mid, "is_first": mid["is_first"].copy(), "action": mid["action"].copy()}
    first["is_first"][:, 0], first["action"][:, 0] = True, 0.0
    a, b = observe(model, mid)[0], observe(model, first)[0]
    torch.testing.assert_close(a["rnn"], b["rnn"])
    torch.testing.assert_close(a["post_mean"], b["post_mean"])


def test_open_loop_shapes_and_context_reconstructions(cartpole_batch):
    model = tiny_model()
    pred, true = model.open_loop(cartpole_batch, context=3)
    assert pred.shape == true.shape == (2, 8, 3, 64, 64)
    assert 0 <= pred.min() and pred.max() <= 1 and 0 <= true.min() and true.max() <= 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.pop("reward"), r"missing keys \['reward'\]"),
        (lambda b: b.update(obs=b["obs"].astype(np.float32)), r"batch\['obs'\] must be uint8"),
        (lambda b: b.update(action=np.zeros((2, 8, 3), np.float32)), r"batch\['action'\] must be float \(B, T, 1\)"),
        (lambda b: b.update(is_first=b["is_first"].astype(int)), r"batch\['is_first'\] must be bool"),
        (lambda b: b.update(reward=b["reward"][:, :5]), r"batch\['reward'\] has leading shape \(2, 5\)"),
        (lambda b: b.update(obs=b["obs"][..., :32, :, :]), r"batch\['obs'\] frames must be"),
        (lambda b: b.update(reward=b["reward"][..., None]), r"batch\['reward'\] must have 2 dims"),
    ],
)
def test_bad_batches_name_the_key(cartpole_batch, change, message):
    batch = {k: v.copy() for k, v in cartpole_batch.items()}
    change(batch)
    with pytest.raises((KeyError, TypeError, ValueError), match=message):
        tiny_model().loss(batch)


def test_channel_first_batches_are_accepted(cartpole_batch):
    model = tiny_model()
    chw = dict(cartpole_batch, obs=np.ascontiguousarray(cartpole_batch["obs"].transpose(0, 1, 4, 2, 3)))
    a, b = model.preprocess(cartpole_batch), model.preprocess(chw)
    torch.testing.assert_close(a["image"], b["image"])


def test_bf16_without_bf16_units_runs_fp32_and_warns_once(cartpole_batch, monkeypatch):
    import aime_agent.world_model.world_model as wm_module

    monkeypatch.setattr(wm_module, "_bf16_units", lambda device_type: False)
    monkeypatch.setattr(wm_module, "_WARNED", set())
    fp32, bf16 = tiny_model(), tiny_model(autocast_bf16=True)
    image = fp32.preprocess(cartpole_batch)["image"]
    with pytest.warns(UserWarning, match="no bf16 units: running fp32") as record:
        torch.testing.assert_close(bf16.embed(image), fp32.embed(image), rtol=0, atol=0)
        bf16.embed(image)
    assert len(record) == 1
