"""The attention schema on the encoder's 16×16 feature map: where to look, how much to trust it, and a model of it.

For frame t with feature map F_t (N, C, 16, 16) and the previous recurrent state h_{t−1} (N, H):
    seeds   = Linear(h_{t−1}) → K slots;  slots, l = SlotAttention(tokens(F_t), seeds)   l: (N, K, 256) logits
    A_t     = softmax over the 256 positions of τ · logsumexp_k l_k (τ learned)          the fused map, sums to 1
    F'_t    = F_t · (1 − β + β · 256 · A_t)                                               precision weights, mean 1
    p(A_t | h_{t−1}) = softmax(MLP(h_{t−1}))                                              the attention prior
Losses: KL(sg(A_t) ‖ p(A_t | h_{t−1})) (the model predicts its own attention; categorical KL over positions),
and the slots' diversity penalty (mean squared uncentred cosine). F'_t continues through the encoder to e_t,
so the schema changes what the posterior sees; imagination (prior, recurrence) never reads it.

The original AIME took a softmax over values already in [0, 1], so its maps were near-uniform; here the map is
a softmax over unbounded logits. Shapes: N rows (B or B·T), C map channels, K slots, D slot width, H deter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aime_agent.attention_schema.slot_attention import SlotAttention, diversity_penalty


class AttentionSchema(nn.Module):
    def __init__(self, channels: int, deter: int, num_slots: int = 4, dim: int = 32, iters: int = 2,
                 precision: float = 0.5, hidden: int = 64, side: int = 16, fusion: str = "mixture"):  # fmt: skip
        super().__init__()
        if not 0.0 <= precision <= 1.0:
            raise ValueError(f"attention precision β must lie in [0, 1], got {precision}")
        if fusion not in ("mixture", "logsumexp"):
            raise ValueError(f"attention fusion must be 'mixture' or 'logsumexp', got {fusion!r}")
        self.side, self.precision, self.num_slots, self.dim, self.fusion = side, precision, num_slots, dim, fusion
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
        self.register_buffer("grid", torch.stack([ys, xs], -1).view(1, side * side, 2), persistent=False)
        self.to_tokens = nn.Linear(channels + 2, dim)
        self.seed = nn.Linear(deter, num_slots * dim)
        self.slots = SlotAttention(num_slots, dim, iters)
        self.prior = nn.Sequential(nn.Linear(deter, hidden), nn.SiLU(), nn.Linear(hidden, side * side))
        # a learned inverse temperature of the fused map: slot logits start near 0 (a near-uniform map), and the
        # map can only sharpen as far as their range allows
        self.log_sharpness = nn.Parameter(torch.zeros(()))
        self.salience = nn.Linear(dim, 1)  # mixture fusion: which slot the schema attends to

    def forward(self, fmap: Tensor, h_prev: Tensor) -> dict[str, Tensor]:
        """fmap (N, C, S, S), h_prev (N, H) → weighted map (N, C, S, S), attention (N, S·S), slots (N, K, D),
        prior logits (N, S·S)."""
        n = fmap.shape[0]
        tokens = self.to_tokens(torch.cat([fmap.flatten(2).transpose(1, 2), self.grid.expand(n, -1, -1)], -1))
        seeds = self.seed(h_prev).view(n, self.num_slots, self.dim)
        slots, _ = self.slots(tokens, seeds)
        k = self.slots.to_k(self.slots.norm_inputs(tokens))  # (N, S·S, D)
        q = self.slots.to_q(self.slots.norm_slots(slots))  # (N, K, D)
        logits = torch.einsum("bnd,bkd->bkn", k, q) / self.dim**0.5  # (N, K, S·S)
        if self.fusion == "mixture":
            masks = logits.softmax(1)  # (N, K, S·S): the slots compete for each position
            masks = masks / masks.sum(-1, keepdim=True)  # each slot's spatial distribution
            salience = self.salience(slots).squeeze(-1).softmax(-1)  # (N, K)
            attention = torch.einsum("bk,bkn->bn", salience, masks)  # (N, S·S): fused
        else:
            attention = (torch.logsumexp(logits, 1) * self.log_sharpness.exp()).softmax(-1)  # (N, S·S): fused
        weights = 1.0 - self.precision + self.precision * attention * attention.shape[-1]
        weighted = fmap * weights.view(n, 1, self.side, self.side)
        return {"fmap": weighted, "attention": attention, "slots": slots, "prior_logits": self.prior(h_prev)}

    @staticmethod
    def losses(out: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(KL(sg(A) ‖ p(A | h)) averaged over rows, the diversity penalty)."""
        target = out["attention"].detach()
        log_prior = F.log_softmax(out["prior_logits"], -1)
        kl = (target * (target.clamp_min(1e-12).log() - log_prior)).sum(-1).mean()
        return kl, diversity_penalty(out["slots"])

    @staticmethod
    def entropy_excess(attention: Tensor, target: float) -> Tensor:
        """Mean over rows of max(0, H(A)/log(S·S) − target): (N, S·S) → scalar. A hinge, as SAC's target
        entropy: it makes each map concentrate until its entropy ratio reaches ``target`` and no further, so a
        map cannot collapse onto one position (where the softmax's gradient vanishes and the reconstruction
        can no longer move it)."""
        entropy = -(attention * attention.clamp_min(1e-12).log()).sum(-1)
        ratio = entropy / torch.log(torch.tensor(float(attention.shape[-1])))
        return (ratio - target).clamp_min(0.0).mean()

    @staticmethod
    def entropy_ratio(attention: Tensor) -> Tensor:
        """Mean entropy of the maps over the uniform map's, log(S·S): 1 is uniform, 0 one position."""
        entropy = -(attention * attention.clamp_min(1e-12).log()).sum(-1)
        return entropy.mean() / torch.log(torch.tensor(float(attention.shape[-1])))


def attention_overlay(frames: Tensor, attention: Tensor, alpha: float = 0.6) -> Tensor:
    """Frames (T, 3, S, S) in [0, 1] and maps (T, P·P) → the frames with each map, scaled to its own peak and
    upsampled (nearest) to S×S, blended in as red: (T, 3, S, S) in [0, 1], for TensorBoard."""
    t, side = attention.shape[0], int(attention.shape[-1] ** 0.5)
    heat = attention.view(t, 1, side, side)
    heat = heat / heat.amax((2, 3), keepdim=True).clamp_min(1e-12)
    heat = F.interpolate(heat, size=frames.shape[-2:], mode="nearest")  # (T, 1, S, S) in [0, 1]
    red = torch.zeros_like(frames)
    red[:, 0] = 1.0
    return ((1 - alpha * heat) * frames + alpha * heat * red).clamp(0, 1)
