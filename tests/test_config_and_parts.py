"""Config presets, distributions (symlog two-hot), cells and conv stacks."""

from __future__ import annotations

import pytest
import torch

from aime_agent.config import PRESETS, AIMEConfig, preset
from aime_agent.distributions import TwoHot, symexp, symlog
from aime_agent.encoder_decoder import ConvDecoder, ConvEncoder
from aime_agent.temporal_dynamics import make_cell


def test_presets_and_overrides():
    assert set(PRESETS) == {"tiny", "small", "medium", "large"}
    tiny = preset("tiny", deter=48, **{"train.lr": 5e-4})
    assert (tiny.model.deter, tiny.train.lr, tiny.model.cnn_depth, tiny.preset) == (48, 5e-4, 8, "tiny")
    assert AIMEConfig.from_dict(tiny.to_dict()) == tiny
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset("huge")
    with pytest.raises(ValueError, match="config field 'depth' is unknown"):
        preset("tiny", depth=3)
    with pytest.raises(TypeError, match="model.deter is int"):
        preset("tiny", deter="big")
    with pytest.raises(ValueError, match="unknown fields"):
        AIMEConfig.from_dict({"model": {"nope": 1}})


def test_symlog_round_trip_and_two_hot_expectation():
    x = torch.tensor([-1e4, -37.5, -1.0, -1e-3, 0.0, 2e-3, 0.7, 12.0, 3e3])
    torch.testing.assert_close(symexp(symlog(x)), x, rtol=1e-5, atol=1e-6)
    twohot = TwoHot(255)
    target = twohot.encode(x)
    torch.testing.assert_close(target.sum(-1), torch.ones(9))
    assert ((target > 0).sum(-1) <= 2).all()
    # Decoding the target's log (softmax(log p) = p) recovers the encoded value.
    torch.testing.assert_close(twohot.decode(torch.log(target + 1e-30)), x, rtol=1e-4, atol=1e-4)
    # Hand-computed: 3 bins at symlog −20, 0, 20; y = symexp(5) puts weight 0.75 on 0 and 0.25 on 20.
    y = symexp(torch.tensor(5.0))
    torch.testing.assert_close(TwoHot(3).encode(y), torch.tensor([0.0, 0.75, 0.25]))
    with pytest.raises(ValueError, match="odd"):
        TwoHot(4)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_cells_keep_shapes_and_reset(name):
    cell = make_cell(name, 5, 6)
    state = cell.initial(3)
    assert state.shape == (3, cell.state_size) and cell.deter(state).shape == (3, 6)
    nxt = cell(torch.randn(3, 5), state)
    assert nxt.shape == state.shape and torch.isfinite(nxt).all()
    reset = cell.reset(nxt, torch.tensor([True, False, True]))
    torch.testing.assert_close(reset[0], cell.init_state)
    torch.testing.assert_close(reset[1], nxt[1])
    with pytest.raises(ValueError, match="unknown recurrent cell"):
        make_cell("transformer", 5, 6)


def test_encoder_decoder_shapes_and_no_skip_path():
    enc, dec = ConvEncoder(8, 1), ConvDecoder(12, 8, 1)
    x = torch.rand(2, 3, 64, 64) - 0.5
    assert enc(x).shape == (2, enc.embed_dim) == (2, 8 * 8 * 16)
    feat = torch.randn(2, 12, requires_grad=True)
    out = dec(feat)
    assert out.shape == (2, 3, 64, 64)
    # No skip path: in the world model, with [h, z] held fixed, the reconstruction has no gradient with respect to
    # the frames (they reach the decoder only through z).
    from aime_agent.world_model import WorldModel

    torch.manual_seed(0)
    wm = WorldModel(preset("tiny"), action_dim=1)
    inputs = {"image": (torch.rand(1, 3, 3, 64, 64) - 0.5).requires_grad_(), "action": torch.zeros(1, 3, 1),
              "is_first": torch.tensor([[True, False, False]])}  # fmt: skip
    feat = wm.observe(inputs)["feat"]
    through_z = torch.autograd.grad(wm.decode(feat).sum(), inputs["image"], retain_graph=True)[0]
    assert through_z.abs().sum() > 0
    held = torch.autograd.grad(wm.decode(feat.detach()).sum(), inputs["image"], allow_unused=True)[0]
    assert held is None or held.abs().sum() == 0
    with pytest.raises(ValueError, match="64×64"):
        ConvEncoder(8, 1, image_size=84)
