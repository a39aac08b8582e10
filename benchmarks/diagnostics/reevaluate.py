"""Re-measure finished world-model runs from their checkpoints, in eval mode (no training).

Until 2026-12-02 the held-out measurements of ``world_model_quality.train_and_evaluate`` ran in train mode, and
the Perceiver's VQ codebook took EMA steps on the held-out windows while they were measured (see
``aime_agent.world_model.evaluation``); configs without the Perceiver were unaffected (their measurements
reproduce exactly). This re-measures the named runs of a results file from their final checkpoints, keeps each
run's training time, and marks the run ``"reevaluated"``.

    python benchmarks/diagnostics/reevaluate.py ablations --configs +Perceiver full
    python benchmarks/diagnostics/reevaluate.py perceiver
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "docs" / "benchmarks"


def remeasure(data: Path, seed: int, updates: int, logdir: Path, extra=None) -> dict:
    """The measurements of a finished run (its checkpoint at ``updates``, with the config it was trained with),
    without training it further."""
    from world_model_quality import evaluate

    from aime_agent.checkpoint import load_checkpoint
    from aime_agent.config import AIMEConfig
    from aime_agent.pretrain import KIND, Pretrainer, PretrainSettings

    config = AIMEConfig.from_dict(load_checkpoint(logdir / "checkpoint.pt", KIND)["config"])
    trainer = Pretrainer(data, config, logdir, PretrainSettings(steps=updates, seed=seed))
    if trainer.step != updates:
        raise SystemExit(f"{logdir}: its checkpoint is at update {trainer.step}, not {updates}")
    result = evaluate(trainer.model, trainer.data, trainer.eval_ids)
    if extra is not None:
        result.update(extra(trainer.model, trainer.data, trainer.eval_ids))
    return result


def ablations(configs: list[str], seeds: list[int] | None) -> None:
    import ablations as ab
    from bimodal_ball import mode_shares

    results = json.loads((OUT / "ablations.json").read_text())
    mine = {"world_model": {}}
    for key, run in results["world_model"].items():
        dataset, config, seed = key.split("/")
        if config not in configs:
            continue
        seed = int(seed.removeprefix("seed"))
        if seeds is not None and seed not in seeds:
            continue
        logdir = ROOT / "runs" / "ablations" / f"small-{dataset}-{config.lstrip('+')}-s{seed}"
        extra = mode_shares if dataset == "bimodal" else None
        new = remeasure(ROOT / "data" / ab.DATASETS[dataset], seed, run["updates"], logdir, extra)
        mine["world_model"][key] = {**run, **new, "reevaluated": str(datetime.date.today())}
        print(key, {k: v for k, v in new.items() if k.startswith("mode") or k == "recon_psnr_db"}, flush=True)
    ab.save(mine, OUT)


def perceiver() -> None:
    import perceiver as pc

    from envs.fileio import atomic_write_text

    path = OUT / "perceiver.json"
    results = json.loads(path.read_text())
    for key, run in results["world_model"].items():
        variant, seed = key.split("/")
        if variant != "on":
            continue
        seed = int(seed.removeprefix("seed"))
        new = remeasure(pc.DATA, seed, run["updates"], ROOT / "runs" / "perceiver" / f"small-wm-on-s{seed}")
        results["world_model"][key] = {**run, **new, "reevaluated": str(datetime.date.today())}
        print(key, new["open_loop_mse"], flush=True)
    atomic_write_text(path, json.dumps(results, indent=1) + "\n")
    atomic_write_text(OUT / "perceiver.md", pc.report(results))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", choices=["ablations", "perceiver"])
    parser.add_argument("--configs", nargs="+", default=["+Perceiver", "full"])
    parser.add_argument("--seeds", type=int, nargs="+", help="ablations: only these seeds (default: all)")
    args = parser.parse_args(argv)
    ablations(args.configs, args.seeds) if args.results == "ablations" else perceiver()


if __name__ == "__main__":
    main()
