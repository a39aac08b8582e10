"""LPIPS (encoder_decoder/perceptual.py): offline weights, known invariances, and the world model's term."""

from __future__ import annotations

import pytest
import torch

from aime_agent.config import preset
from aime_agent.encoder_decoder.perceptual import BACKBONE_FILE, LINEAR_FILE, LPIPS, alexnet_features
from aime_agent.world_model import WorldModel, make_aggregator


def test_identical_images_are_at_zero_and_the_distance_is_symmetric_and_positive():
    torch.manual_seed(0)
    lpips = LPIPS(pretrained=False)
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(lpips(x, x), torch.zeros(2))
    assert torch.allclose(lpips(x, y), lpips(y, x)) and (lpips(x, y) > 0).all()


def test_the_distance_ignores_a_positive_rescaling_of_the_scaled_input_when_the_backbone_has_no_bias():
    """Without biases conv/ReLU/max-pool are positively homogeneous, so doubling the scaled input doubles every
    feature, and unit-normalised features (hence the distance) do not change."""
    torch.manual_seed(0)
    lpips = LPIPS(pretrained=False)
    for layer in lpips.features:
        if isinstance(layer, torch.nn.Conv2d):
            layer.bias.zero_()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    doubled = lpips.shift + 2 * (x - lpips.shift)  # (doubled − shift) / scale = 2 · (x − shift) / scale
    assert lpips(x, doubled).abs().max().item() < 1e-5
    assert lpips(x, x + 0.3).min().item() > 1e-4  # a shift is no rescaling: it is seen


def test_weights_load_from_a_directory_and_a_missing_file_names_itself(tmp_path):
    torch.manual_seed(0)
    backbone = {f"features.{k}": v for k, v in alexnet_features().state_dict().items()}
    backbone["classifier.1.weight"] = torch.zeros(1)  # torchvision's file has more: ignored
    channels = (64, 192, 384, 256, 256)
    linear = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(channels)}
    with pytest.raises(FileNotFoundError, match=BACKBONE_FILE) as error:
        LPIPS(tmp_path)
    assert LINEAR_FILE in str(error.value) and "download.pytorch.org" in str(error.value)
    torch.save(backbone, tmp_path / BACKBONE_FILE)
    with pytest.raises(FileNotFoundError, match=LINEAR_FILE):
        LPIPS(tmp_path)
    torch.save(linear, tmp_path / LINEAR_FILE)
    lpips = LPIPS(tmp_path)
    assert torch.equal(lpips.features[0].weight, backbone["features.0.weight"])
    assert torch.equal(lpips.linear[4], linear["lin4.model.1.weight"])
    assert not any(p.requires_grad for p in lpips.parameters())
    with pytest.raises(ValueError, match="LPIPS compares"):
        lpips(torch.zeros(1, 3, 64, 64), torch.zeros(1, 1, 64, 64))


def test_the_world_model_term_reaches_the_decoder_is_its_own_task_and_is_not_saved(cartpole_batch):
    cfg = preset("tiny", **{"loss.perceptual": 0.5, "loss.perceptual_pretrained": False})
    model = WorldModel(cfg, cartpole_batch["action"].shape[-1])
    assert "perceptual" in model.loss_terms and "perceptual" in make_aggregator(model).tasks
    assert not any("perceptual" in k or "features" in k for k in model.state_dict())
    _, _, out = model.loss(cartpole_batch)
    (grad,) = torch.autograd.grad(out["terms"]["perceptual"], [model.decoder.net[-1].weight])
    assert grad.abs().sum() > 0
    with pytest.raises(FileNotFoundError, match="LPIPS needs its weights"):
        WorldModel(preset("tiny", **{"loss.perceptual": 0.5, "loss.perceptual_weights": "/nonexistent"}), 1)
