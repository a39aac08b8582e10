"""aime_agent.benchmark: one run (CSV rows, resume, clock, lost checkpoints), the suite (plan, skip, launchers),
the report (rliable aggregates against known answers), SAC's device replay. A few env steps; nothing learns."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from aime_agent.benchmark import report, runs, suite
from aime_agent.benchmark.machine import describe
from aime_agent.benchmark.runs import RunSpec
from aime_agent.cli import main as cli

TINY = {  # a few env steps each; the overrides make every agent update within them
    "aime": ["learning_starts=9", "train_every=2"],
    "sac": ["learning_starts=2", "batch_size=4"],
    "ppo": ["n_steps=12", "batch_size=6", "n_epochs=1"],
}


def spec(tmp_path: Path, agent: str, env_steps: int = 24, **kw) -> RunSpec:
    return RunSpec(agent=agent, task="cartpole-balance", env_steps=env_steps, eval_every=24, eval_episodes=1,
                   preset="tiny", overrides=TINY[agent], sac_buffer=64, csv_dir=str(tmp_path / "csv"),
                   runs_dir=str(tmp_path / "runs"), device="cpu", **kw)  # fmt: skip


def rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_run_names_round_trip_and_a_foreign_name_is_refused():
    """The diagnostics read the task from a run folder's name: ``parse_run`` inverts ``run_name``."""
    for agent, task, seed in [("aime", "cartpole-swingup", 2), ("sac", "ball_in_cup-catch", 10)]:
        assert runs.parse_run(runs.run_name(agent, task, seed)) == (agent, task)
    for name in ["s2_70k", "aime-cartpole-swingup", "aime-cartpole-swingup-s2-lost-at-50k"]:
        with pytest.raises(ValueError, match=f"run name '{name}' is not <algo>-<domain>-<task>-s<seed>"):
            runs.parse_run(name)


def test_a_spec_refuses_what_cannot_run():
    with pytest.raises(ValueError, match="unknown agent 'dqn'"):
        RunSpec("dqn", "cartpole-swingup")
    with pytest.raises(ValueError, match="cartpole-nope"):
        RunSpec("aime", "cartpole-nope")
    with pytest.raises(ValueError, match=r"eval_every=25 must be a positive multiple of action_repeat × n_envs \(2\)"):
        RunSpec("aime", "cartpole-swingup", eval_every=25)
    with pytest.raises(ValueError, match=r"env_steps=102 must be .* \(4\)"):  # 2 envs × action repeat 2
        RunSpec("sac", "cartpole-swingup", env_steps=102, eval_every=20, n_envs=2)
    with pytest.raises(ValueError, match="PPO collects 1000 env steps per rollout"):  # 500 agent steps × 2
        RunSpec("ppo", "cartpole-swingup", eval_every=1500)
    s = RunSpec("ppo", "cartpole-swingup", overrides=["n_steps=250"], eval_every=500, env_steps=1000)
    assert RunSpec.from_json(s.to_json()) == s and s.ppo_kwargs() == {"n_steps": 250, "batch_size": 100}


