"""The causal Perceiver IO on held-out cartpole-swingup episodes: next-frame tokens, generation, cost.

Per seed, a standalone ``CausalPerceiverIO`` (the world model's ``model.perceiver_*`` sizes at ``--preset``)
trains ``--updates`` updates on 16-frame windows of the random-policy dataset's training split (token
cross-entropy + VQ commitment + patch reconstruction, Adam 3e-4). On held-out windows it reports:

* next-frame token accuracy (teacher-forced, 16-frame windows) against copying the previous frame's codes;
* generated-frame MSE at h = 1/5/15/45 after 5 context frames (past the trained 16 frames from h = 12 on),
  against copying the last context frame, and the share of distinct codes among generated ones.

``--part world_model`` runs ``world_model_quality.py``'s protocol (open-loop MSE of the world model) with
``model.perceiver`` off and on, and ``--part cost`` times a world-model update with it off and on, interleaved
in one process. Writes docs/benchmarks/perceiver.{json,md}; finished seeds are kept (resumable).

    python benchmarks/perceiver.py --part tokens --updates 2000 --seeds 0 1
    python benchmarks/perceiver.py --part world_model --updates 2000 --seeds 0 1
    python benchmarks/perceiver.py --part cost
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from update_timing import cost_table, interleaved_update_times

from aime_agent.benchmark.machine import describe
from envs.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"
DATA = ROOT / "data" / "cartpole-swingup-random-100.h5"
HORIZONS, CONTEXT, WINDOW = (1, 5, 15, 45), 5, 16


def build(preset_name: str):
    from aime_agent.config import preset
    from aime_agent.perceiver_io import CausalPerceiverIO

    m = preset(preset_name).model
    return CausalPerceiverIO((WINDOW, 3, m.image_size, m.image_size), m.perceiver_latents, m.perceiver_channels,
                             m.perceiver_token_dim, m.perceiver_context, m.perceiver_codebook,
                             depth=m.perceiver_depth)  # fmt: skip


def frames(batch) -> torch.Tensor:
    return torch.as_tensor(batch["obs"]).permute(0, 1, 4, 2, 3).float() / 255.0 - 0.5  # (B, T, 3, S, S)


def train_tokens(args, seed: int) -> dict:
    from envs.dataset import EpisodeDataset

    data = EpisodeDataset(args.data)
    train_ids, eval_ids = data.split(0.1, seed)
    torch.manual_seed(seed)
    model = build(args.preset)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(args.updates):
        out = model(frames(data.sample(8, WINDOW, rng, train_ids)))
        ce, _ = model.token_loss(out)
        loss = ce + out["commit"] + out["recon_mse"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    wall = time.perf_counter() - start
    model.eval()
    rng = np.random.default_rng(123)
    accuracy, copy_accuracy = [], []
    mse = {h: [] for h in HORIZONS}
    copy = {h: [] for h in HORIZONS}
    copy_tokens = {h: [] for h in HORIZONS}  # the last context frame's codes, decoded: the tokenizer's floor too
    distinct, patch_mse = [], []
    with torch.no_grad():
        for _ in range(8):
            out = model(frames(data.sample(8, WINDOW, rng, eval_ids)))
            _, acc = model.token_loss(out)
            accuracy.append(acc.item())
            patch_mse.append(out["recon_mse"].item())
            copy_accuracy.append((out["codes"][:, :-1] == out["codes"][:, 1:]).float().mean().item())
            video = frames(data.sample(4, CONTEXT + max(HORIZONS), rng, eval_ids))
            gen = model.generate_autoregressive(video[:, :CONTEXT], max(HORIZONS))
            distinct.append(gen["codes"].unique().numel() / model.codebook_size)
            last_codes = model.tokenizer(video[:, CONTEXT - 1 : CONTEXT])["codes"]
            last_decoded = model.tokenizer.decode_codes(last_codes)[:, 0].clamp(-0.5, 0.5)
            for h in HORIZONS:
                truth = video[:, CONTEXT - 1 + h]
                mse[h].append((gen["frames"][:, h - 1] - truth).pow(2).mean().item())
                copy[h].append((video[:, CONTEXT - 1] - truth).pow(2).mean().item())
                copy_tokens[h].append((last_decoded - truth).pow(2).mean().item())
    return {"updates": args.updates, "train_wall_s": wall, "token_accuracy": float(np.mean(accuracy)),
            "copy_token_accuracy": float(np.mean(copy_accuracy)), "distinct_code_share": float(np.mean(distinct)),
            "generated_mse": {str(h): float(np.mean(v)) for h, v in mse.items()},
            "copy_last_mse": {str(h): float(np.mean(v)) for h, v in copy.items()},
            "copy_tokens_mse": {str(h): float(np.mean(v)) for h, v in copy_tokens.items()},
            "patch_mse": float(np.mean(patch_mse))}  # fmt: skip


def report(results: dict) -> str:
    lines = ["# Causal Perceiver IO (generated by `benchmarks/perceiver.py`)", "",
             "Guide: [../perceiver_io.md](../perceiver_io.md); why the tokens enter the predictor detached: "
             "[../investigations/perceiver_tokens.md](../investigations/perceiver_tokens.md). Held-out windows of "
             "the cartpole-swingup random-policy dataset.", ""]  # fmt: skip
    runs = results.get("tokens", {})
    if runs:
        lines += ["## Next-frame tokens and generation", "",
                  "Trained on 16-frame windows; generation from 5 context frames, so h ≥ 12 runs past the trained "
                  "length. MSE on frames in [−0.5, 0.5].", "",
                  "| seed | updates | token acc. | copy-last acc. | distinct codes | patch MSE |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for key, r in runs.items():
            lines.append(f"| {key} | {r['updates']} | {r['token_accuracy']:.3f} | {r['copy_token_accuracy']:.3f} | "
                         f"{r['distinct_code_share']:.2f} | {r.get('patch_mse', float('nan')):.4f} |")  # fmt: skip
        lines += ["", "Generated-frame MSE against copying the last context frame's tokens (decoded: the same "
                  "tokenizer error) and against copying the frame itself:", "",
                  "| seed | baseline | " + " | ".join(f"h={h}" for h in HORIZONS) + " |",
                  "|---|---|" + "---:|" * len(HORIZONS)]  # fmt: skip
        for key, r in runs.items():
            for name, field in (("generated", "generated_mse"), ("copy last tokens", "copy_tokens_mse"),
                                ("copy last frame", "copy_last_mse")):  # fmt: skip
                if field in r:
                    lines.append(
                        f"| {key} | {name} | " + " | ".join(f"{r[field][str(h)]:.4f}" for h in HORIZONS) + " |"
                    )
        lines.append("")
    if "cost" in results:
        c = results["cost"]
        lines += ["## Cost per world-model update", "",
                  f"`{c['preset']}`, {c['rounds']} interleaved rounds of 5 updates, median; {c['machine']['cpu']}, "
                  f"{c['machine']['torch_threads']} torch threads. {c.get('note', '')}", ""]  # fmt: skip
        lines += cost_table(c["rows"], "model.perceiver", "off")
    if results.get("world_model"):
        lines += ["## World-model open-loop quality with and without the context", "",
                  "| variant | seed | updates | " + " | ".join(f"h={h}" for h in HORIZONS) + " | PSNR dB |",
                  "|---|---|---:|" + "---:|" * (len(HORIZONS) + 1)]  # fmt: skip
        for key, r in results["world_model"].items():
            lines.append(f"| {key.replace('/', ' | ')} | {r['updates']} | "
                         + " | ".join(f"{r['open_loop_mse'][str(h)]:.5f}" for h in HORIZONS)
                         + f" | {r['recon_psnr_db']:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["tokens", "world_model", "cost"], required=True)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--note", default="")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "perceiver")
    args = parser.parse_args(argv)
    from world_model_quality import ensure_dataset, train_and_evaluate

    ensure_dataset(args.data, 100)
    path = args.out / "perceiver.json"
    results = json.loads(path.read_text()) if path.exists() else {}

    def save():
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(results, indent=1) + "\n")
        atomic_write_text(args.out / "perceiver.md", report(results))

    if args.part == "cost":
        rows = interleaved_update_times(args.preset, {"off": {}, "on": {"model.perceiver": True}}, args.data,
                                        args.rounds, 5, "off")  # fmt: skip
        results["cost"] = {"rows": rows, "preset": args.preset, "rounds": args.rounds, "machine": describe(),
                           "note": args.note}  # fmt: skip
        save()
    for seed in args.seeds if args.part != "cost" else []:
        if args.part == "tokens":
            key = f"seed{seed}"
            done = results.get("tokens", {}).get(key, {})
            if done.get("updates") != args.updates or "copy_tokens_mse" not in done:
                results.setdefault("tokens", {})[key] = train_tokens(args, seed)
        else:
            for variant, overrides in {"off": {}, "on": {"model.perceiver": True}}.items():
                key = f"{variant}/seed{seed}"
                if results.get("world_model", {}).get(key, {}).get("updates") == args.updates:
                    continue
                logdir = args.runs / f"{args.preset}-wm-{variant}-s{seed}"
                results.setdefault("world_model", {})[key] = train_and_evaluate(
                    args.data, args.preset, overrides, seed, args.updates, logdir)  # fmt: skip
        save()  # partial results as each seed finishes
    print(report(results))


if __name__ == "__main__":
    main()
