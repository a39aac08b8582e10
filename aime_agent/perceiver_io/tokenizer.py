"""Video tokenizer: 8×8 patches → a VQ bottleneck (``vector-quantize-pytorch``) → discrete tokens, and back.

VQ-VAE (van den Oord et al. 2017): z_e = W·patch, z_q = the nearest codebook entry, straight-through gradient
z_e + sg(z_q − z_e), commitment loss β‖z_e − sg(z_q)‖² (β = 0.25). The codebook learns by EMA (decay 0.99),
starts from k-means on the first training batch, and restarts codes unused for a while from batch vectors
(``threshold_ema_dead_code``; EnCodec's remedies against collapse). Multi-head codebooks split z_e into
``heads`` chunks, each with its own codebook. The codebook changes only in training mode: evaluation and acting
read it.

Shapes: frames (B, T, 3, S, S) in [−0.5, 0.5]; P = (S/p)² patches per frame; tokens (B, T, P, D);
codes (B, T, P, heads) in [0, codebook_size).
"""

from __future__ import annotations

import contextlib

import torch
from einops import rearrange
from torch import Tensor, nn
from vector_quantize_pytorch import VectorQuantize


class VideoTokenizer(nn.Module):
    def __init__(self, dim: int, codebook_size: int = 512, heads: int = 1, patch: int = 8, image_size: int = 64,
                 dead_code_threshold: float = 2.0):  # fmt: skip
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch}")
        self.patch, self.side, self.dim = patch, image_size // patch, dim
        self.num_patches = self.side**2
        self.embed = nn.Linear(3 * patch * patch, dim)
        self.vq = VectorQuantize(dim, codebook_size, heads=heads, separate_codebook_per_head=heads > 1,
                                 decay=0.99, kmeans_init=True, threshold_ema_dead_code=dead_code_threshold,
                                 commitment_weight=0.25, rotation_trick=False)  # fmt: skip
        self.unembed = nn.Linear(dim, 3 * patch * patch)  # patch decoder (the reconstruction loss trains codes)

    def patches(self, frames: Tensor) -> Tensor:
        """(B, T, 3, S, S) → (B, T, P, 3·p·p)."""
        if frames.dim() != 5 or frames.shape[2] != 3 or frames.shape[-1] != self.side * self.patch:
            raise ValueError(f"frames must be (B, T, 3, {self.side * self.patch}, {self.side * self.patch}), "
                             f"got {tuple(frames.shape)}")  # fmt: skip
        return rearrange(frames, "b t c (h p) (w q) -> b t (h w) (c p q)", p=self.patch, q=self.patch)

    def unpatch(self, patches: Tensor) -> Tensor:
        """(B, T, P, 3·p·p) → (B, T, 3, S, S)."""
        return rearrange(patches, "b t (h w) (c p q) -> b t c (h p) (w q)", h=self.side, p=self.patch, q=self.patch)

    def _frozen_unless_training(self):
        """Outside training the codebook must not move: skip the library's first-call k-means initialisation
        (it runs in any mode) by marking the codebook initialised for the duration of the call."""
        codebook = self.vq._codebook  # the library keeps its k-means flag there
        if self.training or bool(codebook.initted):
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def frozen():
            codebook.initted.fill_(True)
            try:
                yield
            finally:
                codebook.initted.fill_(False)

        return frozen()

    def forward(self, frames: Tensor) -> dict[str, Tensor]:
        """frames (B, T, 3, S, S) → tokens z_q (B, T, P, D) (straight-through), codes (B, T, P, heads),
        the commitment loss, the patch reconstruction MSE and the codebook perplexity (exp of code entropy)."""
        b, t = frames.shape[:2]
        patches = self.patches(frames)
        z_e = self.embed(patches).flatten(0, 1)  # (B·T, P, D)
        with self._frozen_unless_training():
            z_q, codes, commit = self.vq(z_e)
        codes = codes.view(b, t, self.num_patches, -1)
        recon = self.unembed(z_q).view_as(patches)
        counts = torch.bincount(codes.flatten(), minlength=self.vq.codebook_size).float()
        probs = counts / counts.sum()
        perplexity = torch.exp(-(probs * probs.clamp_min(1e-12).log()).sum())
        return {"tokens": z_q.view(b, t, self.num_patches, self.dim), "codes": codes, "commit": commit.sum(),
                "recon_mse": (recon - patches).pow(2).mean(), "perplexity": perplexity}  # fmt: skip

    def embed_codes(self, codes: Tensor) -> Tensor:
        """codes (B, T, P, heads) → tokens (B, T, P, D), the codebook entries they name."""
        b, t = codes.shape[:2]
        flat = codes.flatten(0, 1)
        if self.vq.heads == 1:
            flat = flat.squeeze(-1)
        return self.vq.get_output_from_indices(flat).view(b, t, self.num_patches, self.dim)

    def decode_codes(self, codes: Tensor) -> Tensor:
        """codes (B, T, P, heads) → frames (B, T, 3, S, S) through the patch decoder."""
        return self.unpatch(self.unembed(self.embed_codes(codes)))
