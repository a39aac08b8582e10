"""AIME as an SB3 algorithm: learn, replay rows, predict with belief state, save/load, callbacks."""

from __future__ import annotations

import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback, EvalCallback, StopTrainingOnMaxEpisodes
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import envs
from aime_agent import AIME
from aime_agent.checkpoint import CheckpointError


def short_env(max_env_steps=40, **kwargs):
    """cartpole-balance with 20-agent-step episodes and cheap rendering."""
    return envs.make("cartpole-balance", render_quality="fast", max_env_steps=max_env_steps, seed=0, **kwargs)


def tiny_agent(env=None, **kwargs):
    kwargs = {"preset": "tiny", "seed": 0, "learning_starts": 24, "train_freq": 4, **kwargs}
    return AIME("CnnPolicy", env if env is not None else short_env(), **kwargs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model = tiny_agent()
    model.learn(64)
    path = tmp_path_factory.mktemp("agent") / "aime.zip"
    model.save(path)
    return model, path


def test_learn_stores_schema_rows_and_trains(trained):
    model, _ = trained
    assert model.num_timesteps == 64 and model._n_updates == (64 - 24) // 4
    rb = model.replay_buffer
    assert rb.size() == 64 + 4  # one extra is_first row per episode (64 steps = 3.2 episodes of 20)
    episodes = list(rb.episodes(0))
    assert [len(e["obs"]) for e in episodes] == [21, 21, 21]
    for ep in episodes:
        assert ep["is_first"][0] and not ep["is_first"][1:].any() and ep["is_last"][-1]
        assert not ep["is_terminal"].any() and (ep["discount"] == 1).all()  # DMC ends by time limit
        assert (ep["action"][0] == 0).all() and ep["reward"][0] == 0 and (ep["reward"][1:] > 0).all()
        assert ep["obs"].shape[1:] == (3, 64, 64)
    batch = rb.sample_sequences(4, 8, np.random.default_rng(0))
    assert batch["obs"].shape == (4, 8, 3, 64, 64) and not batch["is_first"][:, 1:].any()


def test_predict_is_a_pure_function_of_obs_state_and_episode_start(trained):
    model, _ = trained
    obs = short_env().reset(seed=1)[0]
    a1, s1 = model.predict(obs, deterministic=True)
    a2, s2 = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    a3, s3 = model.predict(obs, state=s1, episode_start=np.array([False]), deterministic=True)
    assert not np.array_equal(s3[0], s1[0])
    a4, s4 = model.predict(obs, state=s3, episode_start=np.array([True]), deterministic=True)  # reset
    np.testing.assert_array_equal(a4, a1)
    np.testing.assert_array_equal(s4[0], s1[0])
    chw, _ = model.predict(obs.transpose(2, 0, 1), deterministic=True)  # channel-first accepted too
    np.testing.assert_array_equal(chw, a1)
    assert a1.shape == (1,) and np.abs(a1).max() <= 1
    with pytest.raises(ValueError, match=r"state\['rnn'\] has shape"):
        model.predict(obs, state=(s1[0][:, :3], s1[1], s1[2]))


def test_save_load_round_trip_gives_identical_actions(trained, tmp_path):
    model, path = trained
    obs = np.stack([short_env().reset(seed=s)[0] for s in range(3)])
    starts = np.ones(3, dtype=bool)
    before, state = model.predict(obs, episode_start=starts, deterministic=True)
    before2, _ = model.predict(obs, state=state, episode_start=~starts, deterministic=True)
    loaded = AIME.load(path)  # env=None
    after, state_l = loaded.predict(obs, episode_start=starts, deterministic=True)
    after2, _ = loaded.predict(obs, state=state_l, episode_start=~starts, deterministic=True)
    np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(before2, after2)
    assert loaded.config_dict == model.config_dict and loaded.policy.config.preset == "tiny"
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if n.endswith(".pth")]
        assert set(names) >= {"policy.pth", "policy.wm_optimizer.pth", "policy.behavior.actor_opt.pth"}
        for name in names:
            with zf.open(name) as f:
                torch.load(f, weights_only=True)


