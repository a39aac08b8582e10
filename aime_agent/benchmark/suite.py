"""The benchmark suite: agents × tasks × seeds, each run in its own process, resumable; tiers; launchers.

    aime benchmark --tasks cartpole-swingup,reacher-easy --agents aime,sac,ppo --seeds 3 --env-steps 100000
    aime benchmark --tier 1                      # a named suite (TIERS)
    aime benchmark --tier 1 --launcher slurm --partition gpu --time-min 720 --gpus 1
    aime benchmark --report                      # tables and plots from the CSVs (report.py)

A finished run (its CSV reaches the budget) is skipped; any other resumes from its checkpoint (runs.py), so
rerunning the same command after an interruption carries on. Launchers:

* ``local``: each run in a subprocess of this machine, ``--jobs`` at a time, the CPU cores shared between them
  (``OMP_NUM_THREADS`` = cores // jobs); its output in ``<runs_dir>/<run>/stdout.log``.
* ``slurm``: one SLURM job per run through submitit (partition, time, GPUs, CPUs); a job that SLURM preempts
  or times out is requeued and resumes from its checkpoint (``submitit.helpers.Checkpointable``).
* ``submitit-local``: submitit's local executor, the same jobs as ``slurm`` on this machine (to test a
  configuration before a cluster sees it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aime_agent.benchmark.runs import AGENTS, RunSpec, is_finished, run, split_agent

LAUNCHERS = ("local", "slurm", "submitit-local")


@dataclass(frozen=True)
class Tier:
    """A named suite: what it runs and what it costs."""

    tasks: tuple[str, ...]
    agents: tuple[str, ...]
    seeds: int
    env_steps: int
    cost: str  # what one run costs, measured or estimated (said so)


TIERS = {
    1: Tier(("cartpole-swingup",), ("aime", "sac", "ppo"), 3, 100_000,
            "AIME `small`: ~2.4 h per run alone on 2 CPU cores (measured at 2599a6f), ~5 h two at a time; SAC "
            "~13.6 h, PPO ~13–22 min "
            "(docs/benchmark_suite.md#tiers)"),
    2: Tier(("reacher-easy",), ("aime",), 3, 100_000, "estimated as tier 1 per run (the same model and frame size)"),
    3: Tier(("humanoid-walk",), ("aime",), 3, 1_000_000,
            "GPU hours: 10× tier 1's env steps, and humanoid needs more than 100k (DrQ-v2 reports it at 30M frames)"),
}  # fmt: skip


def parse_seeds(text: str) -> list[int]:
    """``"3"`` → seeds 0, 1, 2; ``"0,4"`` → seeds 0 and 4."""
    parts = [p for p in text.split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: a count (3) or a comma-separated list of seeds (0,4)") from None
    if len(values) == 1 and "," not in text:
        if values[0] < 1:
            raise ValueError(f"--seeds {text!r}: at least one seed")
        return list(range(values[0]))
    return values


def plan(tasks, agents, seeds, overrides: dict[str, list[str]] | None = None, **common) -> list[RunSpec]:
    """Every (task, agent, seed) as a RunSpec, task-major; ``overrides[agent]`` are that agent's key=value pairs."""
    overrides = overrides or {}
    for agent in agents:
        split_agent(agent)  # an unknown agent fails before any run starts
    return [RunSpec(agent=agent, task=task, seed=seed, overrides=list(overrides.get(agent, [])), **common)
            for task in tasks for agent in agents for seed in seeds]  # fmt: skip


def split_overrides(pairs: list[str]) -> dict[str, list[str]]:
    """``["sac:batch_size=4", "learning_starts=9"]`` → {"sac": ["batch_size=4"], "aime": ["learning_starts=9"]}:
    a pair without an ``agent:`` prefix is AIME's."""
    out: dict[str, list[str]] = {}
    for pair in pairs:
        agent, sep, rest = pair.partition(":")
        if not sep or "=" in agent:
            agent, rest = "aime", pair
        try:
            split_agent(agent)
        except ValueError as error:
            raise ValueError(f"--set {pair!r}: {error} (use <agent>:key=value)") from None
        out.setdefault(agent, []).append(rest)
    return out


