"""Pillar 5: combiners with known answers, the loss aggregator, and the world model's update through it."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from aime_agent.config import preset
from aime_agent.multi_task_learning import (
    RGB,
    LossAggregator,
    combine,
    gradient_metrics,
    make_combiner,
    parse_tasks,
    project_to_dual_cone,
)
from aime_agent.world_model import WorldModel, make_aggregator, make_optimizer, train_step

COUNTER = torch.tensor([[1.0, 0.1, 0.0], [1.0, -0.1, 0.0], [-1.0, 0.0, 0.2]])  # components.md §5
TERMS = WorldModel.LOSS_TERMS
FOUR_TASKS = "image=recon,latent=kl_dyn+kl_rep,reward=reward,cont=cont"


def cos(a, b):
    return F.cosine_similarity(a, b, dim=0).item()


# -- combiners: known answers ----------------------------------------------------------------------
def test_torchjd_known_answers():
    """UPGrad and MGDA on TorchJD's documented Jacobian; sum is the plain (weighted) sum."""
    jacobian = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    assert torch.allclose(combine(jacobian, "upgrad"), torch.tensor([0.2929, 1.9004, 1.9004]), atol=1e-4)
    mgda = combine(jacobian, "mgda")
    assert torch.allclose(mgda, torch.tensor([0.0, 1.0, 1.0]), atol=1e-6)
    assert (jacobian @ mgda >= mgda.dot(mgda) - 1e-6).all()  # MGDA's margin ⟨d, g_i⟩ ≥ ‖d‖²
    assert torch.equal(combine(jacobian, "sum"), torch.tensor([2.0, 2.0, 2.0]))
    assert torch.equal(combine(jacobian, "sum", torch.tensor([0.5, 1.0])), torch.tensor([4.0, 1.5, 1.5]))


@pytest.mark.parametrize("method", ["sum", "rgb", "rgb_projected", "upgrad", "mgda"])
def test_identical_task_gradients_give_a_parallel_direction(method):
    g = torch.tensor([0.3, -1.2, 2.0, 0.5])
    d = combine(torch.stack([g, 2 * g, 0.5 * g]), method)
    assert cos(d, g) > 1 - 1e-6


def test_rgb_is_invariant_to_rescaling_one_task_and_follows_the_weights():
    torch.manual_seed(0)
    matrix = torch.randn(3, 20)
    scaled = matrix * torch.tensor([[1.0], [1000.0], [0.001]])
    assert torch.allclose(combine(matrix, "rgb"), combine(scaled, "rgb"), atol=1e-5)
    # Weights change the direction (the original's unweighted mean of unit vectors ignored them) toward the task
    heavy = combine(matrix, "rgb", torch.tensor([10.0, 1.0, 1.0]))
    assert cos(heavy, matrix[0]) > cos(combine(matrix, "rgb"), matrix[0]) + 0.05


def test_rgb_without_inner_steps_is_the_weighted_mean_of_unit_rows_and_two_tasks_do_not_conflict():
    torch.manual_seed(1)
    matrix = torch.randn(2, 10) * torch.tensor([[3.0], [0.2]])
    unit = F.normalize(matrix, dim=1)
    assert torch.allclose(combine(matrix, "rgb", steps=0), unit.mean(0), atol=1e-6)
    for _ in range(20):  # a fresh consensus (the bisector): the output lies between the two tasks
        pair = torch.randn(2, 10)
        d = combine(pair, "rgb")
        assert (pair @ d > 0).all()


def test_the_counterexample_conflicts_under_rgb_and_not_under_rgb_projected():
    """G of components.md §5: the consensus of rows 1–2 outweighs row 3, so RGB's direction opposes task 3."""
    rgb = combine(COUNTER, "rgb")
    assert (COUNTER @ rgb)[2] < -0.1 and (COUNTER @ rgb)[:2].min() > 0
    projected = combine(COUNTER, "rgb_projected")
    assert (COUNTER @ projected).min() >= -1e-7
    # the projection is the closest point of the dual cone: it moves rgb only along the violated row
    assert torch.allclose(projected, torch.tensor([0.0309, 0.0, 0.1543]), atol=1e-3)


@pytest.mark.parametrize(("method", "spread"), [("rgb_projected", 3.0), ("upgrad", 1.0), ("mgda", 0.0)])
def test_non_conflicting_combiners_agree_with_every_task(method, spread):
    """Task-gradient norms spread over e^±spread, one task in two draws nearly opposed to another. TorchJD's
    UPGrad regularises its trace-normalised Gramian by 1e-4, which at e^±3 let it conflict (cosine −0.14 in
    200 draws, as components.md §5 found); at e^±1 it holds. TorchJD's MGDA (Frank–Wolfe, tolerance 1e-3)
    conflicted in 2 and 37 of 200 draws at e^±1 and e^±3; with equal norms it holds. ``rgb_projected``
    normalises rows first and holds at every spread."""
    torch.manual_seed(2)
    for draw in range(60):
        matrix = torch.randn(4, 64) * torch.exp(torch.empty(4, 1).uniform_(-spread, spread))
        if draw % 2:
            matrix[0] = -0.5 * matrix[1] + 0.1 * torch.randn(64)
        d = combine(matrix, method)
        cosines = F.normalize(matrix, dim=1) @ d / d.norm()
        assert cosines.min() >= -1e-6, (draw, cosines)


