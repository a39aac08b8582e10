"""Diagnostic: what the sampled futures of trained bimodal-ball models look like (a figure, not a benchmark).

Loads the checkpoints that ``ablations.py --part world_model --datasets bimodal`` left under ``runs/ablations/``
and draws, for each config named, ``--rows`` of the 64 sampled futures that ``bimodal_ball.mode_shares``
judges: one row per sample, one column per second imagined row (rows CONTEXT … SPLIT + AHEAD), configs stacked
with a grey band between them; it prints each sample's judged mode and the shares, which match the run's, and
for a mixture prior the effective number of components per imagined row, exp H(E[π | h]), averaged over samples.

    python benchmarks/diagnostics/bimodal_rollouts.py --configs core +DPGMM --seed 1 \\
        --out docs/investigations/bimodal_ball_rollouts.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bimodal_ball as ball  # noqa: E402
from ablations import ABLATIONS, DATASETS  # noqa: E402


def futures(config: str, seed: int, runs: Path, data: Path, priors: list) -> torch.Tensor:
    """(T, 64, 3, 64, 64) the sampled futures of one finished run (its checkpoint, no training); each step's
    prior is appended to ``priors``."""
    from aime_agent.config import preset
    from aime_agent.pretrain import Pretrainer, PretrainSettings

    logdir = runs / f"small-bimodal-{config.lstrip('+')}-s{seed}"
    if not (logdir / "checkpoint.pt").exists():
        raise SystemExit(f"{logdir}/checkpoint.pt is missing: run ablations.py on bimodal for {config}, seed {seed}")
    trainer = Pretrainer(data, preset("small", **ABLATIONS[config]), logdir, PretrainSettings(seed=seed))
    return ball.sample_futures(trainer.model, trainer.data, trainer.eval_ids, priors=priors)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["core", "+DPGMM"], choices=list(ABLATIONS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "ablations")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / DATASETS["bimodal"])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bimodal_ball_rollouts.png")
    args = parser.parse_args(argv)
    blocks = []
    for config in args.configs:
        priors: list = []
        frames = futures(config, args.seed, args.runs, args.data, priors)  # (T, N, 3, 64, 64)
        modes, _ = ball.classify(frames[-1])
        print(config, {m: modes.count(m) / len(modes) for m in ("left", "right", "neither")}, modes[: args.rows])
        if hasattr(priors[0], "expected_weights"):  # a mixture: how many components each step spreads over
            k_eff = [torch.special.entr(p.expected_weights()).sum(-1).exp().mean().item() for p in priors]
            print(f"  K_eff at rows {ball.CONTEXT}…{ball.SPLIT + ball.AHEAD}:", " ".join(f"{k:.2f}" for k in k_eff))
        shown = frames[::2, : args.rows]  # (T', rows, 3, 64, 64)
        blocks.append(shown.permute(1, 3, 0, 4, 2).reshape(args.rows * 64, shown.shape[0] * 64, 3).numpy())
    band = np.full((8, blocks[0].shape[1], 3), 0.35, np.float32)
    image = np.concatenate([part for block in blocks for part in (block, band)][:-1])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image * 255).astype(np.uint8)).resize((image.shape[1] * 2, image.shape[0] * 2), 0).save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
