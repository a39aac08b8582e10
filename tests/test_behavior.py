"""Actor-critic in imagination: λ-returns and normalisation by hand, gradient isolation, heads."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from aime_agent.behavior import Actor, Behavior, Critic, ReturnNormalizer, lambda_returns
from aime_agent.config import preset
from aime_agent.world_model import LatentState, WorldModel

# H = 3; reward/cont/value at s_0..s_3 (reward[0] is never used: it was received before s_0).
REWARD = torch.tensor([[99.0], [1.0], [2.0], [3.0]])
VALUE = torch.tensor([[-7.0], [10.0], [20.0], [30.0]])
ONES = torch.ones(4, 1)


@pytest.mark.parametrize(
    ("lam", "cont", "expected"),
    [
        (0.0, ONES, [6.0, 12.0, 18.0]),  # one-step TD: r_{k+1} + γ v_{k+1}
        (1.0, ONES, [6.5, 11.0, 18.0]),  # discounted rewards + γ^{H−k} v_H
        (0.5, ONES, [6.375, 11.5, 18.0]),
        (1.0, torch.tensor([[1.0], [1.0], [0.0], [1.0]]), [2.0, 2.0, 18.0]),  # c_2 = 0 cuts everything after r_2
        (0.0, torch.tensor([[1.0], [0.0], [1.0], [1.0]]), [1.0, 12.0, 18.0]),  # c_1 = 0: no bootstrap from v_1
    ],
)
def test_lambda_returns_hand_computed(lam, cont, expected):
    returns = lambda_returns(REWARD, cont, VALUE, gamma=0.5, lam=lam)
    torch.testing.assert_close(returns, torch.tensor(expected).unsqueeze(-1))


def test_lambda_one_equals_discounted_sum_plus_bootstrap_on_random_data():
    torch.manual_seed(0)
    h, gamma = 7, 0.9
    reward, value = torch.randn(h + 1, 5), torch.randn(h + 1, 5)
    returns = lambda_returns(reward, torch.ones(h + 1, 5), value, gamma, 1.0)
    for k in range(h):
        expected = sum(gamma ** (j - k - 1) * reward[j] for j in range(k + 1, h + 1)) + gamma ** (h - k) * value[h]
        torch.testing.assert_close(returns[k], expected)
    with pytest.raises(ValueError, match="share a shape"):
        lambda_returns(reward, torch.ones(h, 5), value, gamma, 1.0)


def test_return_normalizer_scale():
    norm = ReturnNormalizer(rate=0.5)
    assert norm.scale().item() == 1.0
    assert norm.update(torch.linspace(0, 0.5, 101)).item() == 1.0  # small ranges are not amplified
    norm = ReturnNormalizer(rate=0.5)
    assert norm.update(torch.linspace(0, 100, 101)).item() == pytest.approx(90.0)  # P95 − P5
    assert norm.update(torch.linspace(0, 10, 101)).item() == pytest.approx(0.5 * 90 + 0.5 * 9)


@pytest.mark.parametrize("actor_grad", ["reinforce", "dynamics", "auto"])
def test_actor_and_critic_updates_leave_world_model_gradients_untouched(actor_grad):
    torch.manual_seed(0)
    config = preset("tiny", actor_grad=actor_grad)
    model = WorldModel(config, action_dim=2)
    behavior = Behavior(config.behavior, model.feat_dim, 2, config.model.hidden, config.model.prior)
    assert behavior.actor_grad == {"auto": "dynamics"}.get(actor_grad, actor_grad)
    assert Behavior(config.behavior, model.feat_dim, 2, 8, prior="dpgmm").actor_grad == (
        "reinforce" if actor_grad == "auto" else actor_grad
    )  # no pathwise gradient through a sampled component
    start = LatentState(torch.randn(6, model.cell.state_size), torch.randn(6, config.model.stoch))
    actor_before = [p.clone() for p in behavior.actor.parameters()]
    metrics = behavior.train_step(model, start)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, behavior.actor.parameters(), strict=True))
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    behavior.zero_grad(set_to_none=True)
    actor_loss, _, _ = behavior.losses(model, start)
    actor_loss.backward()  # through the bootstrap values too, under "dynamics": none may reach the critic
    assert all(p.grad is None for p in behavior.critic.parameters())
    assert all(p.requires_grad for p in behavior.critic.net.parameters())


def test_warmup_step_trains_the_critic_and_leaves_the_actor():
    torch.manual_seed(0)
    config = preset("tiny")
    model = WorldModel(config, action_dim=2)
    behavior = Behavior(config.behavior, model.feat_dim, 2, config.model.hidden)
    start = LatentState(torch.randn(6, model.cell.state_size), torch.randn(6, config.model.stoch))
    actor_before = [p.clone() for p in behavior.actor.parameters()]
    critic_before = [p.clone() for p in behavior.critic.net.parameters()]
    metrics = behavior.train_step(model, start, train_actor=False)
    assert "actor_grad_norm" not in metrics and "critic_grad_norm" in metrics
    assert all(p.grad is None for p in behavior.actor.parameters())  # not even a gradient
    assert all(torch.equal(a, b) for a, b in zip(actor_before, behavior.actor.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, behavior.critic.net.parameters(), strict=True))
    assert behavior.actor_opt.state == {}  # Adam's moments start at the first real actor step


@pytest.mark.parametrize("slow_target", [False, True])
def test_returns_bootstrap_from_the_online_critic_unless_slow_target(slow_target):
    """Zero reward head and λ = 0: the critic's targets are γ·c_{k+1}·v(s_{k+1}), with v the online critic (set to a
    constant symexp(4/3) = 2.79 through its output bias) or the slow copy (still 0)."""
    torch.manual_seed(0)
    config = preset("tiny", slow_target=slow_target, gamma=0.5, lam=0.0, slow_reg=0.0)
    model = WorldModel(config, action_dim=1)
    behavior = Behavior(config.behavior, model.feat_dim, 1, config.model.hidden)
    with torch.no_grad():
        behavior.critic.net[-1].bias[16] = 50.0  # bin 16 of 31 over [-20, 20]: symlog value 4/3
    value = math.expm1(4 / 3)
    targets = []
    behavior.critic.loss = lambda f, target, slow_reg: targets.append(target) or torch.zeros(f.shape[:-1])
    start = LatentState(torch.randn(4, model.cell.state_size), torch.randn(4, config.model.stoch))
    behavior.losses(model, start)
    ratio = targets[0] / (0.5 * value)  # = the predicted continue flag c_{k+1} in (0, 1) when bootstrapping online
    if slow_target:
        torch.testing.assert_close(targets[0], torch.zeros_like(targets[0]), atol=1e-6, rtol=0)
    else:
        assert ((ratio > 0) & (ratio < 1)).all()


def test_actor_is_bounded_and_critic_slow_copy_tracks():
    torch.manual_seed(0)
    actor = Actor(4, 3, 16)
    feat = torch.randn(50, 4) * 100
    assert actor(feat).mean.abs().max() <= 1.0
    sample = actor.act(feat, deterministic=False)
    assert sample.abs().max() <= 1.0
    std = actor(feat).base_dist.scale
    assert (std >= 0.1).all() and (std <= 1.0).all()
    critic = Critic(4, 16, bins=31)
    torch.testing.assert_close(critic.value(feat), torch.zeros(50))  # zero-initialised output layer
    with torch.no_grad():
        critic.net[-1].bias.fill_(0.3)
    critic.update_slow(0.5)
    torch.testing.assert_close(critic.slow[-1].bias, torch.full((31,), 0.15))


def test_replay_critic_targets_are_the_real_lambda_returns():
    """With a zero slow critic and λ = 1, the replay targets are the discounted sums of the batch's real rewards,
    reward[t+1] first (row t+1 holds the reward received on arriving at o_{t+1}); a zero continue flag cuts them."""
    torch.manual_seed(0)
    config = preset("tiny", replay_critic=0.5, gamma=0.5, lam=1.0, slow_reg=0.0)
    behavior = Behavior(config.behavior, 4, 1, 16)
    feat = torch.randn(1, 4, 4)
    reward = torch.tensor([[9.0, 1.0, 2.0, 4.0]])
    cont = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    targets = []
    behavior.critic.loss = lambda f, target, slow_reg: targets.append(target) or torch.zeros(f.shape[:-1])
    behavior.replay_critic_loss({"feat": feat, "reward": reward, "cont": cont})
    # t=0: 1 + 0.5·1·2 + (cut by cont[2] = 0) = 2;  t=1: 2 + 0 = 2;  t=2: 4 + 0.5·v̄(s_3) = 4
    torch.testing.assert_close(targets[0], torch.tensor([[2.0], [2.0], [4.0]]))
    start = LatentState(torch.randn(3, 2 * 32), torch.randn(3, 8))
    model = WorldModel(config, action_dim=1)
    behavior = Behavior(config.behavior, model.feat_dim, 1, config.model.hidden)
    replay = {"feat": torch.randn(2, 5, model.feat_dim), "reward": torch.rand(2, 5), "cont": torch.ones(2, 5)}
    assert "replay_critic_loss" in behavior.train_step(model, start, replay)
    assert "replay_critic_loss" not in behavior.train_step(model, start)


class _Head(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def predict(self, feat):
        return self.fn(feat)


class PointModel(nn.Module):
    """A known world model for the actor-critic alone: feat = [x, 1], x' = x + 0.3·a, reward 1 − x² on arrival."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))
        self.reward_head = _Head(lambda f: 1 - f[..., 0] ** 2)
        self.cont_head = _Head(lambda f: torch.ones_like(f[..., 0]))

    def imagine(self, start, policy, horizon):
        x = start.stoch[:, 0]
        feats, actions = [torch.stack([x, torch.ones_like(x)], -1)], []
        for _ in range(horizon):
            actions.append(policy(feats[-1]))
            x = x + 0.3 * actions[-1][:, 0]
            feats.append(torch.stack([x, torch.ones_like(x)], -1))
        return {"feat": torch.stack(feats), "action": torch.stack(actions)}