def test_set_parameters_exact_and_inexact(trained):
    model, _ = trained
    other = tiny_agent(seed=1)
    params = model.get_parameters()
    other.set_parameters(params, exact_match=True)
    for key, value in model.policy.state_dict().items():
        torch.testing.assert_close(other.policy.state_dict()[key], value)
    partial = {"policy": {k: v for k, v in params["policy"].items() if "critic" not in k}}
    with pytest.raises(RuntimeError, match="Missing key"):
        other.set_parameters(partial, exact_match=True)
    with pytest.raises(ValueError, match="invalid object name"):
        other.set_parameters({"nonexistent": {}}, exact_match=True)
    other.set_parameters(partial, exact_match=False)


def test_corrupt_or_truncated_checkpoint_is_a_clear_error(trained, tmp_path):
    _, path = trained
    bad = tmp_path / "bad.zip"
    bad.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        AIME.load(bad)
    bad.write_bytes(b"garbage" * 100)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        AIME.load(bad)


def test_evaluate_policy_and_callbacks_inside_learn(tmp_path):
    eval_env = Monitor(short_env())  # channel-last, not transposed: predict must cope
    model = tiny_agent()
    stop = StopTrainingOnMaxEpisodes(max_episodes=3)
    evaluation = EvalCallback(eval_env, eval_freq=30, n_eval_episodes=2, log_path=str(tmp_path), warn=False)
    ckpt = CheckpointCallback(save_freq=30, save_path=str(tmp_path / "ckpt"), save_replay_buffer=True)
    model.learn(1000, callback=[stop, evaluation, ckpt])
    assert model.num_timesteps == 60  # stopped after 3 episodes of 20 steps
    assert len(np.load(tmp_path / "evaluations.npz")["results"]) == 2
    saved = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert "rl_model_30_steps.zip" in saved and "rl_model_replay_buffer_30_steps.pkl" in saved
    mean, std = evaluate_policy(model, Monitor(short_env()), n_eval_episodes=2, deterministic=True)
    assert 0 < mean <= 20 * 2  # at most 1 per env step, 40 env steps
    model.learn(20, reset_num_timesteps=False)
    assert model.num_timesteps == 80


def test_replay_buffer_save_load_and_hdf5_round_trip(trained, tmp_path):
    model, _ = trained
    model.save_replay_buffer(tmp_path / "rb.pkl")
    model.save_replay_buffer(tmp_path / "rb")  # SB3 adds the suffix
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rb.pkl"]  # written atomically, no temp left
    fresh = tiny_agent()
    fresh.load_replay_buffer(tmp_path / "rb.pkl")
    assert fresh.replay_buffer.size() == model.replay_buffer.size()
    assert model.replay_buffer.save_hdf5(tmp_path / "rb.h5", env_id="dmc/cartpole-balance-v0") == 3
    prefilled = tiny_agent(prefill=str(tmp_path / "rb.h5"))
    assert prefilled.replay_buffer.size() == 63
    np.testing.assert_array_equal(next(prefilled.replay_buffer.episodes(0))["obs"],
                                  next(model.replay_buffer.episodes(0))["obs"])  # fmt: skip


