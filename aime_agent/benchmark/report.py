"""The benchmark report: ``aime benchmark --report`` → docs/benchmarks/learning.md and its plots.

From the per-run CSVs that ``runs.py`` writes (``<agent>-<task>-s<seed>.csv``), at each milestone some run
reached (:data:`MILESTONES`, env steps):

* **Aggregates**: IQM and mean of the score (evaluation return / 1000, DMC's maximum) over tasks and seeds, with
  95 % stratified-bootstrap confidence intervals (rliable; Agarwal et al., "Deep RL at the Edge of the
  Statistical Precipice", NeurIPS 2021), per agent. A bootstrap over one seed has zero width: such a CI says
  nothing, and the table gives the seed count beside it.
* **Per task**: mean over seeds with its bootstrap CI, the per-seed returns, and the published references
  (:data:`PUBLISHED`, from ../shared/reference/anchors.md: means over each paper's seeds) as rows labelled
  "(published)".
* **Per run**: returns at the milestones, progress, wall hours per 100k env steps, env steps/s, updates/s.
* Plots: ``learning.png`` (per task: each agent's mean over seeds with its 95 % CI band, the seeds thin) and
  ``learning_profiles.png`` (rliable performance profiles at the largest milestone every agent reached).

Runs of other configurations sit in subfolders of the CSV folder (one table each, :data:`FOLDER_NOTES`);
``superseded/`` holds curves of lost or replaced runs and is not reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from aime_agent.benchmark.runs import parse_run, read_folder
from envs.fileio import atomic_write_text

MILESTONES = (20_000, 50_000, 100_000, 500_000, 1_000_000)
MAX_RETURN = 1000.0  # every DMC task's return lies in [0, 1000]
BOOTSTRAP_REPS = 2000
# Published means over seeds (anchors.md §1.1: DreamerV3's, DrQ-v2's and MR.Q's score files; TD-MPC2, CURL, pixel
# SAC and Acme PPO at 1M env steps). Env steps are dm_control control steps, as ours.
_COLUMNS = [("DreamerV3", 100_000), ("DreamerV3", 500_000), ("DreamerV3", 1_000_000), ("DrQ-v2", 100_000),
            ("DrQ-v2", 500_000), ("DrQ-v2", 1_000_000), ("MR.Q", 100_000), ("MR.Q", 500_000), ("MR.Q", 1_000_000),
            ("CURL", 1_000_000), ("SAC (pixels)", 1_000_000), ("PPO (Acme)", 1_000_000)]  # fmt: skip
_ROWS = {
    "cartpole-balance": (863, 990, 994, 987, 988, 992, 920, 997, 999, 976, 937, 516),
    "cartpole-swingup": (483, 840, 860, 479, 838, 863, 317, 854, 869, 751, 706, 293),
    "reacher-easy": (373, 832, 953, 220, 738, 944, 346, 923, 957, 689, 67, 495),
}
PUBLISHED: dict[str, dict[str, dict[int, float]]] = {
    task: {method: {m: v for (meth, m), v in zip(_COLUMNS, row, strict=True) if meth == method}
           for method, _ in _COLUMNS}
    for task, row in _ROWS.items()
}  # fmt: skip  # humanoid-walk: no published pixel score at these budgets in anchors.md
FOLDER_NOTES = {
    "v0_input_norm_off": "AIME of earlier code (before the core changes of 2026-12-01: batch-mean free bits, every "
    "frame decoded, imagination from every state), `small` with `model.input_norm=False`. Reproduce (swingup seed "
    "0; `--env`, `--seed` for the others): `git checkout 056a4b8 && python benchmarks/learning.py --algo aime "
    "--env cartpole-swingup --seed 0 --override model.input_norm=False`",
    "input_norm": "AIME of the same earlier code with `model.input_norm` on, stopped at 40k env steps",
    "gpu": "Runs on a lent GPU machine (NVIDIA H200, 16 CPU cores, shared with other runs), stopped at the "
    "machine's time limit; they cannot resume (their replay stayed there), and their wall times are not the CPU's",
}


def at(rows: list[dict], env_steps: int) -> dict | None:
    """The evaluation row at exactly ``env_steps``, if the run got there."""
    return next((r for r in rows if int(r["env_steps"]) == env_steps), None)


def scores_at(runs: dict[str, list[dict]], milestone: int) -> dict[str, dict[str, list[float]]]:
    """{agent: {task: [normalised score per seed]}} of the runs that reached ``milestone``."""
    out: dict[str, dict[str, list[float]]] = {}
    for name, rows in runs.items():
        if row := at(rows, milestone):
            agent, task = parse_run(name)
            out.setdefault(agent, {}).setdefault(task, []).append(row["eval_return_mean"] / MAX_RETURN)
    return out


def common_scores(runs: dict[str, list[dict]], milestone: int) -> dict[str, dict[str, list[float]]]:
    """:func:`scores_at` restricted to the tasks every agent there has, so each agent's aggregate covers the
    same tasks; {} when they share none."""
    by_agent = scores_at(runs, milestone)
    shared = set.intersection(*(set(by_task) for by_task in by_agent.values())) if by_agent else set()
    return {agent: {t: v for t, v in by_task.items() if t in shared} for agent, by_task in by_agent.items()} \
        if shared else {}  # fmt: skip


def score_matrix(by_task: dict[str, list[float]]) -> np.ndarray:
    """(runs, tasks): rliable's layout; tasks with more seeds than the fewest keep their first ones."""
    n = min(len(v) for v in by_task.values())
    return np.array([v[:n] for _, v in sorted(by_task.items())]).T


