"""World-model quality on held-out cartpole-swingup episodes, beside a copy-the-last-frame baseline.

For each variant (a set of config overrides) and seed: pretrain the ``--preset`` world model for
``--updates`` updates on the training split of a random-policy dataset (>= 100 episodes), then measure
on held-out episodes:
  * reconstruction PSNR (posterior, dB; images in [0, 1]);
  * open-loop prediction MSE at horizons 1/5/15/45 after 5 context frames (prior mean, recorded actions),
    beside the copy-the-last-context-frame baseline on the same windows.
A timing phase runs each variant in a fresh subprocess: median update time, updates/s, peak RSS.
Runs checkpoint under runs/world_model_quality/ and resume; finished runs are kept in the JSON, so an
interrupted benchmark picks up where it stopped. Writes docs/benchmarks/world_model_quality.{json,md,png}.

    python benchmarks/world_model_quality.py [--updates 5000] [--seeds 0 1] [--variants fp32 bf16_cl] [--device cuda]

Variants compared in one table should share an update budget (the ``updates`` column says which).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from aime_agent.cli import parse_overrides
from aime_agent.world_model import evaluation

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"
DATA = ROOT / "data" / "cartpole-swingup-random-100.h5"
HORIZONS = (1, 5, 15, 45)
CONTEXT = 5
VARIANTS = {
    # precision (5000 updates)
    "fp32": {"train.autocast_bf16": False, "train.channels_last": False},
    "bf16_cl": {"train.autocast_bf16": True, "train.channels_last": True},
    # the speed levers of the learning loop (2000 updates; benchmarks/learning_speed.py times them)
    "decode_half": {"train.decode_fraction": 0.5},
    "decode_quarter": {"train.decode_fraction": 0.25},
    # prior × recurrence (pillars 2 and 3; run with --updates 2000 --variants gauss_lstm dpgmm_lstm gauss_stiefel
    # gauss_gru)
    "gauss_lstm": {"model.prior": "gaussian", "model.cell": "lstm"},
    "dpgmm_lstm": {"model.prior": "dpgmm", "model.cell": "lstm"},
    "gauss_stiefel": {"model.prior": "gaussian", "model.cell": "lstm_stiefel"},
    "gauss_gru": {"model.prior": "gaussian", "model.cell": "gru"},
}


def ensure_dataset(path: Path, episodes: int, **env_options) -> None:
    """Collect ``episodes`` random-policy cartpole-swingup episodes into ``path`` unless it exists;
    ``env_options`` go to ``envs.make`` (e.g. ``distractors=0.5``)."""
    if path.exists():
        return
    import envs
    from envs.collect import collect, random_policy

    env = envs.make("cartpole-swingup", render_quality="fast", seed=0, **env_options)
    collect(env, random_policy(env.action_space, 0), episodes, path, seed=0, env_id="dmc/cartpole-swingup-v0",
            action_repeat=2, image_size=64, render_quality="fast", policy_name="random")  # fmt: skip


@torch.no_grad()
def evaluate(model, data, eval_ids, windows: int = 64, seed: int = 123) -> dict:
    """PSNR of reconstructions and open-loop MSE per horizon (model and copy-last baseline), in eval mode."""
    with evaluation(model):
        return _evaluate(model, data, eval_ids, windows, seed)


def _evaluate(model, data, eval_ids, windows: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    length = CONTEXT + max(HORIZONS)
    mse_model = {h: [] for h in HORIZONS}
    mse_copy = {h: [] for h in HORIZONS}
    psnr = []
    for _ in range(windows // 8):
        batch = data.sample(8, length, rng, eval_ids)
        pred, true = model.open_loop(batch, CONTEXT)
        for h in HORIZONS:
            t = CONTEXT - 1 + h
            mse_model[h] += (pred[:, t] - true[:, t]).pow(2).mean((1, 2, 3)).tolist()
            mse_copy[h] += (true[:, CONTEXT - 1] - true[:, t]).pow(2).mean((1, 2, 3)).tolist()
        recon_mse = (pred[:, :CONTEXT] - true[:, :CONTEXT]).pow(2).mean((2, 3, 4)).clamp(min=1e-10)
        psnr += (10 * torch.log10(1.0 / recon_mse)).flatten().tolist()
    return {
        "recon_psnr_db": float(np.mean(psnr)),
        "open_loop_mse": {str(h): float(np.mean(v)) for h, v in mse_model.items()},
        "copy_last_mse": {str(h): float(np.mean(v)) for h, v in mse_copy.items()},
    }


def train_and_evaluate(
    data_path: Path, preset_name: str, overrides: dict, seed: int, updates: int, logdir: Path, device: str = "cpu",
    extra=None,
):  # fmt: skip
    from aime_agent.config import preset
    from aime_agent.pretrain import Pretrainer, PretrainSettings

    config = preset(preset_name, **overrides)
    settings = PretrainSettings(steps=updates, seed=seed, log_every=100, image_every=1000, eval_every=500,
                                checkpoint_every=250, device=device)  # fmt: skip
    trainer = Pretrainer(data_path, config, logdir, settings)
    start = time.perf_counter()
    first = trainer.step
    trainer.run(progress=False)
    wall = time.perf_counter() - start
    result = evaluate(trainer.model, trainer.data, trainer.eval_ids)
    if extra is not None:  # a caller's own held-out measurements: extra(model, data, eval_ids) -> dict
        result.update(extra(trainer.model, trainer.data, trainer.eval_ids))
    result.update({"updates": updates, "updates_timed": updates - first, "train_wall_s": wall,
                   "eval_episodes": len(trainer.eval_ids), "train_episodes": len(trainer.train_ids)})  # fmt: skip
    return result


def measure_update_time(data_path: Path, preset_name: str, overrides: dict, n: int = 30) -> dict:
    """Median update time (batch sampling included) and this process's peak RSS, on real batches."""
    import resource
    import statistics

    from aime_agent.config import preset
    from aime_agent.pretrain import make_optimizer, train_step
    from aime_agent.world_model import WorldModel
    from envs.dataset import EpisodeDataset

    torch.manual_seed(0)
    cfg = preset(preset_name, **overrides)
    data = EpisodeDataset(data_path)
    model = WorldModel(cfg, int(data.episode(0)["action"].shape[-1]))
    optimizer = make_optimizer(model, cfg)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(n + 5):  # 5 warm-up updates
        start = time.perf_counter()
        train_step(model, optimizer, data.sample(cfg.train.batch_size, cfg.train.batch_length, rng))
        times.append(time.perf_counter() - start)
    median = statistics.median(times[5:])
    return {
        "update_s": median,
        "updates_per_s": 1 / median,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "images_per_update": cfg.train.batch_size * cfg.train.batch_length,
        "threads": torch.get_num_threads(),
    }


