"""Seconds per world-model update of several configs, timed round-robin in one process (one shared helper of the
pillar benchmarks): a machine that slows down mid-run slows every config alike."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch


def interleaved_update_times(preset_name: str, configs: dict[str, dict], data_path: Path, rounds: int,
                             updates: int, baseline: str) -> dict[str, dict[str, float]]:  # fmt: skip
    """{name: {update_s (median over rounds), ratio (to ``baseline``'s), rounds_s}} for world models built from
    ``preset(preset_name, **overrides)`` (with the discriminator's own step where ``loss.adversarial`` > 0);
    round 0 warms up, each round times ``updates`` updates per config."""
    from aime_agent.config import preset
    from aime_agent.world_model import WorldModel, make_adversary, make_aggregator, make_optimizer, train_step
    from envs.dataset import EpisodeDataset

    data = EpisodeDataset(data_path)
    action_dim = int(data.episode(0)["action"].shape[-1])
    setups = {}
    for name, overrides in configs.items():
        torch.manual_seed(0)
        config = preset(preset_name, **overrides)
        model = WorldModel(config, action_dim)
        setups[name] = (model, make_optimizer(model, config), make_aggregator(model), make_adversary(config), config)
    times: dict[str, list[float]] = {name: [] for name in configs}
    rng = np.random.default_rng(0)
    for round_ in range(rounds + 1):
        for name, (model, optimizer, aggregator, adversary, config) in setups.items():
            batches = [data.sample(config.train.batch_size, config.train.batch_length, rng) for _ in range(updates)]
            start = time.perf_counter()
            for batch in batches:
                train_step(model, optimizer, batch, aggregator, adversary)
            if round_:
                times[name].append((time.perf_counter() - start) / updates)
    base = statistics.median(times[baseline])
    return {name: {"update_s": statistics.median(t), "ratio": statistics.median(t) / base, "rounds_s": t}
            for name, t in times.items()}  # fmt: skip


def cost_table(rows: dict[str, dict[str, float]], column: str, baseline: str) -> list[str]:
    """Markdown lines of ``interleaved_update_times``' rows: name, seconds per update, ratio to ``baseline``."""
    lines = [f"| {column} | s per update | × {baseline} |", "|---|---:|---:|"]
    lines += [f"| {name} | {row['update_s']:.3f} | {row['ratio']:.2f} |" for name, row in rows.items()]
    return lines + [""]
