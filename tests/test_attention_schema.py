"""Pillar 4: the attention schema — a normalised map, precision weights, its prior, and the world model with it."""

from __future__ import annotations

import pytest
import torch

from aime_agent.attention_schema import AttentionSchema
from aime_agent.config import preset
from aime_agent.world_model import WorldModel, make_aggregator

SCHEMA = {"model.attention_schema": True, "attention_slots": 3, "attention_dim": 16, "attention_iters": 2}


def test_the_map_is_a_distribution_the_precision_weights_average_one_and_h_seeds_it():
    torch.manual_seed(0)
    schema = AttentionSchema(channels=8, deter=12, num_slots=3, dim=16, precision=1.0)
    fmap, h = torch.randn(2, 8, 16, 16), torch.randn(2, 12)
    out = schema(fmap, h)
    assert out["attention"].shape == (2, 256) and torch.allclose(out["attention"].sum(-1), torch.ones(2))
    weights = out["fmap"] / fmap  # β = 1: the weights are 256·A, mean 1 over positions
    assert torch.allclose(weights.mean((2, 3)), torch.ones(2, 8), atol=1e-4)
    assert not torch.allclose(schema(fmap, h + 1.0)["attention"], out["attention"])  # seeded from h_{t−1}
    assert 0.0 < AttentionSchema.entropy_ratio(out["attention"]).item() <= 1.0
    assert AttentionSchema.entropy_ratio(torch.full((1, 256), 1 / 256)).item() == pytest.approx(1.0)


def test_the_attention_prior_kl_is_zero_when_it_predicts_the_map_and_trains_only_the_prior():
    torch.manual_seed(0)
    schema = AttentionSchema(channels=8, deter=12)
    out = schema(torch.randn(2, 8, 16, 16), torch.randn(2, 12))
    kl, diversity = AttentionSchema.losses(out)
    assert kl > 0 and 0 <= diversity <= 1
    exact = {**out, "prior_logits": out["attention"].log()}
    assert AttentionSchema.losses(exact)[0].item() == pytest.approx(0.0, abs=1e-6)
    grads = torch.autograd.grad(kl, [out["attention"], *schema.prior.parameters()], allow_unused=True)
    assert grads[0] is None and all(g is not None for g in grads[1:])  # sg(A): the map is not pulled by its prior


@pytest.mark.parametrize("jacobian", ["representation", "parameters"])
def test_the_representation_cut_stays_exact_with_the_schema(cartpole_batch, jacobian):
    """The attention terms join as task "attention"; summed through the Jacobians they give backprop's gradient
    (compared before any optimizer step: Adam would blow float noise on near-zero gradients up to full steps)."""
    tasks = "image=recon,latent=kl_dyn+kl_rep,reward=reward+cont"
    config = preset("tiny", **SCHEMA, **{"mtl.tasks": tasks, "mtl.jacobian": jacobian})
    torch.manual_seed(0)
    model = WorldModel(config, action_dim=1)
    aggregator = make_aggregator(model)
    assert list(aggregator.tasks) == ["image", "latent", "reward", "attention"]
    torch.manual_seed(1)
    _, metrics, out = model.loss(cartpole_batch)
    sum(out["terms"].values()).backward(retain_graph=True)
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    aggregator.backward(out["terms"], model.representation(out), model.trunk_parameters(), model.head_parameters())
    for name, p in model.named_parameters():
        if name in reference:
            scale = reference[name].abs().max().item() + 1e-8
            assert torch.allclose(p.grad, reference[name], atol=1e-5 * scale + 1e-7), name
    assert {"attention/prior_kl", "attention/entropy_ratio", "attention/peak_over_uniform"} <= set(metrics)


def test_the_agent_acts_and_learns_with_the_schema():
    import numpy as np

    import envs
    from aime_agent import AIME

    env = envs.make("cartpole-balance", render_quality="fast", max_env_steps=40, seed=0)
    model = AIME("CnnPolicy", env, preset="tiny", seed=0, learning_starts=24, train_freq=4,
                 **{k.removeprefix("model."): v for k, v in SCHEMA.items()})  # fmt: skip
    model.learn(40)
    obs, _ = env.reset(seed=1)
    action, state = model.predict(obs, deterministic=True)
    again, _ = model.predict(obs, deterministic=True)
    assert np.array_equal(action, again) and len(state) == 3