def test_replay_pickle_holds_only_written_rows_and_restores_the_ring():
    import pickle

    from aime_agent.replay import SequenceReplayBuffer

    space = gym.spaces.Box(0, 255, (3, 8, 8), np.uint8)
    actions = gym.spaces.Box(-1, 1, (1,), np.float32)
    buffer = SequenceReplayBuffer(1000, space, actions, device="cpu", n_envs=2)
    rng = np.random.default_rng(0)
    for t in range(30):
        for env in range(2):
            buffer.add_row(env, rng.integers(0, 255, (3, 8, 8), dtype=np.uint8), rng.uniform(-1, 1, 1), float(t),
                           is_first=t == 0)  # fmt: skip
    blob = pickle.dumps(buffer)
    assert len(blob) < 0.1 * buffer.storage["obs"].nbytes  # 30 of 500 rows per env, not the whole ring
    restored = pickle.loads(blob)
    assert restored.storage["obs"].shape == buffer.storage["obs"].shape  # full capacity again, to keep writing
    for key in buffer.storage:
        np.testing.assert_array_equal(restored.storage[key], buffer.storage[key])
    np.testing.assert_array_equal(restored.sample_sequences(4, 8, np.random.default_rng(1))["obs"],
                                  buffer.sample_sequences(4, 8, np.random.default_rng(1))["obs"])  # fmt: skip
    restored.add_row(0, np.zeros((3, 8, 8), np.uint8), np.zeros(1), 1.0)
    assert restored.size() == 61


def test_fixed_seed_gives_identical_parameters():
    a = tiny_agent()
    a.learn(40)  # the seed is set at construction; learn draws from the global generators, as in SB3
    b = tiny_agent()
    b.learn(40)
    assert a._n_updates == b._n_updates > 0
    for (name, x), y in zip(a.policy.state_dict().items(), b.policy.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, atol=0, rtol=0, msg=name)


