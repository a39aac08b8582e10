"""The encoder's input standardiser: exact running moments, identity before data, when it updates, and old
checkpoints' configs (saved before the field existed) keep it off."""

from __future__ import annotations

import torch

from aime_agent.config import AIMEConfig, preset
from aime_agent.encoder_decoder import PixelStandardizer
from aime_agent.world_model import WorldModel


def test_identity_before_any_update():
    norm = PixelStandardizer(image_size=4)
    x = torch.rand(5, 3, 4, 4) - 0.5
    torch.testing.assert_close(norm(x), x)


def test_running_moments_equal_the_moments_of_all_frames_seen():
    torch.manual_seed(0)
    norm = PixelStandardizer(image_size=4, eps=0.0)
    chunks = [torch.rand(n, 3, 4, 4) * (i + 1) for i, n in enumerate((7, 1, 20))]  # unequal sizes and spreads
    for c in chunks:
        norm.update(c)
    frames = torch.cat(chunks).double()
    mean = frames.mean(0)
    sigma = frames.var(0, unbiased=False).mean().sqrt()  # the root of the per-pixel variances' mean
    assert norm.count.item() == 28
    torch.testing.assert_close(norm.mean.double(), mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(norm.scale.double(), sigma, rtol=1e-5, atol=0)
    # Hence the standardised frames have mean 0 per pixel and a mean per-pixel variance of exactly 1.
    y = norm(frames.float()).double()
    torch.testing.assert_close(y.mean(0), torch.zeros_like(mean), rtol=0, atol=1e-5)
    one = torch.tensor(1.0, dtype=torch.float64)
    torch.testing.assert_close(y.var(0, unbiased=False).mean(), one, rtol=1e-5, atol=0)


def test_hand_computed_two_frames():
    """Frames all −0.5 and all +0.5: μ = 0, per-pixel variance 0.25, σ = 0.5 ⇒ the frames map to ∓1."""
    norm = PixelStandardizer(image_size=2, eps=0.0)
    x = torch.stack([torch.full((3, 2, 2), -0.5), torch.full((3, 2, 2), 0.5)])
    norm.update(x[:1])
    norm.update(x[1:])
    torch.testing.assert_close(norm.scale, torch.tensor(0.5))
    torch.testing.assert_close(norm(x), torch.stack([-torch.ones(3, 2, 2), torch.ones(3, 2, 2)]))


def test_world_model_updates_statistics_only_on_training_steps(cartpole_batch):
    torch.manual_seed(0)
    model = WorldModel(preset("tiny"), action_dim=1)
    b, t = cartpole_batch["obs"].shape[:2]
    with torch.no_grad():
        model.loss(cartpole_batch)  # evaluation (no gradients): unchanged
    model.eval()
    model.loss(cartpole_batch)  # eval mode: unchanged
    assert model.input_norm.count.item() == 0
    model.train()
    model.loss(cartpole_batch)
    assert model.input_norm.count.item() == b * t
    # The statistics travel with the weights.
    clone = WorldModel(preset("tiny"), action_dim=1)
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone.input_norm.mean, model.input_norm.mean)


def test_configs_saved_before_the_field_keep_the_old_behaviour():
    saved = preset("tiny").to_dict()
    del saved["model"]["input_norm"]  # a checkpoint written before input standardisation existed
    assert AIMEConfig.from_dict(saved).model.input_norm is False
    assert WorldModel(AIMEConfig.from_dict(saved), action_dim=1).input_norm is None
    # A hand-written partial section gets the defaults, the new field included.
    assert AIMEConfig.from_dict({"model": {"deter": 64}}).model.input_norm is True
    assert preset("small").model.input_norm is True
