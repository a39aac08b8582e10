"""Distractors behind the DMC scene: seeded moving coloured shapes and an optional moving noise texture.

In the spirit of the Distracting Control Suite (Stone et al. 2021, arXiv:2101.02722), which replaces the
background with video: here the pixels where the camera sees no geometry (the skybox, segmentation id −1) are
blended with a distractor layer, out = (1 − s)·frame + s·layer at strength s ∈ [0, 1]. The robot and the floor
are never covered, so the task stays solvable; what changes is how much of every frame is task-irrelevant
motion. The layer holds ``shapes`` discs and squares of random colour and size that move at constant velocity
and bounce off the frame's edges, over a noise texture that drifts (``noise=True``) or black.

Everything is drawn from one ``numpy`` generator, reseeded by ``reset(seed)``: the same seed gives the same
distractors frame for frame.
"""

from __future__ import annotations

import numpy as np


class Distractors:
    def __init__(self, image_size: int, strength: float, shapes: int = 4, noise: bool = False):
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"distractor strength must lie in [0, 1], got {strength}")
        if shapes < 0:
            raise ValueError(f"distractor shapes must be >= 0, got {shapes}")
        self.size, self.strength, self.count, self.noise = image_size, float(strength), int(shapes), noise
        self.rng = np.random.default_rng()
        yy, xx = np.mgrid[0:image_size, 0:image_size]
        self._grid = np.stack([yy, xx], -1).astype(np.float32)  # (S, S, 2)
        self.reset(None)

    def reset(self, seed: int | None) -> None:
        """New shapes (and texture) for an episode; ``seed`` reseeds the generator, None continues it."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        s, n, rng = self.size, self.count, self.rng
        self.position = rng.uniform(0, s, (n, 2)).astype(np.float32)
        self.velocity = rng.uniform(-0.06 * s, 0.06 * s, (n, 2)).astype(np.float32)  # pixels per frame
        self.radius = rng.uniform(0.06 * s, 0.16 * s, n).astype(np.float32)
        self.colour = rng.integers(0, 256, (n, 3)).astype(np.float32)
        self.square = rng.random(n) < 0.5
        self.texture = rng.integers(0, 256, (s, s, 3)).astype(np.float32) if self.noise else None
        self.offset = np.zeros(2, np.int64)

    def step(self) -> None:
        """Move every shape one frame (bouncing at the edges) and drift the texture one pixel."""
        self.position += self.velocity
        low, high = self.position < 0, self.position > self.size - 1
        self.velocity[low | high] *= -1
        self.position = np.clip(self.position, 0, self.size - 1)
        self.offset = (self.offset + (1, 1)) % self.size

    def layer(self) -> np.ndarray:
        """The distractor image (S, S, 3) float32 in [0, 255]."""
        if self.texture is not None:
            layer = np.roll(self.texture, tuple(self.offset), axis=(0, 1)).copy()
        else:
            layer = np.zeros((self.size, self.size, 3), np.float32)
        for p, r, c, square in zip(self.position, self.radius, self.colour, self.square, strict=True):
            d = np.abs(self._grid - p)
            inside = d.max(-1) <= r if square else (d**2).sum(-1) <= r * r
            layer[inside] = c
        return layer

    def apply(self, frame: np.ndarray, background: np.ndarray) -> np.ndarray:
        """frame (S, S, 3) uint8, background (S, S) bool (no geometry there) → the frame with distractors."""
        if self.strength == 0.0:
            return frame
        out = frame.astype(np.float32)
        mixed = (1.0 - self.strength) * out + self.strength * self.layer()
        out[background] = mixed[background]
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
