"""LPIPS, the learned perceptual image distance (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep
Features as a Perceptual Metric"), version 0.1 with the AlexNet backbone, offline and without torchvision.

    d(x, x̂) = Σ_l mean_{h,w} Σ_c w_{l,c} · (n(f_l(x)) − n(f_l(x̂)))²_c,   n(f) = f / ‖f‖ over channels

f_l are AlexNet's five ReLU outputs (64, 192, 384, 256, 256 channels) after LPIPS's input scaling, w_l ≥ 0 the
learned per-channel weights (1×1 convolutions). The layer layout matches ``torchvision.models.alexnet().features``
so its weights load by name, yet nothing here imports torchvision (its PyPI wheels do not load beside the CPU
build of torch that this project uses) and nothing downloads: the two weight files come from a local directory
or the torch hub cache, and a missing one is an error that says which file to put where.

Shapes: images (N, 3, H, W) in [−1, 1] (H, W ≥ 32) → distances (N,).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import Tensor, nn

BACKBONE_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet weights, as the torch hub cache names them
BACKBONE_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
LINEAR_FILE = "alex.pth"  # LPIPS v0.1's per-channel weights (lpips/weights/v0.1/alex.pth in the lpips package)
CHANNELS = (64, 192, 384, 256, 256)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features`` up to the last ReLU (indices 0–11, the same parameter names)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
    )  # fmt: skip


def find_weights(weights_dir: str | Path | None = None) -> tuple[Path, Path]:
    """(backbone file, linear-weights file): from ``weights_dir`` if given, else the torch hub cache
    (``torch.hub.get_dir()/checkpoints``) for the backbone and the installed lpips package for the linear weights.
    Raises FileNotFoundError naming each missing file and where it goes."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if weights_dir is not None:
        backbone, linear = Path(weights_dir) / BACKBONE_FILE, Path(weights_dir) / LINEAR_FILE
        places = f"the directory {weights_dir}"
    else:
        spec = importlib.util.find_spec("lpips")
        locations = spec.submodule_search_locations if spec else None
        package = Path(next(iter(locations))) if locations else None
        backbone = hub / BACKBONE_FILE
        linear = package / "weights" / "v0.1" / LINEAR_FILE if package else hub / LINEAR_FILE
        places = f"the torch hub cache {hub} (or pass a weights directory: loss.perceptual_weights)"
    missing = [p for p in (backbone, linear) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"LPIPS needs its weights offline; missing: {', '.join(str(p) for p in missing)}. Put {BACKBONE_FILE} "
            f"(torchvision's AlexNet, {BACKBONE_URL}) and {LINEAR_FILE} (LPIPS v0.1, lpips/weights/v0.1/alex.pth "
            f"from the lpips package) in {places}, or build LPIPS(pretrained=False) for a randomly initialised one."
        )
    return backbone, linear


class LPIPS(nn.Module):
    """``LPIPS(weights_dir)`` loads both weight files (see ``find_weights``); ``LPIPS(pretrained=False)`` is a
    randomly initialised backbone with uniform non-negative channel weights (tests, cost measurements). Every
    parameter is frozen: the distance is a fixed loss, and gradients flow only to the images."""

    def __init__(self, weights_dir: str | Path | None = None, pretrained: bool = True):
        super().__init__()
        self.features = alexnet_features()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.linear = nn.ParameterList(nn.Parameter(torch.full((1, c, 1, 1), 1.0 / c)) for c in CHANNELS)
        if pretrained:
            backbone, linear = find_weights(weights_dir)
            state = torch.load(backbone, map_location="cpu", weights_only=True)
            self.features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()
                                           if k.startswith("features.") and int(k.split(".")[1]) < 12})  # fmt: skip
            lins = torch.load(linear, map_location="cpu", weights_only=True)
            for i, w in enumerate(self.linear):
                w.data.copy_(lins[f"lin{i}.model.1.weight"])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)  # no dropout, no statistics: always the evaluation network

    def layers(self, x: Tensor) -> list[Tensor]:
        """(N, 3, H, W) in [−1, 1] → the five unit-normalised ReLU outputs."""
        x, out = (x - self.shift) / self.scale, []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in (1, 4, 7, 9, 11):
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Images (N, 3, H, W) in [−1, 1] → LPIPS distances (N,)."""
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS compares two (N, 3, H, W) batches, got {tuple(x.shape)} and {tuple(y.shape)}")
        total = x.new_zeros(x.shape[0])
        for w, fx, fy in zip(self.linear, self.layers(x), self.layers(y), strict=True):
            total = total + (w * (fx - fy).pow(2)).sum(1).mean((1, 2))
        return total
