"""benchmarks/action_probe.py: the J(c) probe sees whether the model's imagined return depends on actions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import envs
from aime_agent import AIME

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import action_probe  # noqa: E402


def test_probe_is_flat_exactly_when_the_model_ignores_actions():
    env = envs.make("cartpole-balance", render_quality="fast", max_env_steps=40, seed=0)
    model = AIME("CnnPolicy", env, preset="tiny", seed=0, learning_starts=24, train_freq=4)
    model.learn(48)
    result = action_probe.probe(model, batch_size=2)
    constants = [result[f"J({c})"] for c in action_probe.CONSTANTS]
    assert len({round(j[0], 6) for j in constants}) > 1  # a fresh cell input mixes the action in
    with torch.no_grad():  # cut the action out of the recurrence: every constant gives the same rollout
        model.policy.world_model.cell_input[0].weight[:, -1] = 0.0
    flat = action_probe.probe(model, batch_size=2)
    for c in action_probe.CONSTANTS:
        assert flat[f"J({c})"] == pytest.approx(flat["J(0.0)"], abs=1e-5)
    assert "J(actor)" in flat and "KL" in action_probe.format_probe(flat)
