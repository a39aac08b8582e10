"""The `aime` console script: envs and collect."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from aime_agent.cli import main
from envs.dataset import EpisodeDataset


def test_envs_lists_all_tasks(capsys):
    assert main(["envs"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 51 and lines[0].startswith("dmc/acrobot-swingup-v0")
    assert main(["envs", "--domain", "walker"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_collect_writes_a_dataset_and_prints_statistics(tmp_path, capsys):
    out = tmp_path / "sub" / "d.h5"
    argv = [
        "collect",
        "--env",
        "reacher-easy",
        "--episodes",
        "2",
        "--out",
        str(out),
        "--seed",
        "3",
        "--render-quality",
        "fast",
        "--quiet",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "2 episodes, 1002 rows (2000 env steps)" in printed and "episode return: mean" in printed
    data = EpisodeDataset(out)
    assert data.metadata["env_id"] == "dmc/reacher-easy-v0" and data.metadata["render_quality"] == "fast"
    assert data.episode(0)["action"].shape == (501, 2)
    returns = [float(ep["reward"].sum()) for ep in data.episodes()]
    assert f"mean {np.mean(returns):.1f}" in printed


def test_bad_task_name_exits_2_with_a_suggestion(capsys):
    assert main(["collect", "--env", "walker-wlak", "--episodes", "1", "--out", "/tmp/never.h5"]) == 2
    assert "closest valid names: walker-walk" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "aime_agent.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "collect" in out.stdout
