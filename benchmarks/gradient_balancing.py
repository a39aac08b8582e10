"""Gradient balancing (pillar 5): conflicts on synthetic gradients, cost per update, world-model quality.

Four parts, each writing its section of docs/benchmarks/gradient_balancing.{json,md}:

* ``--part synthetic``: 200 random (4 × 64) task-gradient matrices per setting, norms spread over e^±s, every
  other draw with one task nearly opposed to another; how many draws give a direction with a negative cosine
  to some task, and the worst cosine (seconds).
* ``--part cost``: seconds per world-model update at ``--preset`` on real cartpole-swingup batches for each
  combiner and Jacobian route, interleaved round-robin in one process (``--rounds``), median per config, and
  its ratio to plain backpropagation (``sum``/``none``) measured in the same run.
* ``--part quality``: each combiner trains the world model for ``--updates`` updates per seed
  (``benchmarks/world_model_quality.py``'s protocol: random-policy dataset, held-out open-loop MSE at
  h = 1/5/15/45); the conflict rate is the mean of ``train/mtl/conflict`` over training. Resumable.
  With ``--wallclock``, at equal wall-clock instead: each config gets the updates that cost what ``--updates``
  plain ones do, by the cost part's same-run ratios (run ``--part cost`` first).
* ``--part cost_perceptual``: the LPIPS term's cost, as ``cost`` does it.

The tasks of the quality and cost parts: image (reconstruction), latent (both KL terms), reward+continue, and in
the ``+ adversarial`` configs a fourth, the adversarial term (``loss.adversarial`` 0.1, its discriminator stepping
by its own optimizer).

    python benchmarks/gradient_balancing.py --part synthetic
    python benchmarks/gradient_balancing.py --part cost --rounds 5
    python benchmarks/gradient_balancing.py --part cost_perceptual
    python benchmarks/gradient_balancing.py --part quality --updates 2000 --seeds 0 1 2
    python benchmarks/gradient_balancing.py --part quality --wallclock --updates 2000 --seeds 0 1 2 \
        --configs sum/representation rgb_projected/representation rgb_projected/parameters
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from update_timing import cost_table, interleaved_update_times

from aime_agent.benchmark.machine import describe
from envs.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"
TASKS = "image=recon,latent=kl_dyn+kl_rep,reward=reward+cont"
# name → config overrides (mtl section)
CONFIGS = {
    "sum/none": {"mtl.combiner": "sum", "mtl.jacobian": "none"},
    "sum/representation": {"mtl.combiner": "sum", "mtl.jacobian": "representation", "mtl.tasks": TASKS},
    "rgb/representation": {"mtl.combiner": "rgb", "mtl.jacobian": "representation", "mtl.tasks": TASKS},
    "rgb_projected/representation": {
        "mtl.combiner": "rgb_projected",
        "mtl.jacobian": "representation",
        "mtl.tasks": TASKS,
    },  # fmt: skip
    "upgrad/representation": {"mtl.combiner": "upgrad", "mtl.jacobian": "representation", "mtl.tasks": TASKS},
    "harmony/none": {"mtl.combiner": "harmony", "mtl.jacobian": "none", "mtl.tasks": TASKS},
    "sum/parameters": {"mtl.combiner": "sum", "mtl.jacobian": "parameters", "mtl.tasks": TASKS},
    "rgb_projected/parameters": {"mtl.combiner": "rgb_projected", "mtl.jacobian": "parameters", "mtl.tasks": TASKS},
}
# the adversarial task (its term −E[D(x̂)] forms a fourth task; the discriminator takes its own step per update)
ADVERSARIAL = {"loss.adversarial": 0.1}
CONFIGS |= {
    f"{name} + adversarial": CONFIGS[name] | ADVERSARIAL
    for name in ("sum/representation", "rgb_projected/representation", "upgrad/representation")
}
# the LPIPS term's cost (a randomly initialised backbone costs what the real one does; quality needs the real weights)
PERCEPTUAL = {"loss.perceptual": 0.1, "loss.perceptual_pretrained": False}
PERCEPTUAL_CONFIGS = {
    "sum/none": CONFIGS["sum/none"],
    "sum/none + LPIPS": {**CONFIGS["sum/none"], **PERCEPTUAL},
    "rgb_projected/representation + LPIPS": {**CONFIGS["rgb_projected/representation"], **PERCEPTUAL,
                                             "mtl.tasks": TASKS + ",perceptual=perceptual"},
}  # fmt: skip
QUALITY = [
    "sum/representation",
    "rgb/representation",
    "rgb_projected/representation",
    "upgrad/representation",
    "harmony/none",  # HarmonyDream's learned loss coefficients: the cheap published comparator
    "sum/representation + adversarial",
    "rgb_projected/representation + adversarial",
    "upgrad/representation + adversarial",
]


def synthetic(draws: int = 200, spreads=(1.0, 3.0)) -> dict:
    from aime_agent.multi_task_learning import COMBINERS, combine

    rows = {}
    for method in COMBINERS:
        for spread in spreads:
            torch.manual_seed(2)
            worst, conflicts = 1.0, 0
            for draw in range(draws):
                matrix = torch.randn(4, 64) * torch.exp(torch.empty(4, 1).uniform_(-spread, spread))
                if draw % 2:
                    matrix[0] = -0.5 * matrix[1] + 0.1 * torch.randn(64)
                d = combine(matrix, method)
                cosine = (F.normalize(matrix, dim=1) @ d / d.norm()).min().item()
                worst, conflicts = min(worst, cosine), conflicts + (cosine < -1e-6)
            rows[f"{method}/e^±{spread:g}"] = {"conflicts": conflicts, "draws": draws, "worst_cosine": worst}
    return rows


def conflict_rate(logdir: Path) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir)).Reload()
    values = [e.value for e in events.Scalars("train/mtl/conflict")] if "train/mtl/conflict" in events.Tags()[
        "scalars"] else []  # fmt: skip
    return float(np.mean(values)) if values else float("nan")


def timing_noise(rows: dict) -> float:
    """The cost table's relative timing noise: the median over its configs of each one's round-to-round spread,
    (max − min) / median of its per-round seconds. A table without per-round times (measured before they were
    kept) has only medians; nothing costs less than one backward pass, so there its lowest ratio r_min < 1
    measures the noise (1 − r_min)."""
    spreads = [(max(r) - min(r)) / float(np.median(r)) for r in (row.get("rounds_s") for row in rows.values()) if r]
    if spreads:
        return float(np.median(spreads))
    return max(0.0, 1.0 - min(row["ratio"] for row in rows.values()))


def wallclock_ratio(rows: dict, name: str) -> float:
    """The cost of config ``name`` over one backward pass, as the equal-wall-clock budget uses it: a ratio within
    the table's timing noise of 1 counts as 1, one above it counts as measured."""
    ratio = rows[name]["ratio"]
    return ratio if ratio > 1.0 + timing_noise(rows) else 1.0


