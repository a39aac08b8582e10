"""Learning curves on DMC pixel tasks: AIME beside SB3's SAC, resumable, one CSV per run.

Every ``--eval-every`` env steps (dm_control control steps) the deterministic policy is evaluated on
``--eval-episodes`` episodes of a separate env, a row is appended to ``<csv-dir>/<algo>-<task>-s<seed>.csv``
(env steps, eval return mean/std, wall time, updates, env steps/s), and the run is checkpointed
atomically under ``--runs`` (also every ``--checkpoint-every`` env steps, for runs slower than a
session: SAC on the CPU). Rerunning the same command resumes from the last checkpoint, so a run may
span sessions; only the CSVs belong in git. A CSV whose checkpoint is gone stops the script instead of
being overwritten; ``--restart`` then moves it to ``superseded/<run>-lost-at-<N>k.csv`` and starts over.
``--report`` turns the CSVs into docs/benchmarks/learning.md and learning.png.

    python benchmarks/learning.py --algo aime --env cartpole-swingup --seed 0            # 100k env steps
    python benchmarks/learning.py --algo sac --env cartpole-swingup --seed 0
    python benchmarks/learning.py --report

AIME: ``--preset small`` (its default replay ratio), ``fast`` rendering, action repeat 2. SAC:
``CnnPolicy`` with 3 stacked frames (VecFrameStack, as SB3 users would), buffer 100k, SB3's defaults
otherwise, the same env, action repeat and rendering. On a lent GPU machine, ``--sac-device-replay`` keeps SAC's
replay observations on the GPU (same sampling; ``device_replay.py``) and ``--no-checkpoint`` skips the 3.7 GB
replay snapshots that its disk would lose anyway.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import time
from pathlib import Path

import numpy as np
from machine import describe
from published import MILESTONES, spread, table  # the milestones our report and the published curves share

from envs.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
CSV_DIR = ROOT / "docs" / "benchmarks" / "learning"
RUNS = ROOT / "runs" / "learning"
FIELDS = ["env_steps", "eval_return_mean", "eval_return_std", "wall_s", "updates", "env_steps_per_s"]
ACTION_REPEAT = 2


def make_env(task: str, seed: int, frame_stack: int = 0):
    from aime_agent.train import TrainSettings
    from aime_agent.train import make_env as make_vec

    env = make_vec(TrainSettings(env=task, action_repeat=ACTION_REPEAT, render_quality="fast"), 1, seed)
    if frame_stack:
        from stable_baselines3.common.vec_env import VecFrameStack

        env = VecFrameStack(env, frame_stack)
    return env


def run_name(algo: str, task: str, seed: int) -> str:
    return f"{algo}-{task}-s{seed}"


def parse_run(name: str) -> tuple[str, str]:
    """(algo, task) of a run named by ``run_name`` (its CSV stem or its folder under --runs)."""
    algo, _, rest = name.partition("-")
    task, _, seed = rest.rpartition("-s")
    if not (algo and task and seed.isdigit()):
        raise ValueError(f"run name {name!r} is not <algo>-<domain>-<task>-s<seed> (e.g. aime-cartpole-swingup-s0)")
    return algo, task


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
    return {p.stem: rows for p in sorted(folder.glob("*.csv")) if (rows := read_rows(p))}


def write_rows(path: Path, rows: list[dict]) -> None:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, out.getvalue())


def build(args, env):
    if args.algo == "aime":
        from aime_agent import AIME

        return AIME("CnnPolicy", env, preset=args.preset, seed=args.seed, **args.override)
    from stable_baselines3 import SAC

    if args.sac_device_replay:  # same sampling, observations kept on the GPU (device_replay.py)
        from device_replay import DeviceReplayBuffer

        args.override.setdefault("replay_buffer_class", DeviceReplayBuffer)
    return SAC("CnnPolicy", env, buffer_size=args.sac_buffer, seed=args.seed, optimize_memory_usage=True,
               replay_buffer_kwargs={"handle_timeout_termination": False}, **args.override)  # fmt: skip


def load(algo: str, rundir: Path, env):
    if algo == "aime":
        from aime_agent import AIME

        return AIME.load(rundir / "checkpoint.zip", env=env)
    from stable_baselines3 import SAC

    return SAC.load(rundir / "checkpoint.zip", env=env)


def superseded_path(csv_path: Path, rows: list[dict]) -> Path:
    """Where ``--restart`` keeps the curve of a run whose checkpoint was lost."""
    return csv_path.parent / "superseded" / f"{csv_path.stem}-lost-at-{int(rows[-1]['env_steps']) // 1000}k.csv"


def run(args) -> None:
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.logger import configure as configure_logger

    from aime_agent.allocator import retain_freed_memory
    from aime_agent.train import load_run_replay, save_run

    retain_freed_memory()  # both algorithms: SAC's updates spent ~40 % of their time in page faults without it
    name = run_name(args.algo, args.env, args.seed)
    csv_path, rundir = args.csv_dir / f"{name}.csv", args.runs / name
    rows = read_rows(csv_path)
    stack = 3 if args.algo == "sac" else 0
    env, eval_env = make_env(args.env, args.seed, stack), make_env(args.env, args.seed + 10_000, stack)
    if (rundir / "checkpoint.zip").exists():
        model = load(args.algo, rundir, env)
        load_run_replay(model, rundir)
        rows = [r for r in rows if r["env_steps"] <= model.num_timesteps * ACTION_REPEAT]
        print(f"{name}: resuming at {model.num_timesteps * ACTION_REPEAT} env steps", flush=True)
    elif rows and not args.restart:
        raise SystemExit(f"{csv_path} holds {len(rows)} evaluations up to {int(rows[-1]['env_steps'])} env steps, but "
                         f"{rundir / 'checkpoint.zip'} is missing, so the run cannot resume. Pass --restart to start "
                         f"it over; its old curve is then kept as {superseded_path(csv_path, rows)}.")  # fmt: skip
    else:
        if rows:  # --restart: keep the lost run's curve beside the other superseded ones
            kept = superseded_path(csv_path, rows)
            kept.parent.mkdir(parents=True, exist_ok=True)
            os.replace(csv_path, kept)
            print(f"{name}: no checkpoint; restarting, the old curve moved to {kept}", flush=True)
        model, rows = build(args, env), []
    wall, interval = resume_clock(rundir, model.num_timesteps * ACTION_REPEAT, rows)
    record_segment(csv_path, args, model)
    # Training metrics (losses, imagined returns, episode returns) for diagnosis: one folder per resumed segment,
    # because SB3's CSV writer truncates its file.
    segment = rundir / "logs" / f"from-{model.num_timesteps * ACTION_REPEAT}"
    model.set_logger(configure_logger(str(segment), ["csv", "tensorboard"]))
    while (done := model.num_timesteps * ACTION_REPEAT) < args.env_steps:
        # Up to the next evaluation, the next checkpoint or the end, whichever comes first.
        chunk = min(args.eval_every - done % args.eval_every, args.checkpoint_every - done % args.checkpoint_every,
                    args.env_steps - done) // ACTION_REPEAT  # fmt: skip
        start = time.perf_counter()
        model.learn(chunk, reset_num_timesteps=False)
        elapsed = time.perf_counter() - start
        wall += elapsed
        interval = {"env_steps": interval["env_steps"] + chunk * ACTION_REPEAT, "s": interval["s"] + elapsed}
        steps = model.num_timesteps * ACTION_REPEAT
        evaluated = steps % args.eval_every == 0 or steps >= args.env_steps
        if evaluated:
            returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True,
                                         return_episode_rewards=True)  # fmt: skip
            rows.append({"env_steps": steps, "eval_return_mean": float(np.mean(returns)),
                         "eval_return_std": float(np.std(returns)), "wall_s": wall, "updates": model._n_updates,
                         "env_steps_per_s": interval["env_steps"] / interval["s"]})  # fmt: skip
            interval = {"env_steps": 0, "s": 0.0}
        if not args.no_checkpoint:
            save_run(model, rundir)
            atomic_write_text(rundir / CLOCK, json.dumps({"env_steps": steps, "wall_s": wall, "interval": interval}))
        if evaluated:
            write_rows(csv_path, rows)
            print(f"{name}: {rows[-1]}", flush=True)
        else:
            print(f"{name}: checkpoint at {steps} env steps ({wall:.0f} s of training)", flush=True)


def run_config(args, model) -> dict:
    """The configuration a run trains with: the SB3-level hyperparameters the algorithm holds (keyword arguments
    such as ``learning_starts`` override AIME's config there), AIME's whole config, SAC's frame stack."""
    keys = ("learning_rate", "buffer_size", "learning_starts", "batch_size", "tau", "gamma", "train_freq",
            "gradient_steps", "ent_coef", "target_update_interval", "optimize_memory_usage",
            "policy_kwargs")  # fmt: skip
    config = {"sb3": {key: repr(getattr(model, key)) for key in keys if hasattr(model, key)}}
    if args.algo == "aime":
        return config | {"aime": model.policy.config.to_dict()}
    return config | {"frame_stack": 3}


def record_segment(csv_path: Path, args, model) -> None:
    """Append this session's segment (machine, commit, start) to ``<run>.json`` beside the CSV.

    A run may span sessions on different machines, so each segment names its own CPU; the config is the one
    the model trains with (a resumed run keeps its checkpoint's config, whatever the defaults are now)."""
    meta_path = csv_path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        meta = {}
    steps = model.num_timesteps * ACTION_REPEAT
    meta = {"run": csv_path.stem, "algo": args.algo, "task": args.env, "seed": args.seed,
            "preset": args.preset if args.algo == "aime" else None, "action_repeat": ACTION_REPEAT,
            "render_quality": "fast", "eval_episodes": args.eval_episodes, "eval_every": args.eval_every,
            "overrides": args.override_text, "config": run_config(args, model),
            "segments": [s for s in meta.get("segments", []) if s["from_env_steps"] < steps]
            + [{"from_env_steps": steps, **describe()}]}  # fmt: skip
    atomic_write_text(meta_path, json.dumps(meta, indent=1, default=repr) + "\n")


CLOCK = "clock.json"  # beside a checkpoint: training time so far, and since the last evaluation


def resume_clock(rundir: Path, env_steps: int, rows: list[dict]) -> tuple[float, dict]:
    """(training seconds so far, {env_steps, s} since the last evaluation) for a run at ``env_steps``.

    A checkpoint between evaluations (``--checkpoint-every``) left ``clock.json`` beside it; without one that
    matches (or one unreadable: it only times the run), the clock restarts from the last evaluation row, as a
    run checkpointed only at evaluations does."""
    try:
        clock = json.loads((rundir / CLOCK).read_text())
        if clock["env_steps"] == env_steps:
            return float(clock["wall_s"]), clock["interval"]
    except (OSError, ValueError, KeyError, TypeError):  # missing, torn or not a clock
        pass
    return (rows[-1]["wall_s"] if rows else 0.0), {"env_steps": 0, "s": 0.0}


# Published scores at 100k env steps (DESIGN.md §5; ../shared/reference/anchors.md): DreamerV3's per-seed files,
# DrQ-v2 and MR.Q from their papers' score files. Labelled "published" wherever they appear.
PUBLISHED_100K = {
    "cartpole-swingup": {"DreamerV3": 483, "DrQ-v2": 479, "MR.Q": 317},
    "cartpole-balance": {"DreamerV3": 863, "DrQ-v2": 987, "MR.Q": 920},
}


def at(rows: list[dict], env_steps: int) -> dict | None:
    """The evaluation row at exactly ``env_steps``, if the run got there."""
    return next((r for r in rows if int(r["env_steps"]) == env_steps), None)


def published_lines(curves: dict) -> list[str]:
    """Published per-seed curves at the milestones (``benchmarks/published.py``'s JSON), as Markdown lines."""
    if not curves:
        return []
    intro = ("Published curves at the same milestones, for comparison (mean over seeds [min – max]; how each is "
             "read: [published_cartpole.md](published_cartpole.md)):")  # fmt: skip
    return ["", intro, "", *table(curves)]


# Runs of another configuration than the main curves, one folder of CSVs each (--csv-dir), reported apart.
VARIANTS = {
    "v0_input_norm_off": ("AIME of earlier code (before the core changes of 2026-12-02: batch-mean free bits, every "
                          "frame decoded, imagination from every state), `small` with `model.input_norm=False` "
                          "(the balance runs and swingup s0/s1 started before input standardisation became the "
                          "default; swingup s2 was restarted with the same setting)",
                          "git checkout 1a92fb6 && python benchmarks/learning.py --algo aime --env cartpole-swingup "
                          "--seed 0 --override model.input_norm=False"),
    "input_norm": ("AIME of the same earlier code with `model.input_norm` on, stopped at 40k env steps",
                   "python benchmarks/learning.py --algo aime --env cartpole-swingup --seed 0 --csv-dir "
                   "docs/benchmarks/learning/input_norm --runs runs/learning-input_norm"),
}  # fmt: skip


def run_table(runs: dict[str, list[dict]]) -> list[str]:
    """Markdown rows: evaluations at the milestones, progress, wall time and speed of each run."""
    lines = ["| run | " + " | ".join(f"{m // 1000}k" for m in MILESTONES)
             + " | env steps done | wall h per 100k env steps | env steps/s | updates/s |",
             "|---|" + "---:|" * len(MILESTONES) + "---:|---:|---:|---:|"]  # fmt: skip
    for name, rows in runs.items():
        cells = []
        for m in MILESTONES:
            row = at(rows, m)
            cells.append(f"{row['eval_return_mean']:.0f} ± {row['eval_return_std']:.0f}" if row else "–")
        last = rows[-1]
        per_100k = last["wall_s"] / last["env_steps"] * 100_000 / 3600
        steps_per_s = last["env_steps"] / last["wall_s"]
        updates_per_s = last["updates"] / last["wall_s"] if last["updates"] else float("nan")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {int(last['env_steps'])} | {per_100k:.2f} | "
                     f"{steps_per_s:.1f} | {updates_per_s:.2f} |")  # fmt: skip
    return lines


