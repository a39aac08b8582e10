"""One benchmark run: an agent learns a DMC pixel task, evaluated every ``eval_every`` env steps, resumable.

A run is a :class:`RunSpec`. Every ``eval_every`` env steps (dm_control control steps, whatever the action
repeat) the deterministic policy plays ``eval_episodes`` episodes of a separate env (seed + 10 000) and a row is
appended to ``<csv_dir>/<agent>-<task>-s<seed>.csv`` (:data:`FIELDS`). The run is checkpointed atomically under
``<runs_dir>/<name>/`` (model, replay, training clock) at each evaluation and every ``checkpoint_every`` env
steps, so calling :func:`run` again resumes it, in another process, session or machine; a finished run returns
at once. Beside the CSV, ``<name>.json`` holds the whole config and one segment per resumed session (CPU/GPU,
torch threads, commit). Only the CSVs and their JSON belong in git; a CSV whose checkpoint is gone is never
overwritten (``restart=True`` moves it and its JSON to ``superseded/``).

Agents (:data:`AGENTS`), on the same env, action repeat, rendering and evaluation:

* ``aime``: ``AIME("CnnPolicy", env, preset=...)``; ``overrides`` are AIME config fields or SB3 keywords.
* ``sac``: SB3 ``SAC("CnnPolicy")``, 3 stacked frames (``VecFrameStack``, as SB3 users do), buffer
  ``sac_buffer`` with ``optimize_memory_usage``; SB3's defaults otherwise.
* ``ppo``: SB3 ``PPO("CnnPolicy")``, 3 stacked frames, rollouts of one episode per env (:data:`PPO_DEFAULTS`).
* ``aime+<pillar>``: AIME with a pillar of ``aime_agent.config.PILLARS`` switched on (``aime+dpgmm``), or all
  five (``aime+full``); ``overrides`` apply on top.

Tasks are DMC tasks, ``<domain>-<task>``, or their variants, ``<domain>-<task>+distractors<strength>``
(``cartpole-swingup+distractors0.5``: moving coloured shapes behind the scene, ``envs/distractors.py``).

``n_envs`` > 1 steps the envs in subprocesses (``SubprocVecEnv``); ``device`` is SB3's (``"auto"``: CUDA when
present).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from envs.fileio import atomic_write_text

FIELDS = ["env_steps", "eval_return_mean", "eval_return_std", "wall_s", "updates", "env_steps_per_s"]
CLOCK = "clock.json"  # beside a checkpoint: training time so far, and since the last evaluation
ACTION_REPEAT = 2  # the suite's (DESIGN.md: dm_control control steps, every task)
FRAME_STACK = {"aime": 0, "sac": 3, "ppo": 3}
AGENTS = tuple(FRAME_STACK)
# PPO rolls out one 1000-env-step episode per env (500 agent steps at action repeat 2) before each update,
# so its rollouts end on the evaluation grid; SB3's defaults otherwise.
PPO_DEFAULTS = {"n_steps": 500, "batch_size": 100}


@dataclass
class RunSpec:
    """What one run is; everything :func:`run` needs, JSON-serialisable (for subprocesses and SLURM)."""

    agent: str  # one of AGENTS, or "aime+<pillar>" (a pillar of aime_agent.config.PILLARS, or "full")
    task: str  # a DMC task, "<domain>-<task>", or a variant, "<domain>-<task>+distractors<strength>"
    seed: int = 0
    env_steps: int = 100_000  # dm_control control steps
    eval_every: int = 10_000
    eval_episodes: int = 5
    checkpoint_every: int | None = None  # env steps; None: at each evaluation
    action_repeat: int = ACTION_REPEAT
    preset: str = "small"  # AIME's
    overrides: list[str] = field(default_factory=list)  # "key=value": AIME config fields or SB3 keyword arguments
    csv_dir: str = "docs/benchmarks/learning"
    runs_dir: str = "runs/learning"
    device: str = "auto"
    n_envs: int = 1
    sac_buffer: int = 100_000
    device_replay: bool = False  # SAC's replay observations on the GPU (device_replay.py)
    checkpoint: bool = True  # False: only the CSV (a machine whose disk is lost)
    restart: bool = False  # start over when the CSV has rows but no checkpoint (the old CSV is kept)

    def __post_init__(self):
        split_agent(self.agent)  # an unknown agent or pillar fails here
        split_task(self.task)  # an unknown task or variant fails here, with the list of tasks
        per_env = self.action_repeat * self.n_envs  # env steps per vectorised step
        every = self.checkpoint_every or self.eval_every
        for name, value in [
            ("eval_every", self.eval_every),
            ("env_steps", self.env_steps),
            ("checkpoint_every", every),
        ]:
            if value <= 0 or value % per_env:
                raise ValueError(f"{name}={value} must be a positive multiple of action_repeat × n_envs ({per_env})")
        if self.base_agent == "ppo":
            rollout = self.ppo_kwargs()["n_steps"] * per_env
            if self.eval_every % rollout or every % rollout:
                raise ValueError(
                    f"PPO collects {rollout} env steps per rollout (n_steps × n_envs × action repeat): "
                    f"eval_every={self.eval_every} and checkpoint_every={every} must be multiples of it"
                )

    @property
    def base_agent(self) -> str:
        """The algorithm: ``aime``, ``sac`` or ``ppo`` (``aime+full`` → ``aime``)."""
        return split_agent(self.agent)[0]

    @property
    def name(self) -> str:
        return run_name(self.agent, self.task, self.seed)

    @property
    def csv_path(self) -> Path:
        return Path(self.csv_dir) / f"{self.name}.csv"

    @property
    def rundir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def parsed_overrides(self) -> dict:
        from aime_agent.cli import parse_overrides

        return parse_overrides(self.overrides)

    def ppo_kwargs(self) -> dict:
        return {**PPO_DEFAULTS, **self.parsed_overrides()}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        return cls(**json.loads(text))


def split_agent(agent: str) -> tuple[str, dict]:
    """``"aime+full"`` → ("aime", the pillars' overrides); ``"sac"`` → ("sac", {})."""
    from aime_agent.config import PILLARS

    base, plus, pillar = agent.partition("+")
    if base not in AGENTS or (plus and base != "aime"):
        raise ValueError(f"unknown agent {agent!r}; choose from {', '.join(AGENTS)}, or aime+<pillar>")
    if plus and pillar not in PILLARS:
        raise ValueError(f"agent {agent!r}: unknown pillar {pillar!r}; choose from {', '.join(PILLARS)}")
    return base, dict(PILLARS[pillar]) if plus else {}


def split_task(task: str) -> tuple[str, dict]:
    """``"cartpole-swingup+distractors0.5"`` → ("cartpole-swingup", {"distractors": 0.5}): the DMC task and
    the env's keyword arguments (``envs.DMCEnv``); a plain task has none."""
    import envs

    base, plus, variant = task.partition("+")
    envs.parse_task(base)  # an unknown task fails here, with the list of tasks
    if not plus:
        return base, {}
    try:
        value = float(variant.removeprefix("distractors")) if variant.startswith("distractors") else None
    except ValueError:
        value = None
    if value is None or not 0 < value <= 1:
        raise ValueError(f"task {task!r}: a variant is +distractors<strength>, strength in (0, 1], e.g. "
                         f"{base}+distractors0.5")  # fmt: skip
    return base, {"distractors": value}


def run_name(agent: str, task: str, seed: int) -> str:
    return f"{agent}-{task}-s{seed}"


def parse_run(name: str) -> tuple[str, str]:
    """(agent, task) of a run named by ``run_name`` (its CSV stem or its folder under the runs directory)."""
    agent, _, rest = name.partition("-")
    task, _, seed = rest.rpartition("-s")
    if not (agent and task and seed.isdigit()):
        raise ValueError(f"run name {name!r} is not <algo>-<domain>-<task>-s<seed> (e.g. aime-cartpole-swingup-s0)")
    return agent, task


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    for row in rows:
        row["env_steps"], row["updates"] = int(row["env_steps"]), int(row["updates"])
    return rows


def read_folder(folder: Path) -> dict[str, list[dict]]:
    """The runs whose CSVs in ``folder`` have rows, by run name (the CSV's stem), in name order."""
    return {p.stem: rows for p in sorted(Path(folder).glob("*.csv")) if (rows := read_rows(p))}


def write_rows(path: Path, rows: list[dict]) -> None:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, out.getvalue())


