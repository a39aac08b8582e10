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

BeliefState = tuple[np.ndarray, ...]  # (rnn, stoch, prev_action[, perceiver tokens, valid])


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
        """(rnn, stoch, prev_action); with the Perceiver on also its frame history: tokens (n, W, P, D) and
        which of the W slots hold frames of the current episode (n, W)."""
        start = self.world_model.initial(n)
        zeros = np.zeros((n, self.action_dim), np.float32)
        state = (start.rnn.detach().cpu().numpy().copy(), start.stoch.cpu().numpy(), zeros)
        if self.world_model.perceiver is not None:
            m = self.config.model
            patches = self.world_model.perceiver.tokenizer.num_patches
            state += (np.zeros((n, m.perceiver_window, patches, m.perceiver_token_dim), np.float32),
                      np.zeros((n, m.perceiver_window), bool))  # fmt: skip
        return state

    def _perceiver_context(self, image: Tensor, tokens: Tensor, valid: Tensor, starts: Tensor):
        """Append this frame's tokens to the history (cleared where an episode starts) and read c_t from it.
        image (n, 3, S, S); tokens (n, W, P, D); valid (n, W) → (context (n, C), tokens, valid)."""
        perceiver = self.world_model.perceiver
        valid = valid & ~starts.unsqueeze(-1)
        new = perceiver.tokenizer(image.unsqueeze(1))["tokens"]  # (n, 1, P, D)
        tokens = torch.cat([tokens[:, 1:], new], 1)
        valid = torch.cat([valid[:, 1:], torch.ones_like(valid[:, :1])], 1)
        earlier = torch.cat([torch.zeros_like(valid[:, :1]), valid[:, :-1]], 1)
        latents = perceiver.latents_from_tokens(tokens, is_first=valid & ~earlier)
        return perceiver.to_context(latents[:, -1].mean(1)), tokens, valid

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
        perceiver = wm.perceiver is not None
        if len(state) != (5 if perceiver else 3):
            names = "(rnn, stoch, prev_action" + (", tokens, valid)" if perceiver else ")")
            raise ValueError(f"state must be {names} as returned by predict(), or None")
        rnn, stoch, prev = (torch.as_tensor(np.asarray(s), dtype=torch.float32, device=self.device) for s in state[:3])
        expected = ((n, wm.cell.state_size), (n, self.config.model.stoch), (n, self.action_dim))
        for name, t, shape in zip(("rnn", "stoch", "prev_action"), (rnn, stoch, prev), expected, strict=True):
            if tuple(t.shape) != shape:
                raise ValueError(f"state[{name!r}] has shape {tuple(t.shape)}, expected {shape} for {n} observations")
        starts = torch.zeros(n, dtype=torch.bool, device=self.device)
        if episode_start is not None:
            starts = torch.as_tensor(np.asarray(episode_start, dtype=bool).reshape(n), device=self.device)
        prev = torch.where(starts.unsqueeze(-1), 0.0, prev)
        image = to_image(obs.to(self.device))
        if wm.schema is not None:  # e_t depends on h_{t−1} (the initial state at an episode start)
            embed, _ = wm.attend(wm.feature_maps(image.unsqueeze(1))[:, 0], wm.cell.reset(rnn, starts))
        else:
            embed = wm.embed(image.unsqueeze(1))[:, 0]
        rnn, _ = wm.img_step(LatentState(rnn, stoch), prev, is_first=starts)
        context, history = None, ()
        if perceiver:
            tokens = torch.as_tensor(np.asarray(state[3]), dtype=torch.float32, device=self.device)
            valid = torch.as_tensor(np.asarray(state[4]), dtype=torch.bool, device=self.device)
            context, tokens, valid = self._perceiver_context(image, tokens, valid, starts)
            history = (tokens.cpu().numpy(), valid.cpu().numpy())
        post = wm.posterior(wm.posterior_input(rnn, embed, context))
        z = post.mean if deterministic else post.sample()
        if action is None:
            action = self.behavior.actor.act(wm.feat(LatentState(rnn, z)), deterministic)
        action = action.to(self.device, torch.float32)
        if noise is not None:
            action = (action + torch.as_tensor(noise, dtype=torch.float32, device=self.device)).clamp(-1.0, 1.0)
        new_state = tuple(t.cpu().numpy() for t in (rnn, z, action)) + history
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
