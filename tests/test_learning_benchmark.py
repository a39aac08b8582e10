"""benchmarks/learning.py: CSV rows, resume from its checkpoint, the report (a few env steps, not learning)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import learning  # noqa: E402


def rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_run_names_round_trip_and_a_foreign_name_is_refused():
    """The diagnostics read the task from a run folder's name: ``parse_run`` inverts ``run_name``."""
    for algo, task, seed in [("aime", "cartpole-swingup", 2), ("sac", "ball_in_cup-catch", 10)]:
        assert learning.parse_run(learning.run_name(algo, task, seed)) == (algo, task)
    for name in ["s2_70k", "aime-cartpole-swingup", "aime-cartpole-swingup-s2-lost-at-50k"]:
        with pytest.raises(ValueError, match=f"run name '{name}' is not <algo>-<domain>-<task>-s<seed>"):
            learning.parse_run(name)


@pytest.mark.parametrize("algo", ["aime", "sac"])
def test_runs_resume_and_report(tmp_path, algo):
    common = ["--algo", algo, "--env", "cartpole-balance", "--eval-every", "24", "--eval-episodes", "1",
              "--csv-dir", str(tmp_path / "csv"), "--runs", str(tmp_path / "runs")]  # fmt: skip
    extra = ["--preset", "tiny", "--override", "learning_starts=9", "train_every=2"] if algo == "aime" else [
        "--sac-buffer", "64", "--override", "learning_starts=2", "batch_size=4"]  # fmt: skip
    learning.main([*common, *extra, "--env-steps", "24"])
    path = tmp_path / "csv" / f"{algo}-cartpole-balance-s0.csv"
    first = rows(path)
    assert [int(r["env_steps"]) for r in first] == [24]
    assert (tmp_path / "runs" / f"{algo}-cartpole-balance-s0" / "checkpoint.zip").exists()
    learning.main([*common, *extra, "--env-steps", "48"])  # resumes from the checkpoint
    second = rows(path)
    assert [int(r["env_steps"]) for r in second] == [24, 48] and second[0] == first[0]
    assert float(second[1]["wall_s"]) > float(second[0]["wall_s"]) and int(second[1]["updates"]) > 0
    assert 0 <= float(second[1]["eval_return_mean"]) <= 1000
    meta = learning.json.loads(path.with_suffix(".json").read_text())  # config and machine beside the CSV
    assert [s["from_env_steps"] for s in meta["segments"]] == [0, 24]  # one segment per session, each its own CPU
    assert all(s["cpu"] == learning.describe()["cpu"] and s["torch"] for s in meta["segments"])
    assert meta["overrides"] == extra[extra.index("--override") + 1 :]
    if algo == "aime":
        assert meta["config"]["aime"]["preset"] == "tiny" and meta["config"]["sb3"]["learning_starts"] == "9"
    else:
        assert meta["config"]["sb3"]["batch_size"] == "4" and meta["config"]["frame_stack"] == 3
    (tmp_path / "csv" / "gpu").mkdir()  # a partial run from a lent GPU machine: listed apart, with every evaluation
    learning.write_rows(tmp_path / "csv" / "gpu" / "sac-cartpole-swingup-s0.csv",
                        [{"env_steps": 10_000, "eval_return_mean": 12.4, "eval_return_std": 1.0, "wall_s": 100.0,
                          "updates": 4900, "env_steps_per_s": 100.0}])  # fmt: skip
    learning.write_rows(tmp_path / "csv" / "input_norm" / "aime-cartpole-swingup-s0.csv",  # another configuration
                        [{"env_steps": 20_000, "eval_return_mean": 250.4, "eval_return_std": 3.0, "wall_s": 7200.0,
                          "updates": 4500, "env_steps_per_s": 2.8}])  # fmt: skip
    learning.write_report(tmp_path / "csv", tmp_path / "docs")
    report = (tmp_path / "docs" / "learning.md").read_text()
    assert f"{algo}-cartpole-balance-s0" in report and (tmp_path / "docs" / "learning.png").exists()
    assert "| sac-cartpole-swingup-s0 | 10k: 12 | 10000 | 100.0 |" in report
    variant = report.split("[learning/input_norm/](learning/input_norm/)")[1]  # its own table, after its title
    assert "| aime-cartpole-swingup-s0 | 250 ± 3 | – | – | 20000 | 10.00 | 2.8 | 0.62 |" in variant