def quality(args, results: dict) -> None:
    from world_model_quality import ensure_dataset, train_and_evaluate

    ensure_dataset(args.data, 100)
    section = "quality_wallclock" if args.wallclock else "quality"
    runs = results.setdefault(section, {})
    for seed in args.seeds:  # seed-major: a partial run still compares every config on the same seeds
        for name in args.configs or QUALITY:
            updates = args.updates
            if args.wallclock:  # the budget of `updates` plain updates, by the cost table's same-run ratios
                updates = round(args.updates / wallclock_ratio(results["cost"]["rows"], name))
            key = f"{name}/seed{seed}"
            if runs.get(key, {}).get("updates") == updates:
                continue
            same = results.get("quality", {}).get(key, {})
            if args.wallclock and same.get("updates") == updates:  # the budget buys what equal updates gave
                runs[key] = same
                save(results, args.out)
                continue
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)  # "rgb/x + adversarial" → "rgb-x-adversarial"
            logdir = args.runs / f"{args.preset}-{safe}-s{seed}{'-wallclock' * args.wallclock}"
            res = train_and_evaluate(args.data, args.preset, CONFIGS[name], seed, updates, logdir)
            rate = conflict_rate(logdir) if CONFIGS[name]["mtl.jacobian"] != "none" else float("nan")  # no Jacobian
            runs[key] = {**res, "conflict_rate": rate, "overrides": CONFIGS[name], "budget_updates": args.updates}
            save(results, args.out)
            print(key, json.dumps(runs[key]), flush=True)


RUN_SECTIONS = ("quality", "quality_wallclock")  # one entry per run: merged, so two processes can fill them


def save(results: dict, out: Path) -> None:
    """Write ``results`` merged into the file as it is now: the runs another process (another seed, on the other
    core) saved since this one started are kept."""
    path = out / "gradient_balancing.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    for key, value in results.items():
        if key in RUN_SECTIONS:
            merged.setdefault(key, {}).update(value)
        else:
            merged[key] = value
    for key, value in merged.items():  # in place: callers hold references to the run sections
        if key in RUN_SECTIONS:
            results.setdefault(key, {}).update(value)
        else:
            results[key] = value
    atomic_write_text(path, json.dumps(merged, indent=1) + "\n")
    atomic_write_text(out / "gradient_balancing.md", report(merged))