def interval_estimates(matrices: dict[str, np.ndarray], seed: int = 0) -> dict[str, dict]:
    """{agent: {"iqm": (point, low, high), "mean": (…)}} with 95 % stratified-bootstrap CIs (rliable)."""
    from rliable import library as rly
    from rliable import metrics

    def aggregate(x):
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])

    points, cis = rly.get_interval_estimates(matrices, aggregate, reps=BOOTSTRAP_REPS,
                                             random_state=np.random.RandomState(seed))  # fmt: skip
    return {agent: {k: (float(points[agent][i]), float(cis[agent][0][i]), float(cis[agent][1][i]))
                    for i, k in enumerate(("iqm", "mean"))} for agent in matrices}  # fmt: skip


def aggregate_lines(runs: dict[str, list[dict]]) -> list[str]:
    """At each milestone, every agent's IQM and mean over the tasks all agents there share (:func:`common_scores`)."""
    lines = ["| agent | env steps | tasks | seeds per task | IQM [95 % CI] | mean [95 % CI] |",
             "|---|---:|---|---:|---|---|"]  # fmt: skip
    for m in MILESTONES:
        if not (by_agent := common_scores(runs, m)):
            continue
        matrices = {agent: score_matrix(by_task) for agent, by_task in sorted(by_agent.items())}
        for agent, est in interval_estimates(matrices).items():
            cells = [f"{p:.3f} [{lo:.3f}, {hi:.3f}]" for p, lo, hi in (est["iqm"], est["mean"])]
            lines.append(f"| {agent} | {m // 1000}k | {', '.join(sorted(by_agent[agent]))} | "
                         f"{matrices[agent].shape[0]} | " + " | ".join(cells) + " |")  # fmt: skip
    return lines if len(lines) > 2 else []


def task_lines(runs: dict[str, list[dict]], published_curves: dict) -> list[str]:
    lines = ["| task | agent | env steps | seeds | mean return [95 % CI] | per seed |", "|---|---|---:|---:|---|---|"]
    by_m = {m: scores_at(runs, m) for m in MILESTONES}
    tasks = sorted({task for by_agent in by_m.values() for by_task in by_agent.values() for task in by_task})
    for task in tasks:
        for m, by_agent in by_m.items():
            if not any(task in by_task for by_task in by_agent.values()):
                continue
            for agent, by_task in sorted(by_agent.items()):
                if task in by_task:
                    est = interval_estimates({agent: np.array(by_task[task])[:, None]})[agent]["mean"]
                    point, lo, hi = (MAX_RETURN * x for x in est)
                    seeds = ", ".join(f"{MAX_RETURN * s:.0f}" for s in by_task[task])
                    lines.append(f"| {task} | {agent} | {m // 1000}k | {len(by_task[task])} | {point:.0f} "
                                 f"[{lo:.0f}, {hi:.0f}] | {seeds} |")  # fmt: skip
            lines += published_rows(task, m, published_curves)
    return lines if len(lines) > 2 else []