def test_report_sets_runs_at_100k_beside_the_published_scores_of_their_kind(tmp_path):
    """AIME's rows list the published world-model agents; SAC's, pixel SAC's published seeds (mean [min – max])."""
    row = {"env_steps": 100_000, "eval_return_std": 1.0, "wall_s": 3600.0, "updates": 25_000, "env_steps_per_s": 27.8}
    for name, score in [("aime-cartpole-balance-s0", 980.0), ("aime-cartpole-balance-s1", 990.0),
                        ("sac-cartpole-balance-s0", 572.6)]:  # fmt: skip
        learning.write_rows(tmp_path / "csv" / f"{name}.csv", [{**row, "eval_return_mean": score}])
    (tmp_path / "docs").mkdir()
    published = {"cartpole-balance": {"SAC (pixels)": {"100000": [800.0, 900.0, 1000.0]}}}
    (tmp_path / "docs" / "published_cartpole.json").write_text(learning.json.dumps(published))
    learning.write_report(tmp_path / "csv", tmp_path / "docs")
    report = (tmp_path / "docs" / "learning.md").read_text()
    assert "| aime | cartpole-balance | 2 | 985 | 980 | DreamerV3 863, DrQ-v2 987, MR.Q 920 (published) |" in report
    assert "| sac | cartpole-balance | 1 | 573 | 573 | SAC (pixels) 900 [800 – 1000] (published) |" in report


def test_a_checkpoint_between_evaluations_keeps_the_clock(tmp_path, monkeypatch):
    """``--checkpoint-every`` below ``--eval-every``: a run stopped between evaluations resumes there, writes no
    row until its evaluation, and that row's wall time and env steps/s count the time before the stop."""
    args = ["--algo", "sac", "--env", "cartpole-balance", "--eval-every", "24", "--checkpoint-every", "12",
            "--env-steps", "24", "--eval-episodes", "1", "--csv-dir", str(tmp_path / "csv"),
            "--runs", str(tmp_path / "runs"), "--sac-buffer", "64", "--override", "learning_starts=2",
            "batch_size=4"]  # fmt: skip
    write_text = learning.atomic_write_text

    def session_ends_after_the_checkpoint(path, text):
        write_text(path, text)
        if path.name == learning.CLOCK:
            raise KeyboardInterrupt

    monkeypatch.setattr(learning, "atomic_write_text", session_ends_after_the_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        learning.main(args)
    monkeypatch.undo()
    rundir, path = tmp_path / "runs" / "sac-cartpole-balance-s0", tmp_path / "csv" / "sac-cartpole-balance-s0.csv"
    clock = learning.json.loads((rundir / learning.CLOCK).read_text())
    assert clock["env_steps"] == 12 and clock["interval"]["env_steps"] == 12 and not path.exists()
    assert learning.resume_clock(rundir, 12, []) == (clock["wall_s"], clock["interval"])
    assert learning.resume_clock(rundir, 10, []) == (0.0, {"env_steps": 0, "s": 0.0})  # a clock of another step
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / learning.CLOCK).write_text('{"env_steps": 12, "wall')  # unreadable: timing restarts
    assert learning.resume_clock(tmp_path / "torn", 12, [{"wall_s": 5.0}]) == (5.0, {"env_steps": 0, "s": 0.0})
    learning.main(args)  # resumes at 12 env steps
    (row,) = rows(path)
    assert int(row["env_steps"]) == 24 and float(row["wall_s"]) > clock["wall_s"]
    # 24 env steps over both segments' time: the first segment's seconds are in it
    assert float(row["env_steps_per_s"]) == pytest.approx(24 / float(row["wall_s"]))
    after = learning.json.loads((rundir / learning.CLOCK).read_text())
    assert after["env_steps"] == 24 and after["interval"] == {"env_steps": 0, "s": 0.0}


