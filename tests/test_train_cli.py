"""`aime train` / `aime evaluate`: resumable training, SIGKILL at a random moment, resume, completion."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from aime_agent import AIME
from aime_agent.train import load_run_replay

TRAIN = [sys.executable, "-m", "aime_agent.cli", "train", "--env", "cartpole-balance", "--env-steps", "240",
         "--preset", "tiny", "--checkpoint-every", "30", "--eval-episodes", "1", "--quiet", "--set",
         "learning_starts=20"]  # fmt: skip


def test_sigkilled_training_resumes_and_completes(tmp_path):
    cmd = [*TRAIN, "--logdir", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    ckpt = tmp_path / "checkpoint.zip"
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ckpt.exists(), proc.communicate()[0].decode()[-3000:]
    time.sleep(random.uniform(0.0, 1.5))  # a random moment after the first checkpoint
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = AIME.load(ckpt)
    load_run_replay(saved, tmp_path)
    at_kill, rows_at_kill = saved.num_timesteps, saved.replay_buffer.size()
    assert at_kill >= 30 and rows_at_kill == at_kill + 1  # one is_first row so far
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    if at_kill < 120:
        assert f"resuming {ckpt} at {at_kill} agent steps ({rows_at_kill} replay rows)" in out.stdout
    assert "final evaluation: return" in out.stdout and "(random policy " in out.stdout
    final = AIME.load(ckpt)
    load_run_replay(final, tmp_path)
    assert final.num_timesteps == 120
    rb = final.replay_buffer
    episodes = list(rb.episodes(0))  # the resumed run starts a new episode: 2 complete episodes or fewer
    assert all(e["is_first"][0] and e["is_last"][-1] and not e["is_first"][1:].any() for e in episodes)
    assert rb.size() == 120 + int(rb.storage["is_first"][0, : rb.size()].sum())
    assert list(tmp_path.glob("**/*.tmp*")) == []


def test_evaluate_command(tmp_path, capsys):
    import envs
    from aime_agent.cli import main

    model = AIME("CnnPolicy", envs.make("cartpole-balance", render_quality="fast"), preset="tiny", seed=0)
    model.save(tmp_path / "m.zip")
    assert main(["evaluate", "--model", str(tmp_path / "m.zip"), "--env", "cartpole-balance", "--episodes", "1"]) == 0
    assert "cartpole-balance: return" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(tmp_path / "missing.zip"), "--env", "cartpole-balance"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("n_envs", [2])
def test_agent_with_subprocvecenv(n_envs):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    vec = make_vec_env("envs:dmc/cartpole-balance-v0", n_envs=n_envs, seed=0, vec_env_cls=SubprocVecEnv,
                       env_kwargs={"render_quality": "fast", "max_env_steps": 40})  # fmt: skip
    model = AIME("CnnPolicy", vec, preset="tiny", seed=0, learning_starts=16)
    model.learn(48)
    assert model.num_timesteps == 48 and model._n_updates > 0
    assert model.replay_buffer.counts.tolist() == [24 + 2, 24 + 2]  # per env: 24 steps, 2 episode starts
    vec.close()


def test_random_policy_predicts_uniform_actions_of_the_batch_size():
    import gymnasium as gym
    import numpy as np

    from aime_agent.train import RandomPolicy

    policy = RandomPolicy(gym.spaces.Box(-1, 1, (2,), np.float32), seed=0)
    actions, state = policy.predict(np.zeros((3, 64, 64, 3), np.uint8))
    assert actions.shape == (3, 2) and state is None and np.abs(actions).max() <= 1
    assert len({tuple(a) for a in actions}) == 3