def published_rows(task: str, m: int, published_curves: dict) -> list[str]:
    """Rows of the published scores at milestone ``m``: anchors.md's means, then per-seed published curves
    (``benchmarks/published.py``'s JSON) for the methods anchors.md has no value for there."""
    lines = [f"| {task} | {method} (published) | {m // 1000}k | – | {by_m[m]:.0f} | – |"
             for method, by_m in PUBLISHED.get(task, {}).items() if m in by_m]  # fmt: skip
    for method, by_m in published_curves.get(task, {}).items():
        if m not in PUBLISHED.get(task, {}).get(method, {}) and (values := by_m.get(str(m))):
            lines.append(f"| {task} | {method} (published) | {m // 1000}k | {len(values)} | {np.mean(values):.0f} "
                         f"[min {min(values):.0f}, max {max(values):.0f}] | – |")  # fmt: skip
    return lines


def run_lines(runs: dict[str, list[dict]]) -> list[str]:
    """Markdown rows: evaluations at the milestones, progress, wall time and speed of each run."""
    shown = [m for m in MILESTONES if m <= max(max(r["env_steps"] for r in rows) for rows in runs.values())]
    lines = ["| run | " + " | ".join(f"{m // 1000}k" for m in shown)
             + " | env steps done | wall h per 100k env steps | env steps/s | updates/s |",
             "|---|" + "---:|" * len(shown) + "---:|---:|---:|---:|"]  # fmt: skip
    for name, rows in runs.items():
        cells = [f"{row['eval_return_mean']:.0f} ± {row['eval_return_std']:.0f}" if (row := at(rows, m)) else "–"
                 for m in shown]  # fmt: skip
        last = rows[-1]
        per_100k = last["wall_s"] / last["env_steps"] * 100_000 / 3600
        updates_per_s = last["updates"] / last["wall_s"] if last["updates"] else float("nan")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {int(last['env_steps'])} | {per_100k:.2f} | "
                     f"{last['env_steps'] / last['wall_s']:.1f} | {updates_per_s:.2f} |")  # fmt: skip
    return lines


