"""The Stiefel-orthogonal LSTM and the DPGMM prior inside the world model: manifold, optimizer, checkpoints."""

from __future__ import annotations

import io

import geoopt
import numpy as np
import pytest
import torch

from aime_agent.config import preset
from aime_agent.temporal_dynamics import StiefelLSTMCell
from aime_agent.world_model import WorldModel, make_optimizer, train_step


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return WorldModel(preset("tiny", **overrides), action_dim=1)


def test_recurrent_matrix_stays_orthonormal_through_world_model_training(cartpole_batch):
    model = tiny_model(cell="lstm_stiefel")
    assert isinstance(model.cell, StiefelLSTMCell)
    optimizer = make_optimizer(model, model.config)
    assert isinstance(optimizer, geoopt.optim.RiemannianAdam)
    start = model.cell.w_h.weight.detach().clone()
    first = None
    for _ in range(200):
        metrics, _ = train_step(model, optimizer, cartpole_batch)
        first = metrics["recon_mse"] if first is None else first
    w = model.cell.w_h.weight.detach()
    assert model.cell.orthogonality_error() < 1e-4  # ‖WᵀW − I‖_F
    # it moved, on the manifold. RiemannianAdam normalises by the whole matrix's squared gradient norm (geoopt's
    # component_inner on Stiefel is one inner product), so a step moves W by at most about lr (1e-3) in Frobenius norm.
    assert w.shape == (4 * 32, 32) and torch.linalg.matrix_norm(w - start) > 0.01
    assert metrics["recon_mse"] < 0.5 * first  # and the model trained


def test_plain_adam_would_leave_the_manifold(cartpole_batch):
    """The control: the same training with torch's Adam breaks orthogonality, so the test above can fail."""
    model = tiny_model(cell="lstm_stiefel")
    optimizer = torch.optim.Adam(model.parameters(), lr=model.config.train.lr)
    for _ in range(20):
        train_step(model, optimizer, cartpole_batch)
    assert model.cell.orthogonality_error() > 1e-3


def test_checkpoints_hold_plain_tensors_and_round_trip(cartpole_batch):
    model = tiny_model(cell="lstm_stiefel", prior="dpgmm")
    optimizer = make_optimizer(model, model.config)
    for _ in range(3):
        train_step(model, optimizer, cartpole_batch)
    state = model.state_dict()
    assert all(type(v) is torch.Tensor for v in state.values())
    buffer = io.BytesIO()
    torch.save({"model": state, "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    fresh = tiny_model(seed=5, cell="lstm_stiefel", prior="dpgmm")
    fresh.load_state_dict(loaded["model"])
    assert isinstance(fresh.cell.w_h.weight, geoopt.ManifoldParameter)
    make_optimizer(fresh, fresh.config).load_state_dict(loaded["optimizer"])
    model.eval()
    fresh.eval()
    torch.manual_seed(0)
    a, _ = model.open_loop(cartpole_batch, context=3)
    torch.manual_seed(0)
    b, _ = fresh.open_loop(cartpole_batch, context=3)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("estimator", ["exact", "sample", "bound"])
def test_dpgmm_world_model_loss_has_named_finite_terms(cartpole_batch, estimator):
    model = tiny_model(prior="dpgmm", prior_components=4, kl_estimator=estimator, kl_samples=2)
    total, metrics, out = model.loss(cartpole_batch)
    for key in ("wm_loss", "kl", "stick_kl", "alpha_kl", "prior_k_eff", "prior_alpha", "prior_used", "prior_usage_3"):
        assert np.isfinite(metrics[key]), key
    assert 1.0 <= metrics["prior_k_eff"] <= 4.0
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.prior.net[-1].weight.grad.abs().sum() > 0
    traj = model.imagine(out["last"], lambda f: torch.tanh(f[:, :1]), horizon=4)  # sticks → component → z
    assert torch.isfinite(traj["feat"]).all()


def test_agent_with_dpgmm_and_stiefel_saves_and_loads(tmp_path):
    import zipfile

    import envs
    from aime_agent import AIME

    env = envs.make("cartpole-balance", render_quality="fast", max_env_steps=40, seed=0)
    model = AIME("CnnPolicy", env, preset="tiny", seed=0, learning_starts=24, train_freq=4, prior="dpgmm",
                 cell="lstm_stiefel")  # fmt: skip
    model.learn(48)
    assert isinstance(model.policy.wm_optimizer, geoopt.optim.RiemannianAdam) and model._n_updates > 0
    assert model.policy.world_model.cell.orthogonality_error() < 1e-4
    model.save(tmp_path / "aime.zip")
    obs = env.reset(seed=3)[0]
    before, _ = model.predict(obs, deterministic=True)
    loaded = AIME.load(tmp_path / "aime.zip")
    after, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(before, after)
    with zipfile.ZipFile(tmp_path / "aime.zip") as zf:
        for name in (n for n in zf.namelist() if n.endswith(".pth")):
            with zf.open(name) as f:
                torch.load(f, weights_only=True)