def test_a_lost_checkpoint_never_replaces_the_committed_curve(tmp_path):
    """CSV rows without a checkpoint: refuse and name the way out; ``--restart`` moves the old curve to
    superseded/ and starts the run over."""
    args = ["--algo", "aime", "--env", "cartpole-balance", "--eval-every", "24", "--eval-episodes", "1",
            "--env-steps", "24", "--csv-dir", str(tmp_path / "csv"), "--runs", str(tmp_path / "runs"),
            "--preset", "tiny", "--override", "learning_starts=9", "train_every=2"]  # fmt: skip
    path = tmp_path / "csv" / "aime-cartpole-balance-s0.csv"
    old = [{"env_steps": 10_000, "eval_return_mean": 148.5, "eval_return_std": 1.4, "wall_s": 2182.1,
            "updates": 2000, "env_steps_per_s": 4.6}]  # fmt: skip
    learning.write_rows(path, old)
    with pytest.raises(SystemExit, match="checkpoint.zip is missing.*--restart"):
        learning.main(args)
    assert [float(r["eval_return_mean"]) for r in rows(path)] == [148.5]  # untouched
    learning.main([*args, "--restart"])
    kept = tmp_path / "csv" / "superseded" / "aime-cartpole-balance-s0-lost-at-10k.csv"
    assert [float(r["eval_return_mean"]) for r in rows(kept)] == [148.5]
    assert [int(r["env_steps"]) for r in rows(path)] == [24]


@pytest.mark.parametrize("optimize", [True, False])
def test_device_replay_samples_what_sb3s_buffer_samples(optimize):
    """Same adds (past a wrap-around, with an episode end), same numpy seed: the same batches as SB3's
    ``ReplayBuffer``, as tensors, for both storage layouts."""
    import numpy as np
    import torch
    from device_replay import DeviceReplayBuffer
    from gymnasium import spaces
    from stable_baselines3.common.buffers import ReplayBuffer

    obs_space, act_space = spaces.Box(0, 255, (3, 4, 4), np.uint8), spaces.Box(-1, 1, (2,), np.float32)
    kwargs = {"optimize_memory_usage": optimize, "handle_timeout_termination": False, "device": "cpu"}
    ours, sb3 = (cls(7, obs_space, act_space, **kwargs) for cls in (DeviceReplayBuffer, ReplayBuffer))
    assert isinstance(ours.observations, torch.Tensor) and ours.observations.dtype == torch.uint8
    rng = np.random.default_rng(0)
    for t in range(11):
        obs, nxt = (rng.integers(0, 256, (1, 3, 4, 4), dtype=np.uint8) for _ in range(2))
        action, reward, done = rng.uniform(-1, 1, (1, 2)).astype(np.float32), rng.normal(size=1), np.array([t == 5])
        for buffer in (ours, sb3):
            buffer.add(obs, nxt, action, reward, done, [{}])
    assert (ours.pos, ours.full) == (sb3.pos, sb3.full) == (4, True)
    for seed in range(3):  # SB3's buffers draw from numpy's global generator
        np.random.seed(seed)  # noqa: NPY002
        a = ours.sample(5)
        np.random.seed(seed)  # noqa: NPY002
        b = sb3.sample(5)
        for x, y in zip(a, b, strict=True):
            if y is None:  # an optional field (n-step discounts) SB3 leaves unset
                assert x is None
                continue
            assert isinstance(x, torch.Tensor) and x.dtype == y.dtype
            torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_reward_fidelity_records_aligned_rows():
    import numpy as np
    import reward_fidelity

    from aime_agent import AIME

    env = learning.make_env("cartpole-balance", 0)
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
