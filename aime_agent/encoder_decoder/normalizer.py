"""Running standardisation of the encoder's input frames: x̃ = (x − μ) / σ.

μ (3, S, S) is the running per-pixel mean of every frame trained on; σ is one scalar, the root of the
per-pixel variances' mean, so pixels keep their relative weights (a per-pixel σ would blow up the few
pixels that barely change). Both are exact running moments over all frames seen (Chan et al.'s parallel
update, as in SB3's ``RunningMeanStd``), kept as buffers so they travel with ``state_dict``.

Why (docs/investigations/agent_learning.md, "The posterior wakes up"): in DMC frames the moving parts
cover a few pixels, so raw frames differ by ~0.03 in [−0.5, 0.5] units. The encoder then maps all frames
to nearly the same embedding, the posterior means spread by ~0.002 against the posterior's noise floor of
0.1, the decoder learns to ignore z, and the model stays collapsed for ~1000+ updates. Standardised frames differ by
O(1): the same `tiny` model on the same replay woke within ~400 updates. Only the encoder's input is
standardised; the decoder still models raw pixels, so the likelihood is unchanged.

Statistics update only when ``update`` is called (``WorldModel.loss`` does so in train mode with
gradients on, like BatchNorm); before the first update the map is the identity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PixelStandardizer(nn.Module):
    """(N, 3, S, S) → (N, 3, S, S): subtract the running mean frame, divide by the running global std."""

    def __init__(self, image_size: int = 64, channels: int = 3, eps: float = 1e-4):
        super().__init__()
        self.eps = eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(channels, image_size, image_size))
        self.register_buffer("m2", torch.zeros(channels, image_size, image_size))  # Σ (x − μ)² per pixel
        self.register_buffer("scale", torch.ones(()))  # σ = sqrt(mean_pixels(m2 / count) + eps)

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Fold a batch of frames (..., 3, S, S) into the running moments."""
        x = x.detach().float().reshape(-1, *self.mean.shape)
        n = float(x.shape[0])
        if n == 0:
            return
        seen = float(self.count)  # one host read per update
        batch_mean = x.mean(0)
        batch_m2 = (x - batch_mean).pow(2).sum(0)
        total = seen + n
        delta = batch_mean - self.mean
        self.m2 += batch_m2 + delta.pow(2) * (seen * n / total)
        self.mean += delta * (n / total)
        self.count.fill_(total)
        self.scale.copy_((self.m2 / total).mean().add(self.eps).sqrt())

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.scale.to(x.dtype)