def run_local(specs: list[RunSpec], jobs: int = 1, poll_s: float = 5.0) -> list[tuple[RunSpec, int]]:
    """Each spec in its own subprocess, ``jobs`` at a time, the next one started as soon as any finishes;
    (spec, exit code) per spec, in the order given."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    pending, running, codes = list(specs), [], {}
    while pending or running:
        while pending and len(running) < jobs:
            spec = pending.pop(0)
            spec.rundir.mkdir(parents=True, exist_ok=True)
            log = (spec.rundir / "stdout.log").open("a")
            proc = subprocess.Popen([sys.executable, "-m", "aime_agent.benchmark", spec.to_json()],
                                    stdout=log, stderr=subprocess.STDOUT, env=env)  # fmt: skip
            running.append((spec, proc, log))
            print(f"started {spec.name} (pid {proc.pid}; log {spec.rundir / 'stdout.log'})", flush=True)
        done = [job for job in running if job[1].poll() is not None]
        if not done:
            time.sleep(poll_s)
        for spec, proc, log in done:
            running.remove((spec, proc, log))
            codes[spec.name] = proc.returncode
            log.close()
            status = "finished" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
            print(f"{spec.name}: {status}", flush=True)
    return [(spec, codes[spec.name]) for spec in specs]


class _Job:
    """A run as a submitit job; preempted or timed out, it is requeued with the same spec and resumes."""

    def __call__(self, spec_json: str) -> int:
        run(RunSpec.from_json(spec_json))
        return 0

    def checkpoint(self, spec_json: str):  # submitit calls this before the job is killed
        import submitit

        return submitit.helpers.DelayedSubmission(_Job(), spec_json)


def run_submitit(
    specs: list[RunSpec],
    cluster: str,
    folder: Path,
    *,
    partition: str | None = None,
    time_min: int = 720,
    gpus: int = 0,
    cpus: int = 2,
    wait: bool = True,
) -> list:
    """One submitit job per spec (``cluster`` "slurm" or "local"); waits for them if ``wait``. The jobs."""
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params = {"timeout_min": time_min, "cpus_per_task": cpus, "name": "aime-benchmark"}
    if cluster == "slurm":
        params |= {"slurm_partition": partition, "slurm_gpus_per_node": gpus or None}
        params = {k: v for k, v in params.items() if v is not None}
    executor.update_parameters(**params)
    jobs = [executor.submit(_Job(), spec.to_json()) for spec in specs]
    for spec, job in zip(specs, jobs, strict=True):
        print(f"submitted {spec.name}: job {job.job_id}", flush=True)
    if wait:
        for job in jobs:
            job.result()  # raises the run's error, with its traceback from the job's log
    return jobs


def add_arguments(p) -> None:
    """``aime benchmark``'s options (cli.py)."""
    p.add_argument("--tier", type=int, choices=sorted(TIERS), help="a named suite; its tasks, agents, seeds, budget")
    p.add_argument("--tasks", help="comma-separated DMC tasks or variants (task+distractors0.5; default: tier 1's)")
    p.add_argument("--agents", help=f"comma-separated, from {', '.join(AGENTS)} or aime+<pillar> (default: the tier's)")
    p.add_argument("--seeds", help="a count (3: seeds 0-2) or a comma-separated list (default: the tier's)")
    p.add_argument("--env-steps", type=int, help="budget per run, dm_control control steps (default: the tier's)")
    p.add_argument("--eval-every", type=int, default=10_000, help="env steps between evaluations")
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--checkpoint-every", type=int, help="env steps between checkpoints (default: each evaluation)")
    p.add_argument("--preset", default="small", help="AIME's preset")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="[AGENT:]KEY=VALUE",
        help="an override for one agent (AIME config fields or SB3 keywords; no prefix: aime)",
    )
    p.add_argument("--device", default="auto", help="torch device of every run (auto: CUDA when present)")
    p.add_argument("--n-envs", type=int, default=1, help="envs per run, stepped in subprocesses when > 1")
    p.add_argument("--csv-dir", default="docs/benchmarks/learning", help="per-run CSVs and their JSON")
    p.add_argument("--runs-dir", default="runs/learning", help="checkpoints (not for git)")
    p.add_argument("--restart", action="store_true", help="restart runs whose CSV has rows but no checkpoint")
    p.add_argument("--launcher", choices=LAUNCHERS, default="local")
    p.add_argument("--jobs", type=int, default=1, help="local: runs at a time")
    p.add_argument("--partition", help="slurm: partition")
    p.add_argument("--time-min", type=int, default=720, help="slurm: minutes per job (a run resumes when requeued)")
    p.add_argument("--gpus", type=int, default=0, help="slurm: GPUs per job")
    p.add_argument("--cpus", type=int, default=2, help="slurm / submitit-local: CPUs per job")
    p.add_argument("--no-wait", action="store_true", help="slurm: submit and return")
    p.add_argument("--dry-run", action="store_true", help="list the runs and what is left of each; run nothing")
    p.add_argument("--report", action="store_true",
                   help="write docs/benchmarks/learning.md and its plots from the CSVs")  # fmt: skip
    p.add_argument("--report-dir", default="docs/benchmarks", help="where --report writes")


def main(args) -> int:
    """``aime benchmark``: plan, skip what is finished, launch the rest (or ``--report``)."""
    if args.report:
        from aime_agent.benchmark.report import write_report

        path = write_report(Path(args.csv_dir), Path(args.report_dir))
        print(f"wrote {path}")
        return 0
    tier = TIERS[args.tier or 1]
    tasks = args.tasks.split(",") if args.tasks else list(tier.tasks)
    agents = args.agents.split(",") if args.agents else list(tier.agents)
    seeds = parse_seeds(args.seeds) if args.seeds else list(range(tier.seeds))
    specs = plan(tasks, agents, seeds, split_overrides(args.set), env_steps=args.env_steps or tier.env_steps,
                 eval_every=args.eval_every, eval_episodes=args.eval_episodes, checkpoint_every=args.checkpoint_every,
                 preset=args.preset, csv_dir=args.csv_dir, runs_dir=args.runs_dir, device=args.device,
                 n_envs=args.n_envs, restart=args.restart)  # fmt: skip
    todo = [spec for spec in specs if not is_finished(spec)]
    for spec in specs:
        state = "finished" if spec not in todo else (
            "resumes" if (spec.rundir / "checkpoint.zip").exists() else "new")  # fmt: skip
        print(f"{spec.name}: {state}")
    if args.dry_run or not todo:
        return 0
    if args.launcher == "local":
        failed = [spec.name for spec, code in run_local(todo, args.jobs) if code]
    else:
        cluster = "slurm" if args.launcher == "slurm" else "local"
        run_submitit(todo, cluster, Path(args.runs_dir) / "submitit", partition=args.partition,
                     time_min=args.time_min, gpus=args.gpus, cpus=args.cpus,
                     wait=not (args.no_wait and cluster == "slurm"))  # fmt: skip
        failed = []
    if failed:
        print(f"failed: {', '.join(failed)} (their logs: <runs_dir>/<run>/stdout.log)", file=sys.stderr)
        return 1
    return 0
