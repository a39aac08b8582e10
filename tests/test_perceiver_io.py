"""Pillar 1: the causal Perceiver IO — causality, permutation invariance, masking, VQ, generation past T."""

from __future__ import annotations

import pytest
import torch

from aime_agent.perceiver_io import CausalPerceiverIO, VideoTokenizer


def small(**kwargs):
    torch.manual_seed(0)
    args = {"video_shape": (4, 3, 64, 64), "num_latents": 8, "num_latent_channels": 32, "hidden_dim": 16,
            "context_dim": 12, "codebook_size": 32, "depth": 2, "heads": 2} | kwargs  # fmt: skip
    return CausalPerceiverIO(**args)


def video(b=2, t=4, seed=0):
    return torch.rand(b, t, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) - 0.5


def moving_square(b=4, t=4, seed=0):
    """A 16×16 bright square moving 8 px right per frame from a random start, on black."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.full((b, t, 3, 64, 64), -0.5)
    for i in range(b):
        x0, y0 = (int(v) for v in torch.randint(0, 16, (2,), generator=g))
        for k in range(t):
            x = (x0 + 8 * k) % 48
            frames[i, k, :, y0 : y0 + 16, x : x + 16] = 0.5
    return frames


def test_context_rows_read_only_frames_up_to_their_own():
    model = small()
    clip = video()
    model(clip)  # one training-mode pass: the codebook's k-means initialisation, so frames map to distinct codes
    model.eval()
    with torch.no_grad():
        out = model(clip)
        for t in range(3):
            changed = clip.clone()
            changed[:, t + 1 :] = torch.rand_like(changed[:, t + 1 :]) - 0.5  # the future is replaced
            other = model(changed)
            assert torch.allclose(other["context"][:, : t + 1], out["context"][:, : t + 1], atol=1e-5)
            assert torch.allclose(other["logits"][:, : t + 1], out["logits"][:, : t + 1], atol=1e-5)
            now = clip.clone()
            now[:, t] = torch.rand_like(now[:, t]) - 0.5  # frame t itself: row t must change
            assert not torch.allclose(model(now)["context"][:, t], out["context"][:, t], atol=1e-4)
    assert out["context"].shape == (2, 4, 12) and out["logits"].shape == (2, 4, 64, 1, 32)


def test_permuting_a_frames_tokens_with_their_positions_leaves_the_latents_unchanged():
    model = small().eval()
    tokens = torch.randn(1, 1, 64, 16)
    x = torch.cat([tokens, model.patch_pos.expand(1, 1, -1, -1)], -1).flatten(0, 1)  # what the latents read
    z = model.latents.expand(1, -1, -1)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(model.encode(z, x), model.encode(z, x[:, perm]), atol=1e-5)
        assert not torch.allclose(model.encode(z, x), model.encode(z, torch.cat([x[:, perm, :16], x[:, :, 16:]], -1)),
                                  atol=1e-4)  # tokens moved without their positions: a different frame  # fmt: skip


def test_a_fully_masked_frame_stays_finite_and_does_not_touch_the_others():
    model = small().eval()
    tokens = torch.randn(1, 3, 64, 16)
    mask = torch.ones(1, 3, 64, dtype=torch.bool)
    mask[:, 2] = False  # frame 2 has no visible token
    with torch.no_grad():
        latents = model.latents_from_tokens(tokens, mask)
        assert torch.isfinite(latents).all()
        assert torch.allclose(latents[:, :2], model.latents_from_tokens(tokens[:, :2]), atol=1e-5)


def test_straight_through_gradient_reaches_the_patch_encoder():
    tokenizer = VideoTokenizer(16, 32)
    out = tokenizer(video(1, 2))
    (out["tokens"].pow(2).sum() + out["commit"]).backward()
    assert tokenizer.embed.weight.grad.abs().sum() > 0
    # straight-through (training mode): ∂L/∂z_e equals ∂L/∂z_q for a loss on z_q alone
    z_e = torch.randn(1, 64, 16, requires_grad=True)
    z_q, _, _ = tokenizer.vq(z_e)
    weight = torch.randn_like(z_q)
    (grad_e,) = torch.autograd.grad((z_q * weight).sum(), z_e)
    assert torch.allclose(grad_e, weight)


def test_codebook_learns_on_toy_data_restarts_dead_codes_and_is_frozen_outside_training():
    torch.manual_seed(0)
    tokenizer = VideoTokenizer(16, 32, dead_code_threshold=2.0)
    optimizer = torch.optim.Adam(tokenizer.parameters(), lr=1e-3)
    frames = moving_square(4, 4)
    out = tokenizer(frames)  # k-means initialisation on the first training batch
    codebook = tokenizer.vq._codebook.embed
    codebook.data[0, -4:] = 1e3  # four codes no vector is near: dead
    for _ in range(5):
        out = tokenizer(frames)
        loss = out["recon_mse"] + out["commit"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert out["perplexity"] > 1.0
    assert (codebook[0, -4:].abs() < 1e2).all()  # restarted from batch vectors
    tokenizer.eval()
    before = {k: v.clone() for k, v in tokenizer.state_dict().items()}
    tokenizer(frames + 0.1)
    assert all(torch.equal(v, tokenizer.state_dict()[k]) for k, v in before.items())
    fresh = VideoTokenizer(16, 32).eval()  # never trained: evaluation must not run the k-means init either
    state = {k: v.clone() for k, v in fresh.state_dict().items()}
    fresh(frames)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in state.items())


def test_generation_runs_to_three_times_the_trained_length_and_stays_diverse():
    model = small(codebook_heads=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(15):  # the trained clip: 4 frames of a moving square
        out = model(moving_square(4, 4, seed=step))
        ce, _ = model.token_loss(out)
        loss = ce + out["recon_mse"] + out["commit"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    gen = model.generate_autoregressive(moving_square(2, 4, seed=99), steps=8)  # frames 4..11: 3× T
    assert gen["codes"].shape == (2, 8, 64, 2) and gen["frames"].shape == (2, 8, 3, 64, 64)
    assert torch.isfinite(gen["frames"]).all()
    assert gen["codes"].unique().numel() > 1
    sampled = model.generate_autoregressive(moving_square(1, 4), steps=2, temperature=1.0)
    assert sampled["codes"].max() < 32


def test_the_seeds_constructor_call_runs_a_forward_pass():
    model = CausalPerceiverIO(video_shape=(16, 3, 64, 64), num_latents=256, num_latent_channels=512, hidden_dim=512,
                              context_dim=256)  # fmt: skip
    with torch.no_grad():
        context = model.eval().context(video(1, 2))
    assert context.shape == (1, 2, 256) and torch.isfinite(context).all()


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"frames must be \(B, T, 3, 64, 64\)"):
        small()(torch.zeros(1, 2, 3, 32, 32))
    with pytest.raises(ValueError, match="video_shape must be"):
        CausalPerceiverIO(video_shape=(4, 1, 64, 64))


def test_no_frame_reads_across_an_episode_start():
    model = small().eval()
    tokens = torch.randn(1, 4, 64, 16)
    is_first = torch.tensor([[True, False, True, False]])
    changed = tokens.clone()
    changed[:, :2] = torch.randn(1, 2, 64, 16)  # the previous episode
    with torch.no_grad():
        a = model.latents_from_tokens(tokens, is_first=is_first)
        b = model.latents_from_tokens(changed, is_first=is_first)
    assert torch.allclose(a[:, 2:], b[:, 2:], atol=1e-5) and not torch.allclose(a[:, :2], b[:, :2])


# -- in the world model and the agent ---------------------------------------------------------------
PERCEIVER = {"model.perceiver": True, "perceiver_window": 8, "perceiver_latents": 4, "perceiver_channels": 16,
             "perceiver_token_dim": 8, "perceiver_context": 8, "perceiver_codebook": 16}  # fmt: skip


def test_the_context_enters_the_posterior_only_and_its_losses_form_the_perceiver_task(cartpole_batch):
    from aime_agent.config import preset
    from aime_agent.world_model import WorldModel, make_aggregator, make_optimizer, train_step

    config = preset("tiny", **PERCEIVER)
    torch.manual_seed(0)
    model = WorldModel(config, action_dim=1)
    assert list(make_aggregator(model).tasks) == ["elbo", "perceiver"]
    inputs = model.preprocess(cartpole_batch)
    ctx = model.perceive(inputs["image"], torch.ones_like(inputs["is_first"]))["context"]
    torch.manual_seed(1)
    base = model.observe(inputs, context=ctx)
    torch.manual_seed(1)
    moved = model.observe(inputs, context=ctx + 1.0)
    assert not torch.allclose(base["post_mean"], moved["post_mean"])  # c_t reaches the posterior ...
    b, t = inputs["image"].shape[:2]
    first_prior = [out["prior"].mean.view(b, t, -1)[:, 0] for out in (base, moved)]
    assert torch.allclose(*first_prior)  # ... not the prior (row 0's reads no posterior yet)
    optimizer = make_optimizer(model, config)
    metrics, _ = train_step(model, optimizer, cartpole_batch, make_aggregator(model))
    assert {"perceiver/token_ce", "perceiver/token_accuracy", "perceiver/perplexity"} <= set(metrics)
    assert model.perceiver.tokenizer.embed.weight.grad.abs().sum() > 0  # trained by its own task
    # the ELBO does not reach it through c_t (detached), so the representation cut stays exact
    _, _, out = model.loss(cartpole_batch)
    grads = torch.autograd.grad(out["terms"]["recon"], list(model.perceiver.parameters()), allow_unused=True)
    assert all(g is None for g in grads)


def test_the_agent_acts_with_the_perceiver_history_as_its_training_context_does(tmp_path):
    """The context the belief update reads from its W-frame history equals the one training computes over the
    same frames (row t of ``perceive``), and the agent learns, saves, loads and evaluates with it."""
    import numpy as np
    from stable_baselines3.common.evaluation import evaluate_policy

    import envs
    from aime_agent import AIME
    from aime_agent.world_model import to_image

    env = envs.make("cartpole-balance", render_quality="fast", max_env_steps=40, seed=0)
    model = AIME("CnnPolicy", env, preset="tiny", seed=0, learning_starts=24, train_freq=4, **PERCEIVER)
    model.learn(40)
    policy, wm = model.policy, model.policy.world_model
    policy.set_training_mode(False)
    obs, _ = env.reset(seed=3)
    frames, state, starts, acting = [], None, np.array([True]), []
    for _ in range(10):  # past the window of 8: the history slides
        frames.append(obs)
        action, state = policy.predict(obs, state, starts, deterministic=True)
        starts = np.array([False])
        tokens, valid = torch.as_tensor(state[3]), torch.as_tensor(state[4])
        earlier = torch.cat([torch.zeros_like(valid[:, :1]), valid[:, :-1]], 1)
        with torch.no_grad():
            latents = wm.perceiver.latents_from_tokens(tokens, is_first=valid & ~earlier)
            acting.append(wm.perceiver.to_context(latents[:, -1].mean(1))[0])
        obs, *_ = env.step(action)
    assert len(state) == 5 and state[4].sum() == 8
    image = to_image(torch.as_tensor(np.stack(frames)).permute(0, 3, 1, 2)).unsqueeze(0)  # (1, 10, 3, 64, 64)
    with torch.no_grad():
        for k in range(10):
            window = image[:, max(0, k - 7) : k + 1]  # the last ≤ 8 frames
            first = torch.zeros(window.shape[:2], dtype=torch.bool)
            first[:, 0] = True
            assert torch.allclose(wm.perceive(window, first)["context"][0, -1], acting[k], atol=1e-5), k
    model.save(tmp_path / "aime.zip")
    loaded = AIME.load(tmp_path / "aime.zip")
    assert loaded.policy.world_model.perceiver is not None
    for a, b in zip(model.policy.state_dict().values(), loaded.policy.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    mean, _ = evaluate_policy(loaded, envs.make("cartpole-balance", render_quality="fast", max_env_steps=20, seed=1),
                              n_eval_episodes=1)  # fmt: skip
    assert np.isfinite(mean)


def test_tensorboard_shows_token_predictions_and_a_generated_rollout_without_moving_the_codebook(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import envs
    from aime_agent import AIME

    env = envs.make("cartpole-balance", render_quality="fast", max_env_steps=40, seed=0)
    model = AIME("CnnPolicy", env, preset="tiny", seed=0, learning_starts=24, train_freq=4, image_every=2,
                 tensorboard_log=str(tmp_path), **PERCEIVER)  # fmt: skip
    model.learn(40, log_interval=1)
    codebook = model.policy.world_model.perceiver.tokenizer.vq._codebook.embed.clone()
    batch = model.replay_buffer.sample_sequences(1, model.batch_length, model._replay_rng)
    model._log_perceiver(batch)
    assert torch.equal(codebook, model.policy.world_model.perceiver.tokenizer.vq._codebook.embed)
    (run,) = list(tmp_path.iterdir())
    images = set(EventAccumulator(str(run)).Reload().Tags()["images"])
    assert {"images/perceiver_next_tokens", "images/perceiver_generation"} <= images