def test_actor_warmup_holds_the_actor_for_that_many_updates():
    model = tiny_agent(actor_warmup=10)
    behavior = model.policy.behavior
    actor = [p.clone() for p in behavior.actor.parameters()]
    critic = [p.clone() for p in behavior.critic.net.parameters()]
    model.learn(24 + 4 * 10)  # exactly 10 updates: the warm-up
    assert model._n_updates == 10
    assert all(torch.equal(a, b) for a, b in zip(actor, behavior.actor.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(critic, behavior.critic.net.parameters(), strict=True))
    model.learn(4, reset_num_timesteps=False)  # update 11 moves the actor
    assert model._n_updates == 11
    assert any(not torch.equal(a, b) for a, b in zip(actor, behavior.actor.parameters(), strict=True))


class NaNReward(gym.Wrapper):
    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float("nan"), terminated, truncated, info


class PoisonWeights(BaseCallback):
    """Sets the decoder's weights to NaN at a given step, as a diverging update would."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def _on_step(self) -> bool:
        if self.num_timesteps == self.at:
            with torch.no_grad():
                self.model.policy.world_model.decoder.linear.weight.fill_(float("nan"))
        return True


def test_nan_loss_stops_learn_and_keeps_the_last_good_checkpoint(tmp_path):
    model = tiny_agent()
    ckpt = CheckpointCallback(save_freq=32, save_path=str(tmp_path))
    with pytest.raises(FloatingPointError, match="world-model loss is nan"):
        model.learn(200, callback=[ckpt, PoisonWeights(at=40)])
    good = AIME.load(tmp_path / "rl_model_32_steps.zip")
    assert all(torch.isfinite(p).all() for p in good.policy.parameters())
    with pytest.raises(ValueError, match=r"batch\['reward'\] contains NaN"):
        tiny_agent(NaNReward(short_env())).learn(60)


def test_preset_and_overrides_reach_the_config():
    model = tiny_agent(deter=48, horizon=3, learning_rate=5e-4)
    assert model.policy.config.model.deter == 48 and model.policy.config.behavior.horizon == 3
    assert model.policy.wm_optimizer.param_groups[0]["lr"] == 5e-4
    with pytest.raises(ValueError, match="unknown"):
        tiny_agent(no_such_field=1)


def test_tensorboard_gets_scalars_and_images(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = tiny_agent(tensorboard_log=str(tmp_path), image_every=2)
    model.learn(40, log_interval=1)
    (run,) = list(tmp_path.iterdir())
    events = EventAccumulator(str(run)).Reload()
    assert {"images/reconstruction", "images/imagination"} <= set(events.Tags()["images"])
    # imagined rollouts and open-loop predictions beside the truth as videos (TensorBoard stores them as GIFs)
    assert {"videos/imagination", "videos/open_loop"} <= set(events.Tags()["images"])
    scalars = set(events.Tags()["scalars"])
    for tag in ("train/wm_loss", "train/actor_loss", "train/critic_loss", "train/kl", "time/env_frames",
                "rollout/ep_rew_mean", "train/lr_actor"):  # fmt: skip
        assert tag in scalars, tag


def test_action_noise_reaches_the_env_the_replay_and_the_belief():
    """SB3's action_noise is added to the scaled action and clipped (warm-up and policy alike): a constant +10
    makes every executed action +1, and the collecting belief carries that action. ``expl_noise`` builds a
    NormalActionNoise of that std."""
    from stable_baselines3.common.noise import ActionNoise, NormalActionNoise

    class Push(ActionNoise):
        def __call__(self):
            return np.full(1, 10.0)

    model = tiny_agent(action_noise=Push(), learning_starts=8)
    model.learn(40)  # two whole episodes of 20 agent steps: 8 random, then the policy's
    actions = np.concatenate([e["action"][1:] for e in model.replay_buffer.episodes(0)])
    assert actions.shape == (40, 1) and (actions == 1.0).all()
    assert (model._last_belief[2] == 1.0).all()
    noisy = tiny_agent(expl_noise=0.3)
    assert isinstance(noisy.action_noise, NormalActionNoise) and noisy.action_noise._sigma.tolist() == [0.3]
    assert tiny_agent().action_noise is None


def test_learn_after_load_without_the_replay_collects_then_trains(trained):
    """As SB3's save/load tests and rl-zoo3's --trained-agent do: load the weights only, learn on."""
    _, path = trained
    model = AIME.load(path, env=short_env())
    assert model.replay_buffer.size() == 0
    updates = model._n_updates
    model.learn(40, reset_num_timesteps=False)  # the first window of 8 rows fits after 8 steps
    assert model._n_updates > updates and model.replay_buffer.size() > 0


def test_a_learning_rate_schedule_reaches_all_three_optimizers():
    """The world model follows the schedule; actor and critic follow its shape from their own rates."""
    model = tiny_agent(learning_rate=lambda progress: 1e-3 * progress, actor_lr=2e-4, critic_lr=4e-4)
    model.learn(64)  # updates after agent steps 28, 32, ..., 64
    behavior = model.policy.behavior
    rates = [o.param_groups[0]["lr"] for o in (model.policy.wm_optimizer, behavior.actor_opt, behavior.critic_opt)]
    progress = rates[0] / 1e-3  # SB3's progress at the last update (after step 64 of 64)
    assert progress == pytest.approx(0.0, abs=1e-12)
    assert rates == pytest.approx([0.0, 0.0, 0.0], abs=1e-12)  # actor and critic (2e-4, 4e-4) followed it too
    model._current_progress_remaining = 0.25
    model._update_learning_rate()
    assert model.policy.wm_optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.25)
    assert behavior.actor_opt.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.25)
    assert behavior.critic_opt.param_groups[0]["lr"] == pytest.approx(4e-4 * 0.25)


class _FramesEnv(gym.Env):
    """A stand-in env with frames of another size."""

    def __init__(self, side):
        self.observation_space = gym.spaces.Box(0, 255, (side, side, 3), np.uint8)
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)


def test_a_frame_size_other_than_the_models_fails_at_construction():
    with pytest.raises(ValueError, match=r"frames are 48×48 but the model expects 64×64"):
        AIME("CnnPolicy", _FramesEnv(48), preset="tiny")


class ScriptedEnv(gym.Env):
    """64×64 frames whose value encodes (episode, t); reward 10·t + a; episodes of 10 steps that alternate
    between a true terminal (even episodes) and a time-limit truncation. Logs every action it receives."""

    observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    length = 10

    def __init__(self):
        self.log = []

    def _frame(self):
        return np.full((64, 64, 3), 20 * len(self.log) + self.t, np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.log.append({"actions": [], "rewards": [], "terminal": len(self.log) % 2 == 0})
        return self._frame(), {}

    def step(self, action):
        self.t += 1
        episode = self.log[-1]
        a = float(np.asarray(action).reshape(-1)[0])
        episode["actions"].append(a)
        episode["rewards"].append(10.0 * self.t + a)
        done = self.t == self.length
        return self._frame(), episode["rewards"][-1], done and episode["terminal"], done and not episode["terminal"], {}


def test_learn_stores_every_row_of_a_scripted_env_in_the_schema():
    env = ScriptedEnv()
    model = AIME("CnnPolicy", env, preset="tiny", seed=0, learning_starts=24, train_freq=4)
    model.learn(40)  # 4 episodes of 10 steps: random actions, then the actor's; updates from step 28 on
    assert model._n_updates > 0
    episodes = list(model.replay_buffer.episodes(0))
    assert len(episodes) == 4
    for k, (row, logged) in enumerate(zip(episodes, env.log, strict=False)):
        assert len(row["obs"]) == 11
        np.testing.assert_array_equal(row["obs"][:, 0, 0, 0], 20 * (k + 1) + np.arange(11))  # o_0 … o_10
        assert (row["action"][0] == 0).all() and row["reward"][0] == 0  # nothing produced o_0
        np.testing.assert_allclose(row["action"][1:, 0], logged["actions"], rtol=0, atol=1e-7)
        np.testing.assert_allclose(row["reward"][1:], logged["rewards"], rtol=0, atol=1e-5)
        assert row["is_first"].tolist() == [True] + [False] * 10
        assert row["is_last"].tolist() == [False] * 10 + [True]
        assert row["is_terminal"].tolist() == [False] * 10 + [logged["terminal"]]  # episodes 0, 2 end terminal
        assert row["discount"].tolist() == [1.0] * 10 + [0.0 if logged["terminal"] else 1.0]


def test_replay_sampling_and_pickling_after_the_ring_wraps():
    import pickle

    from aime_agent.replay import SequenceReplayBuffer

    space = gym.spaces.Box(0, 255, (3, 4, 4), np.uint8)
    buffer = SequenceReplayBuffer(20, space, gym.spaces.Box(-1, 1, (1,), np.float32), device="cpu")
    value = 0
    for _ in range(3):  # 24 rows into a ring of 20: rows 0-3 are overwritten, the oldest kept row is mid-episode
        for t in range(8):
            buffer.add_row(0, np.full((3, 4, 4), value, np.uint8), np.zeros(1), float(value), is_first=t == 0,
                           is_last=t == 7)  # fmt: skip
            value += 1
    assert buffer.size() == 20 and buffer.positions[0] == 4
    for restored in (buffer, pickle.loads(pickle.dumps(buffer))):
        batch = restored.sample_sequences(512, 3, np.random.default_rng(0))
        values = batch["obs"][:, :, 0, 0, 0].astype(int)
        assert (np.diff(values, axis=1) == 1).all()  # consecutive rows: never across the write position
        episode = values // 8
        assert (episode == episode[:, :1]).all()  # inside one episode
        assert not batch["is_first"][:, 1:].any()
        # every valid start and nothing else: rows 4-5 of the partly overwritten episode 0, then 8-13, 16-21
        assert set(values[:, 0].tolist()) == {4, 5, *range(8, 14), *range(16, 22)}
        np.testing.assert_array_equal(batch["reward"], values.astype(np.float32))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(buffer)).storage["obs"], buffer.storage["obs"])


def test_predict_resets_only_the_rows_whose_episode_starts(trained):
    model, _ = trained
    env = short_env()
    first, _ = env.reset(seed=3)
    second, *_ = env.step(np.array([0.5], np.float32))
    obs1, obs2 = np.stack([first, second]), np.stack([second, first])
    _, state = model.predict(obs1, deterministic=True)
    actions, new = model.predict(obs2, state=state, episode_start=np.array([True, False]), deterministic=True)
    fresh_a, fresh_s = model.predict(obs2[:1], deterministic=True)  # row 0: a fresh belief
    kept_a, kept_s = model.predict(obs2[1:], state=tuple(s[1:] for s in state), episode_start=np.array([False]),
                                   deterministic=True)  # fmt: skip
    np.testing.assert_allclose(actions[0], fresh_a[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(actions[1], kept_a[0], rtol=0, atol=1e-6)
    for got, a, b in zip(new, fresh_s, kept_s, strict=True):
        np.testing.assert_allclose(got[0], a[0], rtol=0, atol=1e-6)
        np.testing.assert_allclose(got[1], b[0], rtol=0, atol=1e-6)


def test_gradient_balancing_trains_logs_its_scalars_and_survives_save_load(tmp_path):
    """config.mtl reaches the world model's update: per-task losses, task-gradient cosines and the conflict
    rate reach TensorBoard (0 for rgb_projected, which guarantees it), and a reload keeps the setting."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    mtl = {"combiner": "rgb_projected", "jacobian": "representation",
           "tasks": "image=recon,latent=kl_dyn+kl_rep,reward=reward+cont"}  # fmt: skip
    model = tiny_agent(tensorboard_log=str(tmp_path / "tb"), **mtl)
    model.learn(40, log_interval=1)
    (run,) = list((tmp_path / "tb").iterdir())
    events = EventAccumulator(str(run)).Reload()
    for tag in ("train/mtl/image", "train/mtl/cos_image_latent", "train/mtl/cos_direction_reward"):
        assert tag in events.Tags()["scalars"], tag
    assert [e.value for e in events.Scalars("train/mtl/conflict")] == [0.0] * len(events.Scalars("train/mtl/conflict"))
    model.save(tmp_path / "aime.zip")
    loaded = AIME.load(tmp_path / "aime.zip", env=short_env())
    assert loaded.policy.loss_aggregator.config.combiner == "rgb_projected"
    assert list(loaded.policy.loss_aggregator.tasks) == ["image", "latent", "reward"]