def is_finished(spec: RunSpec) -> bool:
    rows = read_rows(spec.csv_path)
    return bool(rows) and rows[-1]["env_steps"] >= spec.env_steps


def make_env(spec: RunSpec, seed: int):
    from aime_agent.train import TrainSettings
    from aime_agent.train import make_env as make_vec

    task, env_kwargs = split_task(spec.task)
    settings = TrainSettings(env=task, action_repeat=spec.action_repeat, render_quality="fast", **env_kwargs)
    env = make_vec(settings, spec.n_envs, seed)
    if FRAME_STACK[spec.base_agent]:
        from stable_baselines3.common.vec_env import VecFrameStack

        env = VecFrameStack(env, FRAME_STACK[spec.base_agent])
    return env


def build(spec: RunSpec, env):
    base, pillars = split_agent(spec.agent)
    overrides = spec.parsed_overrides()
    if base == "aime":
        from aime_agent import AIME

        return AIME("CnnPolicy", env, preset=spec.preset, seed=spec.seed, device=spec.device,
                    **{**pillars, **overrides})  # fmt: skip
    if base == "ppo":
        from stable_baselines3 import PPO

        return PPO("CnnPolicy", env, seed=spec.seed, device=spec.device, **spec.ppo_kwargs())
    from stable_baselines3 import SAC

    if spec.device_replay:  # same sampling, observations kept on the GPU
        from aime_agent.benchmark.device_replay import DeviceReplayBuffer

        overrides.setdefault("replay_buffer_class", DeviceReplayBuffer)
    return SAC("CnnPolicy", env, buffer_size=spec.sac_buffer, seed=spec.seed, optimize_memory_usage=True,
               replay_buffer_kwargs={"handle_timeout_termination": False}, device=spec.device,
               **overrides)  # fmt: skip


