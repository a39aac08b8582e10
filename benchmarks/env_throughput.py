"""Env throughput: our DMC pixel env beside raw dm_control and the naive Gymnasium route.

For each task, interleaved in every run (A/B/C order, so machine load hits all variants alike):
  ours-paper / ours-fast   envs.make(task, render_quality=...)
  raw-paper / raw-fast     dm_control suite env + one reused Camera: R physics steps, one render
  naive                    shimmy gym.make("dm_control/...", render_mode="rgb_array") + action repeat
                           + gymnasium AddRenderObservation (a new camera per frame, paper quality)
Agent steps/s over --steps agent steps (random actions, resets included), median of --runs runs.
Also: render cost per frame (paper vs fast), a paper-vs-fast picture with the mean pixel difference,
and SubprocVecEnv(2) scaling. Writes docs/benchmarks/env_throughput.{json,md} and the picture.

    python benchmarks/env_throughput.py [--steps 1000] [--runs 5] [--tasks cartpole-swingup ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import envs  # selects the GL backend before dm_control is imported

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
REPEAT, SIZE = 2, 64


class ActionRepeat(gym.Wrapper):
    """The naive route's action repeat: sum rewards, stop at the episode end."""

    def __init__(self, env, repeat):
        super().__init__(env)
        self.repeat = repeat

    def step(self, action):
        total = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += reward
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


def make_naive(task):
    import shimmy  # noqa: F401  (registers dm_control/* ids)
    from gymnasium.wrappers import AddRenderObservation

    domain, name = envs.parse_task(task)
    env = gym.make(
        f"dm_control/{domain}-{name}-v0",
        render_mode="rgb_array",
        render_kwargs={"width": SIZE, "height": SIZE, "camera_id": envs.dmc.default_camera(domain)},
    )
    return AddRenderObservation(ActionRepeat(env, REPEAT), render_only=True)


class RawDMC:
    """Raw dm_control at equal settings: R physics steps, then one render with one reused camera."""

    def __init__(self, task, quality):
        from dm_control import suite
        from dm_control.mujoco.engine import Camera

        domain, name = envs.parse_task(task)
        self.env = suite.load(domain, name, task_kwargs={"random": 0})
        self.camera = Camera(self.env.physics, SIZE, SIZE, envs.dmc.default_camera(domain))
        self.flags = envs.dmc.RENDER_QUALITIES[quality]
        self.action_dim = self.env.action_spec().shape[0]

    def reset(self, seed=None):
        self.env.reset()
        return self.camera.render(render_flag_overrides=self.flags).copy(), {}

    def step(self, action):
        reward = 0.0
        for _ in range(REPEAT):
            ts = self.env.step(action)
            reward += ts.reward or 0.0
            if ts.last():
                break
        return self.camera.render(render_flag_overrides=self.flags).copy(), reward, False, ts.last(), {}


def build(variant, task):
    if variant.startswith("ours"):
        return envs.make(task, action_repeat=REPEAT, image_size=SIZE, render_quality=variant.split("-")[1], seed=0)
    if variant.startswith("raw"):
        return RawDMC(task, variant.split("-")[1])
    return make_naive(task)


def time_steps(env, actions) -> float:
    """Agent steps/s over len(actions) steps, resets included."""
    env.reset(seed=0)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return len(actions) / (time.perf_counter() - start)


def render_cost_ms(task, quality, frames=200) -> float:
    env = envs.make(task, render_quality=quality)
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(frames):
        env._render_frame()
    return (time.perf_counter() - start) / frames * 1e3


def picture(tasks, path):
    import imageio.v3 as iio

    rows, diffs = [], {}
    for task in tasks:
        frames = {}
        for quality in ("paper", "fast"):
            env = envs.make(task, render_quality=quality, seed=0)
            env.reset(seed=0)
            frames[quality] = env.step(np.zeros(env.action_space.shape, np.float32))[0]
        diffs[task] = float(np.abs(frames["paper"].astype(int) - frames["fast"].astype(int)).mean())
        rows.append(np.concatenate([frames["paper"], frames["fast"]], axis=1))
    grid = np.concatenate(rows, axis=0).repeat(3, axis=0).repeat(3, axis=1)
    iio.imwrite(path, grid)
    return diffs


