"""A video with two futures and a known answer: a ball falls, then rolls left or right with probability ½.

Each episode (``LENGTH`` rows, 64×64 RGB, batch schema, zero actions and rewards): a white ball of radius 4
falls from the top centre to the floor for ``SPLIT`` rows, then rolls along the floor at ``SPEED`` px per row
to the left or to the right (a fair coin per episode, independent of everything before), bouncing off the side
walls. Given frames before the split, the future is exactly bimodal.

:func:`mode_shares` asks a world model for sampled futures: it observes an episode's first ``CONTEXT`` rows,
then rolls its prior forward (sampling z, zero actions) to ``SPLIT + AHEAD`` and decodes that frame. Each sample
is classified by the ball's horizontal centroid (bright pixels): ``left`` / ``right`` when it is more than
``MARGIN`` px from the centre, ``neither`` otherwise; ``sharpness`` is the frame's brightest pixel (1 for a
white ball, about ½ where a model averages the two futures into two half-bright balls). The known answer: left
½, right ½, neither 0, sharpness 1 (:func:`distance_from_answer` scores the shares). A unimodal model that blurs
the modes scores ``neither`` with sharpness ~½.

    python benchmarks/bimodal_ball.py --out data/bimodal-ball-200.h5 --episodes 200
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

SIZE, RADIUS, LENGTH, SPLIT, SPEED = 64, 4, 64, 12, 2.0
FLOOR, WALLS = SIZE - 1 - RADIUS - 2, (RADIUS + 2, SIZE - 1 - RADIUS - 2)
CONTEXT, AHEAD, MARGIN = 6, 8, 8.0  # observe rows 0-5; judge row SPLIT + 8 (the ball 16 px off centre)


def positions(direction: int, length: int = LENGTH) -> np.ndarray:
    """(length, 2) ball centres (x, y): falling to the floor until SPLIT, then rolling ``direction`` (±1)."""
    centre, top = SIZE / 2, RADIUS + 4
    out = []
    for t in range(length):
        if t < SPLIT:
            out.append((centre, top + (FLOOR - top) * (t / (SPLIT - 1)) ** 2))  # accelerating fall
            continue
        x, (low, high) = centre + direction * SPEED * (t - SPLIT + 1), WALLS
        span = high - low
        out.append((low + span - abs((x - low) % (2 * span) - span), FLOOR))  # a triangle wave: bounces
    return np.asarray(out, dtype=np.float32)


def render(centres: np.ndarray) -> np.ndarray:
    """(T, 2) centres → (T, 64, 64, 3) uint8 frames: a white disc on black."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disc = (xx[None] - centres[:, :1, None]) ** 2 + (yy[None] - centres[:, 1:, None]) ** 2 <= RADIUS**2
    return np.repeat(disc[..., None] * np.uint8(255), 3, axis=-1).astype(np.uint8)


def episode(direction: int) -> dict[str, np.ndarray]:
    """One episode in the batch schema (envs/dataset.py)."""
    first = np.zeros(LENGTH, bool)
    first[0] = True
    return {"obs": render(positions(direction)), "action": np.zeros((LENGTH, 1), np.float32),
            "reward": np.zeros(LENGTH, np.float32), "discount": np.ones(LENGTH, np.float32), "is_first": first,
            "is_last": first[::-1].copy(), "is_terminal": np.zeros(LENGTH, bool)}  # fmt: skip


def write_dataset(path: Path, episodes: int, seed: int = 0) -> list[int]:
    """``episodes`` episodes, directions from a fair coin (seeded), written atomically; the directions."""
    from envs.dataset import EpisodeWriter

    directions = [int(d) for d in np.random.default_rng(seed).choice([-1, 1], episodes)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with EpisodeWriter(path, env_id="synthetic/bimodal-ball", action_repeat=1) as writer:
        for direction in directions:
            writer.add(episode(direction))
    return directions


def classify(frames: torch.Tensor) -> tuple[list[str], torch.Tensor]:
    """frames (N, 3, 64, 64) in [0, 1] → the mode of each ("left", "right", "neither") and its sharpness (N,)."""
    gray = frames.mean(1)  # (N, 64, 64)
    sharpness = gray.flatten(1).amax(1)
    bright = gray >= 0.5 * sharpness[:, None, None].clamp(min=1e-6)  # the ball's pixels, at half its peak
    xs = torch.arange(SIZE, dtype=gray.dtype)
    weight = gray * bright
    x = (weight.sum(1) * xs).sum(1) / weight.sum((1, 2)).clamp(min=1e-6)  # horizontal centroid
    modes = ["left" if v < SIZE / 2 - MARGIN else "right" if v > SIZE / 2 + MARGIN else "neither" for v in x.tolist()]
    return modes, sharpness


@torch.no_grad()
def sample_futures(model, data, eval_ids, samples: int = 64, seed: int = 5, priors: list | None = None) -> torch.Tensor:
    """(SPLIT + AHEAD − CONTEXT + 1, samples, 3, 64, 64) frames in [0, 1]: a world model observes the first
    CONTEXT rows of ``samples`` held-out episodes (drawn with ``seed``), then rolls its prior forward (sampling
    z, zero actions); the decoded frames of rows CONTEXT … SPLIT + AHEAD. ``priors``, if given, receives each
    step's prior distribution. In eval mode (nothing in the model moves)."""
    from aime_agent.world_model import LatentState, evaluation

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    starts = [data.episode(int(i)) for i in rng.choice(eval_ids, samples)]
    batch = {k: np.stack([ep[k][:CONTEXT] for ep in starts]) for k in starts[0]}
    frames = []
    with evaluation(model):
        inputs = model.preprocess(batch)
        state = model.observe(inputs)["last"]
        action = torch.zeros(samples, inputs["action"].shape[-1])
        for _ in range(SPLIT + AHEAD - (CONTEXT - 1)):
            rnn, prior = model.img_step(state, action)
            state = LatentState(rnn, prior.rsample())  # every prior has rsample (imagine uses it)
            if priors is not None:
                priors.append(prior)
            frames.append((model.decode(model.feat(state)) + 0.5).clamp(0, 1))
    return torch.stack(frames)


def mode_shares(model, data, eval_ids, samples: int = 64, seed: int = 5) -> dict:
    """Sampled futures of a world model at row SPLIT + AHEAD after observing CONTEXT rows (module docstring)."""
    modes, sharpness = classify(sample_futures(model, data, eval_ids, samples, seed)[-1])
    shares = {m: modes.count(m) / samples for m in ("left", "right", "neither")}
    return {"mode_" + k: v for k, v in shares.items()} | {"mode_sharpness": float(sharpness.mean())}


def distance_from_answer(run: dict) -> float:
    """Total-variation distance of a run's mode shares from the known answer (left ½, right ½, neither 0):
    ½ Σ_m |share_m − answer_m|; 0 is exact, ½ is one mode only, 1 is every sample in neither."""
    answer = {"left": 0.5, "right": 0.5, "neither": 0.0}
    return 0.5 * sum(abs(run["mode_" + m] - p) for m, p in answer.items())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/bimodal-ball-200.h5"))
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    directions = write_dataset(args.out, args.episodes, args.seed)
    print(f"{args.out}: {len(directions)} episodes, {directions.count(-1)} left, {directions.count(1)} right")


if __name__ == "__main__":
    main()