def load(spec: RunSpec, env):
    if spec.base_agent == "aime":
        from aime_agent import AIME as cls
    else:
        import stable_baselines3

        cls = getattr(stable_baselines3, spec.base_agent.upper())
    return cls.load(spec.rundir / "checkpoint.zip", env=env, device=spec.device)


def superseded_path(csv_path: Path, rows: list[dict]) -> Path:
    """Where ``restart`` keeps the curve of a run whose checkpoint was lost."""
    return csv_path.parent / "superseded" / f"{csv_path.stem}-lost-at-{int(rows[-1]['env_steps']) // 1000}k.csv"


def run(spec: RunSpec) -> list[dict]:
    """Train, evaluate and checkpoint ``spec`` until ``spec.env_steps``; resumes from its checkpoint. Returns
    the CSV's rows."""
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.logger import configure as configure_logger

    from aime_agent.allocator import retain_freed_memory
    from aime_agent.train import load_run_replay, save_run

    retain_freed_memory()  # SAC's updates spent ~40 % of their time in page faults without it
    name, csv_path, rundir, repeat = spec.name, spec.csv_path, spec.rundir, spec.action_repeat
    rows = read_rows(csv_path)
    if rows and rows[-1]["env_steps"] >= spec.env_steps:
        return rows
    env, eval_env = make_env(spec, spec.seed), make_env(spec, spec.seed + 10_000)
    if (rundir / "checkpoint.zip").exists():
        model = load(spec, env)
        load_run_replay(model, rundir)
        rows = [r for r in rows if r["env_steps"] <= model.num_timesteps * repeat]
        print(f"{name}: resuming at {model.num_timesteps * repeat} env steps", flush=True)
    elif rows and not spec.restart:
        raise SystemExit(
            f"{csv_path} holds {len(rows)} evaluations up to {int(rows[-1]['env_steps'])} env steps, but "
            f"{rundir / 'checkpoint.zip'} is missing, so the run cannot resume. Restart it (--restart) "
            f"to start over; its old curve is then kept as {superseded_path(csv_path, rows)}."
        )
    else:
        if rows:  # restart: keep the lost run's curve beside the other superseded ones
            kept = superseded_path(csv_path, rows)
            kept.parent.mkdir(parents=True, exist_ok=True)
            os.replace(csv_path, kept)
            if (meta := csv_path.with_suffix(".json")).exists():  # its config and machines go with it
                os.replace(meta, kept.with_suffix(".json"))
            print(f"{name}: no checkpoint; restarting, the old curve moved to {kept}", flush=True)
        model, rows = build(spec, env), []
    wall, interval = resume_clock(rundir, model.num_timesteps * repeat, rows)
    record_segment(spec, model)
    # Training metrics (losses, episode returns) for diagnosis: one folder per resumed segment, because SB3's CSV
    # writer truncates its file.
    segment = rundir / "logs" / f"from-{model.num_timesteps * repeat}"
    model.set_logger(configure_logger(str(segment), ["csv", "tensorboard"]))
    every = spec.checkpoint_every or spec.eval_every
    while (done := model.num_timesteps * repeat) < spec.env_steps:
        # Up to the next evaluation, the next checkpoint or the end, whichever comes first.
        chunk = min(spec.eval_every - done % spec.eval_every, every - done % every, spec.env_steps - done) // repeat
        start = time.perf_counter()
        model.learn(chunk, reset_num_timesteps=False)
        elapsed = time.perf_counter() - start
        wall += elapsed
        interval = {"env_steps": interval["env_steps"] + chunk * repeat, "s": interval["s"] + elapsed}
        steps = model.num_timesteps * repeat
        evaluated = steps % spec.eval_every == 0 or steps >= spec.env_steps
        if evaluated:
            returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=spec.eval_episodes, deterministic=True,
                                         return_episode_rewards=True)  # fmt: skip
            rows.append({"env_steps": steps, "eval_return_mean": float(np.mean(returns)),
                         "eval_return_std": float(np.std(returns)), "wall_s": wall,
                         "updates": int(getattr(model, "_n_updates", 0)),
                         "env_steps_per_s": interval["env_steps"] / interval["s"]})  # fmt: skip
            interval = {"env_steps": 0, "s": 0.0}
        if spec.checkpoint:
            save_run(model, rundir)
            atomic_write_text(rundir / CLOCK, json.dumps({"env_steps": steps, "wall_s": wall, "interval": interval}))
        if evaluated:
            write_rows(csv_path, rows)
            print(f"{name}: {rows[-1]}", flush=True)
        else:
            print(f"{name}: checkpoint at {steps} env steps ({wall:.0f} s of training)", flush=True)
    env.close()
    eval_env.close()
    return rows


