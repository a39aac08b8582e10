"""The adversarial task: a discriminator on decoded frames, trained by its own optimizer (off by default).

A patch discriminator D (PatchGAN, Isola et al. 2017: a logit per image patch) with spectral normalisation on
every layer (Miyato et al. 2018) tells real frames from the decoder's means. Hinge losses (Lim & Ye 2017; as in
VQGAN, Esser et al. 2021):

    L_D = E[max(0, 1 − D(x))] + E[max(0, 1 + D(x̂))]       D's own step, on x̂ detached (``Adversary.step``)
    L_G = −E[D(x̂)]                                           the world model's ``adversarial`` term, weight
                                                             ``loss.adversarial``; reaches the decoder

D sits outside the world model: not in its optimizer, not among the parameters the loss aggregator balances
(its gradient from L_G is discarded before its own step), so its update leaves the world model untouched.
Shapes: frames (N, 3, 64, 64) in the decoder's range [−0.5, 0.5]; D(x) (N, 1, 4, 4) logits.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


class PatchDiscriminator(nn.Module):
    """(N, 3, 64, 64) → (N, 1, 4, 4) logits: four stride-2 4×4 convs (64→32→16→8→4), LeakyReLU 0.2, and a 1×1
    conv to one logit per 16×16-pixel receptive patch; every conv spectrally normalised."""

    def __init__(self, depth: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for stage in range(4):
            out = depth * 2**stage
            layers += [spectral_norm(nn.Conv2d(channels, out, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            channels = out
        layers.append(spectral_norm(nn.Conv2d(channels, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, frames: Tensor) -> Tensor:
        if frames.dim() != 4 or frames.shape[1:] != (3, 64, 64):
            raise ValueError(f"the discriminator takes (N, 3, 64, 64) frames, got {tuple(frames.shape)}")
        return self.net(frames)


class Adversary(nn.Module):
    """The discriminator and its optimizer (Adam, β = (0.5, 0.9), as GAN training does)."""

    def __init__(self, depth: int = 16, lr: float = 2e-4):
        super().__init__()
        self.discriminator = PatchDiscriminator(depth)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.9))

    def generator_loss(self, fake: Tensor) -> Tensor:
        """L_G = −E[D(x̂)] on the decoder's frames (gradient to the decoder)."""
        return -self.discriminator(fake).mean()

    def step(self, real: Tensor, fake: Tensor) -> dict[str, float]:
        """One update of D on real frames and detached decoded ones; returns its loss and accuracy to log."""
        self.optimizer.zero_grad(set_to_none=True)  # drops what L_G's backward left in D
        real_logits, fake_logits = self.discriminator(real.detach()), self.discriminator(fake.detach())
        loss = torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean()
        loss.backward()
        self.optimizer.step()
        accuracy = 0.5 * ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean())
        return {"adv/d_loss": loss.item(), "adv/d_accuracy": accuracy.item()}
