"""benchmarks/published.py: published per-seed curves read at our milestones, on hand-made score files."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import published  # noqa: E402

EVAL_RUN = {"xs": [0, 20_000, 40_000, 60_000], "ys": [1.0, 2.0, 3.0, 4.0]}


def write_scores(folder: Path) -> None:
    # DreamerV3 logs training episodes: 8 parallel envs end episodes together every 8k env steps
    dreamer = [{"task": "dmc_cartpole_balance", "method": "dreamerv3", "seed": 0,
                "xs": [8002, 8004, 16018, 16020, 24034], "ys": [100.0, 200.0, 300.0, 500.0, 700.0]},
               {"task": "dmc_walker_walk", "method": "dreamerv3", "seed": 0, "xs": [16018], "ys": [9.0]}]  # fmt: skip
    files = {"dreamerv3": dreamer}
    for key in ("drqv2", "curl", "sac"):
        files[key] = [{"task": "dmc_cartpole_swingup", "method": key, "seed": s, **EVAL_RUN} for s in (0, 1)]
    for key, runs in files.items():
        with gzip.open(folder / f"dmc_vision-{key}.json.gz", "wt") as f:
            json.dump(runs, f)


def test_milestones_of_training_episode_and_evaluation_logs(tmp_path):
    write_scores(tmp_path)
    data = published.extract(tmp_path)
    assert set(data) == {"cartpole-balance", "cartpole-swingup"}  # walker ignored
    # training episodes ending in (10k, 20k]: 300 and 500; nothing in (40k, 50k] or (90k, 100k]
    assert data["cartpole-balance"]["DreamerV3"] == {"20000": [400.0]}
    # evaluations: the last at or before the milestone (50k → the 40k one); none past the log's end
    assert data["cartpole-swingup"]["DrQ-v2"] == {"20000": [2.0, 2.0], "50000": [3.0, 3.0]}
    rows = published.table(data)
    assert "| cartpole-balance | DreamerV3 | 1 | 400 [400 – 400] | – | – |" in rows
    assert "| cartpole-swingup | CURL | 2 | 2 [2 – 2] | 3 [3 – 3] | – |" in rows


def test_missing_score_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="dmc_vision-dreamerv3.json.gz"):
        published.extract(tmp_path)