def report(results: dict) -> str:
    lines = ["# Gradient balancing (generated by `benchmarks/gradient_balancing.py`)", "",
             "What the combiners are: [../multi_task_learning.md](../multi_task_learning.md). Tasks of the cost "
             f"and quality parts: `{TASKS}`; in the `+ adversarial` configs the adversarial term (weight "
             f"{ADVERSARIAL['loss.adversarial']}) forms a fourth task; its discriminator takes its own step.",
             ""]  # fmt: skip
    if "synthetic" in results:
        lines += ["## Conflicts on synthetic task gradients", "",
                  "200 random (4 × 64) matrices per row; task norms spread over e^±s; every other draw has one task "
                  "nearly opposed to another. *conflicts*: draws whose direction has a cosine below −1e-6 with "
                  "some task.", "", "| combiner / spread | conflicts | worst cosine |", "|---|---:|---:|"]  # fmt: skip
        for name, row in results["synthetic"]["rows"].items():
            lines.append(f"| {name} | {row['conflicts']} / {row['draws']} | {row['worst_cosine']:.4f} |")
        lines.append("")
    if "cost" in results:
        c = results["cost"]
        lines += ["## Cost per world-model update", "",
                  f"Preset `{c['preset']}`, {c['rounds']} interleaved rounds of {c['updates']} updates, median; "
                  f"{c['machine']['cpu']}, {c['machine']['torch_threads']} torch threads, torch "
                  f"{c['machine']['torch']}, {c['machine']['date']}. {c.get('note', '')}", ""]  # fmt: skip
        lines += cost_table(c["rows"], "combiner / Jacobian", "sum (one backward pass)")
    if "cost_perceptual" in results:
        c = results["cost_perceptual"]
        lines += ["## Cost of the LPIPS term (`loss.perceptual`)", "",
                  f"Preset `{c['preset']}`, {c['rounds']} interleaved rounds of {c['updates']} updates, median; "
                  f"{c['machine']['cpu']}, {c['machine']['torch_threads']} torch threads, torch "
                  f"{c['machine']['torch']}, {c['machine']['date']}; AlexNet randomly initialised (the same "
                  f"arithmetic as the real weights). {c.get('note', '')}", ""]  # fmt: skip
        lines += cost_table(c["rows"], "config", "sum/none")
    for section, title in (("quality", "at equal updates"), ("quality_wallclock", "at equal wall-clock")):
        if not results.get(section):
            continue
        why = (" Each config gets the updates that cost what the budget's plain updates do, by the cost table's "
               "same-run ratios. Ratios within the table's timing noise of 1 (the median config's round-to-round "
               f"spread, {timing_noise(results['cost']['rows']):.1%} here) count as 1: those configs train as many "
               "updates as at equal updates, and their runs are the same."
               if section == "quality_wallclock" and "cost" in results else "")  # fmt: skip
        lines += [f"## World-model quality {title}", "",
                  "Held-out open-loop MSE after 5 context frames (lower is better), reconstruction PSNR, and the "
                  f"share of updates whose direction conflicted with a task; mean over seeds.{why}", "",
                  "| combiner | seeds | updates | h=1 | h=5 | h=15 | h=45 | PSNR dB | conflict rate |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        groups: dict[str, list[dict]] = {}
        for key, run in results[section].items():
            groups.setdefault(key.rsplit("/seed", 1)[0], []).append(run)
        for name, runs in groups.items():
            mse = [np.mean([r["open_loop_mse"][str(h)] for r in runs]) for h in (1, 5, 15, 45)]
            psnr = np.mean([r["recon_psnr_db"] for r in runs])
            rate = np.mean([r["conflict_rate"] for r in runs])
            lines.append(f"| {name} | {len(runs)} | {runs[0]['updates']} | " + " | ".join(f"{m:.5f}" for m in mse)
                         + f" | {psnr:.1f} | {rate:.2f} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["synthetic", "cost", "cost_perceptual", "quality"], required=True)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=10, help="cost: updates per round; quality: per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), help="quality: which configs")
    parser.add_argument("--wallclock", action="store_true", help="quality: equal wall-clock (from the cost table)")
    parser.add_argument("--note", default="", help="cost: a note printed beside the machine (e.g. the load)")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "cartpole-swingup-random-100.h5")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "gradient_balancing")
    args = parser.parse_args(argv)
    path = args.out / "gradient_balancing.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if args.part == "synthetic":
        results["synthetic"] = {"rows": synthetic(), "machine": describe()}
    elif args.part == "cost":
        rows = interleaved_update_times(args.preset, CONFIGS, args.data, args.rounds, args.updates, "sum/none")
        results["cost"] = {"rows": rows, "preset": args.preset, "rounds": args.rounds, "updates": args.updates,
                           "machine": describe(), "note": args.note}  # fmt: skip
    elif args.part == "cost_perceptual":
        rows = interleaved_update_times(args.preset, PERCEPTUAL_CONFIGS, args.data, args.rounds, args.updates,
                                        "sum/none")  # fmt: skip
        results["cost_perceptual"] = {"rows": rows, "preset": args.preset, "rounds": args.rounds,
                                      "updates": args.updates, "machine": describe(), "note": args.note}  # fmt: skip
    else:
        quality(args, results)
    args.out.mkdir(parents=True, exist_ok=True)
    save(results, args.out)
    print(report(results))


if __name__ == "__main__":
    main()