def plot_curves(runs: dict[str, list[dict]], path: Path) -> None:
    """Per task, each agent's mean over seeds with a 95 % bootstrap CI band where ≥ 2 seeds share an evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, dict[str, list[list[dict]]]] = {}
    for name, rows in runs.items():
        agent, task = parse_run(name)
        groups.setdefault(task, {}).setdefault(agent, []).append(rows)
    tasks = sorted(groups) or ["(no runs)"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.5), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for i, (agent, seeds) in enumerate(sorted(groups.get(task, {}).items())):
            color = f"C{i}"
            for rows in seeds:
                ax.plot([r["env_steps"] for r in rows], [r["eval_return_mean"] for r in rows], color=color, lw=0.6,
                        alpha=0.4)  # fmt: skip
            steps = sorted({r["env_steps"] for rows in seeds for r in rows})
            mean, low, high = [], [], []
            for s in steps:
                values = np.array([row["eval_return_mean"] for rows in seeds if (row := at(rows, s))])
                mean.append(values.mean())
                if len(values) > 1:
                    est = interval_estimates({agent: values[:, None] / MAX_RETURN})[agent]["mean"]
                    low.append(est[1] * MAX_RETURN), high.append(est[2] * MAX_RETURN)
                else:
                    low.append(np.nan), high.append(np.nan)
            ax.plot(steps, mean, color=color, marker="o", ms=3, label=f"{agent} ({len(seeds)} seeds)")
            ax.fill_between(steps, low, high, color=color, alpha=0.2)
        for j, (method, by_m) in enumerate(PUBLISHED.get(task, {}).items()):
            xs = [m for m in by_m if m <= max(r["env_steps"] for s in groups[task].values() for rs in s for r in rs)]
            if xs:
                ax.scatter(
                    xs, [by_m[m] for m in xs], marker="*", s=60, color=f"C{j + 5}", label=f"{method} (published)"
                )
        ax.set(title=task, xlabel="env steps", ylabel="eval return", ylim=(0, 1000))
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_profiles(runs: dict[str, list[dict]], path: Path) -> int | None:
    """rliable performance profiles (share of runs above a normalised score τ) at the largest milestone every
    agent reached; that milestone, or None when no milestone has runs of every agent."""
    agents = {parse_run(name)[0] for name in runs}
    reached = [m for m in MILESTONES if set(common_scores(runs, m)) == agents]
    if not reached:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly
    from rliable import plot_utils

    matrices = {agent: score_matrix(by_task) for agent, by_task in sorted(common_scores(runs, reached[-1]).items())}
    taus = np.linspace(0.0, 1.0, 101)
    np.random.seed(0)  # noqa: NPY002  # its profile bootstrap takes no generator: numpy's global one
    profiles, cis = rly.create_performance_profile(matrices, taus, reps=BOOTSTRAP_REPS)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=cis, ax=ax,
                                         xlabel=r"normalised score $\tau$ (return / 1000)",
                                         colors={a: f"C{i}" for i, a in enumerate(matrices)})  # fmt: skip
    ax.set_title(f"at {reached[-1] // 1000}k env steps", fontsize=9)
    ax.legend(list(matrices), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return reached[-1]


def write_report(csv_dir: Path, out: Path) -> Path:
    """``out``/learning.md (tables), learning.png and learning_profiles.png from the CSVs in ``csv_dir``."""
    runs = read_folder(csv_dir)
    curves_path = out / "published_cartpole.json"  # published per-seed curves (benchmarks/published.py)
    published = json.loads(curves_path.read_text()) if curves_path.is_file() else {}
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Learning curves and the benchmark suite (generated by `aime benchmark --report`)", "",
             "Deterministic evaluation return, 5 episodes every 10k env steps (dm_control control steps; action "
             "repeat 2, `fast` rendering, 64×64 pixels). AIME: the preset and config its `<run>.json` names (beside "
             "each CSV: the whole config, and per session the CPU/GPU, torch threads and commit). SAC and PPO: SB3 "
             "`CnnPolicy`, 3 stacked frames. Raw per-seed CSVs: [learning/](learning/). Scores are return / 1000; "
             "CIs are 95 % stratified bootstraps over seeds (rliable, 2000 resamples); with one seed a CI has no "
             "width and says nothing. Wall times are as the runs ran (often two at a time on 2 cores), so they bound "
             "a run alone from above ([learning_speed_quarters.md](learning_speed_quarters.md) times the loop alone, 2 "
             "threads; [learning_speed_full.md](learning_speed_full.md) times the core beside all five pillars, 1 "
             "thread each, beside two runs). Reproduce: `aime benchmark --tier 1` (cartpole-swingup; resumes after "
             "any interruption), `aime benchmark --tasks cartpole-balance --agents aime,sac --seeds 0,` for the "
             "balance rows, then `aime benchmark --report`. The two `sac-*` CSVs ran before the suite (with "
             "`benchmarks/learning.py` of commit 5ddb057, the same env, budget and evaluation) and have no JSON; "
             "neither have the folders of earlier code below.", "",
             "Published rows without a seed count are the means of anchors.md (the project's reference notes "
             "`shared/reference/anchors.md`, beside the repository, not in it; DreamerV3's: "
             "its training episodes in the 50k env steps before the milestone); rows with one are per-seed values "
             "at our milestones read by `benchmarks/published.py` (DreamerV3: the 10k env steps before it; the "
             "others: their last evaluation at or before it), so the two may differ.", ""]  # fmt: skip
    if not runs:
        lines += ["No run has an evaluation yet.", ""]
    else:
        lines += ["## Aggregates", "", "Each milestone aggregates over the tasks that every agent with runs there "
                  "has, so the agents' rows cover the same tasks; a task with more seeds than the fewest keeps its "
                  "first ones. The per-task table below has every run.", "", *aggregate_lines(runs), "",
                  "## Per task, beside published scores", "",
                  *task_lines(runs, published), "", "## Per run", "",
                  "A run below its budget is unfinished: it resumes from its checkpoint when its command (above) is "
                  "run again, and its CSV is committed as it grows.", "", *run_lines(runs), ""]  # fmt: skip
    for folder in sorted(p for p in Path(csv_dir).iterdir() if p.is_dir() and p.name != "superseded"):
        if variant := read_folder(folder):
            note = FOLDER_NOTES.get(folder.name, f"Runs of another configuration ({folder.name})")
            lines += [f"## {folder.name}", "", f"{note}. Raw CSVs: [learning/{folder.name}/](learning/{folder.name}/).",
                      "", *run_lines(variant), ""]  # fmt: skip
            if aggregate := aggregate_lines(variant):
                lines += [*aggregate, ""]
    if runs:
        plot_curves(runs, out / "learning.png")
        lines += ["![mean over seeds with 95 % CI bands; seeds thin; published scores as stars](learning.png)", ""]
        if (m := plot_profiles(runs, out / "learning_profiles.png")) is not None:
            lines += [f"![performance profiles at {m // 1000}k env steps](learning_profiles.png)", ""]
    lines += ["Superseded curves (lost checkpoints, earlier defaults): [learning/superseded/](learning/superseded/)."]
    path = out / "learning.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
