"""AIME as a whole: each pillar added to the core alone, and all together, on three datasets; and their cost.

``--part world_model``: for each config of :data:`ABLATIONS`, ``--updates`` world-model updates per seed on each
dataset (``world_model_quality.py``'s protocol: held-out open-loop MSE at h = 1/5/15/45 after 5 context
frames, reconstruction PSNR):

* ``plain``: random-policy cartpole-swingup (100 episodes);
* ``distractors``: the same task with moving coloured shapes behind the scene (strength 0.5);
* ``bimodal``: the ball that rolls left or right with probability ½ (``bimodal_ball.py``, 200 episodes), where
  the runs also report the share of sampled futures in each mode and their sharpness (known answer: ½ / ½,
  sharp).

``--part cost``: seconds per ``small`` world-model update of every config, interleaved round-robin in one
process, and the ratio to the core's, measured in the same run. Both write docs/benchmarks/ablations.{json,md};
finished runs are kept (resumable), and two processes can fill the file at once (each save merges).

    python benchmarks/ablations.py --part world_model --updates 1000 --seeds 0 1 2 --datasets bimodal
    python benchmarks/ablations.py --part cost
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bimodal_ball import distance_from_answer
from update_timing import cost_table, interleaved_update_times

from aime_agent.benchmark.machine import describe
from aime_agent.config import PILLARS
from envs.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"
HORIZONS = (1, 5, 15, 45)
# each pillar added to the core alone, and all five together (aime_agent.config.PILLARS)
ADDED = ("+DPGMM", "+Stiefel", "+Perceiver", "+attention", "+balancing")
ABLATIONS = {"core": {}, **{name: PILLARS[name.lstrip("+").lower()] for name in ADDED}, "full": PILLARS["full"]}
DATASETS = {
    "plain": "cartpole-swingup-random-100.h5",
    "distractors": "cartpole-swingup-distractors0.5-random-100.h5",
    "bimodal": "bimodal-ball-200.h5",
}


def ensure(name: str, path: Path) -> None:
    from world_model_quality import ensure_dataset

    if name == "bimodal":
        if not path.exists():
            from bimodal_ball import write_dataset

            write_dataset(path, 200)
        return
    ensure_dataset(path, 100, **({"distractors": 0.5} if name == "distractors" else {}))


def paired_against_core(runs: dict, dataset: str, config: str, h: int) -> dict | None:
    """Relative change of open-loop MSE at horizon ``h`` from the core's, paired by seed.

    Each seed has its own held-out split and evaluation windows, the same for every config, so the per-seed
    difference d_s = (mse_s − core_s) / core_s removes the split's difficulty. Returns the mean of d_s, its
    95 % Student-t interval mean ± t_{0.975, n−1} · sd / √n (no correction for the number of configs
    compared), and how many seeds the config is below the core; None with fewer than two paired seeds.
    """
    from scipy import stats

    seeds = sorted({k.split("/")[2] for k in runs if k.startswith(f"{dataset}/{config}/")}
                   & {k.split("/")[2] for k in runs if k.startswith(f"{dataset}/core/")})  # fmt: skip
    if len(seeds) < 2:
        return None
    mse = lambda c, s: runs[f"{dataset}/{c}/{s}"]["open_loop_mse"][str(h)]  # noqa: E731
    d = np.array([mse(config, s) / mse("core", s) - 1 for s in seeds])
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return {"mean": float(d.mean()), "low": float(d.mean() - half), "high": float(d.mean() + half),
            "lower": int((d < 0).sum()), "seeds": len(d)}  # fmt: skip


def _pct(x: float) -> str:
    """A signed whole percentage, without a "-0": −0.001 → "+0"."""
    return f"{round(100 * x) + 0:+d}"


def paired_table(runs: dict) -> list[str]:
    """Markdown rows of :func:`paired_against_core` for every dataset and config with the core beside it."""
    pairs = {tuple(k.split("/")[:2]) for k in runs} - {(k.split("/")[0], "core") for k in runs}
    rows = []
    for dataset, config in sorted(pairs, key=lambda p: (p[0], list(ABLATIONS).index(p[1]))):
        cells = [paired_against_core(runs, dataset, config, h) for h in HORIZONS]
        if cells[0] is None:  # fewer than two seeds beside the core's (the same at every horizon)
            continue
        rows.append(f"| {dataset} | {config} | {cells[0]['seeds']} | " + " | ".join(
            f"{_pct(c['mean'])} % [{_pct(c['low'])}, {_pct(c['high'])}] ({c['lower']}/{c['seeds']})"
            for c in cells) + " |")  # fmt: skip
    if not rows:
        return []
    return ["## Against the core, seed by seed", "",
            "Change of the open-loop MSE from the core's on the same seed (each seed has its own held-out split), "
            "mean over seeds with its 95 % Student-t interval, and in brackets on how many seeds the config is "
            "below the core. Negative is better; an interval that excludes 0 is a difference at the 5 % level "
            f"for that one comparison, before correcting for the {len(ABLATIONS) - 1} configs × {len(HORIZONS)} "
            "horizons compared.", "",
            "| dataset | config | seeds | " + " | ".join(f"h={h}" for h in HORIZONS) + " |",
            "|---|---|---:|" + "---|" * len(HORIZONS), *rows, ""]  # fmt: skip


def report(results: dict) -> str:
    lines = ["# AIME as a whole: pillar ablations (generated by `benchmarks/ablations.py`)", "",
             "Each pillar added to the core alone, and all five together (`full`), at equal update budgets. "
             "Held-out open-loop MSE on frames in [−0.5, 0.5] after 5 context frames (lower is better), mean over "
             "seeds [min – max]. On `bimodal` the sampled futures' shares per mode and their sharpness (brightest "
             "pixel; 1 = a sharp ball, ~0.5 = two futures averaged); the known answer is left ½, right ½, sharp. "
             "The distance is the shares' total variation from that answer, per seed, then averaged (0: exact; "
             "0.5: every sample in one mode).",
             ""]  # fmt: skip
    runs = results.get("world_model", {})
    if runs:
        lines += ["| dataset | config | seeds | updates | " + " | ".join(f"h={h}" for h in HORIZONS)
                  + " | PSNR dB | left / right / neither | distance from ½ / ½ | sharpness |",
                  "|---|---|---:|---:|" + "---:|" * (len(HORIZONS) + 1) + "---|---|---:|"]  # fmt: skip
        groups: dict[tuple[str, str], list[dict]] = {}
        for key, run in runs.items():
            dataset, config, _ = key.split("/")
            groups.setdefault((dataset, config), []).append(run)
        order = list(ABLATIONS)
        for (dataset, config), group in sorted(groups.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]))):
            cells = []
            for h in HORIZONS:
                v = [r["open_loop_mse"][str(h)] for r in group]
                cells.append(f"{np.mean(v):.5f} [{min(v):.5f} – {max(v):.5f}]" if len(v) > 1 else f"{v[0]:.5f}")
            modes, distance, sharp = "–", "–", "–"
            if "mode_left" in group[0]:
                modes = " / ".join(
                    f"{np.mean([r['mode_' + m] for r in group]):.2f}" for m in ("left", "right", "neither")
                )
                d = [distance_from_answer(r) for r in group]  # per seed: a seed that favours left and one
                distance = f"{np.mean(d):.2f} [{min(d):.2f} – {max(d):.2f}]"  # that favours right do not cancel
                sharp = f"{np.mean([r['mode_sharpness'] for r in group]):.2f}"
            psnr = np.mean([r["recon_psnr_db"] for r in group])
            lines.append(f"| {dataset} | {config} | {len(group)} | {group[0]['updates']} | " + " | ".join(cells)
                         + f" | {psnr:.1f} | {modes} | {distance} | {sharp} |")  # fmt: skip
        lines.append("")
        lines += paired_table(runs)
    if "cost" in results:
        c = results["cost"]
        lines += [
            "## Cost per world-model update",
            "",
            f"`{c['preset']}`, {c['rounds']} interleaved rounds of 5 updates, median; {c['machine']['cpu']}, "
            f"{c['machine']['torch_threads']} torch threads, {c['machine']['date']}. {c.get('note', '')}",
            "",
        ]
        lines += cost_table(c["rows"], "config", "core")
    return "\n".join(lines) + "\n"


def save(mine: dict, out: Path) -> dict:
    """Merge what this process measured into the file as it is now (another process may fill other runs)."""
    path = out / "ablations.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.setdefault("world_model", {}).update(mine.get("world_model", {}))
    merged.update({k: v for k, v in mine.items() if k != "world_model"})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(merged, indent=1) + "\n")
    atomic_write_text(out / "ablations.md", report(merged))
    return merged


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["world_model", "cost"], required=True)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--configs", nargs="+", choices=list(ABLATIONS), default=list(ABLATIONS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--note", default="")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "ablations")
    args = parser.parse_args(argv)
    from bimodal_ball import mode_shares
    from world_model_quality import train_and_evaluate

    mine: dict = {}
    if args.part == "cost":
        ensure("plain", args.data_dir / DATASETS["plain"])
        configs = {name: ABLATIONS[name] for name in args.configs}
        rows = interleaved_update_times(args.preset, configs, args.data_dir / DATASETS["plain"], args.rounds, 5,
                                        "core")  # fmt: skip
        mine["cost"] = {"rows": rows, "preset": args.preset, "rounds": args.rounds, "machine": describe(),
                        "note": args.note}  # fmt: skip
        save(mine, args.out)
        return
    for seed in args.seeds:  # seed-major: a partial run still compares every config on the same seeds
        for dataset in args.datasets:
            path = args.data_dir / DATASETS[dataset]
            ensure(dataset, path)
            for name in args.configs:
                key = f"{dataset}/{name}/seed{seed}"
                done = (
                    json.loads((args.out / "ablations.json").read_text())
                    if (args.out / "ablations.json").exists()
                    else {}
                )
                if done.get("world_model", {}).get(key, {}).get("updates") == args.updates:
                    continue
                logdir = args.runs / f"{args.preset}-{dataset}-{name.lstrip('+')}-s{seed}"
                extra = mode_shares if dataset == "bimodal" else None
                result = train_and_evaluate(path, args.preset, ABLATIONS[name], seed, args.updates, logdir, extra=extra)
                mine.setdefault("world_model", {})[key] = {**result, "overrides": ABLATIONS[name]}
                save(mine, args.out)
                print(key, json.dumps(mine["world_model"][key]), flush=True)


if __name__ == "__main__":
    main()