def run_config(spec: RunSpec, model) -> dict:
    """The configuration a run trains with: the SB3-level hyperparameters the algorithm holds (keyword arguments
    such as ``learning_starts`` override AIME's config there), AIME's whole config, the frame stack."""
    keys = ("learning_rate", "buffer_size", "learning_starts", "batch_size", "tau", "gamma", "train_freq",
            "gradient_steps", "ent_coef", "target_update_interval", "optimize_memory_usage", "n_steps", "n_epochs",
            "gae_lambda", "clip_range", "policy_kwargs")  # fmt: skip
    config = {"sb3": {key: repr(getattr(model, key)) for key in keys if hasattr(model, key)}}
    if spec.base_agent == "aime":
        return config | {"aime": model.policy.config.to_dict()}
    return config | {"frame_stack": FRAME_STACK[spec.base_agent]}


def record_segment(spec: RunSpec, model) -> None:
    """Append this session's segment (machine, commit, start) to ``<run>.json`` beside the CSV.

    A run may span sessions on different machines, so each segment names its own CPU/GPU; the config is the one
    the model trains with (a resumed run keeps its checkpoint's config, whatever the defaults are now)."""
    from aime_agent.benchmark.machine import describe

    meta_path = spec.csv_path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        meta = {}
    steps = model.num_timesteps * spec.action_repeat
    meta = {"run": spec.name, "algo": spec.agent, "task": spec.task, "seed": spec.seed,
            "preset": spec.preset if spec.base_agent == "aime" else None, "action_repeat": spec.action_repeat,
            "render_quality": "fast", "eval_episodes": spec.eval_episodes, "eval_every": spec.eval_every,
            "n_envs": spec.n_envs, "overrides": list(spec.overrides), "config": run_config(spec, model),
            "segments": [s for s in meta.get("segments", []) if s["from_env_steps"] < steps]
            + [{"from_env_steps": steps, "device": str(model.device), **describe()}]}  # fmt: skip
    atomic_write_text(meta_path, json.dumps(meta, indent=1, default=repr) + "\n")


def resume_clock(rundir: Path, env_steps: int, rows: list[dict]) -> tuple[float, dict]:
    """(training seconds so far, {env_steps, s} since the last evaluation) for a run at ``env_steps``.

    A checkpoint between evaluations left ``clock.json`` beside it; without one that matches (or one unreadable:
    it only times the run), the clock restarts from the last evaluation row, as a run checkpointed only at
    evaluations does."""
    try:
        clock = json.loads((Path(rundir) / CLOCK).read_text())
        if clock["env_steps"] == env_steps:
            return float(clock["wall_s"]), clock["interval"]
    except (OSError, ValueError, KeyError, TypeError):  # missing, torn or not a clock
        pass
    return (rows[-1]["wall_s"] if rows else 0.0), {"env_steps": 0, "s": 0.0}


def main(argv=None) -> None:
    """``python -m aime_agent.benchmark '<RunSpec JSON>'``: one run, in this process (the suite's launchers)."""
    import argparse

    parser = argparse.ArgumentParser(description="one benchmark run, given as RunSpec JSON")
    parser.add_argument("spec", help="RunSpec as JSON (RunSpec.to_json)")
    run(RunSpec.from_json(parser.parse_args(argv).spec))


if __name__ == "__main__":
    main()