def test_an_aime_variant_switches_its_pillars_on_and_a_task_variant_adds_distractors(tmp_path):
    """``aime+<pillar>`` trains AIME with config.PILLARS' overrides (its own on top); ``<task>+distractors<s>``
    is the task with moving shapes behind the scene; both name their runs and fail clearly when unknown."""
    from aime_agent.config import PILLARS

    assert runs.split_agent("aime+dpgmm") == ("aime", {"model.prior": "dpgmm"})
    assert runs.split_agent("sac") == ("sac", {})
    assert runs.split_agent("aime+full")[1] == {k: v for p in PILLARS.values() for k, v in p.items()}
    assert set(PILLARS["full"]) >= {"model.perceiver", "model.prior", "model.cell", "model.attention_schema"}
    for agent, message in [("sac+full", "unknown agent 'sac\\+full'"), ("aime+nope", "unknown pillar 'nope'")]:
        with pytest.raises(ValueError, match=message):
            RunSpec(agent, "cartpole-swingup")
    assert runs.split_task("cartpole-swingup+distractors0.5") == ("cartpole-swingup", {"distractors": 0.5})
    for task in ["cartpole-swingup+distractors2", "cartpole-swingup+noise", "cartpole-swingup+distractors"]:
        with pytest.raises(ValueError, match="a variant is \\+distractors<strength>"):
            RunSpec("aime", task)
    name = runs.run_name("aime+full", "cartpole-swingup+distractors0.5", 1)
    assert runs.parse_run(name) == ("aime+full", "cartpole-swingup+distractors0.5")
    plain = RunSpec("aime", "cartpole-balance", preset="tiny", device="cpu", csv_dir=str(tmp_path))
    variant = RunSpec("aime+dpgmm", "cartpole-balance+distractors0.5", preset="tiny", device="cpu",
                      overrides=["model.prior_components=3"], csv_dir=str(tmp_path))  # fmt: skip
    assert variant.csv_path == tmp_path / "aime+dpgmm-cartpole-balance+distractors0.5-s0.csv"
    frames = [runs.make_env(s, 0).reset() for s in (plain, variant)]  # the same seed: only the distractors differ
    assert frames[0].shape == frames[1].shape == (1, 64, 64, 3) and (frames[0] != frames[1]).mean() > 0.05
    config = runs.build(variant, runs.make_env(variant, 0)).policy.config
    assert (config.model.prior, config.model.prior_components, config.model.cell) == ("dpgmm", 3, "lstm")


@pytest.mark.parametrize("agent", ["aime", "sac", "ppo"])
def test_a_run_resumes_from_its_checkpoint_and_records_its_config_and_machine(tmp_path, agent):
    first = runs.run(spec(tmp_path, agent))
    path = tmp_path / "csv" / f"{agent}-cartpole-balance-s0.csv"
    assert [r["env_steps"] for r in first] == [24] and [int(r["env_steps"]) for r in rows(path)] == [24]
    assert (tmp_path / "runs" / f"{agent}-cartpole-balance-s0" / "checkpoint.zip").exists()
    assert runs.run(spec(tmp_path, agent)) == runs.read_rows(path)  # finished: returns, trains nothing
    second = runs.run(spec(tmp_path, agent, env_steps=48))  # resumes from the checkpoint
    assert [r["env_steps"] for r in second] == [24, 48] and rows(path)[0] == {k: str(v) for k, v in first[0].items()}
    assert second[1]["wall_s"] > second[0]["wall_s"] and second[1]["updates"] > 0
    assert 0 <= second[1]["eval_return_mean"] <= 1000
    meta = json.loads(path.with_suffix(".json").read_text())  # config and machine beside the CSV
    assert [s["from_env_steps"] for s in meta["segments"]] == [0, 24]  # one segment per session, each its own CPU
    assert all(s["cpu"] == describe()["cpu"] and s["torch"] and s["device"] == "cpu" for s in meta["segments"])
    assert meta["overrides"] == TINY[agent]
    if agent == "aime":
        assert meta["config"]["aime"]["preset"] == "tiny" and meta["config"]["sb3"]["learning_starts"] == "9"
    elif agent == "sac":
        assert meta["config"]["sb3"]["batch_size"] == "4" and meta["config"]["frame_stack"] == 3
    else:
        assert meta["config"]["sb3"]["n_steps"] == "12" and meta["config"]["frame_stack"] == 3


def test_a_run_steps_parallel_envs_in_subprocesses(tmp_path):
    """``n_envs`` = 2: SubprocVecEnv under the frame stack; 24 env steps are 6 vectorised steps of 2 envs × 2."""
    from stable_baselines3.common.vec_env import SubprocVecEnv

    s = spec(tmp_path, "sac", n_envs=2)
    env = runs.make_env(s, 0)
    assert isinstance(env.venv, SubprocVecEnv) and env.num_envs == 2
    env.close()
    assert [r["env_steps"] for r in runs.run(s)] == [24]
    assert json.loads(s.csv_path.with_suffix(".json").read_text())["n_envs"] == 2


