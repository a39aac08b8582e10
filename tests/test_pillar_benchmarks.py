"""The pillar benchmarks (gradient_balancing, perceiver, attention) run end to end at tiny sizes (not their numbers)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three cartpole-swingup episodes of 60 rows: long enough for 5 context frames and 45 generated ones."""
    import envs
    from envs.collect import collect, random_policy

    path = tmp_path_factory.mktemp("data") / "swingup.h5"
    env = envs.make("cartpole-swingup", render_quality="fast", max_env_steps=120, seed=0)
    collect(env, random_policy(env.action_space, 0), 3, path, seed=0, progress=False)
    env.close()
    return path


def test_gradient_balancing_parts_write_their_tables(tmp_path, dataset):
    import gradient_balancing

    gradient_balancing.main(["--part", "synthetic", "--out", str(tmp_path)])
    gradient_balancing.main(["--part", "cost", "--preset", "tiny", "--rounds", "1", "--updates", "1",
                             "--data", str(dataset), "--out", str(tmp_path)])  # fmt: skip
    results = json.loads((tmp_path / "gradient_balancing.json").read_text())
    assert results["synthetic"]["rows"]["rgb_projected/e^±3"]["conflicts"] == 0
    assert set(results["cost"]["rows"]) == set(gradient_balancing.CONFIGS)
    assert results["cost"]["rows"]["sum/none"]["ratio"] == 1.0
    assert "| rgb/e^±3 |" in (tmp_path / "gradient_balancing.md").read_text()
    gradient_balancing.main(["--part", "cost_perceptual", "--preset", "tiny", "--rounds", "1", "--updates", "1",
                             "--data", str(dataset), "--out", str(tmp_path)])  # fmt: skip
    rows = json.loads((tmp_path / "gradient_balancing.json").read_text())["cost_perceptual"]["rows"]
    assert set(rows) == set(gradient_balancing.PERCEPTUAL_CONFIGS) and rows["sum/none + LPIPS"]["update_s"] > 0
    assert "Cost of the LPIPS term" in (tmp_path / "gradient_balancing.md").read_text()
    gradient_balancing.main(["--part", "quality", "--wallclock", "--preset", "tiny", "--updates", "4", "--seeds", "0",
                             "--configs", "sum/none", "sum/parameters", "--data", str(dataset), "--out", str(tmp_path),
                             "--runs", str(tmp_path / "runs")])  # fmt: skip
    results = json.loads((tmp_path / "gradient_balancing.json").read_text())
    ratio = gradient_balancing.wallclock_ratio(results["cost"]["rows"], "sum/parameters")
    assert results["quality_wallclock"]["sum/none/seed0"]["updates"] == 4
    assert results["quality_wallclock"]["sum/parameters/seed0"]["updates"] == round(4 / ratio)
    assert "at equal wall-clock" in (tmp_path / "gradient_balancing.md").read_text()


def test_equal_wall_clock_counts_ratios_within_the_cost_tables_noise_as_one():
    import gradient_balancing

    rows = {name: {"ratio": r} for name, r in [("sum/none", 1.0), ("harmony/none", 0.83), ("rgb", 1.01),
                                                ("upgrad", 1.20), ("params", 1.62)]}  # fmt: skip
    assert [gradient_balancing.wallclock_ratio(rows, n) for n in rows] == [1.0, 1.0, 1.0, 1.2, 1.62]  # noise 0.17
    assert gradient_balancing.wallclock_ratio({"a": {"ratio": 1.0}, "b": {"ratio": 1.05}}, "b") == 1.05
    # with per-round times the noise is the median config's spread (max − min) / median: here sum/none's 0.03 / 0.31
    rows = {
        "sum/none": {"ratio": 1.0, "rounds_s": [0.30, 0.33, 0.31]},
        "rgb": {"ratio": 1.05, "rounds_s": [0.31, 0.32, 0.33]},  # spread 0.02 / 0.32
        "adv": {"ratio": 1.11, "rounds_s": [0.30, 0.40, 0.35]},  # spread 0.10 / 0.35
    }
    assert gradient_balancing.timing_noise(rows) == pytest.approx(0.03 / 0.31)
    assert [gradient_balancing.wallclock_ratio(rows, n) for n in rows] == [1.0, 1.0, 1.11]


