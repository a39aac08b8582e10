"""Conv encoder e_t = Enc(x_t) with NVAE-style residual cells.

Shapes: x (N, 3, 64, 64) in [-0.5, 0.5] → e (N, embed_dim), embed_dim = 8·depth·4·4.
Stages: four stride-2 4×4 convs (64→32→16→8→4 pixels; channels d, 2d, 4d, 8d), each followed by
GroupNorm(1) ≡ LayerNorm over (C, H, W) and SiLU; ``res_blocks`` residual cells after each stage from
16×16 down. The residual cell is a bottleneck (1×1 → 3×3 → 1×1, width C/4) so that it costs a few
hundred kMACs instead of the ~2.4 MMACs of a full 3×3 pair: at depth 16 the encoder is ~5 MMACs/frame.
"""

from __future__ import annotations

from torch import Tensor, nn


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(1, channels)


class ResidualCell(nn.Module):
    """x + Conv1×1(SiLU(Norm(Conv3×3(SiLU(Norm(Conv1×1(SiLU(Norm(x))))))))) — pre-activation bottleneck."""

    def __init__(self, channels: int):
        super().__init__()
        mid = max(channels // 4, 4)
        self.body = nn.Sequential(
            norm(channels), nn.SiLU(), nn.Conv2d(channels, mid, 1),
            norm(mid), nn.SiLU(), nn.Conv2d(mid, mid, 3, padding=1),
            norm(mid), nn.SiLU(), nn.Conv2d(mid, channels, 1),
        )  # fmt: skip
        nn.init.zeros_(self.body[-1].weight)  # starts as the identity
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ConvEncoder(nn.Module):
    """(N, 3, S, S) → (N, embed_dim). ``S`` must be 64 (four halvings to 4×4)."""

    def __init__(self, depth: int = 16, res_blocks: int = 1, image_size: int = 64):
        super().__init__()
        if image_size != 64:
            raise ValueError(f"the conv encoder expects 64×64 images, got {image_size}")
        layers: list[nn.Module] = []
        channels, size = 3, image_size
        for stage in range(4):
            out = depth * 2**stage
            layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1), norm(out), nn.SiLU()]
            channels, size = out, size // 2
            if size <= 16:
                layers += [ResidualCell(channels) for _ in range(res_blocks)]
            if size == 16:
                self.split, self.map_channels = len(layers), channels  # the 16×16 feature map ends here
        self.net = nn.Sequential(*layers)
        self.out_channels, self.out_size = channels, size
        self.embed_dim = channels * size * size

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1)

    def feature_map(self, x: Tensor) -> Tensor:
        """(N, 3, 64, 64) → the 16×16 stage's features (N, 2d, 16, 16) (what the attention schema reads)."""
        return self.net[: self.split](x)

    def from_feature_map(self, f: Tensor) -> Tensor:
        """The rest of the encoder: (N, 2d, 16, 16) → (N, embed_dim); ``forward`` = this after ``feature_map``."""
        return self.net[self.split :](f).flatten(1)