def test_a_checkpoint_between_evaluations_keeps_the_clock(tmp_path, monkeypatch):
    """``checkpoint_every`` below ``eval_every``: a run stopped between evaluations resumes there, writes no row
    until its evaluation, and that row's wall time and env steps/s count the time before the stop."""
    s = spec(tmp_path, "sac", checkpoint_every=12)
    write_text = runs.atomic_write_text

    def session_ends_after_the_checkpoint(path, text):
        write_text(path, text)
        if path.name == runs.CLOCK:
            raise KeyboardInterrupt

    monkeypatch.setattr(runs, "atomic_write_text", session_ends_after_the_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        runs.run(s)
    monkeypatch.undo()
    clock = json.loads((s.rundir / runs.CLOCK).read_text())
    assert clock["env_steps"] == 12 and clock["interval"]["env_steps"] == 12 and not s.csv_path.exists()
    assert runs.resume_clock(s.rundir, 12, []) == (clock["wall_s"], clock["interval"])
    assert runs.resume_clock(s.rundir, 10, []) == (0.0, {"env_steps": 0, "s": 0.0})  # a clock of another step
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / runs.CLOCK).write_text('{"env_steps": 12, "wall')  # unreadable: timing restarts
    assert runs.resume_clock(tmp_path / "torn", 12, [{"wall_s": 5.0}]) == (5.0, {"env_steps": 0, "s": 0.0})
    (row,) = runs.run(s)  # resumes at 12 env steps
    assert row["env_steps"] == 24 and row["wall_s"] > clock["wall_s"]
    assert row["env_steps_per_s"] == pytest.approx(24 / row["wall_s"])  # both segments' time is in it
    after = json.loads((s.rundir / runs.CLOCK).read_text())
    assert after["env_steps"] == 24 and after["interval"] == {"env_steps": 0, "s": 0.0}


def test_a_lost_checkpoint_never_replaces_the_committed_curve(tmp_path):
    """CSV rows without a checkpoint: refuse and name the way out; ``restart`` moves the old curve to
    superseded/ and starts the run over."""
    s = spec(tmp_path, "aime")
    old = [{"env_steps": 12, "eval_return_mean": 148.5, "eval_return_std": 1.4, "wall_s": 2.1, "updates": 2,
            "env_steps_per_s": 4.6}]  # fmt: skip  # short of the budget: a run to resume, not a finished one
    runs.write_rows(s.csv_path, old)
    s.csv_path.with_suffix(".json").write_text('{"run": "the lost one"}')
    with pytest.raises(SystemExit, match="checkpoint.zip is missing.*--restart"):
        runs.run(s)
    assert [float(r["eval_return_mean"]) for r in rows(s.csv_path)] == [148.5]  # untouched
    runs.run(spec(tmp_path, "aime", restart=True))
    kept = tmp_path / "csv" / "superseded" / "aime-cartpole-balance-s0-lost-at-0k.csv"
    assert [float(r["eval_return_mean"]) for r in rows(kept)] == [148.5]
    assert json.loads(kept.with_suffix(".json").read_text()) == {"run": "the lost one"}  # its config went with it
    assert [int(r["env_steps"]) for r in rows(s.csv_path)] == [24]
    assert json.loads(s.csv_path.with_suffix(".json").read_text())["segments"][0]["from_env_steps"] == 0


def test_the_plan_is_every_task_agent_and_seed_with_each_agents_own_overrides():
    assert suite.parse_seeds("3") == [0, 1, 2] and suite.parse_seeds("0,4") == [0, 4] and suite.parse_seeds("5,") == [5]
    for bad in ["0", "a"]:
        with pytest.raises(ValueError, match="--seeds"):
            suite.parse_seeds(bad)
    overrides = suite.split_overrides(["sac:batch_size=4", "learning_starts=9", "ppo:n_steps=250"])
    assert overrides == {"sac": ["batch_size=4"], "aime": ["learning_starts=9"], "ppo": ["n_steps=250"]}
    with pytest.raises(ValueError, match="unknown agent 'td3'"):
        suite.split_overrides(["td3:tau=0.1"])
    specs = suite.plan(["cartpole-swingup", "reacher-easy"], ["aime", "ppo"], [0, 1], overrides, env_steps=2000,
                       eval_every=1000)  # fmt: skip
    assert [s.name for s in specs] == [f"{a}-{t}-s{i}" for t in ("cartpole-swingup", "reacher-easy")
                                       for a in ("aime", "ppo") for i in (0, 1)]  # fmt: skip
    assert {s.agent: s.overrides for s in specs} == {"aime": ["learning_starts=9"], "ppo": ["n_steps=250"]}
    assert suite.TIERS[1].tasks == ("cartpole-swingup",) and suite.TIERS[1].agents == ("aime", "sac", "ppo")
    assert suite.TIERS[2].tasks == ("reacher-easy",) and suite.TIERS[3].tasks == ("humanoid-walk",)