def test_gradient_balancing_saves_merge_the_runs_of_two_processes(tmp_path):
    """Two processes (one seed each) save into one file: neither loses the other's runs, and each process's
    sections stay the objects its loop writes into."""
    import gradient_balancing

    run = {"updates": 4, "open_loop_mse": {"1": 0.1, "5": 0.1, "15": 0.1, "45": 0.1}, "recon_psnr_db": 20.0,
           "conflict_rate": 0.5}  # fmt: skip
    first, second = {"quality": {}}, {"quality": {}}
    section = first["quality"]
    section["sum/none/seed0"] = run
    gradient_balancing.save(first, tmp_path)
    second["quality"]["sum/none/seed1"] = run
    gradient_balancing.save(second, tmp_path)
    section["rgb/representation/seed0"] = run  # the first process carries on, writing where it did
    gradient_balancing.save(first, tmp_path)
    saved = json.loads((tmp_path / "gradient_balancing.json").read_text())["quality"]
    assert set(saved) == {"sum/none/seed0", "sum/none/seed1", "rgb/representation/seed0"}
    assert first["quality"] is section and "| sum/none | 2 | 4 |" in (tmp_path / "gradient_balancing.md").read_text()


def test_attention_benchmark_measures_maps_on_both_datasets_and_times(tmp_path, dataset):
    import attention

    data = tmp_path / "data"
    data.mkdir()
    (data / attention.DATASETS["plain"][0]).symlink_to(dataset)
    common = ["--preset", "tiny", "--data-dir", str(data), "--episodes", "3", "--max-env-steps", "120",
              "--out", str(tmp_path), "--runs", str(tmp_path / "runs")]  # fmt: skip
    attention.main(["--part", "world_model", "--updates", "2", "--seeds", "0", *common])
    attention.main(["--part", "cost", "--rounds", "1", *common])
    results = json.loads((tmp_path / "attention.json").read_text())
    assert set(results["world_model"]) == {f"{d}/{v}/seed0" for d in ("plain", "distractors") for v in ("off", "on")}
    on = results["world_model"]["distractors/on/seed0"]
    assert 0 < on["map_entropy_ratio"] <= 1 and on["map_peak_over_uniform"] >= 1
    assert "map_entropy_ratio" not in results["world_model"]["plain/off/seed0"]
    assert results["cost"]["rows"]["off"]["ratio"] == 1.0 and "| distractors | on | seed0 |" in (
        tmp_path / "attention.md").read_text()  # fmt: skip


def test_perceiver_benchmark_trains_generates_and_times(tmp_path, dataset):
    import perceiver

    perceiver.main(["--part", "tokens", "--preset", "tiny", "--updates", "2", "--seeds", "0", "--data", str(dataset),
                    "--out", str(tmp_path)])  # fmt: skip
    perceiver.main(["--part", "cost", "--preset", "tiny", "--rounds", "1", "--data", str(dataset),
                    "--out", str(tmp_path)])  # fmt: skip
    results = json.loads((tmp_path / "perceiver.json").read_text())
    run = results["tokens"]["seed0"]
    assert (
        run["updates"] == 2
        and 0 <= run["token_accuracy"] <= 1
        and set(run["generated_mse"]) == set(run["copy_tokens_mse"]) == {"1", "5", "15", "45"}
    )
    assert results["cost"]["rows"]["off"]["ratio"] == 1.0 and results["cost"]["rows"]["on"]["update_s"] > 0
    assert "Next-frame tokens" in (tmp_path / "perceiver.md").read_text()


