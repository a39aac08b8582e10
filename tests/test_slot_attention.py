"""Pillar 4 (first part): slot attention's invariances and normalisations, and the diversity penalty."""

from __future__ import annotations

import pytest
import torch

from aime_agent.attention_schema import SlotAttention, diversity_penalty


@pytest.fixture()
def setup():
    torch.manual_seed(0)
    module = SlotAttention(num_slots=4, dim=16, iters=3, input_dim=8)
    return module, torch.randn(2, 10, 8), torch.randn(2, 4, 16)


def test_permuting_seed_slots_permutes_the_outputs(setup):
    module, inputs, seeds = setup
    slots, attn = module(inputs, seeds)
    perm = torch.tensor([2, 0, 3, 1])
    slots_p, attn_p = module(inputs, seeds[:, perm])
    assert torch.allclose(slots_p, slots[:, perm], atol=1e-5) and torch.allclose(attn_p, attn[:, perm], atol=1e-6)


def test_permuting_inputs_leaves_the_slots_unchanged(setup):
    module, inputs, seeds = setup
    slots, attn = module(inputs, seeds)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    slots_p, attn_p = module(inputs[:, perm], seeds)
    assert torch.allclose(slots_p, slots, atol=1e-5) and torch.allclose(attn_p, attn[:, :, perm], atol=1e-6)


def test_attention_sums_to_one_over_slots_and_update_weights_over_inputs(setup):
    module, inputs, seeds = setup
    _, attn = module(inputs, seeds)
    assert torch.allclose(attn.sum(1), torch.ones(2, 10), atol=1e-6)  # each input is shared among the slots
    k = module.to_k(module.norm_inputs(inputs))
    _, weights = module.attention(k, seeds)
    assert torch.allclose(weights.sum(1), torch.ones(2, 4), atol=1e-6)  # each slot's weights over inputs


def test_duplicating_every_input_leaves_the_slots_unchanged(setup):
    """A weighted mean, not a sum: twice the same tokens give the same slots (the original summed)."""
    module, inputs, seeds = setup
    slots, _ = module(inputs, seeds)
    doubled, attn = module(torch.cat([inputs, inputs], 1), seeds)
    assert torch.allclose(doubled, slots, atol=1e-5) and attn.shape == (2, 4, 20)


def test_identical_slots_are_penalised_more_than_orthogonal_ones():
    same = torch.ones(1, 3, 4)
    orthogonal = torch.eye(3, 4).unsqueeze(0)
    assert diversity_penalty(same).item() == pytest.approx(1.0)
    assert diversity_penalty(orthogonal).item() == pytest.approx(0.0)
    mixed = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    assert diversity_penalty(mixed).item() == pytest.approx(0.5)  # cos 45° = 1/√2, squared


def test_random_seed_slots_and_bad_shapes(setup):
    module, inputs, _ = setup
    slots, attn = module(inputs)  # drawn from the learned Gaussian
    assert slots.shape == (2, 4, 16) and attn.shape == (2, 4, 10)
    with pytest.raises(ValueError, match="seed slots must be"):
        module(inputs, torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match="inputs must be"):
        module(inputs[0])
