"""One actor-critic update in imagination (DreamerV3, Hafner et al. 2023, §"Actor critic learning").

From detached posterior states of a replayed batch (N = B·T starts), imagine H steps with the prior and
the actor, then (all shapes (H+1, N) over s_0..s_H unless noted):

    r_k, c_k  = reward / continue heads at s_k;  v_k = critic;  R^λ = lambda_returns(r, c, v)       (H, N)
    w_k       = Π_{j≤k} γ c_j  (c_0 = 1), stop-gradient                                              (H, N)
    S         = max(1, P95 − P5) of R^λ (EMA),  A_k = (R^λ_k − v(s_k)) / S
    actor     = −mean w_k [log π(a_k | s_k) sg(A_k) + η H(π(·|s_k))]        (``actor_grad="reinforce"``)
              = −mean w_k [R^λ_k / S + η H(π(·|s_k))]                        (``"dynamics"``)
              = −mean w_k [(1 − ρ) R^λ_k / S + ρ log π(a_k | s_k) sg(A_k) + η H]  (dynamics, ``actor_grad_mix`` ρ;
                DreamerV2's mix of the two gradients)
    ``"auto"`` (default) picks dynamics backprop for the Gaussian prior (DreamerV3's first DMC setting,
    ``actor_grad_cont: backprop``) and REINFORCE for the DPGMM prior, whose sampled component has no
    pathwise gradient.
    critic    = mean w_k [CE(v(s_k), twohot(sg R^λ_k)) + slow_reg · CE(v(s_k), twohot(v̄_k))]
              + replay_critic · the same loss on the replayed posterior states, with λ-returns of the REAL
                rewards and continue flags of the batch (bootstrapped by v; DreamerV3's ``repval``), (B, T−1)

The bootstrap v and the advantage baseline are the online critic, as in DreamerV3's code (``slow_target=True``:
both the slow EMA copy, as in DreamerV2); with ``slow_reg`` > 0 the slow copy also regularises the critic
(DreamerV3; off by default). The slow copy's EMA runs only when one of these reads it.
``start_fraction`` < 1 imagines from a uniform random subset of the N starts (the actor-critic's cost is
linear in N).
On cartpole-swingup's frozen model (docs/investigations/agent_learning.md) the online bootstrap's mean
imagined value was ~15 % higher after 3000 updates.

During the agent's ``actor_warmup`` (the first N world-model updates) only the critic is updated: a model
that does not yet respond to actions gives the pathwise gradient a tiny consistent slope that Adam turns
into full steps, saturating the actor to a constant push (docs/investigations/agent_learning.md).

World-model parameters are frozen during this update: neither loss leaves a gradient on them.
Actions fed to the dynamics are clipped to [−1, 1], as the environment clips them; log-probabilities
are of the unclipped samples.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from aime_agent.behavior.actor import Actor
from aime_agent.behavior.critic import Critic
from aime_agent.behavior.returns import ReturnNormalizer, lambda_returns
from aime_agent.config import BehaviorConfig
from aime_agent.world_model import LatentState, WorldModel


@contextlib.contextmanager
def frozen(module: nn.Module):
    """Temporarily set ``requires_grad=False`` on every parameter of ``module``."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