def test_rgb_projected_handles_rank_deficient_task_gradients():
    g, h = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([-1.0, 1.0, 0.0])
    d = project_to_dual_cone(torch.tensor([-1.0, -1.0, 1.0]), torch.stack([g, 2 * g, h, h]))
    assert (torch.stack([g, h]) @ d >= -1e-7).all() and d[2] == pytest.approx(1.0)


def test_dual_cone_projection_keeps_a_feasible_vector_and_fixes_a_violating_one():
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    inside = torch.tensor([0.5, 2.0])
    assert torch.equal(project_to_dual_cone(inside, rows), inside)
    assert torch.allclose(project_to_dual_cone(torch.tensor([-1.0, 2.0]), rows), torch.tensor([0.0, 2.0]))


def test_rgb_skips_a_zero_gradient_task_and_keeps_state_across_updates():
    matrix = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(combine(matrix, "rgb"), torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)
    rgb = RGB(steps=3)
    rgb(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    first = rgb.consensus.clone()
    rgb(torch.tensor([[1.0, 0.0], [1.0, 0.1]]))  # the EMA moves the consensus only 10 % of the way
    assert cos(rgb.consensus, first) > 0.9 and not torch.allclose(rgb.consensus, first)
    rgb.reset()
    assert rgb.consensus is None


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown combiner 'pcgradx'"):
        make_combiner("pcgradx")
    with pytest.raises(ValueError, match="must be positive"):
        make_combiner("rgb", torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"\(tasks, parameters\) matrix"):
        combine(torch.ones(3), "sum")


# -- the aggregator ----------------------------------------------------------------------------------
def test_task_grouping_is_checked():
    assert parse_tasks(FOUR_TASKS, TERMS)["latent"] == ("kl_dyn", "kl_rep")
    assert parse_tasks("a=recon+kl_dyn+kl_rep+reward", TERMS) == {"a": TERMS[:4], "cont": ("cont",)}
    with pytest.raises(ValueError, match=r"unknown: \['lpips'\]"):
        parse_tasks("a=recon+kl_dyn+kl_rep+reward+cont,b=lpips", TERMS)
    with pytest.raises(ValueError, match="twice"):
        parse_tasks("a=recon+kl_dyn+kl_rep+reward+cont,b=recon", TERMS)
    config = preset("tiny", **{"mtl.combiner": "rgb"}).mtl
    with pytest.raises(ValueError, match="needs per-task gradients"):
        LossAggregator(config, TERMS)


def test_gradient_metrics_give_cosines_and_conflicts():
    metrics = gradient_metrics(COUNTER, combine(COUNTER, "rgb"), ["a", "b", "c"])
    assert metrics["mtl/conflict"] == 1.0 and metrics["mtl/cos_direction_c"] < 0
    assert metrics["mtl/cos_a_b"] == pytest.approx(0.99 / 1.01, abs=1e-6)
    assert gradient_metrics(COUNTER, combine(COUNTER, "mgda"), ["a", "b", "c"])["mtl/conflict"] == 0.0


class TwoHeads(torch.nn.Module):
    """A linear trunk and two heads; representation z = trunk(x)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk, self.a, self.b = torch.nn.Linear(3, 4), torch.nn.Linear(4, 1), torch.nn.Linear(4, 1)

    def terms(self, x):
        z = self.trunk(x)
        return {"ta": self.a(z).pow(2).mean(), "tb": (self.b(z) - 3).pow(2).mean()}, z


@pytest.mark.parametrize("jacobian", ["representation", "parameters"])
def test_sum_through_jacobians_equals_backprop_and_heads_keep_their_gradients(jacobian):
    """With ``sum`` every route gives backprop's gradient; with another combiner the heads still get exactly
    their weighted sum gradient, and only the trunk changes."""
    x = torch.randn(5, 3)
    config = dataclasses.replace(preset("tiny").mtl, tasks="A=ta,B=tb", weights="A=2", jacobian=jacobian)
    model = TwoHeads()
    terms, _ = model.terms(x)
    (2 * terms["ta"] + terms["tb"]).backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters()}
    for combiner in ["sum", "mgda"]:
        model.zero_grad()
        terms, z = model.terms(x)
        aggregator = LossAggregator(dataclasses.replace(config, combiner=combiner), ["ta", "tb"])
        metrics = aggregator.backward(terms, [z], list(model.trunk.parameters()),
                                      [*model.a.parameters(), *model.b.parameters()])  # fmt: skip
        assert set(metrics) >= {"mtl/A", "mtl/B", "mtl/cos_A_B", "mtl/conflict"}
        for name, p in model.named_parameters():
            same = torch.allclose(p.grad, reference[name], atol=1e-6)
            assert same if (combiner == "sum" or not name.startswith("trunk")) else not same, (combiner, name)


@pytest.mark.parametrize("jacobian", ["representation", "parameters"])
def test_parameter_jacobian_rows_are_the_per_task_gradients(jacobian):
    """The rows the combiner sees are each task's own gradient (at z, or over the trunk's parameters)."""
    x = torch.randn(5, 3)
    model = TwoHeads()
    seen = []
    aggregator = LossAggregator(dataclasses.replace(preset("tiny").mtl, tasks="A=ta,B=tb", jacobian=jacobian,
                                             combiner="upgrad"), ["ta", "tb"])  # fmt: skip
    aggregator.combiner.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    terms, z = model.terms(x)
    aggregator.backward(terms, [z], list(model.trunk.parameters()), [*model.a.parameters(), *model.b.parameters()])
    terms, z = model.terms(x)
    wrt = [z] if jacobian == "representation" else list(model.trunk.parameters())
    for row, loss in zip(seen[0], terms.values(), strict=True):
        expected = torch.cat([g.flatten() for g in torch.autograd.grad(loss, wrt, retain_graph=True)])
        assert torch.allclose(row, expected, atol=1e-6)


# -- the world model through the aggregator -------------------------------------------------------
def updates(config, batch, n=3):
    torch.manual_seed(0)
    model = WorldModel(config, action_dim=1)
    optimizer, aggregator = make_optimizer(model, config), make_aggregator(model)
    metrics = {}
    for _ in range(n):
        torch.manual_seed(1)  # the same posterior samples and decoded subset in every variant
        metrics, _ = train_step(model, optimizer, batch, aggregator)
    return model, metrics


def test_default_aggregator_reproduces_plain_backprop_exactly(cartpole_batch):
    config = preset("tiny")
    torch.manual_seed(0)
    model = WorldModel(config, action_dim=1)
    optimizer = make_optimizer(model, config)
    for _ in range(3):
        torch.manual_seed(1)
        train_step(model, optimizer, cartpole_batch)  # no aggregator: loss.backward()
    through, _ = updates(config, cartpole_batch)
    for (name, p), q in zip(model.named_parameters(), through.parameters(), strict=True):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("jacobian", ["representation", "parameters"])
def test_world_model_sum_over_four_tasks_matches_backprop(cartpole_batch, jacobian):
    """The representation cuts the graph: four tasks summed at it (or over the trunk) give backprop's update."""
    config = preset("tiny", **{"mtl.tasks": FOUR_TASKS, "mtl.jacobian": jacobian})
    plain, _ = updates(preset("tiny"), cartpole_batch)
    balanced, metrics = updates(config, cartpole_batch)
    for (name, p), q in zip(plain.named_parameters(), balanced.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5), name
    assert {"mtl/image", "mtl/latent", "mtl/cos_image_latent", "mtl/conflict"} <= set(metrics)