def write_report(csv_dir: Path, out: Path) -> None:
    """docs/benchmarks/learning.md (tables) and learning.png (per-seed curves) from the per-run CSVs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = read_folder(csv_dir)
    why = "[../agent.md](../investigations/agent_learning.md#learning-status-measured-2-cpu-cores)"
    status = ("No run has started yet. " if not runs else "") + "A run whose *env steps done* is below " \
        f"{MILESTONES[-1] // 1000}k is unfinished: it resumes from its checkpoint in a later session, " \
        "and its CSV is committed as it grows. " \
        "Runs of earlier defaults and behaviour settings (superseded): " \
        f"[learning/superseded/](learning/superseded/); why: {why}."  # fmt: skip
    lines = ["# Learning curves on DMC pixel tasks (generated by `benchmarks/learning.py --report`)", "",
             "Deterministic evaluation return, 5 episodes every 10k env steps (dm_control control steps; action "
             "repeat 2, `fast` rendering, 64×64 pixels), on the 2-core CPU machine. AIME: preset `small` at its "
             "defaults of the commit its JSON names (`<run>.json` beside each CSV: the whole config, and per "
             "session the CPU, torch threads and commit). The runs of earlier code, published before 2026-12-02 with "
             "`model.input_norm=False` and every frame decoded, are the first table below the main one. "
             "SAC: SB3 `CnnPolicy`, 3 stacked frames, buffer 100k. A run not yet at a "
             "milestone shows –. Raw per-seed CSVs: [learning/](learning/). Wall times are as the runs ran: two "
             "runs at a time with 1 torch thread each (`OMP_NUM_THREADS=1`), often beside diagnostics, so they "
             "bound the time of a run alone from above (the learning loop alone with 2 threads: "
             "[learning_speed.md](learning_speed.md)). The script keeps freed heap memory in the process "
             "([aime_agent/allocator.py](../../aime_agent/allocator.py)); the earlier AIME runs ran without it "
             "(5 % per update; "
             "[../investigations/agent_learning.md](../investigations/agent_learning.md#the-heap-allocator)).",
             "", status, "",
             *run_table(runs)]  # fmt: skip
    variants = {folder: read_folder(csv_dir / folder) for folder in VARIANTS}
    for folder, variant in variants.items():
        if variant:
            title, command = VARIANTS[folder]
            lines += ["", f"{title}. Raw CSVs: [learning/{folder}/](learning/{folder}/). Reproduce: `{command}`.", "",
                      *run_table(variant)]  # fmt: skip
    gpu = read_folder(csv_dir / "gpu")
    if gpu:  # partial runs on a lent GPU machine: listed apart, since their wall times are not this machine's
        lines += ["", "Runs on a lent GPU machine (NVIDIA H200, 16 CPU cores, shared with other runs), stopped at the "
                  "machine's time limit; they cannot resume (their replay stayed there). Raw CSVs: "
                  "[learning/gpu/](learning/gpu/).", "",
                  "| run | evaluations (env steps: return) | env steps done | env steps/s there |",
                  "|---|---|---:|---:|"]  # fmt: skip
        for name, rows in gpu.items():
            evals = ", ".join(f"{r['env_steps'] // 1000}k: {r['eval_return_mean']:.0f}" for r in rows)
            last = rows[-1]
            lines.append(f"| {name} | {evals} | {last['env_steps']} | {last['env_steps'] / last['wall_s']:.1f} |")
    lines += ["", "Across seeds at 100k env steps (runs that got there), beside published scores at 100k:", "",
              "| algo | task | seeds | mean | min | published at 100k |", "|---|---|---:|---:|---:|---|"]  # fmt: skip
    groups: dict[tuple[str, str], list[float]] = {}
    for name, rows in runs.items():
        algo, task = parse_run(name)
        row = at(rows, 100_000)
        if row:
            groups.setdefault((algo, task), []).append(row["eval_return_mean"])
    if not groups:
        lines.append("| – | – | 0 | – | – | no run has reached 100k env steps yet |")
        for task, scores in PUBLISHED_100K.items():
            published = ", ".join(f"{k} {v}" for k, v in scores.items())
            lines.append(f"| – | {task} | – | – | – | {published} (published) |")
    curves_path = out / "published_cartpole.json"  # published per-seed curves (benchmarks/published.py)
    curves = json.loads(curves_path.read_text()) if curves_path.is_file() else {}
    for (algo, task), values in sorted(groups.items()):
        scores = PUBLISHED_100K.get(task, {})
        if algo == "sac" and (sac := curves.get(task, {}).get("SAC (pixels)", {}).get("100000")):
            scores = {"SAC (pixels)": spread(sac)}  # SAC beside SAC
        published = ", ".join(f"{k} {v}" for k, v in scores.items())
        lines.append(f"| {algo} | {task} | {len(values)} | {np.mean(values):.0f} | {np.min(values):.0f} | "
                     f"{published} (published) |")  # fmt: skip
    lines += published_lines(curves)
    lines += ["", "Wall time counts training (env steps and updates), not evaluation. Reproduce: `python "
              "benchmarks/learning.py --algo aime --env cartpole-swingup --seed 0` (and `--algo sac`, other "
              "`--env`/`--seed`; the CPU runs of SAC add `--checkpoint-every 2000`, the GPU runs "
              "`--sac-device-replay --no-checkpoint`); each run resumes from "
              "`runs/learning/<run>/` after an interruption; then `python benchmarks/learning.py --report`.",
              "", "![per-seed learning curves](learning.png)"]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning.md").write_text("\n".join(lines) + "\n")
    plotted = [(name, parse_run(name)[1], rows, "-") for name, rows in runs.items()]  # the variants dashed
    plotted += [(f"{name} ({folder})", parse_run(name)[1], rows, "--")
                for folder, variant in variants.items() for name, rows in variant.items()]  # fmt: skip
    tasks = sorted({task for _, task, _, _ in plotted})
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(5 * max(1, len(tasks)), 3.5), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=False):
        for label, _, rows, style in (p for p in plotted if p[1] == task):
            ax.plot([r["env_steps"] for r in rows], [r["eval_return_mean"] for r in rows], marker="o", label=label,
                    linestyle=style)  # fmt: skip
        for label, value in PUBLISHED_100K.get(task, {}).items():
            ax.scatter([100_000], [value], marker="*", s=80, label=f"{label} (published)")
        ax.set(title=task, xlabel="env steps", ylabel="eval return", ylim=(0, 1000))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "learning.png", dpi=110)


def main(argv=None) -> None:
    from aime_agent.cli import parse_overrides

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=["aime", "sac"], default="aime")
    parser.add_argument("--env", default="cartpole-swingup")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-steps", type=int, default=100_000)
    parser.add_argument("--eval-every", type=int, default=10_000, help="env steps between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="env steps between checkpoints (default: --eval-every); a multiple of the action "
                             "repeat, so a slow run loses less when its session ends")  # fmt: skip
    parser.add_argument("--preset", default="small")
    parser.add_argument("--override", nargs="*", default=[], type=str,
                        help="key=value: AIME config fields, or SAC keyword arguments")  # fmt: skip
    parser.add_argument("--restart", action="store_true",
                        help="start over when the CSV has rows but no checkpoint (the old CSV is kept)")  # fmt: skip
    parser.add_argument("--sac-buffer", type=int, default=100_000)
    parser.add_argument("--sac-device-replay", action="store_true",
                        help="SAC's replay observations on the GPU (same sampling)")  # fmt: skip
    parser.add_argument("--no-checkpoint", action="store_true",
                        help="write only the CSV (a machine whose disk is lost: no resume)")  # fmt: skip
    parser.add_argument("--csv-dir", type=Path, default=CSV_DIR)
    parser.add_argument("--runs", type=Path, default=RUNS)
    parser.add_argument("--report", action="store_true", help="write docs/benchmarks/learning.md from the CSVs")
    args = parser.parse_args(argv)
    if args.report:
        write_report(args.csv_dir, ROOT / "docs" / "benchmarks")
        return
    args.checkpoint_every = args.checkpoint_every or args.eval_every
    if args.eval_every % ACTION_REPEAT or args.env_steps % ACTION_REPEAT or args.checkpoint_every % ACTION_REPEAT:
        parser.error(f"--eval-every, --checkpoint-every and --env-steps must be multiples of the action repeat "
                     f"({ACTION_REPEAT})")  # fmt: skip
    args.override_text, args.override = list(args.override), parse_overrides(args.override)
    run(args)


if __name__ == "__main__":
    main()
