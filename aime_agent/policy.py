"""AIMEPolicy: the world model, actor and critic in one ``nn.Module``, with belief-state ``predict``.

The belief carried between calls is ``state = (rnn, stoch, prev_action)``, numpy float32 arrays of
shapes (n, R), (n, Z), (n, A): the recurrent cell's state, the posterior latent z and the last action
in [−1, 1]. ``predict`` is a pure function of its arguments (SB3's recurrent contract, as RecurrentPPO):
``state=None`` means a fresh belief; rows where ``episode_start`` is true are reset; the step is

    h_t = f(h_{t−1}, z_{t−1}, a_{t−1})  (reset where episode_start),   z_t ~ q(z | h_t, Enc(o_t)),
    a_t ~ π(a | h_t, z_t)   (mean z and the actor's mode when deterministic)

Images may be channel-last or channel-first (``obs_to_tensor`` transposes, so EvalCallback and
evaluate_policy work on untransposed envs).
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from torch import Tensor

from aime_agent.behavior import Behavior
from aime_agent.config import AIMEConfig
from aime_agent.world_model import LatentState, WorldModel, make_adversary, make_aggregator, make_optimizer, to_image

BeliefState = tuple[np.ndarray, np.ndarray, np.ndarray]


class AIMEPolicy(BasePolicy):
    def __init__(self, observation_space: spaces.Box, action_space: spaces.Box, lr_schedule, config: dict | None = None,
                 **kwargs):  # fmt: skip
        super().__init__(observation_space, action_space, squash_output=True, **kwargs)
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"AIME needs a continuous (Box) action space, got {action_space}")
        shape = observation_space.shape
        if observation_space.dtype != np.uint8 or len(shape) != 3 or 3 not in (shape[0], shape[-1]):
            raise ValueError(f"AIME's CnnPolicy needs uint8 RGB image observations (H, W, 3), got {observation_space}")
        self.config = AIMEConfig.from_dict(config) if config is not None else AIMEConfig()
        side = self.config.model.image_size
        frame = shape[1:] if shape[0] == 3 else shape[:2]
        if tuple(frame) != (side, side):
            raise ValueError(f"the env's frames are {frame[0]}×{frame[1]} but the model expects {side}×{side} "
                             f"(model.image_size); render the env at {side}×{side}")  # fmt: skip
        self.action_dim = int(np.prod(action_space.shape))
        self.world_model = WorldModel(self.config, self.action_dim)
        m = self.config.model
        self.behavior = Behavior(self.config.behavior, self.world_model.feat_dim, self.action_dim, m.hidden, m.prior)
        self.wm_optimizer = make_optimizer(self.world_model, self.config)
        self.loss_aggregator = make_aggregator(self.world_model)  # config.mtl: tasks and combiner (pillar 5)
        self.adversary = make_adversary(self.config)  # the discriminator when loss.adversarial > 0, else None
        self.optimizer = self.wm_optimizer

    def _get_constructor_parameters(self) -> dict:
        data = super()._get_constructor_parameters()
        data.update(config=self.config.to_dict())
        return data

    def initial_state(self, n: int) -> BeliefState:
        start = self.world_model.initial(n)
        zeros = np.zeros((n, self.action_dim), np.float32)
        return start.rnn.detach().cpu().numpy().copy(), start.stoch.cpu().numpy(), zeros

    @torch.no_grad()
    def step_belief(self, obs: Tensor, state: BeliefState | None, episode_start: np.ndarray | None,
                    deterministic: bool, action: Tensor | None = None,
                    noise: np.ndarray | None = None) -> tuple[Tensor, BeliefState]:  # fmt: skip
        """Advance the belief by one observation (uint8 (n, C, H, W)); choose an action unless ``action``
        (n, A) in [−1, 1] is given, then add ``noise`` (n, A) and clip to [−1, 1] (exploration: the belief
        carries the action actually taken). Returns (action in [−1, 1], new state)."""
        n = obs.shape[0]
        wm = self.world_model
        if state is None:
            state = self.initial_state(n)
            episode_start = np.ones(n, dtype=bool)
        if len(state) != 3:
            raise ValueError("state must be (rnn, stoch, prev_action) as returned by predict(), or None")
        rnn, stoch, prev = (torch.as_tensor(np.asarray(s), dtype=torch.float32, device=self.device) for s in state)
        expected = ((n, wm.cell.state_size), (n, self.config.model.stoch), (n, self.action_dim))
        for name, t, shape in zip(("rnn", "stoch", "prev_action"), (rnn, stoch, prev), expected, strict=True):
            if tuple(t.shape) != shape:
                raise ValueError(f"state[{name!r}] has shape {tuple(t.shape)}, expected {shape} for {n} observations")
        starts = torch.zeros(n, dtype=torch.bool, device=self.device)
        if episode_start is not None:
            starts = torch.as_tensor(np.asarray(episode_start, dtype=bool).reshape(n), device=self.device)
        prev = torch.where(starts.unsqueeze(-1), 0.0, prev)
        rnn, _ = wm.img_step(LatentState(rnn, stoch), prev, is_first=starts)
        embed = wm.embed(to_image(obs.to(self.device)).unsqueeze(1))[:, 0]
        post = wm.posterior(torch.cat([wm.cell.deter(rnn), embed], -1))
        z = post.mean if deterministic else post.sample()
        if action is None:
            action = self.behavior.actor.act(wm.feat(LatentState(rnn, z)), deterministic)
        action = action.to(self.device, torch.float32)
        if noise is not None:
            action = (action + torch.as_tensor(noise, dtype=torch.float32, device=self.device)).clamp(-1.0, 1.0)
        new_state = tuple(t.cpu().numpy() for t in (rnn, z, action))
        return action, new_state  # type: ignore[return-value]

    def predict(self, observation, state: BeliefState | None = None, episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, BeliefState]:  # fmt: skip
        self.set_training_mode(False)
        if isinstance(observation, tuple) and len(observation) == 2 and isinstance(observation[1], dict):
            raise ValueError("predict() got an (obs, info) tuple: pass the observation only (Gym vs VecEnv API)")
        obs, vectorized = self.obs_to_tensor(observation)
        action, new_state = self.step_belief(obs, state, episode_start, deterministic)
        actions = self.unscale_action(action.cpu().numpy().reshape((-1, *self.action_space.shape)))
        if not vectorized:
            actions = actions.squeeze(axis=0)
        return actions, new_state

    def _predict(self, observation: Tensor, deterministic: bool = False) -> Tensor:
        """Stateless fallback (a fresh belief per call); ``predict`` is the stateful entry point."""
        return self.step_belief(observation, None, None, deterministic)[0]

    def forward(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        return self._predict(obs, deterministic)
