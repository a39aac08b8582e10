"""One world-model optimisation step, shared by offline pretraining and the agent."""

from __future__ import annotations

import geoopt
import torch

from aime_agent.config import AIMEConfig
from aime_agent.world_model.world_model import WorldModel


def make_optimizer(model: WorldModel, config: AIMEConfig) -> torch.optim.Optimizer:
    """Adam; ``geoopt.optim.RiemannianAdam`` when the model has manifold parameters (the Stiefel LSTM):
    it steps plain parameters exactly as Adam and retracts manifold ones onto their manifold."""
    t = config.train
    if any(isinstance(p, geoopt.ManifoldParameter) for p in model.parameters()):
        return geoopt.optim.RiemannianAdam(model.parameters(), lr=t.lr, eps=t.eps, weight_decay=t.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=t.lr, eps=t.eps, weight_decay=t.weight_decay)


def train_step(model: WorldModel, optimizer: torch.optim.Optimizer, batch: dict) -> tuple[dict[str, float], dict]:
    """One update on ``batch``. Returns (named scalar terms, the posterior rollout). Raises
    ``FloatingPointError`` on a NaN or inf loss, before any parameter changes."""
    loss, metrics, out = model.loss(batch)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"world-model loss is {loss.item()} (terms: {metrics})")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), model.config.train.grad_clip))
    optimizer.step()
    return metrics, out
