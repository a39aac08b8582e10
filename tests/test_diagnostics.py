"""The diagnostics in benchmarks/ (reward fidelity, action sensitivity, the behaviour oracle), on tiny inputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_reward_fidelity_records_aligned_rows():
    import numpy as np
    import reward_fidelity

    from aime_agent import AIME
    from aime_agent.benchmark.runs import RunSpec, make_env

    env = make_env(RunSpec("aime", "cartpole-balance"), 0)
    model = AIME("CnnPolicy", env, preset="tiny", seed=0)
    batch = reward_fidelity.record_episode(model, env)
    t = batch["obs"].shape[1]
    assert t == 501  # o_0 and the 500 agent steps of a 1000-step episode at action repeat 2
    assert {k: v.shape[:2] for k, v in batch.items()} == {k: (1, t) for k in batch}
    assert batch["is_first"][0].tolist() == [True] + [False] * 500
    assert batch["reward"][0, 0] == 0 and (batch["action"][0, 0] == 0).all()
    assert (
        (batch["reward"][0, 1:] >= 0).all()
        and (batch["reward"][0, 1:] <= 2).all()
        and (np.abs(batch["action"]) <= 1).all()
    )
    out = reward_fidelity.fidelity(model.policy.world_model, batch, horizon=5)
    assert len(out["real"]) == len(out["posterior"]) == 500
    assert len(out["open_pred"]) == len(out["open_real"]) == len(range(5, 501 - 5, 10))
    np.testing.assert_allclose(out["open_real"][0], batch["reward"][0, 6:11].sum(), rtol=1e-6)


def test_action_sensitivity_branches_restore_the_state_and_summarise_known_gaps():
    import action_sensitivity as sens
    import numpy as np

    import envs

    env = envs.make("cartpole-swingup", action_repeat=2, render_quality="fast")
    env.reset(seed=3)
    for _ in range(20):
        env.step(np.array([0.7], np.float32))
    state = env._physics.get_state().copy()
    r_plus, f_plus = sens.branch_real(env, state, 1.0, 5)
    assert sens.branch_real(env, state, 1.0, 5)[0] == r_plus  # the saved state is restored exactly
    r_minus, f_minus = sens.branch_real(env, state, -1.0, 5)
    assert np.abs(f_plus.astype(int) - f_minus).sum() > 0  # opposite pushes move the cart apart

    frame = np.zeros((2, 2, 3))
    rows = [{1.0: {"real_r": rp, "model_r": mp, "real_f": frame + 0.5, "model_f": frame + 0.4},
             -1.0: {"real_r": rm, "model_r": mm, "real_f": frame, "model_f": frame + 0.2}}
            for rp, rm, mp, mm in [(3, 1, 2, 1), (1, 2, 0, 2), (2, 0, 5, 1)]]  # fmt: skip
    out = sens.summarise(rows)
    # real gaps (2, −1, 2), model gaps (1, −2, 4): corr √3/2, signs agree 3/3
    assert out["branch_points"] == 3 and out["reward_gap_sign_agree"] == 1.0
    np.testing.assert_allclose(out["reward_gap_corr"], np.sqrt(3) / 2)
    np.testing.assert_allclose([out["reward_gap_abs_real"], out["reward_gap_abs_model"]], [5 / 3, 7 / 3])
    np.testing.assert_allclose([out["frame_gap_real"], out["frame_gap_model"]], [0.5, 0.2])
    # matched: |0.4 − 0.5| and |0.2 − 0|; swapped: |0.4 − 0| and |0.2 − 0.5|
    np.testing.assert_allclose([out["err_matched"], out["err_swapped"]], [0.15, 0.35])


def test_behavior_oracle_physics_known_answers():
    """The oracle cartpole: hanging at rest is a fixed point; small swings about the bottom have the uniform
    rod's period 2π √(ℓ (4/3 − m/(M+m)) / g) = 1.581 s; upright, centred, at rest and unforced earns the
    maximal reward 1 per physics step (2 per agent step); the rail stops the cart at 1.8 m."""
    import math

    import torch
    from behavior_oracle import CartpoleOracle, physics_reward, physics_step

    from aime_agent.world_model import LatentState

    rest = torch.tensor([[0.0, math.pi, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(physics_step(rest, torch.zeros(1, dtype=torch.float64)), rest, atol=1e-12, rtol=0)
    state, crossings, previous = torch.tensor([[0.0, math.pi + 0.01, 0.0, 0.0]], dtype=torch.float64), [], 0.01
    for step in range(1, 400):
        state = physics_step(state, torch.zeros(1, dtype=torch.float64))
        offset = state[0, 1].item() - math.pi
        if offset * previous < 0:
            crossings.append(step * 0.01)
        previous = offset
    period = 2 * (crossings[2] - crossings[1])
    assert period == pytest.approx(2 * math.pi * math.sqrt(0.5 * (4 / 3 - 0.1 / 1.1) / 9.81), abs=0.02)
    upright = LatentState(torch.zeros(1, 4), torch.zeros(1, 2))
    assert physics_reward(upright.rnn, torch.zeros(1)).item() == pytest.approx(1.0)
    oracle = CartpoleOracle(repeat=2)
    after = oracle.step(upright, torch.zeros(1, 1))
    assert after.stoch[0, 1].item() == pytest.approx(2.0, abs=1e-4)
    pushed = LatentState(torch.tensor([[1.79, math.pi, 5.0, 0.0]]), torch.zeros(1, 2))
    for _ in range(10):
        pushed = oracle.step(pushed, torch.ones(1, 1))
    assert pushed.rnn[0, 0].item() == pytest.approx(1.8) and pushed.rnn[0, 2].item() == 0.0
    assert oracle.feat(pushed).shape == (1, 7) and oracle.reward_head.predict(oracle.feat(pushed)).shape == (1,)


def test_behavior_oracle_trains_the_real_behavior_learner():
    """A few updates of ``aime_agent.behavior.Behavior`` on the oracle: rows with finite evaluations."""
    from behavior_oracle import run

    rows = run("balance", updates=4, every=2, overrides={"horizon": 3}, batch=8, random_steps=20)
    assert [r["update"] for r in rows] == [2, 4]
    assert all(0.0 <= r["eval"] <= 1000.0 for r in rows)