def test_the_suite_skips_finished_runs_and_runs_the_rest_each_in_its_own_process(tmp_path, capsys):
    """Local launcher, 2 jobs: each run is a subprocess (its own log); a second call finds both finished."""
    args = ["benchmark", "--tasks", "cartpole-balance", "--agents", "aime", "--seeds", "2", "--env-steps", "24",
            "--eval-every", "24", "--eval-episodes", "1", "--preset", "tiny", "--set", "learning_starts=9",
            "--set", "train_every=2", "--device", "cpu", "--csv-dir", str(tmp_path / "csv"), "--runs-dir",
            str(tmp_path / "runs"), "--jobs", "2"]  # fmt: skip
    assert cli([*args, "--dry-run"]) == 0
    assert "aime-cartpole-balance-s0: new\naime-cartpole-balance-s1: new" in capsys.readouterr().out
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "started aime-cartpole-balance-s0 (pid" in out and "aime-cartpole-balance-s1: finished" in out
    for seed in (0, 1):
        assert [int(r["env_steps"]) for r in rows(tmp_path / "csv" / f"aime-cartpole-balance-s{seed}.csv")] == [24]
        assert (
            "aime-cartpole-balance-s"
            in (tmp_path / "runs" / f"aime-cartpole-balance-s{seed}" / "stdout.log").read_text()
        )
    assert cli(args) == 0
    assert "s0: finished\naime-cartpole-balance-s1: finished" in capsys.readouterr().out


def test_the_local_launcher_fills_a_freed_slot_while_a_longer_run_goes_on(tmp_path, monkeypatch):
    """2 jobs over a long run A, a short B and C: C starts when B ends, before A does (not when A ends)."""
    events, lasts = [], {"s0": 6, "s1": 1, "s2": 1}  # polls before each run's process exits

    class Proc:
        def __init__(self, cmd, **_):
            self.name = RunSpec.from_json(cmd[-1]).name[-2:]
            self.left, self.returncode, self.pid = lasts[self.name], None, 0
            assert cmd[1:3] == ["-m", "aime_agent.benchmark"]
            events.append(f"start {self.name}")

        def poll(self):
            self.left -= 1
            if self.left <= 0 and self.returncode is None:
                self.returncode = 0
                events.append(f"end {self.name}")
            return self.returncode

    monkeypatch.setattr(suite.subprocess, "Popen", Proc)  # the scheduling alone; the end-to-end test runs real ones
    specs = [spec(tmp_path, "aime", seed=i) for i in range(3)]
    assert [code for _, code in suite.run_local(specs, jobs=2, poll_s=0)] == [0, 0, 0]
    assert events == ["start s0", "start s1", "end s1", "start s2", "end s2", "end s0"]


def test_submitits_local_executor_runs_a_job_end_to_end(tmp_path):
    """The SLURM path's jobs (submitit), on submitit's local executor; the job resumes what a run started."""
    s = spec(tmp_path, "sac")
    (job,) = suite.run_submitit([s], "local", tmp_path / "submitit", time_min=5, cpus=1)
    assert job.result() == 0 and [int(r["env_steps"]) for r in rows(s.csv_path)] == [24]
    again = spec(tmp_path, "sac", env_steps=48)
    suite.run_submitit([again], "local", tmp_path / "submitit", time_min=5, cpus=1)
    assert [int(r["env_steps"]) for r in rows(s.csv_path)] == [24, 48]
    delayed = suite._Job().checkpoint(again.to_json())  # preempted: resubmitted with the same spec
    assert delayed.args == (again.to_json(),)


