"""One world-model optimisation step, shared by offline pretraining and the agent; and its opposite, a
measurement that must not train."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import geoopt
import torch
from torch import nn

from aime_agent.config import AIMEConfig
from aime_agent.multi_task_learning import Adversary, LossAggregator
from aime_agent.world_model.world_model import WorldModel


@contextlib.contextmanager
def evaluation(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode for the block, then back in the mode it was in. A measurement must not train:
    in train mode a forward pass moves state without any optimizer step — the Perceiver's VQ codebook (EMA
    updates, even under ``torch.no_grad``), and with gradients on the pixel normaliser's statistics and the
    DPGMM's q(α) — so held-out data would leak into the model being measured."""
    training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(training)


def make_optimizer(model: WorldModel, config: AIMEConfig) -> torch.optim.Optimizer:
    """Adam; ``geoopt.optim.RiemannianAdam`` when the model has manifold parameters (the Stiefel LSTM):
    it steps plain parameters exactly as Adam and retracts manifold ones onto their manifold."""
    t = config.train
    if any(isinstance(p, geoopt.ManifoldParameter) for p in model.parameters()):
        return geoopt.optim.RiemannianAdam(model.parameters(), lr=t.lr, eps=t.eps, weight_decay=t.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=t.lr, eps=t.eps, weight_decay=t.weight_decay)


def make_aggregator(model: WorldModel) -> LossAggregator:
    """The loss aggregator of ``model.config.mtl`` over the world model's loss terms."""
    return LossAggregator(model.config.mtl, model.loss_terms)


def make_adversary(config: AIMEConfig) -> Adversary | None:
    """The discriminator and its optimizer when ``loss.adversarial`` > 0, else None."""
    loss = config.loss
    return Adversary(loss.adversarial_depth, loss.adversarial_lr) if loss.adversarial > 0 else None


def train_step(model: WorldModel, optimizer: torch.optim.Optimizer, batch: dict,
               aggregator: LossAggregator | None = None,
               adversary: Adversary | None = None) -> tuple[dict[str, float], dict]:  # fmt: skip
    """One update on ``batch``. Returns (named scalar terms, the posterior rollout). Raises
    ``FloatingPointError`` on a NaN or inf loss, before any parameter changes.

    The gradient comes from ``aggregator`` (tasks and combiner of ``config.mtl``); without one, from plain
    backpropagation of the total loss (which the default aggregator reproduces exactly). With an ``adversary``
    (``loss.adversarial`` > 0) its discriminator then takes its own step on the decoded frames."""
    loss, metrics, out = model.loss(batch, adversary)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"world-model loss is {loss.item()} (terms: {metrics})")
    optimizer.zero_grad(set_to_none=True)
    if aggregator is None:
        loss.backward()
    else:
        metrics |= aggregator.backward(out["terms"], model.representation(out), model.trunk_parameters(),
                                       model.head_parameters(), getattr(model, "harmony", None))  # fmt: skip
    metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), model.config.train.grad_clip))
    optimizer.step()
    if adversary is not None:
        fake, real = out["decoded"]
        metrics |= adversary.step(real, fake)
    return metrics, out
