"""DMC task names: parsing, validation with close-match suggestions, and Gymnasium registration.

Every task in ``dm_control.suite.ALL_TASKS`` is registered as ``dmc/<domain>-<task>-v0``.
``gymnasium.make("envs:dmc/cartpole-swingup-v0")`` imports this package first, which is the form to
use where the env is built in another process (SubprocVecEnv, rl-zoo3).
"""

from __future__ import annotations

import difflib
import re

import gymnasium

ID_PREFIX = "dmc/"
ID_SUFFIX = "-v0"


def all_tasks() -> list[tuple[str, str]]:
    """Every (domain, task) pair of the DeepMind Control Suite, in dm_control's order."""
    from dm_control import suite

    return list(suite.ALL_TASKS)


def task_name(domain: str, task: str) -> str:
    return f"{domain}-{task}"


def env_id(domain: str, task: str) -> str:
    return f"{ID_PREFIX}{task_name(domain, task)}{ID_SUFFIX}"


def parse_task(name: str) -> tuple[str, str]:
    """Parse ``cartpole-swingup``, ``cartpole_swingup``, ``dmc/cartpole-swingup-v0`` or ``dm_control/...-v0``.

    Raises ``ValueError`` listing the closest valid names if the task does not exist.
    """
    raw = name
    name = re.sub(r"^(dmc|dm_control)/", "", name.strip())
    name = re.sub(r"-v\d+$", "", name)
    tasks = all_tasks()
    names = {task_name(d, t): (d, t) for d, t in tasks}
    if name in names:
        return names[name]
    # Accept dm_control's underscore spelling, e.g. "cartpole_swingup" or "ball_in_cup_catch".
    for d, t in tasks:
        if name == f"{d}_{t}":
            return d, t
    close = difflib.get_close_matches(name, list(names), n=5, cutoff=0.5)
    domains = sorted({d for d, _ in tasks})
    hint = f"closest valid names: {', '.join(close)}" if close else f"valid domains: {', '.join(domains)}"
    raise ValueError(f"Unknown DMC task {raw!r}; {hint}. `aime envs` lists all {len(names)} tasks.")


def register_all() -> None:
    """Register ``dmc/<domain>-<task>-v0`` for every suite task (idempotent)."""
    for domain, task in all_tasks():
        gid = env_id(domain, task)
        if gid not in gymnasium.registry:
            gymnasium.register(id=gid, entry_point="envs.dmc:DMCEnv", kwargs={"domain": domain, "task": task})