def write_run(folder: Path, name: str, returns: dict[int, float]) -> None:
    runs.write_rows(folder / f"{name}.csv", [{"env_steps": m, "eval_return_mean": r, "eval_return_std": 1.0,
                                              "wall_s": m / 10, "updates": m // 4, "env_steps_per_s": 10.0}
                                             for m, r in returns.items()])  # fmt: skip


def test_the_report_gives_iqm_and_mean_with_bootstrap_cis_beside_published_scores(tmp_path):
    """Four seeds scoring 100/200/300/400: IQM = mean of the middle two = 0.25, mean 0.25, CIs inside
    [0.1, 0.4]. One task of two seeds for SAC. Subfolders are their own tables; superseded/ is not reported."""
    csv_dir, out = tmp_path / "csv", tmp_path / "docs"
    for seed, score in enumerate([100.0, 200.0, 300.0, 400.0]):
        write_run(csv_dir, f"aime-cartpole-swingup-s{seed}", {20_000: score / 2, 100_000: score})
    for seed, score in enumerate([500.0, 700.0]):
        write_run(csv_dir, f"sac-cartpole-swingup-s{seed}", {100_000: score})
    write_run(csv_dir, "sac-cartpole-balance-s0", {100_000: 900.0})  # a task AIME has not: not in the aggregate
    write_run(csv_dir / "gpu", "sac-cartpole-balance-s0", {20_000: 333.0})
    write_run(csv_dir / "superseded", "aime-cartpole-swingup-s0-lost-at-10k", {10_000: 1.0})
    matrices = {"aime": report.score_matrix({"cartpole-swingup": [0.1, 0.2, 0.3, 0.4], "reacher-easy": [0.5] * 5})}
    assert matrices["aime"].shape == (4, 2)  # (runs, tasks): the first 4 seeds of each task
    est = report.interval_estimates({"aime": np.array([[0.1], [0.2], [0.3], [0.4]])})["aime"]
    assert est["iqm"][0] == pytest.approx(0.25) and est["mean"][0] == pytest.approx(0.25)
    assert 0.1 <= est["iqm"][1] < 0.25 < est["iqm"][2] <= 0.4 and 0.1 <= est["mean"][1] < 0.25 < est["mean"][2] <= 0.4
    assert report.interval_estimates({"aime": np.array([[0.1], [0.2], [0.3], [0.4]])}) == {"aime": est}  # seeded
    text = report.write_report(csv_dir, out).read_text()
    iqm, low, high = (f"{x:.3f}" for x in est["iqm"])
    assert f"| aime | 100k | cartpole-swingup | 4 | {iqm} [{low}, {high}] |" in text
    assert "| sac | 100k | cartpole-swingup | 2 | 0.600 [0.500, 0.700] | 0.600 [0.500, 0.700] |" in text  # CI = range
    assert "| aime | 20k | cartpole-swingup | 4 |" in text.split("## Per task")[0]  # only AIME there: its own
    assert "| cartpole-balance | sac | 100k | 1 | 900 [" in text  # but the per-task table has it
    assert "| cartpole-swingup | aime | 100k | 4 | 250 [" in text and "| 100, 200, 300, 400 |" in text
    assert "| cartpole-swingup | DreamerV3 (published) | 100k | – | 483 | – |" in text
    assert "## gpu" in text and "| sac-cartpole-balance-s0 | 333 ± 1 | 20000 |" in text
    assert "lost-at" not in text
    assert (out / "learning.png").exists() and (out / "learning_profiles.png").exists()


@pytest.mark.parametrize("optimize", [True, False])
def test_device_replay_samples_what_sb3s_buffer_samples(optimize):
    """Same adds (past a wrap-around, with an episode end), same numpy seed: the same batches as SB3's
    ``ReplayBuffer``, as tensors, for both storage layouts."""
    import torch
    from gymnasium import spaces
    from stable_baselines3.common.buffers import ReplayBuffer

    from aime_agent.benchmark.device_replay import DeviceReplayBuffer

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


def test_the_commit_is_dirty_for_changed_code_but_not_for_results_written_beside_it(tmp_path):
    import subprocess

    from aime_agent.benchmark.machine import git_commit

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)  # fmt: skip

    (tmp_path / "docs" / "benchmarks").mkdir(parents=True)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "docs" / "benchmarks" / "run.csv").write_text("env_steps\n")
    git("init", "-q"), git("add", "."), git("commit", "-qm", "c")
    head = git_commit(tmp_path / "pkg")
    assert len(head) == 40 and not head.endswith("+dirty")
    (tmp_path / "docs" / "benchmarks" / "run.csv").write_text("env_steps\n10000\n")  # another run's CSV grew
    assert git_commit(tmp_path / "pkg") == head
    (tmp_path / "pkg" / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path / "pkg") == head + "+dirty"
