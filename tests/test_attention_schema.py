"""Pillar 4: the attention schema — a normalised map, precision weights, its prior, and the world model with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aime_agent.attention_schema import AttentionSchema
from aime_agent.config import preset
from aime_agent.world_model import WorldModel, make_aggregator

SCHEMA = {"model.attention_schema": True, "attention_slots": 3, "attention_dim": 16, "attention_iters": 2}


@pytest.mark.parametrize("fusion", ["logsumexp", "mixture"])
def test_the_map_is_a_distribution_the_precision_weights_average_one_and_h_seeds_it(fusion):
    torch.manual_seed(0)
    schema = AttentionSchema(channels=8, deter=12, num_slots=3, dim=16, precision=1.0, fusion=fusion)
    fmap, h = torch.randn(2, 8, 16, 16), torch.randn(2, 12)
    out = schema(fmap, h)
    assert out["attention"].shape == (2, 256) and torch.allclose(out["attention"].sum(-1), torch.ones(2))
    weights = out["fmap"] / fmap  # β = 1: the weights are 256·A, mean 1 over positions
    assert torch.allclose(weights.mean((2, 3)), torch.ones(2, 8), atol=1e-4)
    assert not torch.allclose(schema(fmap, h + 1.0)["attention"], out["attention"])  # seeded from h_{t−1}
    assert 0.0 < AttentionSchema.entropy_ratio(out["attention"]).item() <= 1.0
    assert AttentionSchema.entropy_ratio(torch.full((1, 256), 1 / 256)).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="fusion"):
        AttentionSchema(channels=8, deter=12, fusion="max")


def test_the_mixture_is_the_salience_weighted_mean_of_the_slot_masks():
    """With one slot the mixture is that slot's mask: softmax over one slot is 1 everywhere, so the map is
    uniform; with a salience that picks slot k, the map is slot k's mask normalised over positions."""
    torch.manual_seed(0)
    one = AttentionSchema(channels=8, deter=12, num_slots=1, dim=16, fusion="mixture")
    att = one(torch.randn(2, 8, 16, 16), torch.randn(2, 12))["attention"]
    assert torch.allclose(att, torch.full_like(att, 1 / 256))


def test_the_entropy_hinge_stops_at_its_target():
    uniform, one_hot = torch.full((1, 256), 1 / 256), torch.eye(256)[:1]
    half = torch.zeros(1, 256)
    half[0, :16] = 1 / 16  # entropy log 16 = ½ log 256
    assert AttentionSchema.entropy_excess(uniform, 0.5).item() == pytest.approx(0.5)
    assert AttentionSchema.entropy_excess(one_hot, 0.5).item() == 0.0
    assert AttentionSchema.entropy_excess(half, 0.5).item() == pytest.approx(0.0, abs=1e-6)
    assert AttentionSchema.entropy_excess(torch.cat([uniform, half]), 0.25).item() == pytest.approx((0.75 + 0.25) / 2)
    sharp = torch.zeros(1, 256)
    sharp[0, :4] = 30.0  # ~uniform over 4 cells: ratio ¼, below the target
    for logits, moves in ((sharp, False), (torch.randn(1, 256) * 0.1, True)):
        logits.requires_grad_(True)
        (grad,) = torch.autograd.grad(AttentionSchema.entropy_excess(logits.softmax(-1), 0.5), logits)
        assert (grad.abs().sum() > 0) == moves


def test_the_entropy_term_joins_the_attention_task_only_when_weighted():
    on = WorldModel(preset("tiny", **{"model.attention_schema": True, "loss.attention_entropy": 0.1}), 1)
    off = WorldModel(preset("tiny", **{"model.attention_schema": True, "loss.attention_entropy": 0.0}), 1)
    assert "attention_entropy" in on.loss_terms and "attention_entropy" not in off.loss_terms


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


def moving_square(rng, batch: int, length: int, size: int = 8) -> tuple[dict, np.ndarray]:
    """A toy video: one white size×size square bouncing at 4 px/frame on black; returns the batch and the square's
    top-left corner per frame (B, T, 2)."""
    obs, corner = np.zeros((batch, length, 64, 64, 3), np.uint8), np.zeros((batch, length, 2), int)
    for i in range(batch):
        pos, vel = rng.integers(0, 64 - size, 2), rng.choice([-4, 4], 2)
        for j in range(length):
            vel = np.where((pos + vel < 0) | (pos + vel > 64 - size), -vel, vel)
            pos = pos + vel
            obs[i, j, pos[0] : pos[0] + size, pos[1] : pos[1] + size] = 255
            corner[i, j] = pos
    is_first = np.zeros((batch, length), bool)
    is_first[:, 0] = True
    zeros = np.zeros((batch, length), np.float32)
    return {"obs": obs, "action": zeros[..., None], "reward": zeros, "is_first": is_first,
            "is_terminal": zeros.astype(bool)}, corner  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_on_a_moving_square_the_trained_map_peaks_on_the_square():
    """The map, trained only through the world model's losses (with its entropy term, loss.attention_entropy),
    peaks at ≥ 5× the uniform value, and its peak lies on the square in every frame after the first."""
    from aime_agent.world_model import make_optimizer, train_step

    cfg = preset("tiny", **{"model.attention_schema": True, "loss.attention_entropy": 0.1, "train.batch_size": 8})
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = WorldModel(cfg, 1)
    optimizer = make_optimizer(model, cfg)
    for _ in range(300):
        train_step(model, optimizer, moving_square(rng, 8, 8)[0])
    batch, corner = moving_square(np.random.default_rng(99), 16, 8)
    with torch.no_grad():
        att = model.observe(model.preprocess(batch))["attention_attention"][:, 1:].numpy()  # (16, 7, 256)
    peak = att.argmax(-1)
    cell = np.stack([peak // 16, peak % 16], -1) * 4  # the peak cell's top-left pixel (16, 7, 2)
    on_square = ((cell + 4 > corner[:, 1:]) & (cell < corner[:, 1:] + 8)).all(-1)  # the 4×4 cell overlaps it
    assert att.max(-1).mean() * 256 >= 5.0
    assert on_square.mean() >= 0.9


def test_the_overlay_blends_each_map_in_red_at_its_peak_and_tensorboard_gets_the_maps(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from aime_agent import AIME
    from aime_agent.attention_schema import attention_overlay

    frames, maps = torch.zeros(2, 3, 64, 64), torch.zeros(2, 256)
    maps[:, 17] = 1.0  # cell (1, 1): pixels 4..7
    out = attention_overlay(frames, maps, alpha=0.6)
    assert out.shape == frames.shape and torch.allclose(out[:, 0, 4:8, 4:8], torch.tensor(0.6))
    assert out[:, 1:].abs().sum() == 0 and out[:, 0, :4].abs().sum() == 0
    import envs

    env = envs.make("cartpole-balance", render_quality="fast", max_env_steps=40, seed=0)
    model = AIME("CnnPolicy", env, preset="tiny", seed=0, learning_starts=24, train_freq=4, image_every=2,
                 tensorboard_log=str(tmp_path), attention_schema=True)  # fmt: skip
    model.learn(40, log_interval=1)
    (run,) = list(tmp_path.iterdir())
    assert "images/attention" in EventAccumulator(str(run)).Reload().Tags()["images"]