@pytest.mark.parametrize("actor_grad", ["reinforce", "dynamics"])
def test_actor_critic_learns_to_steer_a_point_to_the_origin(actor_grad):
    """On a known model the optimal action pushes x toward 0: positive at x = −0.8, negative at x = 0.8.
    The untrained actor gets mean imagined reward ≈ −0.05 from x ~ U(−2, 2); 300 updates reach > 0.5."""
    torch.manual_seed(0)
    config = preset("small", actor_grad=actor_grad, gamma=0.9, horizon=10).behavior
    behavior, model = Behavior(config, 2, 1, 32), PointModel()
    for _ in range(300):
        metrics = behavior.train_step(model, LatentState(torch.zeros(256, 1), torch.rand(256, 1) * 4 - 2))
    mean = behavior.actor(torch.tensor([[-0.8, 1.0], [0.8, 1.0]])).mean[:, 0]
    assert mean[0] > 0.5 and mean[1] < -0.5
    assert metrics["imag_reward"] > 0.5


def test_actor_grad_mix_is_the_weighted_sum_of_both_gradients():
    """ρ·∇REINFORCE + (1 − ρ)·∇backprop, on the same imagined samples (same seed): ρ = 1 equals REINFORCE's
    gradient, ρ = 0.25 the weighted sum of the two. Out-of-range ρ is refused."""

    def actor_grads(**overrides):
        torch.manual_seed(0)
        config = preset("tiny", **overrides)
        model = WorldModel(config, action_dim=2)
        behavior = Behavior(config.behavior, model.feat_dim, 2, config.model.hidden)
        start = LatentState(torch.randn(6, model.cell.state_size), torch.randn(6, config.model.stoch))
        actor_loss, _, _ = behavior.losses(model, start)
        actor_loss.backward()
        return torch.cat([p.grad.flatten() for p in behavior.actor.parameters()])

    reinforce, dynamics = actor_grads(actor_grad="reinforce"), actor_grads(actor_grad="dynamics")
    assert not torch.allclose(reinforce, dynamics)
    torch.testing.assert_close(actor_grads(actor_grad="dynamics", actor_grad_mix=1.0), reinforce)
    torch.testing.assert_close(actor_grads(actor_grad="dynamics", actor_grad_mix=0.25),
                               0.25 * reinforce + 0.75 * dynamics)  # fmt: skip
    with pytest.raises(ValueError, match="actor_grad_mix"):
        actor_grads(actor_grad="dynamics", actor_grad_mix=1.5)