class Behavior(nn.Module):
    def __init__(self, config: BehaviorConfig, feat_dim: int, action_dim: int, hidden: int, prior: str = "gaussian"):
        super().__init__()
        if config.actor_grad not in ("auto", "reinforce", "dynamics"):
            raise ValueError(f"actor_grad must be 'auto', 'reinforce' or 'dynamics', got {config.actor_grad!r}")
        if not 0.0 < config.start_fraction <= 1.0:
            raise ValueError(f"start_fraction must lie in (0, 1], got {config.start_fraction}")
        if not 0.0 <= config.actor_grad_mix <= 1.0:
            raise ValueError(f"actor_grad_mix must lie in [0, 1], got {config.actor_grad_mix}")
        self.config = config
        self.actor_grad = config.actor_grad
        if self.actor_grad == "auto":  # a pathwise gradient needs a reparameterisable prior
            self.actor_grad = "dynamics" if prior == "gaussian" else "reinforce"
        self.actor = Actor(feat_dim, action_dim, hidden, config.layers, config.actor_min_std, config.actor_max_std)
        self.critic = Critic(feat_dim, hidden, config.layers, config.critic_bins)
        self.normalizer = ReturnNormalizer(config.return_ema_rate)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, eps=config.eps)
        self.critic_opt = torch.optim.Adam(self.critic.net.parameters(), lr=config.critic_lr, eps=config.eps)

    def imagine(self, world_model: WorldModel, start: LatentState, pathwise: bool) -> dict:
        """Roll out the actor in the world model's prior; returns the trajectory and the raw actions.
        ``pathwise`` keeps the graph from the actions to the returns (dynamics backprop)."""
        raw = []

        def policy(feat):
            dist = self.actor(feat if pathwise else feat.detach())
            action = dist.rsample() if pathwise else dist.sample()
            raw.append(action)
            return action.clamp(-1.0, 1.0)

        with torch.set_grad_enabled(pathwise):
            traj = world_model.imagine(start.detach(), policy, self.config.horizon)
        traj["raw_action"] = torch.stack(raw)
        return traj

    def imagined_returns(self, world_model: WorldModel, feat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Heads and λ-returns along an imagined trajectory ``feat`` (H+1, N, F): reward, continue (c_0 = 1)
        and value, each (H+1, N), and R^λ (H, N)."""
        cfg = self.config
        reward = world_model.reward_head.predict(feat)
        cont = world_model.cont_head.predict(feat)
        cont = torch.cat([torch.ones_like(cont[:1]), cont[1:]])
        value = self.critic.value(feat, slow=cfg.slow_target)
        return reward, cont, value, lambda_returns(reward, cont, value, cfg.gamma, cfg.lam)

    def replay_critic_loss(self, replay: dict) -> torch.Tensor:
        """Critic loss on replayed sequences: feat (B, T, F), reward and cont (B, T) of the batch (row t holds
        the reward received on arriving at o_t, so the λ-return from t starts with reward[t+1])."""
        cfg = self.config
        feat = replay["feat"].detach().transpose(0, 1)  # (T, B, F): time first, as in imagination
        with torch.no_grad():
            returns = lambda_returns(replay["reward"].T, replay["cont"].T, self.critic.value(feat, cfg.slow_target),
                                     cfg.gamma, cfg.lam)  # fmt: skip
        return self.critic.loss(feat[:-1], returns, cfg.slow_reg).mean()

    def losses(self, world_model: WorldModel, start: LatentState, train_actor: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor, dict]:  # fmt: skip
        """Actor and critic losses from one imagined batch. With ``train_actor`` False (the warm-up) the actor
        loss is detached (reported, not optimised) and the rollout keeps no graph."""
        cfg = self.config
        pathwise = self.actor_grad == "dynamics" and train_actor
        rows = start.rnn.shape[0]
        keep = math.ceil(cfg.start_fraction * rows)
        if keep < rows:  # a uniform random subset of the starts
            index = torch.randperm(rows, device=start.rnn.device)[:keep]
            start = LatentState(start.rnn[index], start.stoch[index])
        with frozen(world_model), frozen(self.critic):  # the critic's own loss below is its only gradient
            traj = self.imagine(world_model, start, pathwise)
            feat = traj["feat"]  # (H+1, N, F)
            with torch.set_grad_enabled(pathwise):
                reward, cont, _, returns = self.imagined_returns(world_model, feat)
        weight = torch.cumprod(cfg.gamma * cont, 0)[:-1].detach() / cfg.gamma  # w_0 = 1
        scale = self.normalizer.update(returns)
        dist = self.actor(feat[:-1].detach())
        entropy = dist.entropy()
        mix = 1.0 if self.actor_grad == "reinforce" else cfg.actor_grad_mix
        objective = 0.0
        if mix > 0:
            with torch.no_grad():  # the baseline is the critic that bootstraps the returns
                advantage = (returns - self.critic.value(feat[:-1].detach(), slow=cfg.slow_target)) / scale
            objective = mix * dist.log_prob(traj["raw_action"].detach()) * advantage
        if mix < 1:
            objective = objective + (1 - mix) * returns / scale
        actor_loss = -(weight * (objective + cfg.entropy * entropy)).mean()
        if not train_actor:
            actor_loss = actor_loss.detach()  # reported, not optimised
        critic_loss = (weight * self.critic.loss(feat[:-1].detach(), returns.detach(), cfg.slow_reg)).mean()
        metrics = {"actor_loss": actor_loss.item(), "critic_loss": critic_loss.item(),
                   "entropy": entropy.mean().item(), "imag_return": returns.mean().item(),
                   "imag_reward": reward[1:].mean().item(), "return_scale": float(scale),
                   "action_std": dist.base_dist.scale.mean().item()}  # fmt: skip
        return actor_loss, critic_loss, metrics

    def train_step(self, world_model: WorldModel, start: LatentState, replay: dict | None = None,
                   train_actor: bool = True) -> dict:  # fmt: skip
        """One update of actor and critic (separate optimizers), then the slow critic. ``replay`` (feat, reward,
        cont of the batch's posterior rollout) adds the replay critic term when ``replay_critic`` > 0.
        ``train_actor`` False updates the critic only (the agent's ``actor_warmup``)."""
        actor_loss, critic_loss, metrics = self.losses(world_model, start, train_actor)
        if replay is not None and self.config.replay_critic > 0:
            replay_loss = self.replay_critic_loss(replay)
            metrics["replay_critic_loss"] = replay_loss.item()
            critic_loss = critic_loss + self.config.replay_critic * replay_loss
        if not (torch.isfinite(actor_loss) and torch.isfinite(critic_loss)):
            raise FloatingPointError(f"actor/critic loss is not finite: {metrics}")
        self.actor_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        (actor_loss + critic_loss).backward()  # disjoint parameters: one backward pass serves both
        clip = self.config.grad_clip
        metrics["critic_grad_norm"] = float(nn.utils.clip_grad_norm_(self.critic.net.parameters(), clip))
        if train_actor:
            metrics["actor_grad_norm"] = float(nn.utils.clip_grad_norm_(self.actor.parameters(), clip))
            self.actor_opt.step()
        self.critic_opt.step()
        if self.uses_slow_critic:
            self.critic.update_slow(self.config.slow_critic_rate)
        return metrics

    @property
    def uses_slow_critic(self) -> bool:
        """Whether any loss reads the slow critic (its EMA is updated only then)."""
        return self.config.slow_target or self.config.slow_reg > 0
