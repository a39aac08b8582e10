"""Speed of the learning loop, today's code beside a baseline checkout, interleaved in one run.

Each measurement is a fresh subprocess that imports the package from one checkout (``PYTHONPATH``), builds
``AIME("CnnPolicy", cartpole-swingup, preset)`` with the given overrides, fills the replay with
``--warmup`` random agent steps, then learns ``--steps`` agent steps and reports:

* seconds per update in the world model (``train_step``) and in the actor-critic (``Behavior.train_step``),
  and per agent step in acting (``_sample_action``: the belief update and the actor) and in the env;
* env steps per second while learning (agent steps × action repeat / wall time of the learning phase);
* peak RSS of the process, and the CPU model.

Configs run round-robin (``--rounds`` times each), so a machine that slows down mid-run slows all of them
alike; the table gives the median over rounds and each config's ratio to the baseline's env steps/s.
The actor trains from the first update (``actor_warmup=0``), as it does for most of a run.

    git worktree add /tmp/aime-base 056a4b8
    python benchmarks/learning_speed.py --base /tmp/aime-base --rounds 3

Writes docs/benchmarks/learning_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from aime_agent.benchmark.machine import cpu_model
from aime_agent.config import PILLARS

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"
ACTION_REPEAT = 2
# name → (checkout: "base" or "head", config overrides); "base" runs the baseline checkout's own defaults
CONFIGS = {
    "base": ("base", {}),
    "head": ("head", {}),
    "head_decode_all": ("head", {"train.decode_fraction": 1.0}),
    "head_starts_all": ("head", {"behavior.start_fraction": 1.0}),
    "head_no_levers": ("head", {"train.decode_fraction": 1.0, "behavior.start_fraction": 1.0}),
    "head_quarters": ("head", {"train.decode_fraction": 0.25, "behavior.start_fraction": 0.25}),
    "head_full": ("head", PILLARS["full"]),  # all five pillars (aime_agent.config.PILLARS)
}


def child(args) -> dict:
    """One measurement in this process (the package comes from PYTHONPATH)."""
    import torch

    import aime_agent.agent as agent_module
    import envs
    from aime_agent.agent import AIME
    from aime_agent.allocator import retain_freed_memory
    from aime_agent.behavior import Behavior

    retain_freed_memory()  # as `aime train` does
    torch.set_num_threads(args.threads)
    clock = {"wm": 0.0, "ac": 0.0, "act": 0.0, "updates": 0}

    def timed(fn, key, count=False):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                clock[key] += time.perf_counter() - start
                clock["updates"] += count

        return wrapper

    agent_module.train_step = timed(agent_module.train_step, "wm", count=True)
    Behavior.train_step = timed(Behavior.train_step, "ac")
    AIME._sample_action = timed(AIME._sample_action, "act")
    env = envs.make("cartpole-swingup", action_repeat=ACTION_REPEAT, render_quality="fast", seed=0)
    overrides = {"actor_warmup": 0, **json.loads(args.overrides)}
    model = AIME("CnnPolicy", env, preset=args.preset, learning_starts=args.warmup, seed=0, **overrides)
    model.learn(args.warmup)  # random actions fill the replay; no update yet
    clock.update(wm=0.0, ac=0.0, act=0.0, updates=0, train=0.0)
    model.train = timed(model.train, "train")  # instance attribute: SB3 calls self.train
    start = time.perf_counter()
    model.learn(args.steps, reset_num_timesteps=False)
    wall = time.perf_counter() - start
    updates = max(clock["updates"], 1)
    return {
        "wall_s": wall, "agent_steps": args.steps, "updates": clock["updates"],
        "env_steps_per_s": args.steps * ACTION_REPEAT / wall,
        "wm_s_per_update": clock["wm"] / updates, "ac_s_per_update": clock["ac"] / updates,
        "act_s_per_step": clock["act"] / args.steps,
        "env_s_per_step": (wall - clock["train"] - clock["act"]) / args.steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }  # fmt: skip


def run_child(code: Path, overrides: dict, args) -> dict:
    cmd = [sys.executable, __file__, "--child", "--overrides", json.dumps(overrides), "--preset", args.preset,
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=code, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"measurement in {code} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(results: dict) -> str:
    meta, rows = results["meta"], results["runs"]
    med = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in rows.items()}
    ref = next((name for name in ("base", "head") if name in med), None)  # the ratios' reference
    base = med[ref]["env_steps_per_s"] if ref else None
    lines = [
        "# Learning-loop speed (generated by `benchmarks/learning_speed.py`)", "",
        f"{meta['date']}, {meta['cpu']}, {meta['threads']} torch threads, torch {meta['torch']}; preset "
        f"`{meta['preset']}`, cartpole-swingup (`fast` rendering, action repeat {ACTION_REPEAT}); {meta['warmup']} "
        f"random agent steps, then {meta['steps']} agent steps of learning timed; median of {meta['rounds']} "
        f"rounds, configs interleaved. "
        + (f"`base` = commit `{meta['base_commit']}` with its defaults; " if "base" in med else "")
        + f"`head` = commit `{meta['head_commit']}`.", "",
        f"| config | overrides | WM s/update | AC s/update | act ms/step | env ms/step | env steps/s | × {ref} | "
        "h per 100k env steps | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for name, m in med.items():
        ratio = f"{m['env_steps_per_s'] / base:.2f}" if base else "–"
        overrides = ", ".join(f"{k}={v}" for k, v in CONFIGS[name][1].items()) or "defaults"
        lines.append(
            f"| {name} | {overrides} | {m['wm_s_per_update']:.3f} | {m['ac_s_per_update']:.3f} | "
            f"{1e3 * m['act_s_per_step']:.1f} | {1e3 * m['env_s_per_step']:.1f} | {m['env_steps_per_s']:.2f} | "
            f"{ratio} | {1e5 / m['env_steps_per_s'] / 3600:.1f} | {m['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def git_commit(path: Path) -> str:
    out = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, help="a checkout of the baseline (e.g. a git worktree)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300, help="agent steps of learning timed per measurement")
    parser.add_argument("--warmup", type=int, default=500, help="random agent steps before (learning_starts)")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--stem", default="learning_speed", help="the results' file names: <out>/<stem>.{json,md}")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    configs = [c for c in args.configs if c != "base" or args.base is not None]
    if "base" in args.configs and args.base is None:
        print("no --base checkout given: measuring this checkout's configs only", file=sys.stderr)
    import torch

    from envs.fileio import atomic_write_text

    results = {
        "meta": {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(), "threads": args.threads,
                 "torch": torch.__version__, "preset": args.preset, "steps": args.steps, "warmup": args.warmup,
                 "rounds": args.rounds, "head_commit": git_commit(ROOT),
                 "base_commit": git_commit(args.base) if args.base else "–"},
        "runs": {name: [] for name in configs},
    }  # fmt: skip
    for round_ in range(args.rounds):
        for name in configs:
            which, overrides = CONFIGS[name]
            code = args.base if which == "base" else ROOT
            results["runs"][name].append(run_child(code.resolve(), overrides, args))
            print(round_, name, json.dumps(results["runs"][name][-1]), flush=True)
        atomic_write_text(args.out / f"{args.stem}.json", json.dumps(results, indent=2))  # partial results
        atomic_write_text(args.out / f"{args.stem}.md", report(results))
    print(report(results))


if __name__ == "__main__":
    main()