def test_the_adversarial_task_trains_and_its_discriminator_round_trips_through_save_load(tmp_path):
    model = tiny_agent(adversarial=0.1, adversarial_depth=4)
    model.learn(40)
    assert model.policy.adversary.optimizer.state  # D's Adam has stepped
    model.save(tmp_path / "aime.zip")
    loaded = AIME.load(tmp_path / "aime.zip", env=short_env())
    for a, b in zip(model.policy.adversary.state_dict().values(), loaded.policy.adversary.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)
    saved, restored = model.policy.adversary.optimizer.state_dict(), loaded.policy.adversary.optimizer.state_dict()
    assert saved["state"][0]["step"] == restored["state"][0]["step"]
    loaded.learn(8, reset_num_timesteps=False)  # and it trains on


def test_a_video_is_a_gif_that_decodes_to_its_frames():
    """TensorBoard videos (imagined rollouts): black, red, blue frames come back as they went in."""
    import imageio.v3 as iio

    from aime_agent.tensorboard_video import gif_bytes, record_video

    frames = torch.zeros(3, 3, 4, 6)
    frames[1, 0], frames[2, 2] = 1.0, 1.0
    decoded = iio.imread(gif_bytes(frames), index=None, extension=".gif")[..., :3]  # (T, H, W, RGB)
    expected = (frames.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    assert decoded.shape == (3, 4, 6, 3) and (decoded == expected).all()
    with pytest.raises(ValueError, match=r"frames must be \(T, 3, H, W\), got \(4, 6\)"):
        gif_bytes(torch.zeros(4, 6))
    assert record_video(None, "videos/x", frames, 0) == 0  # no TensorBoard output: nothing to write
