"""Slot attention (Locatello et al. 2020, "Object-Centric Learning with Slot Attention", Algorithm 1) and the
schema's diversity penalty.

Per iteration, with k = W_k LN(x), v = W_v LN(x), q = W_q LN(s):
    A = softmax over slots of k qᵀ/√D          (B, N, K): the slots compete for each input
    W = (A + ε) / Σ_inputs (A + ε)             (B, N, K): each slot's weights sum to 1 over the inputs
    u = Wᵀ v                                   (B, K, D): a weighted MEAN of the values (not a sum, which would
                                                grow with the number of inputs)
    s ← GRU(u, s);  s ← s + MLP(LN(s))
``forward(inputs, slots)`` takes explicit seed slots (the world model seeds them from h_{t−1}); without them
they are drawn from a learned Gaussian. Returns the slots (B, K, D) and the last attention (B, K, N).
Shapes: B batch, N inputs, K slots, D slot width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SlotAttention(nn.Module):
    def __init__(self, num_slots: int, dim: int, iters: int = 3, input_dim: int | None = None, hidden: int = 0,
                 eps: float = 1e-8):  # fmt: skip
        super().__init__()
        if iters < 1:
            raise ValueError(f"slot attention needs at least one iteration, got {iters}")
        input_dim = input_dim or dim
        self.num_slots, self.dim, self.iters, self.eps = num_slots, dim, iters, eps
        self.norm_inputs, self.norm_slots, self.norm_mlp = nn.LayerNorm(input_dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k, self.to_v = nn.Linear(input_dim, dim, bias=False), nn.Linear(input_dim, dim, bias=False)
        self.gru = nn.GRUCell(dim, dim)
        hidden = hidden or 2 * dim
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.slot_mu = nn.Parameter(torch.zeros(1, 1, dim))
        self.slot_log_sigma = nn.Parameter(torch.zeros(1, 1, dim))

    def attention(self, k: Tensor, slots: Tensor) -> tuple[Tensor, Tensor]:
        """(A softmax over slots (B, N, K), W normalised over inputs (B, N, K))."""
        q = self.to_q(self.norm_slots(slots))
        logits = torch.einsum("bnd,bkd->bnk", k, q) / self.dim**0.5
        attn = logits.softmax(-1)
        weights = (attn + self.eps) / (attn + self.eps).sum(1, keepdim=True)
        return attn, weights

    def forward(self, inputs: Tensor, slots: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """inputs (B, N, input_dim), slots (B, K, D) or None → (slots (B, K, D), attn (B, K, N))."""
        if inputs.dim() != 3:
            raise ValueError(f"inputs must be (B, N, dim), got {tuple(inputs.shape)}")
        b = inputs.shape[0]
        if slots is None:
            noise = torch.randn(b, self.num_slots, self.dim, device=inputs.device, dtype=inputs.dtype)
            slots = self.slot_mu + self.slot_log_sigma.exp() * noise
        elif slots.shape[0] != b or slots.shape[-1] != self.dim:
            raise ValueError(f"seed slots must be (B={b}, K, {self.dim}), got {tuple(slots.shape)}")
        x = self.norm_inputs(inputs)
        k, v = self.to_k(x), self.to_v(x)
        for _ in range(self.iters):
            _, weights = self.attention(k, slots)
            updates = torch.einsum("bnk,bnd->bkd", weights, v)
            slots = self.gru(updates.flatten(0, 1), slots.flatten(0, 1)).view_as(slots)
            slots = slots + self.mlp(self.norm_mlp(slots))
        attn, _ = self.attention(k, slots)
        return slots, attn.transpose(1, 2)


def diversity_penalty(slots: Tensor) -> Tensor:
    """Mean squared uncentred cosine similarity between distinct slots: 1 for identical slots, 0 for orthogonal
    ones. slots (B, K, D) → scalar."""
    unit = F.normalize(slots, dim=-1)
    cos = unit @ unit.transpose(1, 2)  # (B, K, K)
    k = slots.shape[1]
    off_diagonal = ~torch.eye(k, dtype=torch.bool, device=slots.device)
    return cos[:, off_diagonal].pow(2).mean()
