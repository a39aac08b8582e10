"""Validation and preprocessing of batches in the schema of DESIGN.md §2.1.

A batch is a dict of (B, T, ...) arrays or tensors: ``obs`` uint8 (B, T, H, W, 3) (or channel-first
(B, T, 3, H, W)), ``action`` float (B, T, A), ``reward`` (B, T), ``discount`` (B, T), ``is_first``,
``is_last``, ``is_terminal`` bool (B, T). Errors name the offending key.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

REQUIRED = {"obs": 5, "action": 3, "reward": 2, "is_first": 2, "is_terminal": 2}
OPTIONAL = {"discount": 2, "is_last": 2}


def _as_tensor(key: str, value, device: torch.device) -> Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, Tensor):
        raise TypeError(f"batch[{key!r}] must be a numpy array or torch tensor, got {type(value).__name__}")
    return value.to(device, non_blocking=True)


def to_image(obs: Tensor) -> Tensor:
    """uint8 pixels → float32 in [−0.5, 0.5] (same layout)."""
    return obs.float().div_(255.0).sub_(0.5)


def preprocess(batch: Mapping, action_dim: int, image_size: int, device: torch.device) -> dict[str, Tensor]:
    """Validate ``batch`` and return model inputs on ``device``:

    image (B, T, 3, S, S) float32 in [-0.5, 0.5]; action (B, T, A) float32 (zeroed where is_first);
    reward (B, T) float32; cont (B, T) float32 = 1 − is_terminal; is_first (B, T) bool.
    """
    if not isinstance(batch, Mapping):
        raise TypeError(f"batch must be a dict of arrays, got {type(batch).__name__}")
    missing = [k for k in REQUIRED if k not in batch]
    if missing:
        raise KeyError(f"batch is missing keys {missing}; required: {sorted(REQUIRED)}")
    out = {k: _as_tensor(k, batch[k], device) for k in list(REQUIRED) + [k for k in OPTIONAL if k in batch]}
    for key, ndim in {**REQUIRED, **OPTIONAL}.items():
        if key in out and out[key].ndim != ndim:
            raise ValueError(f"batch[{key!r}] must have {ndim} dims (B, T, ...), got shape {tuple(out[key].shape)}")
    bt = tuple(out["obs"].shape[:2])
    for key, value in out.items():
        if tuple(value.shape[:2]) != bt:
            raise ValueError(f"batch[{key!r}] has leading shape {tuple(value.shape[:2])}; 'obs' has {bt}")
    obs = out["obs"]
    if obs.dtype != torch.uint8:
        raise TypeError(f"batch['obs'] must be uint8 pixels, got {obs.dtype}")
    if obs.shape[-1] == 3:
        obs = obs.permute(0, 1, 4, 2, 3)
    if tuple(obs.shape[2:]) != (3, image_size, image_size):
        raise ValueError(
            f"batch['obs'] frames must be ({image_size}, {image_size}, 3), got {tuple(out['obs'].shape[2:])}"
        )
    action = out["action"]
    if not action.is_floating_point() or action.shape[-1] != action_dim:
        raise ValueError(
            f"batch['action'] must be float (B, T, {action_dim}), got {action.dtype} {tuple(action.shape)}"
        )
    for key in ("is_first", "is_terminal"):
        if out[key].dtype != torch.bool:
            raise TypeError(f"batch[{key!r}] must be bool, got {out[key].dtype}")
    if not out["reward"].is_floating_point():
        raise TypeError(f"batch['reward'] must be float, got {out['reward'].dtype}")
    for key in ("action", "reward"):
        if not torch.isfinite(out[key]).all():
            raise ValueError(f"batch[{key!r}] contains NaN or inf values")
    is_first = out["is_first"]
    return {
        "image": to_image(obs),
        "action": torch.where(is_first.unsqueeze(-1), 0.0, action.float()),
        "reward": out["reward"].float(),
        "cont": 1.0 - out["is_terminal"].float(),
        "is_first": is_first,
    }
