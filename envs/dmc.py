"""DeepMind Control Suite tasks as Gymnasium pixel environments.

``DMCEnv`` wraps dm_control's suite task in shimmy's ``DmControlCompatibilityV0`` (reset, seeding,
closing; within an agent step it steps the dm_control env directly, since only the last sub-step's
observation is used, and maps the episode end as shimmy does) and adds what pixel RL needs:

* action repeat R (rewards summed, stops early at the episode end), actions in [-1, 1] float32;
* one render per agent step (after the last sub-step) with one reused ``dm_control`` camera;
* observation ``Box(0, 255, (S, S, 3k), uint8)`` for frame stack k (channels concatenated, which SB3
  accepts), or a ``Dict(pixels=..., state=float32 (D,))`` with proprioception too;
* episodes end *truncated* after ``max_env_steps`` (1000) env steps = dm_control control steps,
  *terminated* only where dm_control gives discount 0; ``info`` carries ``env_steps`` (taken this
  episode) and ``discount``;
* a MuJoCo ``PhysicsError`` ends the episode (truncated, ``info["physics_error"] = True``);
* render quality ``paper`` (dm_control's defaults, what DreamerV3/DrQ-v2 saw) or ``fast`` (no shadows
  or reflections: 3–5× cheaper in software rendering).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.backend import ensure_rendering
from envs.registry import parse_task

RENDER_QUALITIES = {"paper": None, "fast": {"shadow": False, "reflection": False}}
DEFAULT_MAX_ENV_STEPS = 1000


def default_camera(domain: str) -> int:
    """Camera 2 for quadruped (the standard benchmark view), 0 otherwise (DrQ-v2, DreamerV3)."""
    return 2 if domain == "quadruped" else 0


def check_action(action: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Validate an action: shape ``shape`` and finite values, else ``ValueError`` saying which."""
    arr = np.asarray(action, dtype=np.float64)
    if arr.shape != shape:
        if arr.size == int(np.prod(shape)) and arr.squeeze().shape == tuple(s for s in shape if s != 1):
            arr = arr.reshape(shape)
        else:
            raise ValueError(f"Action has shape {arr.shape}; this env expects shape {shape}.")
    if not np.isfinite(arr).all():
        for name, bad in (("NaN", np.isnan(arr)), ("inf", np.isinf(arr))):
            if bad.any():
                raise ValueError(f"Action contains {name} at indices {np.flatnonzero(bad).tolist()}: {action!r}")
    return arr