def test_the_bimodal_ball_has_two_equally_likely_futures_and_its_judge_knows_them(tmp_path):
    """Known answers: before the split both futures show the same frames; after it the ball is 2 px/row off
    centre on its side; the judge calls true frames by their side with sharpness 1 and the average of the two
    futures ``neither`` with sharpness ½; the dataset's coin is fair and seeded."""
    import bimodal_ball as ball
    import numpy as np
    import torch

    from envs.dataset import EpisodeDataset

    left, right = ball.positions(-1), ball.positions(1)
    assert (left[: ball.SPLIT] == right[: ball.SPLIT]).all() and left[0, 0] == 32 == right[ball.SPLIT - 1, 0]
    judged = ball.SPLIT + ball.AHEAD
    assert left[judged, 0] == 32 - 2 * (ball.AHEAD + 1) and right[judged, 0] == 32 + 2 * (ball.AHEAD + 1)
    assert (ball.WALLS[0] <= left[:, 0]).all() and (left[:, 0] <= ball.WALLS[1]).all()  # it bounces, stays in
    frames = [
        torch.tensor(ball.render(p[judged : judged + 1]))[0].permute(2, 0, 1).float() / 255 for p in (left, right)
    ]
    modes, sharpness = ball.classify(torch.stack([*frames, (frames[0] + frames[1]) / 2]))
    assert modes == ["left", "right", "neither"] and sharpness.tolist() == [1.0, 1.0, 0.5]
    directions = ball.write_dataset(tmp_path / "ball.h5", 400, seed=0)
    assert directions == ball.write_dataset(tmp_path / "again.h5", 400, seed=0) and 170 < directions.count(1) < 230
    data = EpisodeDataset(tmp_path / "ball.h5")
    assert len(data) == 400 and data.episode(0)["obs"].shape == (ball.LENGTH, 64, 64, 3)
    assert np.array_equal(data.episode(0)["obs"], ball.episode(directions[0])["obs"])
    shares = {"exact": (0.5, 0.5, 0), "one mode": (0, 1, 0), "blurred": (0, 0, 1), "skewed": (0.25, 0.55, 0.2)}
    distance = {
        k: ball.distance_from_answer({"mode_left": left, "mode_right": right, "mode_neither": neither})
        for k, (left, right, neither) in shares.items()
    }
    assert distance == pytest.approx({"exact": 0, "one mode": 0.5, "blurred": 1, "skewed": 0.25})


def test_ablations_train_every_pillar_together_and_measure_the_modes(tmp_path, dataset):
    """`core` and `full` (all five pillars at once) at tiny size on cartpole and the bimodal ball; the cost part."""
    import ablations
    import bimodal_ball

    data = tmp_path / "data"
    data.mkdir()
    (data / ablations.DATASETS["plain"]).symlink_to(dataset)
    bimodal_ball.write_dataset(data / ablations.DATASETS["bimodal"], 6)
    common = ["--preset", "tiny", "--data-dir", str(data), "--out", str(tmp_path), "--runs", str(tmp_path / "runs")]
    ablations.main(["--part", "world_model", "--updates", "3", "--seeds", "0", "--datasets", "plain", "bimodal",
                    "--configs", "core", "full", *common])  # fmt: skip
    runs = json.loads((tmp_path / "ablations.json").read_text())["world_model"]
    assert set(runs) == {f"{d}/{c}/seed0" for d in ("plain", "bimodal") for c in ("core", "full")}
    shares = [runs["bimodal/full/seed0"][f"mode_{m}"] for m in ("left", "right", "neither")]
    assert sum(shares) == pytest.approx(1.0) and 0 <= runs["bimodal/full/seed0"]["mode_sharpness"] <= 1
    ablations.main(["--part", "cost", "--rounds", "1", "--configs", "core", "+DPGMM", *common])
    results = json.loads((tmp_path / "ablations.json").read_text())
    assert set(results["cost"]["rows"]) == {"core", "+DPGMM"} and len(results["world_model"]) == 4  # merged
    text = (tmp_path / "ablations.md").read_text()
    assert "| bimodal | full | 1 | 3 |" in text and "Cost per world-model update" in text


def test_paired_against_core_is_the_student_t_interval_of_per_seed_ratios():
    """Hand-computed: changes −10 %, −20 %, −30 % → mean −20 %, sd 10 %, t(0.975, 2) = 4.3027 → ±24.84 %."""
    import ablations

    def run(mse):
        return {"open_loop_mse": {str(h): mse for h in ablations.HORIZONS}}

    runs = {f"plain/core/seed{s}": run(m) for s, m in enumerate([1.0, 2.0, 4.0])}
    runs |= {f"plain/+Stiefel/seed{s}": run(m) for s, m in enumerate([0.9, 1.6, 2.8])}
    runs["plain/+DPGMM/seed0"] = run(0.5)  # one paired seed: no interval
    c = ablations.paired_against_core(runs, "plain", "+Stiefel", 45)
    half = 4.302653 * 0.1 / np.sqrt(3)
    assert c == pytest.approx({"mean": -0.2, "low": -0.2 - half, "high": -0.2 + half, "lower": 3, "seeds": 3})
    assert ablations.paired_against_core(runs, "plain", "+DPGMM", 45) is None
    rows = [line for line in ablations.paired_table(runs) if line.startswith("| plain")]
    assert rows == ["| plain | +Stiefel | 3 | " + " | ".join(["-20 % [-45, +5] (3/3)"] * 4) + " |"]