@pytest.mark.parametrize("slow_target", [False, True])
def test_the_slow_critic_is_read_consistently_and_updated_only_when_read(slow_target):
    """Bootstrap and advantage baseline read the same critic (the slow copy iff slow_target); with nothing
    reading the slow copy its EMA does not run."""
    torch.manual_seed(0)
    config = preset("tiny", slow_target=slow_target, slow_reg=0.0, actor_grad="reinforce")
    model = WorldModel(config, action_dim=1)
    behavior = Behavior(config.behavior, model.feat_dim, 1, config.model.hidden)
    reads, value = [], behavior.critic.value
    behavior.critic.value = lambda feat, slow=False: reads.append(slow) or value(feat, slow)
    slow_before = [p.clone() for p in behavior.critic.slow.parameters()]
    start = LatentState(torch.randn(6, model.cell.state_size), torch.randn(6, config.model.stoch))
    behavior.train_step(model, start)
    assert reads == [slow_target, slow_target]  # the λ-return bootstrap, then the advantage baseline
    moved = any(not torch.equal(a, b) for a, b in zip(slow_before, behavior.critic.slow.parameters(), strict=True))
    assert moved == slow_target


def test_start_fraction_imagines_from_a_random_subset_of_the_starts():
    torch.manual_seed(0)
    config = preset("tiny", start_fraction=0.5)
    model = WorldModel(config, action_dim=1)
    behavior = Behavior(config.behavior, model.feat_dim, 1, config.model.hidden)
    seen, imagine = [], behavior.imagine
    behavior.imagine = lambda wm, start, pathwise: seen.append(start) or imagine(wm, start, pathwise)
    start = LatentState(torch.randn(10, model.cell.state_size), torch.randn(10, config.model.stoch))
    behavior.losses(model, start)
    used = seen[0].rnn
    assert used.shape[0] == 5
    rows = [int(torch.nonzero((start.rnn == row).all(-1))[0]) for row in used]  # each used row is a start
    assert len(set(rows)) == 5
    with pytest.raises(ValueError, match="start_fraction"):
        Behavior(preset("tiny", start_fraction=0.0).behavior, model.feat_dim, 1, 8)


