"""Attention blocks of the causal Perceiver IO: pre-LayerNorm multi-head attention on ``scaled_dot_product_attention``,
Fourier position features, and rotary time positions.

Perceiver IO (Jaegle et al. 2021, arXiv:2107.14795): Z ← Z + Attn(LN(Z), LN(X)); Z ← Z + MLP(LN(Z)). Masks are
boolean, True = may attend. A query row whose every key is masked gets a zero update instead of softmax over an
empty set (NaN): its residual stream passes through unchanged.

Rotary position embedding (RoPE; Su et al. 2021, arXiv:2104.09864) rotates query and key channel pairs by angles
p·θ_k, so attention logits depend on p_q − p_k only: a model trained on T frames attends the same way at frame
3T. Shapes: B batch, L query length, S key length, D channels, H heads.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def fourier_features(positions: Tensor, bands: int, max_freq: float) -> Tensor:
    """(..., k) positions in [−1, 1] → (..., k·(2·bands + 1)): [p, sin(π f p), cos(π f p)] for ``bands``
    frequencies f spaced linearly in [1, max_freq / 2] (Perceiver's position encoding)."""
    freqs = torch.linspace(1.0, max_freq / 2, bands, device=positions.device, dtype=positions.dtype)
    angles = math.pi * positions.unsqueeze(-1) * freqs  # (..., k, bands)
    feats = torch.cat([positions.unsqueeze(-1), angles.sin(), angles.cos()], -1)
    return feats.flatten(-2)


def rotary(x: Tensor, positions: Tensor, base: float = 10_000.0) -> Tensor:
    """Rotate channel pairs of ``x`` (..., L, d) by angles positions (L,) × θ_k, θ_k = base^(−2k/d)."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, device=x.device, dtype=x.dtype) / d)  # (d/2,)
    angles = positions.to(x.dtype).unsqueeze(-1) * theta  # (L, d/2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)


class Attention(nn.Module):
    """Multi-head attention of LN(queries) on LN(keys/values), through ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, kv_dim: int | None = None, heads: int = 4):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        kv_dim = kv_dim or dim
        self.heads = heads
        self.norm_q, self.norm_kv = nn.LayerNorm(dim), nn.LayerNorm(kv_dim)
        self.to_q, self.to_kv = nn.Linear(dim, dim), nn.Linear(kv_dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                positions: Tensor | None = None) -> Tensor:  # fmt: skip
        """x (B, L, D), context (B, S, kv_dim) (default: x), mask (B or 1, L, S) bool, positions (L,) for rotary
        (self-attention only) → (B, L, D)."""
        context = x if context is None else context
        q = self.to_q(self.norm_q(x))
        k, v = self.to_kv(self.norm_kv(context)).chunk(2, -1)
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in (q, k, v))
        if positions is not None:
            q, k = rotary(q, positions), rotary(k, positions)
        attn_mask = None
        if mask is not None:
            # finite fill (not −inf): a fully masked row stays finite, and is zeroed below
            attn_mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, -1e9)
            attn_mask = attn_mask.unsqueeze(1)  # broadcast over heads
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        y = self.out(rearrange(y, "b h n d -> b n (h d)"))
        if mask is not None:
            y = y * mask.any(-1, keepdim=True).to(y.dtype)  # rows with no visible key: no update
        return y


class Block(nn.Module):
    """Z ← Z + Attn(LN(Z), LN(context)); Z ← Z + MLP(LN(Z)) (pre-LN transformer block; self-attention when
    ``context`` is None)."""

    def __init__(self, dim: int, kv_dim: int | None = None, heads: int = 4, mlp_ratio: int = 2):
        super().__init__()
        self.attn = Attention(dim, kv_dim, heads)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, mlp_ratio * dim), nn.GELU(),
                                 nn.Linear(mlp_ratio * dim, dim))  # fmt: skip

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                positions: Tensor | None = None) -> Tensor:  # fmt: skip
        x = x + self.attn(x, context, mask, positions)
        return x + self.mlp(x)
