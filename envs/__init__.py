"""DeepMind Control Suite tasks as Gymnasium pixel environments.

Importing this package selects a headless OpenGL backend (``envs.backend``), guarding against the
triton/Mesa segfault, before dm_control is imported, and registers ``dmc/<domain>-<task>-v0`` for every suite task.

>>> import envs, gymnasium as gym
>>> env = envs.make("cartpole-swingup")              # or gym.make("dmc/cartpole-swingup-v0")
"""

from envs.backend import prepare

prepare()  # must precede the first dm_control import (backend.py says why)

from envs.dmc import DMCEnv, make  # noqa: E402
from envs.registry import all_tasks, env_id, parse_task, register_all  # noqa: E402

register_all()

__all__ = ["DMCEnv", "make", "all_tasks", "env_id", "parse_task"]