def vec_scaling(task, steps) -> dict:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    result = {}
    for label, cls, n in (("dummy1", DummyVecEnv, 1), ("subproc2", SubprocVecEnv, 2)):
        vec = make_vec_env(
            f"envs:dmc/{task}-v0", n_envs=n, seed=0, vec_env_cls=cls, env_kwargs={"render_quality": "fast"}
        )
        vec.reset()
        actions = np.random.default_rng(0).uniform(-1, 1, (steps, n) + vec.action_space.shape).astype(np.float32)
        start = time.perf_counter()
        for a in actions:
            vec.step(a)
        result[label] = n * steps / (time.perf_counter() - start)
        vec.close()
    result["speedup"] = result["subproc2"] / result["dummy1"]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--tasks", nargs="+", default=["cartpole-swingup", "reacher-easy", "walker-walk", "cheetah-run"]
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    variants = ["ours-paper", "raw-paper", "naive", "ours-fast", "raw-fast"]

    results = {}
    for task in args.tasks:
        built = {v: build(v, task) for v in variants}
        dim = envs.make(task, render_quality="fast").action_space.shape
        rates = {v: [] for v in variants}
        for run in range(args.runs):
            actions = np.random.default_rng(run).uniform(-1, 1, (args.steps, *dim)).astype(np.float32)
            order = variants[run % len(variants) :] + variants[: run % len(variants)]  # rotate the order each run
            for v in order:
                rates[v].append(time_steps(built[v], actions))
            print(task, run, {v: round(r[-1], 1) for v, r in rates.items()}, flush=True)
        med = {v: statistics.median(r) for v, r in rates.items()}
        results[task] = {
            "steps_per_s_median": med,
            "steps_per_s_runs": rates,
            "render_ms": {q: render_cost_ms(task, q) for q in ("paper", "fast")},
            "ratios": {
                "ours_paper_vs_raw_paper": med["ours-paper"] / med["raw-paper"],
                "ours_fast_vs_raw_fast": med["ours-fast"] / med["raw-fast"],
                "ours_paper_vs_naive": med["ours-paper"] / med["naive"],
                "ours_fast_vs_naive": med["ours-fast"] / med["naive"],
            },
        }
    diffs = picture(args.tasks, args.out / "env_paper_vs_fast.png")
    for task in args.tasks:
        results[task]["paper_fast_mean_abs_pixel_diff"] = diffs[task]
    scaling = vec_scaling(args.tasks[0], max(200, args.steps // 2))

    import dm_control
    import mujoco

    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
        "mujoco": mujoco.__version__,
        "dm_control": getattr(dm_control, "__version__", "?"),
        "action_repeat": REPEAT,
        "image_size": SIZE,
        "steps_per_run": args.steps,
        "runs": args.runs,
    }
    (args.out / "env_throughput.json").write_text(
        json.dumps({"meta": meta, "tasks": results, "subproc_scaling": {args.tasks[0]: scaling}}, indent=2)
    )
    write_markdown(args.out / "env_throughput.md", meta, results, scaling, args.tasks[0])
    print((args.out / "env_throughput.md").read_text())


def write_markdown(path, meta, results, scaling, scaling_task):
    lines = [
        "# Env throughput (generated by `benchmarks/env_throughput.py`)",
        "",
        f"{meta['date']}, {meta['machine']}, MUJOCO_GL={meta['MUJOCO_GL']}, mujoco {meta['mujoco']}, "
        f"{meta['image_size']}×{meta['image_size']} px, action repeat {meta['action_repeat']}; agent steps/s, median "
        f"of {meta['runs']} interleaved runs of {meta['steps_per_run']} agent steps (random actions, resets included).",
        "",
        "| task | ours paper | raw paper | naive | ours fast | raw fast | paper/raw | fast/raw | paper/naive "
        "| fast/naive | render paper ms | render fast ms | paper−fast mean abs px |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task, r in results.items():
        m, q = r["steps_per_s_median"], r["ratios"]
        lines.append(
            f"| {task} | {m['ours-paper']:.0f} | {m['raw-paper']:.0f} | {m['naive']:.0f} | {m['ours-fast']:.0f} | "
            f"{m['raw-fast']:.0f} | {q['ours_paper_vs_raw_paper']:.2f} | {q['ours_fast_vs_raw_fast']:.2f} | "
            f"{q['ours_paper_vs_naive']:.2f} | {q['ours_fast_vs_naive']:.2f} | {r['render_ms']['paper']:.1f} | "
            f"{r['render_ms']['fast']:.1f} | {r['paper_fast_mean_abs_pixel_diff']:.2f} |"
        )
    lines += [
        "",
        "Targets: ours ≥ 0.95× raw dm_control at equal settings; `paper` ≥ 1.0× naive; `fast` ≥ 3× naive.",
        "",
        f"SubprocVecEnv scaling ({scaling_task}, fast): 1 env in DummyVecEnv {scaling['dummy1']:.0f} steps/s, "
        f"2 envs in SubprocVecEnv {scaling['subproc2']:.0f} steps/s in total ({scaling['speedup']:.2f}×).",
        "",
        "![paper (left) vs fast (right)](env_paper_vs_fast.png)",
        "",
        "Left column `paper` (dm_control's defaults), right column `fast` (no shadows or reflections).",
    ]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
