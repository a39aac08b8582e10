"""The MLP block used by heads, priors and posteriors: (Linear → LayerNorm → SiLU) × layers → Linear."""

from __future__ import annotations

from torch import nn


def mlp(inp: int, out: int, hidden: int, layers: int = 1) -> nn.Sequential:
    """``layers`` hidden layers of width ``hidden`` (LayerNorm, SiLU), then a linear output."""
    modules: list[nn.Module] = []
    width = inp
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.SiLU()]
        width = hidden
    modules.append(nn.Linear(width, out))
    return nn.Sequential(*modules)
