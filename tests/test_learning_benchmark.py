"""benchmarks/learning.py: CSV rows, resume from its checkpoint, the report (a few env steps, not learning)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import learning  # noqa: E402


def rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("algo", ["aime", "sac"])
def test_runs_resume_and_report(tmp_path, algo):
    common = ["--algo", algo, "--env", "cartpole-balance", "--eval-every", "24", "--eval-episodes", "1",
              "--csv-dir", str(tmp_path / "csv"), "--runs", str(tmp_path / "runs")]  # fmt: skip
    extra = ["--preset", "tiny", "--override", "learning_starts=9", "train_every=2"] if algo == "aime" else [
        "--sac-buffer", "64", "--override", "learning_starts=2", "batch_size=4"]  # fmt: skip
    learning.main([*common, *extra, "--env-steps", "24"])
    path = tmp_path / "csv" / f"{algo}-cartpole-balance-s0.csv"
    first = rows(path)
    assert [int(r["env_steps"]) for r in first] == [24]
    assert (tmp_path / "runs" / f"{algo}-cartpole-balance-s0" / "checkpoint.zip").exists()
    learning.main([*common, *extra, "--env-steps", "48"])  # resumes from the checkpoint
    second = rows(path)
    assert [int(r["env_steps"]) for r in second] == [24, 48] and second[0] == first[0]
    assert float(second[1]["wall_s"]) > float(second[0]["wall_s"]) and int(second[1]["updates"]) > 0
    assert 0 <= float(second[1]["eval_return_mean"]) <= 1000
    learning.write_report(tmp_path / "csv", tmp_path / "docs")
    report = (tmp_path / "docs" / "learning.md").read_text()
    assert f"{algo}-cartpole-balance-s0" in report and (tmp_path / "docs" / "learning.png").exists()
