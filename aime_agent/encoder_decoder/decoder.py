"""Decoder p(x_t | h_t, z_t): a unit-variance Gaussian over pixels, with NO skips from the encoder.

The original AIME's decoder took encoder skip connections, so reconstructions could bypass z. Here
the only input is the latent feature [h, z]: (N, F) → linear → (N, 8d, 4, 4) → four stride-2 4×4
transposed convs (4→8→16→32→64) → mean (N, 3, 64, 64). log p(x | h, z) = Σ_pixels log N(x; mean, 1).
"""

from __future__ import annotations

from torch import Tensor, nn

from aime_agent.distributions import gaussian_log_prob
from aime_agent.encoder_decoder.encoder import ResidualCell, norm


class ConvDecoder(nn.Module):
    def __init__(self, feat_dim: int, depth: int = 16, res_blocks: int = 1, image_size: int = 64):
        super().__init__()
        if image_size != 64:
            raise ValueError(f"the conv decoder produces 64×64 images, got {image_size}")
        self.channels = depth * 8
        self.linear = nn.Linear(feat_dim, self.channels * 16)
        layers: list[nn.Module] = [norm(self.channels), nn.SiLU()]
        channels, size = self.channels, 4
        for stage in range(4):
            if size <= 8:
                layers += [ResidualCell(channels) for _ in range(res_blocks)]
            out = 3 if stage == 3 else channels // 2
            layers.append(nn.ConvTranspose2d(channels, out, 4, stride=2, padding=1))
            if stage < 3:
                layers += [norm(out), nn.SiLU()]
            channels, size = out, size * 2
        self.net = nn.Sequential(*layers)

    def forward(self, feat: Tensor) -> Tensor:
        """(N, F) → image mean (N, 3, 64, 64)."""
        return self.net(self.linear(feat).view(-1, self.channels, 4, 4))

    @staticmethod
    def log_prob(x: Tensor, mean: Tensor) -> Tensor:
        """Unit-variance Gaussian log-likelihood, summed over (C, H, W): (N, 3, H, W) → (N,)."""
        return gaussian_log_prob(x.float(), mean.float(), 1.0, event_dims=3)