class KnownModel(nn.Module):
    """A world model with known dynamics for the actor-critic: feat = [x, k]; x_{k+1} = x_k + 0.5·clip(a_k),
    k counts steps; reward 0.1·x; continue flag 0 at step k = 2 (a terminal inside the horizon), else 1."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # so that frozen() has something to freeze
        self.reward_head = type("R", (), {"predict": staticmethod(lambda f: 0.1 * f[..., 0])})()
        self.cont_head = type("C", (), {"predict": staticmethod(lambda f: (f[..., 1] != 2).float())})()

    def imagine(self, start, policy, horizon):
        feats, actions = [start.rnn], []
        for _ in range(horizon):
            action = policy(feats[-1])
            actions.append(action)
            feats.append(feats[-1] + torch.cat([0.5 * action, torch.ones_like(action)], -1))
        return {"feat": torch.stack(feats), "action": torch.stack(actions)}


def test_actor_and_critic_losses_match_a_hand_computation_on_a_known_model():
    torch.manual_seed(0)
    config = preset("tiny", horizon=4, gamma=0.9, lam=0.5, actor_grad="dynamics", entropy=3e-4).behavior
    behavior = Behavior(config, feat_dim=2, action_dim=1, hidden=8)
    with torch.no_grad():  # actions with mean tanh(3) ≈ 0.995: many samples fall beyond 1 and must be clipped
        behavior.actor.net[-1].bias[0] = 3.0
    trajs, imagine = [], behavior.imagine
    behavior.imagine = lambda wm, start, pathwise: trajs.append(imagine(wm, start, pathwise)) or trajs[-1]
    behavior.critic.loss = lambda f, target, slow_reg: torch.ones(f.shape[:-1])  # critic loss = mean(w)
    start = LatentState(torch.stack([torch.linspace(-1, 1, 64), torch.zeros(64)], -1), torch.zeros(64, 1))
    actor_loss, critic_loss, _ = behavior.losses(KnownModel(), start)
    traj = trajs[0]
    raw = traj["raw_action"].detach()[..., 0]  # (H, N)
    assert (raw.abs() > 1).any()
    x = [start.rnn[:, 0]]
    for k in range(4):  # the dynamics saw the clipped actions
        x.append(x[-1] + 0.5 * raw[k].clamp(-1, 1))
    torch.testing.assert_close(traj["feat"][..., 0].detach(), torch.stack(x))
    r, c = [0.1 * xi for xi in x], [1.0, 1.0, 0.0, 1.0, 1.0]  # c_0 = 1 by definition; c_2 = 0
    returns = [None] * 4
    following = torch.zeros(64)  # R_H := v_H = 0 (zero-initialised critic)
    for k in reversed(range(4)):
        following = r[k + 1] + 0.9 * c[k + 1] * 0.5 * following  # v = 0: R_k = r_{k+1} + γ c_{k+1} λ R_{k+1}
        returns[k] = following
    returns = torch.stack(returns)
    w = torch.tensor([1.0, 0.9 * c[1], 0.9**2 * c[1] * c[2], 0.9**3 * c[1] * c[2] * c[3]])[:, None]  # w_2 = w_3 = 0
    scale = max(1.0, float(torch.quantile(returns, 0.95) - torch.quantile(returns, 0.05)))
    entropy = behavior.actor(traj["feat"][:-1].detach()).entropy().detach()
    expected = -(w * (returns / scale + 3e-4 * entropy)).mean()
    torch.testing.assert_close(actor_loss.detach(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(critic_loss.detach(), w.expand(4, 64).mean(), rtol=1e-6, atol=1e-7)