@pytest.mark.parametrize("combiner", ["rgb", "rgb_projected", "upgrad", "mgda"])
def test_world_model_trains_with_every_combiner_and_only_the_trunk_differs(cartpole_batch, combiner):
    config = preset("tiny", **{"mtl.tasks": FOUR_TASKS, "mtl.jacobian": "representation", "mtl.combiner": combiner})
    torch.manual_seed(0)
    model = WorldModel(config, action_dim=1)
    aggregator = make_aggregator(model)
    _, _, out = model.loss(cartpole_batch)
    aggregator.backward(out["terms"], model.representation(out), model.trunk_parameters(), model.head_parameters())
    torch.manual_seed(0)
    reference = WorldModel(config, action_dim=1)
    _, _, ref_out = reference.loss(cartpole_batch)
    sum(ref_out["terms"].values()).backward()
    for p, q in zip(model.head_parameters(), reference.head_parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)  # heads: untouched by balancing
    trunk_diff = [not torch.allclose(p.grad, q.grad) for p, q in
                  zip(model.trunk_parameters(), reference.trunk_parameters(), strict=True)]  # fmt: skip
    assert any(trunk_diff)
    _, metrics = updates(config, cartpole_batch, n=2)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    if combiner == "rgb_projected":  # the guarantee; UPGrad's and MGDA's TorchJD tolerances are looser than the
        assert metrics["mtl/conflict"] == 0.0  # world model's ~3000× spread of task-gradient norms


