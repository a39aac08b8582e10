"""rl-zoo3 runs AIME: train a few hundred steps, then enjoy the saved model."""

from __future__ import annotations

import subprocess
import sys


def test_rl_zoo3_train_and_enjoy(tmp_path):
    conf = tmp_path / "aime.yml"
    conf.write_text(
        "dmc/cartpole-balance-v0:\n  policy: 'CnnPolicy'\n  n_timesteps: 120\n  preset: tiny\n"
        "  learning_starts: 40\n  env_kwargs:\n    render_quality: fast\n"
    )
    common = ["--algo", "aime", "--env", "dmc/cartpole-balance-v0", "--gym-packages", "envs", "-f", str(tmp_path)]
    cmd = [sys.executable, "-m", "aime_agent.zoo", "train", *common, "--conf-file", str(conf), "--seed", "0"]
    train = subprocess.run([*cmd, "--eval-freq", "-1"], capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    assert (tmp_path / "aime" / "dmc-cartpole-balance-v0_1" / "dmc-cartpole-balance-v0.zip").exists()
    enjoy = subprocess.run([sys.executable, "-m", "aime_agent.zoo", "enjoy", *common, "-n", "30", "--no-render",
                            "--exp-id", "1"], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert enjoy.returncode == 0, enjoy.stdout[-3000:] + enjoy.stderr[-3000:]
