"""aime_agent: AIME, a world model for visual reinforcement learning, as a Stable-Baselines3-style agent.

``from aime_agent import AIME`` — the public names are imported on first use, so that light modules
(``aime_agent.config``, ``aime_agent.world_model``) load without the environment stack.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {"AIME": "aime_agent.agent", "AIMEPolicy": "aime_agent.policy", "AIMEConfig": "aime_agent.config",
            "preset": "aime_agent.config"}  # fmt: skip
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'aime_agent' has no attribute {name!r}")