# -- the adversarial task ----------------------------------------------------------------------------
def test_adversarial_gradient_reaches_the_decoder_and_the_discriminator_step_leaves_the_world_model(cartpole_batch):
    from aime_agent.world_model import make_adversary

    config = preset("tiny", **{"loss.adversarial": 0.1, "loss.adversarial_depth": 4})
    torch.manual_seed(0)
    model, adversary = WorldModel(config, action_dim=1), make_adversary(config)
    assert model.loss_terms[-1] == "adversarial" and list(make_aggregator(model).tasks) == ["elbo", "adversarial"]
    _, metrics, out = model.loss(cartpole_batch, adversary)
    decoder_grad = torch.autograd.grad(out["terms"]["adversarial"], list(model.decoder.parameters()), retain_graph=True)
    assert sum(g.abs().sum() for g in decoder_grad) > 0  # the generator's term trains the decoder
    encoder_grad = torch.autograd.grad(out["terms"]["adversarial"], list(model.encoder.parameters()))
    assert sum(g.abs().sum() for g in encoder_grad) > 0  # and, through z, the representation
    world = {k: v.clone() for k, v in model.state_dict().items()}
    before = [p.clone() for p in adversary.parameters()]
    fake, real = out["decoded"]
    logged = adversary.step(real, fake)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in world.items())  # D's step: WM untouched
    assert any(not torch.equal(a, b) for a, b in zip(before, adversary.parameters(), strict=True))
    assert {"adv/d_loss", "adv/d_accuracy"} <= set(logged) and metrics["adversarial"] != 0
    with pytest.raises(ValueError, match="needs the discriminator"):
        model.loss(cartpole_batch)


def test_adversarial_training_through_the_aggregator_keeps_the_discriminator_out(cartpole_batch):
    """The world model's optimizer and the balanced parameters exclude D; D's Adam alone moves it."""
    from aime_agent.world_model import make_adversary

    config = preset("tiny", **{"loss.adversarial": 0.1, "loss.adversarial_depth": 4, "mtl.combiner": "rgb_projected",
                               "mtl.jacobian": "representation"})  # fmt: skip
    torch.manual_seed(0)
    model, adversary = WorldModel(config, action_dim=1), make_adversary(config)
    ids = {id(p) for p in adversary.parameters()}
    optimizer = make_optimizer(model, config)
    assert not ids & {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not ids & {id(p) for p in model.trunk_parameters() + model.head_parameters()}
    metrics, _ = train_step(model, optimizer, cartpole_batch, make_aggregator(model), adversary)
    assert {"mtl/elbo", "mtl/adversarial", "mtl/cos_elbo_adversarial", "adv/d_loss"} <= set(metrics)
    assert metrics["mtl/conflict"] == 0.0


# -- HarmonyDream's learned loss coefficients ---------------------------------------------------------
def test_harmony_gradient_of_the_log_scales_is_the_closed_form():
    """∂/∂s_k [L_k e^{−s_k} + log(1 + e^{s_k})] = −L_k e^{−s_k} + sigmoid(s_k): at s = 0, −L_k + ½."""
    config = dataclasses.replace(preset("tiny").mtl, combiner="harmony", tasks="A=ta,B=tb")
    aggregator = LossAggregator(config, ["ta", "tb"])
    log_scales = torch.zeros(2, requires_grad=True)
    x = torch.tensor(2.0, requires_grad=True)
    metrics = aggregator.backward({"ta": 4.0 * x / 2, "tb": torch.tensor(0.25)}, [], [], [], log_scales)
    assert torch.allclose(log_scales.grad, torch.tensor([-3.5, 0.25]))
    assert x.grad.item() == pytest.approx(2.0)  # the task loss enters with weight e^{−s} = 1
    assert metrics["mtl/sigma_A"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="weights the task losses"):
        LossAggregator(dataclasses.replace(config, jacobian="representation"), ["ta", "tb"])


def test_harmony_scales_are_learned_with_the_world_model(cartpole_batch):
    config = preset("tiny", **{"mtl.combiner": "harmony", "mtl.tasks": FOUR_TASKS})
    torch.manual_seed(0)
    model = WorldModel(config, action_dim=1)
    assert "harmony" in dict(model.named_parameters()) and model.harmony.shape == (4,)
    optimizer, aggregator = make_optimizer(model, config), make_aggregator(model)
    for _ in range(3):
        metrics, _ = train_step(model, optimizer, cartpole_batch, aggregator)
    # at s = 0 each σ_k moves up iff L_k > ½ (the gradient −L_k + ½): all four losses are above it here
    for task in ("image", "latent", "reward", "cont"):
        assert (metrics[f"mtl/sigma_{task}"] > 1.0) == (metrics[f"mtl/{task}"] > 0.5), task