class DMCEnv(gym.Env):
    """A DMC task with pixel observations. See the module docstring; ``envs.make`` is the usual entry point.

    Args:
        domain, task: the suite task, e.g. ``"cartpole", "swingup"``.
        image_size: square frame side in pixels (64).
        action_repeat: env steps per agent step (2).
        camera: camera id (default 2 for quadruped, 0 otherwise).
        proprio: if True, observations are ``{"pixels", "state"}``.
        frame_stack: number of frames concatenated on the channel axis (1 = off).
        seed: seeds the task's random state for the first reset (``reset(seed=...)`` reseeds).
        render_quality: ``"paper"`` or ``"fast"``.
        max_env_steps: truncate after this many env steps (1000, DMC's standard episode).
        render_mode: ``None`` or ``"rgb_array"`` (``render()`` returns the last observed frame).
        distractors: strength in [0, 1] of moving coloured shapes blended into the background (0 = off;
            ``envs/distractors.py``); ``distractor_shapes`` of them, over a drifting noise texture if
            ``distractor_noise``. Seeded with the task: the same seed gives the same distractors.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(
        self,
        domain: str,
        task: str,
        *,
        image_size: int = 64,
        action_repeat: int = 2,
        camera: int | None = None,
        proprio: bool = False,
        frame_stack: int = 1,
        seed: int | None = None,
        render_quality: str = "paper",
        max_env_steps: int = DEFAULT_MAX_ENV_STEPS,
        render_mode: str | None = None,
        distractors: float = 0.0,
        distractor_shapes: int = 4,
        distractor_noise: bool = False,
    ):
        self.domain, self.task = parse_task(f"{domain}-{task}")
        if render_quality not in RENDER_QUALITIES:
            raise ValueError(f"render_quality must be one of {sorted(RENDER_QUALITIES)}, got {render_quality!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        for key, value in (
            ("image_size", image_size),
            ("action_repeat", action_repeat),
            ("frame_stack", frame_stack),
            ("max_env_steps", max_env_steps),
        ):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        ensure_rendering()
        from dm_control import suite
        from dm_control.mujoco.engine import Camera
        from dm_control.rl.control import PhysicsError
        from shimmy.dm_control_compatibility import DmControlCompatibilityV0

        self.image_size, self.action_repeat, self.frame_stack = int(image_size), int(action_repeat), int(frame_stack)
        self.max_env_steps, self.render_quality, self.render_mode = int(max_env_steps), render_quality, render_mode
        self.proprio = proprio
        self.camera_id = default_camera(self.domain) if camera is None else int(camera)
        self._dmc = DmControlCompatibilityV0(suite.load(self.domain, self.task, task_kwargs={"random": seed}))
        self._physics = self._dmc._env.physics
        self._physics_error = PhysicsError  # kept so that step() imports nothing on the hot path
        self._camera = Camera(self._physics, height=self.image_size, width=self.image_size, camera_id=self.camera_id)
        self._flags = RENDER_QUALITIES[render_quality]
        self._distractors = None
        if distractors:
            from envs.distractors import Distractors

            self._distractors = Distractors(self.image_size, distractors, distractor_shapes, distractor_noise)
            self._distractors.reset(seed)

        spec = self._dmc._env.action_spec()
        low, high = np.broadcast_to(spec.minimum, spec.shape), np.broadcast_to(spec.maximum, spec.shape)
        # All suite tasks act in [-1, 1]; rescale only where a task does not.
        self._act_scale = None if (np.all(low == -1) and np.all(high == 1)) else (low.astype(np.float64), high - low)
        self.action_space = spaces.Box(-1.0, 1.0, shape=spec.shape, dtype=np.float32)
        pixels = spaces.Box(0, 255, (self.image_size, self.image_size, 3 * self.frame_stack), np.uint8)
        if proprio:
            dim = sum(int(np.prod(s.shape)) for s in self._dmc._env.observation_spec().values())
            state = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
            self.observation_space = spaces.Dict({"pixels": pixels, "state": state})
        else:
            self.observation_space = pixels
        self.metadata = {**self.metadata, "render_fps": 1.0 / (self._dmc._env.control_timestep() * self.action_repeat)}
        self._frames: deque[np.ndarray] = deque(maxlen=self.frame_stack)
        self._env_steps = 0
        self._needs_reset = True

    # -- rendering and observations ------------------------------------------------------------
    def _render_frame(self) -> np.ndarray:
        frame = self._camera.render(render_flag_overrides=self._flags).copy()  # a flipped view of a reused buffer
        if self._distractors is not None:
            background = self._camera.render(segmentation=True)[..., 0] == -1  # no geometry: the skybox
            frame = self._distractors.apply(frame, background)
        return frame

    def _observe(self, dm_obs: dict) -> Any:
        pixels = np.concatenate(self._frames, axis=-1) if self.frame_stack > 1 else self._frames[-1]
        if not self.proprio:
            return pixels
        state = np.concatenate([np.asarray(v, np.float32).ravel() for v in dm_obs.values()])
        return {"pixels": pixels, "state": state}

    def render(self) -> np.ndarray | None:
        """The last observed frame (S, S, 3) uint8; nothing is rendered again."""
        if self.render_mode != "rgb_array" or not self._frames:
            return None
        return self._frames[-1].copy()

    # -- Gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        dm_obs, info = self._dmc.reset(seed=seed)
        if self._distractors is not None:
            self._distractors.reset(seed)
        self._env_steps, self._needs_reset = 0, False
        frame = self._render_frame()
        self._frames.extend([frame] * self.frame_stack)
        return self._observe(dm_obs), {"env_steps": 0, "discount": 1.0}

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("The episode has ended (or reset() was never called): call reset() before step().")
        act = check_action(action, self.action_space.shape)
        if self._act_scale is not None:  # [-1, 1] -> the task's bounds
            act = self._act_scale[0] + (act + 1.0) * 0.5 * self._act_scale[1]
        reward, discount, physics_error, timestep = 0.0, 1.0, False, None
        dm_env = self._dmc._env  # step dm_control directly: only the last sub-step's observation is needed
        for _ in range(self.action_repeat):
            try:
                timestep = dm_env.step(act)
            except self._physics_error:
                physics_error = True
                break
            self._env_steps += 1
            reward += timestep.reward or 0.0
            discount = float(timestep.discount)
            if timestep.last() or self._env_steps >= self.max_env_steps:
                break
        # dm_control ends episodes as shimmy maps them: discount 0 -> terminated, otherwise truncated.
        terminated = timestep is not None and timestep.last() and discount == 0.0
        truncated = physics_error or (not terminated and (timestep.last() or self._env_steps >= self.max_env_steps))
        self._needs_reset = terminated or truncated
        if self._distractors is not None:
            self._distractors.step()
        self._frames.append(self._render_frame())
        info = {"env_steps": self._env_steps, "discount": discount}
        if physics_error:
            info["physics_error"] = True
        dm_obs = {}
        if self.proprio:
            dm_obs = timestep.observation if timestep is not None else dm_env.task.get_observation(self._physics)
        return self._observe(dm_obs), float(reward), terminated, truncated, info

    def close(self):
        if getattr(self, "_camera", None) is not None:
            self._camera = None
            self._dmc.close()
        super().close()


def make(name: str, **options) -> DMCEnv:
    """Build a DMC pixel env by name: ``envs.make("cartpole-swingup", action_repeat=2, render_quality="fast")``.

    ``name`` may be ``domain-task``, ``domain_task``, or a registered id ``dmc/domain-task-v0``.
    Options are ``DMCEnv``'s keyword arguments.
    """
    domain, task = parse_task(name)
    return DMCEnv(domain, task, **options)