def time_variant(data_path: Path, preset_name: str, name: str) -> dict:
    """``measure_update_time`` in a fresh process, so that peak memory belongs to this variant alone."""
    cmd = [sys.executable, __file__, "--time-only", name, "--preset", preset_name, "--data", str(data_path)]
    cmd += [f"--define={name}:" + ",".join(f"{k}={v}" for k, v in VARIANTS[name].items())]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--updates", type=int, default=5000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument(
        "--define",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="add a variant, e.g. lr1e-3:train.lr=1e-3 (repeatable)",
    )
    parser.add_argument("--device", default="cpu", help="device for the quality runs (timing stays on the CPU)")
    parser.add_argument("--no-timing", action="store_true", help="skip the CPU timing phase")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "world_model_quality")
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=[],
        metavar="JSON",
        help="merge finished runs from other result files (e.g. runs made on another machine)",
    )
    parser.add_argument("--time-only", metavar="VARIANT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for spec in args.define:
        name, _, pairs = spec.partition(":")
        VARIANTS[name] = parse_overrides(pairs.split(",") if pairs else [])
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {sorted(VARIANTS)} (add one with --define)")
    if args.time_only:
        print(json.dumps(measure_update_time(args.data, args.preset, VARIANTS[args.time_only])))
        return
    ensure_dataset(args.data, args.episodes)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "world_model_quality.json"
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    results.setdefault("runs", {})
    for other in args.merge:
        results["runs"].update(json.loads(other.read_text())["runs"])
    results["meta"] = {
        "date": time.strftime("%Y-%m-%d"),
        "preset": args.preset,
        "updates": args.updates,
        "seeds": args.seeds,
        "dataset": args.data.name,
        "context": CONTEXT,
        "machine": f"{__import__('platform').machine()}, {__import__('os').cpu_count()} cores",
    }
    for name in args.variants:
        if not args.no_timing:
            results.setdefault("timing", {})[name] = time_variant(args.data, args.preset, name)
            print(name, "timing", results["timing"][name], flush=True)
        for seed in args.seeds:
            key = f"{name}/seed{seed}"
            done = results["runs"].get(key)
            if done and done.get("updates") == args.updates:
                print(key, "done", flush=True)
                continue
            res = train_and_evaluate(args.data, args.preset, VARIANTS[name], seed, args.updates,
                                     args.runs / f"{args.preset}-{name}-s{seed}", args.device)  # fmt: skip
            results["runs"][key] = {**res, "overrides": VARIANTS[name], "device": args.device}
            json_path.write_text(json.dumps(results, indent=2))  # partial results as they finish
            print(key, json.dumps(res), flush=True)
    json_path.write_text(json.dumps(results, indent=2))
    write_report(results, args.out)
    print((args.out / "world_model_quality.md").read_text())


def summarise(results: dict) -> dict:
    table = {}
    for key, res in sorted(results["runs"].items(), key=lambda kv: (kv[0] not in VARIANTS, kv[0])):
        name = key.split("/")[0]
        table.setdefault(name, []).append(res)
    return table


def write_report(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta, table = results["meta"], summarise(results)
    devices = sorted({r.get("device", "cpu") for r in results["runs"].values()})
    lines = ["# World-model quality (generated by `benchmarks/world_model_quality.py`)", "",
             f"{meta['date']}, {meta['machine']}; preset `{meta['preset']}`, "
             f"seeds {meta['seeds']}; dataset `{meta['dataset']}` (cartpole-swingup, random policy, `fast` rendering), "
             "held-out episodes. Open-loop: 5 context frames, then the prior mean driven by the recorded actions. "
             f"Mean ± std over seeds. Quality runs on: {', '.join(devices)} (the update budget, not the device, "
             "fixes the numbers); timing on this machine's CPU.", "",
             "| variant | updates | seeds | recon PSNR dB | " + " | ".join(f"MSE h={h}" for h in HORIZONS)
             + " | update s | updates/s | peak RSS MB |",
             "|---|---:|---:|---:|" + "---:|" * len(HORIZONS) + "---:|---:|---:|"]  # fmt: skip

    def ms(values, fmt):
        return f"{np.mean(values):{fmt}} ± {np.std(values):{fmt}}" if len(values) > 1 else f"{values[0]:{fmt}}"

    for name, runs in table.items():
        timing = results.get("timing", {}).get(name)
        budget = "/".join(sorted({str(r.get("updates", meta["updates"])) for r in runs}))
        cells = [budget, str(len(runs)), ms([r["recon_psnr_db"] for r in runs], ".2f")]
        cells += [ms([r["open_loop_mse"][str(h)] for r in runs], ".5f") for h in HORIZONS]
        cells += ([f"{timing['update_s']:.3f}", f"{timing['updates_per_s']:.2f}", f"{timing['peak_rss_mb']:.0f}"]
                  if timing else ["–"] * 3)  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    # Each seed has its own held-out split: the baseline is averaged over the seeds that were run.
    by_seed = {key.split("/seed")[1]: r["copy_last_mse"] for key, r in results["runs"].items()}
    copy = {str(h): float(np.mean([c[str(h)] for c in by_seed.values()])) for h in HORIZONS} if by_seed else None
    if copy:
        lines.append(f"| copy last context frame | – | {len(by_seed)} | – | "
                     + " | ".join(f"{copy[str(h)]:.5f}" for h in HORIZONS) + " | – | – | – |")  # fmt: skip
    lines += ["", "Update time: median of 30 updates in a fresh process (2 CPU threads), "
              "including sampling the batch from memory. `bf16_cl` = bf16 autocast on the conv stacks + channels_last.",
              "", "What the numbers say, and which defaults follow from them: [docs/world_model.md]"
              "(../world_model.md#quality).",
              "", "![open-loop MSE by horizon](world_model_quality.png)"]  # fmt: skip
    (out / "world_model_quality.md").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, runs in table.items():
        ys = np.array([[r["open_loop_mse"][str(h)] for h in HORIZONS] for r in runs])
        ax.errorbar(HORIZONS, ys.mean(0), yerr=ys.std(0), marker="o", label=name, capsize=3)
    if copy:
        ax.plot(HORIZONS, [copy[str(h)] for h in HORIZONS], "k--", marker="x", label="copy last frame")
    ax.set(xscale="log", yscale="log", xlabel="open-loop horizon (agent steps)", ylabel="per-pixel MSE",
           title="cartpole-swingup, held-out episodes")  # fmt: skip
    ax.set_xticks(HORIZONS, [str(h) for h in HORIZONS])
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "world_model_quality.png", dpi=120)


if __name__ == "__main__":
    main()
