"""Diagnostic: the actor-critic alone, imagining in the TRUE cartpole dynamics instead of a learned model.

If ``aime_agent.behavior`` cannot learn cartpole when its "world model" is exact, no world model will
save it; if it can, the learned model (or the data it gets) is what holds the agent back. The oracle
is a batched torch cartpole with DMC's constants and reward (dm_control ``suite/cartpole.py``/``.xml``:
cart 1 kg on a rail of ±1.8 m, pole 1 m and 0.1 kg hinged at the cart, motor gear 10 N, physics step
0.01 s, action repeat 2); its equations of motion are the classic ones of Barto, Sutton & Anderson
(1983) for a uniform pole (Florian 2007, eqs. 23–24 without friction), integrated by semi-implicit Euler:

    θ̈ = (g sin θ − cos θ · q) / (ℓ (4/3 − m cos²θ / (M + m))),   q = (F + m ℓ θ̇² sin θ) / (M + m)
    ẍ = q − m ℓ θ̈ cos θ / (M + m),     θ = 0 upright, ℓ = 0.5 m (half the pole), F = 10 a

    reward = (1 + cos θ)/2 · (1 + tol(x, 2))/2 · (4 + tol_quad(a, 1))/5 · (1 + tol(θ̇, 5))/2   per physics step

(DMC's smooth reward; tol = DMC's Gaussian tolerance with value 0.1 at the margin.) A "latent state" is
LatentState(rnn = (x, θ, ẋ, θ̇), stoch = (a_prev, r)); the feature the actor and critic see is
(x/1.8, cos θ, sin θ, ẋ/5, θ̇/10, a_prev, r). Data collection mirrors the agent: one stochastic env,
``--train-every`` agent steps per update after 1000 random steps, starts sampled from all visited states.

    python benchmarks/behavior_oracle.py --task balance --updates 10000
    python benchmarks/behavior_oracle.py --task swingup --set actor_grad=dynamics
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch import nn

from aime_agent.behavior import Behavior
from aime_agent.cli import parse_overrides
from aime_agent.config import preset
from aime_agent.world_model import LatentState

G, CART, POLE, HALF, GEAR, DT, RAIL = 9.81, 1.0, 0.1, 0.5, 10.0, 0.01, 1.8


def tolerance(x: torch.Tensor, margin: float) -> torch.Tensor:
    """DMC's ``rewards.tolerance(x, bounds=(0, 0), margin, sigmoid='gaussian', value_at_margin=0.1)``, in torch
    (batched and differentiable, which dm_control's numpy version is not)."""
    return 0.1 ** ((x / margin) ** 2)


def physics_reward(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """DMC cartpole's smooth reward for states (N, 4) and actions (N,)."""
    x, theta, _, omega = state.unbind(-1)
    upright = (1 + torch.cos(theta)) / 2
    centered = (1 + tolerance(x, 2.0)) / 2
    small_control = (4 + (1 - action**2).clamp(min=0)) / 5  # quadratic tolerance, value 0 at the margin
    small_velocity = (1 + tolerance(omega, 5.0)) / 2
    return upright * centered * small_control * small_velocity


def physics_step(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """One 0.01 s step of (N, 4) states under actions (N,) in [−1, 1] (semi-implicit Euler, rail limits)."""
    x, theta, v, omega = state.unbind(-1)
    force = GEAR * action
    sin, cos = torch.sin(theta), torch.cos(theta)
    total = CART + POLE
    q = (force + POLE * HALF * omega**2 * sin) / total
    theta_acc = (G * sin - cos * q) / (HALF * (4.0 / 3.0 - POLE * cos**2 / total))
    x_acc = q - POLE * HALF * theta_acc * cos / total
    v = v + DT * x_acc
    omega = omega + DT * theta_acc
    x = x + DT * v
    at_rail = x.abs() >= RAIL
    v = torch.where(at_rail & (x * v > 0), torch.zeros_like(v), v)  # the rail stops the cart
    return torch.stack([x.clamp(-RAIL, RAIL), theta + DT * omega, v, omega], -1)


class CartpoleOracle(nn.Module):
    """The exact cartpole as a stand-in for ``WorldModel`` in ``Behavior`` (imagine, reward and continue heads)."""

    def __init__(self, repeat: int = 2):
        super().__init__()
        self.repeat, self.action_dim, self.feat_dim = repeat, 1, 7  # 5 physics features + (a_prev, r)
        self.reward_head = _Column(-1)
        self.cont_head = _Ones()

    def step(self, state: LatentState, action: torch.Tensor) -> LatentState:
        """One agent step (``repeat`` physics steps) for actions (N, 1) in [−1, 1]; rewards summed."""
        phys, reward = state.rnn, 0.0
        a = action[..., 0]
        for _ in range(self.repeat):
            phys = physics_step(phys, a)
            reward = reward + physics_reward(phys, a)
        return LatentState(phys, torch.stack([a, reward], -1))

    def feat(self, state: LatentState) -> torch.Tensor:
        x, theta, v, omega = state.rnn.unbind(-1)
        return torch.cat([torch.stack([x / RAIL, torch.cos(theta), torch.sin(theta), v / 5, omega / 10], -1),
                          state.stoch], -1)  # fmt: skip

    def imagine(self, start: LatentState, policy, horizon: int) -> dict:
        """The ``WorldModel.imagine`` contract: feat (H+1, N, F), action (H, N, 1)."""
        state, feats, actions = start, [self.feat(start)], []
        for _ in range(horizon):
            action = policy(feats[-1])
            state = self.step(state, action)
            feats.append(self.feat(state))
            actions.append(action)
        return {"feat": torch.stack(feats), "action": torch.stack(actions)}


class _Column(nn.Module):
    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def predict(self, feat: torch.Tensor) -> torch.Tensor:
        return feat[..., self.index]


class _Ones(nn.Module):
    def predict(self, feat: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(feat[..., 0])


def initial(task: str, n: int, gen: torch.Generator) -> LatentState:
    """DMC's initial states: balance near upright, swingup hanging (cartpole.py ``initialize_episode``)."""
    if task == "balance":
        phys = torch.cat([(torch.rand(n, 2, generator=gen) * 2 - 1) * torch.tensor([0.1, 0.034]),
                          0.01 * torch.randn(n, 2, generator=gen)], -1)  # fmt: skip
    else:
        phys = 0.01 * torch.randn(n, 4, generator=gen)
        phys[:, 1] += math.pi
    return LatentState(phys, torch.zeros(n, 2))


@torch.no_grad()
def evaluate(oracle: CartpoleOracle, behavior: Behavior, task: str, episodes: int = 5, steps: int = 500) -> float:
    """Mean return of the deterministic policy over ``episodes`` (500 agent steps = 1000 env steps each)."""
    state = initial(task, episodes, torch.Generator().manual_seed(100))
    total = torch.zeros(episodes)
    for _ in range(steps):
        state = oracle.step(state, behavior.actor.act(oracle.feat(state), deterministic=True))
        total += state.stoch[:, 1]
    return total.mean().item()


def run(task: str, updates: int, every: int, overrides: dict, seed: int = 0, train_every: int = 2,
        batch: int = 256, random_steps: int = 1000) -> list[dict]:  # fmt: skip
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    config = preset("small", **overrides)
    oracle = CartpoleOracle()
    behavior = Behavior(config.behavior, oracle.feat_dim, oracle.action_dim, config.model.hidden)
    capacity = random_steps + train_every * updates
    visited_phys, visited_stoch = torch.zeros(capacity, 4), torch.zeros(capacity, 2)
    state, t, rows, start_time = initial(task, 1, gen), 0, [], time.time()

    def collect(n: int, random: bool) -> None:
        nonlocal state, t
        for _ in range(n):
            visited_phys[t], visited_stoch[t] = state.rnn[0], state.stoch[0]
            with torch.no_grad():
                action = (torch.rand(1, 1, generator=gen) * 2 - 1 if random
                          else behavior.actor.act(oracle.feat(state), deterministic=False))  # fmt: skip
            state, t = oracle.step(state, action), t + 1
            if t % 500 == 0:  # DMC's 1000 env steps: a new episode
                state = initial(task, 1, gen)

    collect(random_steps, random=True)
    for update in range(1, updates + 1):
        collect(train_every, random=False)
        idx = torch.randint(0, t, (batch,), generator=gen)
        metrics = behavior.train_step(oracle, LatentState(visited_phys[idx], visited_stoch[idx]))
        if update % every == 0:
            row = {"update": update, "eval": round(evaluate(oracle, behavior, task), 1),
                   "imag_return": round(metrics["imag_return"], 2), "action_std": round(metrics["action_std"], 3),
                   "return_scale": round(metrics["return_scale"], 2),
                   "wall_s": round(time.time() - start_time)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("balance", "swingup"), default="balance")
    parser.add_argument("--updates", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=256, help="imagination starts per update")
    parser.add_argument("--set", nargs="*", default=[], help="behaviour config overrides, key=value")
    args = parser.parse_args()
    run(args.task, args.updates, args.every, parse_overrides(args.set), args.seed, batch=args.batch)


if __name__ == "__main__":
    main()
