"""envs: DMC tasks as Gymnasium pixel environments (real dm_control rendering, few steps)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import backend
from envs.dmc import DMCEnv

TASKS = [
    "cartpole-swingup",
    "reacher-easy",
    "walker-walk",
    "cheetah-run",
    "quadruped-walk",
    "finger-spin",
    "ball_in_cup-catch",
]
ACTION_DIMS = {"cartpole": 1, "reacher": 2, "walker": 6, "cheetah": 6, "quadruped": 12, "finger": 2, "ball_in_cup": 2}


@pytest.mark.parametrize("name", TASKS)
def test_spaces_dtypes_shapes(name):
    env = envs.make(name, render_quality="fast")
    domain = name.split("-")[0]
    assert env.camera_id == (2 if domain == "quadruped" else 0)
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (ACTION_DIMS[domain],), np.float32)
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (64, 64, 3) and env.observation_space.contains(obs)
    assert info == {"env_steps": 0, "discount": 1.0}
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs) and isinstance(reward, float)
    assert (terminated, truncated) == (False, False) and info["env_steps"] == 2
    assert obs.std() > 1.0  # a real picture, not a blank buffer
    env.close()


def test_action_repeat_reward_and_pixels_match_a_manual_dm_control_loop():
    from dm_control import suite
    from dm_control.mujoco.engine import Camera

    env = envs.make("cartpole-swingup", action_repeat=3, seed=7)
    raw = suite.load("cartpole", "swingup", task_kwargs={"random": 7})
    camera = Camera(raw.physics, height=64, width=64, camera_id=0)
    obs, _ = env.reset()
    raw.reset()
    np.testing.assert_array_equal(obs, camera.render())
    rng = np.random.default_rng(0)
    for _ in range(10):
        action = rng.uniform(-1, 1, size=1).astype(np.float32)
        obs, reward, *_ = env.step(action)
        expected = sum(raw.step(action.astype(np.float64)).reward for _ in range(3))
        assert reward == pytest.approx(expected, rel=0, abs=1e-12)
        np.testing.assert_array_equal(obs, camera.render())


@pytest.mark.parametrize(("repeat", "agent_steps"), [(2, 500), (3, 334)])
def test_episode_is_truncated_after_1000_env_steps(repeat, agent_steps):
    env = envs.make("cartpole-balance", action_repeat=repeat, render_quality="fast")
    env.reset(seed=0)
    action = np.zeros(1, np.float32)
    for step in range(1, agent_steps + 1):
        _, _, terminated, truncated, info = env.step(action)
        assert not terminated
        assert truncated == (step == agent_steps), step
    assert info["env_steps"] == 1000 and info["discount"] == 1.0
    with pytest.raises(RuntimeError, match="reset"):
        env.step(action)


def test_max_env_steps_option_truncates_early():
    env = envs.make("cartpole-balance", action_repeat=2, render_quality="fast", max_env_steps=9)
    env.reset(seed=0)
    truncs = [env.step(np.zeros(1))[3] for _ in range(5)]
    assert truncs == [False] * 4 + [True]


def test_renders_exactly_once_per_agent_step():
    env = envs.make("walker-walk", action_repeat=4, render_quality="fast", render_mode="rgb_array")
    calls = []
    real_render = env._camera.render
    env._camera.render = lambda **kw: calls.append(1) or real_render(**kw)
    env.reset(seed=0)
    for _ in range(5):
        env.step(np.zeros(6))
    frame = env.render()
    assert len(calls) == 6 and frame.shape == (64, 64, 3)


def test_same_seed_and_actions_give_bit_identical_pixels():
    actions = np.random.default_rng(1).uniform(-1, 1, size=(15, 6)).astype(np.float32)

    def rollout(seed, reset_seed=None):
        env = envs.make("walker-walk", seed=seed)
        frames = [env.reset(seed=reset_seed)[0]]
        frames += [env.step(a)[0] for a in actions]
        env.close()
        return np.stack(frames)

    a, b = rollout(3), rollout(3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, rollout(4))
    np.testing.assert_array_equal(rollout(None, reset_seed=11), rollout(99, reset_seed=11))


def test_frame_stack_and_proprio_dict():
    env = envs.make("cartpole-swingup", frame_stack=3, proprio=True, render_quality="fast", render_mode="rgb_array")
    assert env.observation_space["pixels"].shape == (64, 64, 9)
    assert env.observation_space["state"].shape == (5,)  # position (3) + velocity (2)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs["pixels"][..., 0:3], obs["pixels"][..., 6:9])
    first = obs["pixels"][..., 6:9].copy()
    obs, *_ = env.step(np.ones(1))
    np.testing.assert_array_equal(obs["pixels"][..., 3:6], first)
    np.testing.assert_array_equal(obs["pixels"][..., 6:9], env.render())
    dm_obs = env._dmc._env.task.get_observation(env._physics)
    np.testing.assert_allclose(obs["state"], np.concatenate([np.ravel(v) for v in dm_obs.values()]), rtol=1e-6)
    assert obs["state"].dtype == np.float32 and env.observation_space.contains(obs)


@pytest.mark.parametrize("name", ["cartpole-swingup", "walker-walk", "quadruped-walk"])
def test_gymnasium_check_env(name):
    from gymnasium.utils.env_checker import check_env

    env = gym.make(f"dmc/{name}-v0", render_quality="fast", render_mode="rgb_array").unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the checker reports problems as warnings
        check_env(env, skip_render_check=False)


def test_every_suite_task_is_registered_and_gym_make_passes_options():
    ids = [envs.env_id(d, t) for d, t in envs.all_tasks()]
    assert len(ids) == 51 and all(i in gym.registry for i in ids)
    env = gym.make("dmc/reacher-easy-v0", render_mode="rgb_array", image_size=32, action_repeat=4)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (32, 32, 3) and env.unwrapped.action_repeat == 4
    assert env.render().shape == (32, 32, 3)
    env.close()


@pytest.mark.parametrize("vec_cls", ["dummy", "subproc"])
def test_make_vec_env(vec_cls):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    cls = {"dummy": DummyVecEnv, "subproc": SubprocVecEnv}[vec_cls]
    # "envs:" makes gym.make import this package in the worker processes too.
    vec = make_vec_env(
        "envs:dmc/cartpole-swingup-v0", n_envs=2, seed=0, vec_env_cls=cls, env_kwargs={"render_quality": "fast"}
    )
    obs = vec.reset()
    assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8
    assert not np.array_equal(obs[0], obs[1])  # seeds 0 and 1
    obs, rewards, dones, infos = vec.step(np.zeros((2, 1), np.float32))
    assert rewards.shape == (2,) and infos[0]["env_steps"] == 2
    vec.close()


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="closest valid names: cartpole-swingup"):
        envs.make("cartpole-swingupp")
    with pytest.raises(ValueError, match="cheetah-run"):
        envs.make("cheeta-run")
    with pytest.raises(gym.error.Error):
        gym.make("dmc/no_such-task-v0")
    with pytest.raises(ValueError, match="render_quality"):
        envs.make("cartpole-swingup", render_quality="ultra")
    env = envs.make("walker-walk", render_quality="fast")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(5,\).*expects shape \(6,\)"):
        env.step(np.zeros(5))
    with pytest.raises(ValueError, match=r"NaN at indices \[2\]"):
        env.step(np.array([0, 0, np.nan, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"inf at indices \[0\]"):
        env.step(np.array([np.inf, 0, 0, 0, 0, 0]))


def test_underscore_and_id_spellings_parse():
    assert envs.parse_task("ball_in_cup_catch") == ("ball_in_cup", "catch")
    assert envs.parse_task("dm_control/walker-walk-v0") == ("walker", "walk")
    assert envs.parse_task("dmc/cartpole-swingup_sparse-v0") == ("cartpole", "swingup_sparse")


def test_physics_error_ends_the_episode_instead_of_raising():
    env = envs.make("cartpole-swingup", render_quality="fast")
    env.reset(seed=0)
    env._physics.data.qvel[:] = np.nan
    obs, reward, terminated, truncated, info = env.step(np.zeros(1))
    assert (terminated, truncated, info["physics_error"], reward) == (False, True, True, 0.0)
    assert obs.shape == (64, 64, 3)
    env.reset(seed=0)
    assert np.isfinite(env.step(np.zeros(1))[1])


def test_backend_selection_honours_user_choice_and_explains_failure(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert backend.select_backend() == "osmesa"
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.setattr(backend, "_PROBES", {"egl": lambda: False, "osmesa": lambda: False})
    assert backend.select_backend() is None and "MUJOCO_GL" not in os.environ
    with pytest.raises(RuntimeError, match="libegl1 libgl1-mesa-dri libosmesa6"):
        backend.ensure_rendering()
    monkeypatch.setattr(backend, "_selection_error", None)


def test_backend_probe_picks_a_working_backend_when_unset():
    code = "import os, envs; print(os.environ['MUJOCO_GL']); envs.make('cartpole-swingup').reset()"
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("egl", "osmesa")


TRITON_SCRIPT = textwrap.dedent("""
    import importlib.util
    import numpy as np
    import envs
    env = envs.make("cartpole-swingup", render_quality="fast")
    env.reset(seed=0)
    env.step(np.zeros(1, np.float32))                      # a Mesa GL context exists from here on
    from stable_baselines3 import SAC                      # Adam -> torch._dynamo -> triton (CUDA builds)
    model = SAC("CnnPolicy", env, buffer_size=200, batch_size=8, learning_starts=0, seed=0)
    model.learn(16)
    print("TRITON", importlib.util.find_spec("triton") is not None, "OK")
""")


def test_training_after_rendering_does_not_segfault():
    """Regression for the CUDA-torch + Mesa trap (DESIGN.md §4): render, then build and train SB3 SAC."""
    out = subprocess.run([sys.executable, "-c", TRITON_SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"exit {out.returncode} (-11 is the segfault): {out.stderr[-2000:]}"
    assert out.stdout.strip().endswith("OK")


def test_dmcenv_direct_construction_validates_options():
    with pytest.raises(ValueError, match="action_repeat"):
        DMCEnv("cartpole", "swingup", action_repeat=0)
    with pytest.raises(ValueError, match="render_mode"):
        DMCEnv("cartpole", "swingup", render_mode="human")
