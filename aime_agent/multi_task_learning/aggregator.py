"""The loss aggregator: named loss terms → weighted tasks → one backward pass whose shared gradient is combined.

A model hands over its named loss terms (scalars), the tensors Z that every task reads from the shared trunk
(its *representation*: for the world model [h, z, q's mean, q's std] over the batch, see
``WorldModel.representation``) and the trunk's parameters. Tasks are groups of terms, ``L_k = Σ_{t∈k} term_t``,
with weights w_k. Parameters outside the trunk (decoder, heads, the prior net) are task-specific: each gets
Σ_k w_k ∂L_k/∂θ, exactly what plain backpropagation of Σ_k w_k L_k gives it, whatever the combiner. The trunk
gets the combiner's direction, from per-task gradients taken one of three ways (``jacobian``):

* ``none``: one backward pass of Σ_k w_k L_k (``sum`` only): today's update, bit for bit.
* ``representation``: the Jacobian of the tasks at Z (T, |Z|), from one backward pass per task through its own
  heads only; the combined direction d_Z goes through the trunk once (MGDA-UB's idea, Sener & Koltun 2018).
  Cheap, but a guarantee such as ⟨d, g_k⟩ ≥ 0 then holds at Z, not for the trunk's parameters.
* ``parameters``: the Jacobian over all trunk parameters (T, P), from the Z-Jacobian pushed through the trunk
  by TorchJD's ``jac`` (T vector-Jacobian products, vmapped). Exact per-task gradients, ~T× the trunk's
  backward pass.

``backward`` returns scalars to log: per-task losses, the pairwise cosines of the task gradients, and whether
the combined direction conflicts with a task (negative cosine; its mean over updates is the conflict rate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from aime_agent.multi_task_learning.combiners import make_combiner

JACOBIANS = ("none", "representation", "parameters")
LOSS_WEIGHTINGS = ("harmony",)  # combiners that weight the task losses, not their gradients (jacobian "none")


def parse_tasks(spec: str, terms: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``"image=recon,latent=kl_dyn+kl_rep"`` → {"image": ("recon",), "latent": ("kl_dyn", "kl_rep")}, checked
    against the model's ``terms``: a term belongs to at most one task, and the terms no task names form tasks
    named by their first word (switching on the Perceiver adds a ``perceiver`` task of ``perceiver_tokens`` and
    ``perceiver_vq``; the adversarial term an ``adversarial`` task)."""
    tasks: dict[str, tuple[str, ...]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, members = part.partition("=")
        if not sep or not name.strip() or not members.strip():
            raise ValueError(f"task {part!r} in mtl.tasks is not name=term+term (e.g. 'latent=kl_dyn+kl_rep')")
        if name.strip() in tasks:
            raise ValueError(f"task {name.strip()!r} is named twice in mtl.tasks {spec!r}")
        tasks[name.strip()] = tuple(m.strip() for m in members.split("+"))
    listed = [t for members in tasks.values() for t in members]
    unknown = sorted(set(listed) - set(terms))
    missing = [t for t in terms if t not in listed]
    twice = sorted({t for t in listed if listed.count(t) > 1})
    if unknown or twice or not tasks:
        problems = [f"{what}: {names}" for what, names in (("unknown", unknown), ("twice", twice)) if names]
        raise ValueError(f"mtl.tasks {spec!r} must put each loss term in at most one task; terms: "
                         f"{', '.join(terms)}" + "".join(f"; {p}" for p in problems))  # fmt: skip
    for term in missing:  # grouped by the name before the first "_": perceiver_tokens, perceiver_vq → perceiver
        name = term.split("_")[0]
        if name in tasks and not set(tasks[name]) <= set(missing):
            raise ValueError(f"mtl.tasks {spec!r} leaves term {term!r} out while a task bears its name {name!r}")
        tasks[name] = (*tasks.get(name, ()), term)
    return tasks


def parse_weights(spec: str, tasks: Sequence[str]) -> Tensor:
    """``"image=1,latent=0.5"`` → a (T,) tensor in task order; tasks not named weigh 1."""
    weights = dict.fromkeys(tasks, 1.0)
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in weights:
            raise ValueError(f"mtl.weights entry {part!r} is not task=weight for a task of {list(tasks)}")
        weights[name.strip()] = float(value)
    if min(weights.values()) <= 0:
        raise ValueError(f"mtl.weights must be positive, got {weights}")
    return torch.tensor(list(weights.values()))


class LossAggregator:
    """Tasks, weights and a combiner from a ``MultiTaskConfig``, for a model whose loss terms are ``terms``.

    A plain object, not a submodule of the model: it holds no learned parameters, so checkpoints stay as they
    were; the combiner's state (RGB's consensus) restarts after a load."""

    def __init__(self, config, terms: Sequence[str]):
        if config.jacobian not in JACOBIANS:
            raise ValueError(f"unknown mtl.jacobian {config.jacobian!r}; choose from {', '.join(JACOBIANS)}")
        if config.combiner in LOSS_WEIGHTINGS:
            if config.jacobian != "none":
                raise ValueError(f"mtl.combiner={config.combiner!r} weights the task losses: set mtl.jacobian='none'")
        elif config.jacobian == "none" and config.combiner != "sum":
            raise ValueError(f"mtl.combiner={config.combiner!r} needs per-task gradients: set mtl.jacobian to "
                             "'representation' or 'parameters' ('none' serves only the sum)")  # fmt: skip
        self.config, self.terms = config, tuple(terms)
        self.tasks = parse_tasks(config.tasks, self.terms)
        self.weights = parse_weights(config.weights, list(self.tasks))
        rgb = {"mu": config.rgb_mu, "lam": config.rgb_lambda, "steps": config.rgb_steps, "lr": config.rgb_lr}
        method = "sum" if config.combiner in LOSS_WEIGHTINGS else config.combiner
        self.combiner = make_combiner(method, self.weights.clone(), **rgb)

    def task_losses(self, terms: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """L_k = Σ of the task's terms, unweighted, by task name."""
        if set(terms) != set(self.terms):
            raise ValueError(f"loss terms {sorted(terms)} differ from the aggregator's {sorted(self.terms)}")
        losses = {}
        for name, members in self.tasks.items():
            total = terms[members[0]]
            for member in members[1:]:
                total = total + terms[member]
            losses[name] = total
        return losses

    def backward(self, terms: Mapping[str, Tensor], representation: Sequence[Tensor],
                 shared: Sequence[nn.Parameter], specific: Sequence[nn.Parameter],
                 log_scales: Tensor | None = None) -> dict[str, float]:  # fmt: skip
        """Fill ``.grad`` of ``shared`` (the trunk, which computes ``representation``) and ``specific`` (the
        rest). ``log_scales`` (T,): the learned log σ of ``harmony``. Returns the scalars to log (``mtl/...``)."""
        losses = self.task_losses(terms)
        metrics = {f"mtl/{name}": loss.item() for name, loss in losses.items()}
        if self.config.combiner == "harmony":
            return metrics | self._harmony(losses, log_scales)
        device = next(iter(losses.values())).device
        if self.weights.device != device:
            self.weights, self.combiner = self.weights.to(device), self.combiner.to(device)
        weights = self.weights
        if self.config.jacobian == "none":
            total = sum(w * loss for w, loss in zip(weights, losses.values(), strict=True))
            total.backward()
            return metrics
        z = [t for t in representation if t.requires_grad]
        specific = [p for p in specific if p.requires_grad]
        rows, head_grads = [], [torch.zeros_like(p) for p in specific]
        for weight, loss in zip(weights, losses.values(), strict=True):  # through each task's own heads
            grads = torch.autograd.grad(loss, [*z, *specific], retain_graph=True, allow_unused=True)
            rows.append([torch.zeros_like(t) if g is None else g for t, g in zip(z, grads, strict=False)])
            for acc, g in zip(head_grads, grads[len(z) :], strict=True):
                if g is not None:
                    acc.add_(g, alpha=float(weight))
        for p, g in zip(specific, head_grads, strict=True):
            p.grad = g if p.grad is None else p.grad + g
        if self.config.jacobian == "representation":
            matrix = torch.cat([torch.stack([r[i] for r in rows]).reshape(len(rows), -1) for i in range(len(z))], 1)
            direction = self.combiner(matrix)
            sizes = [t.numel() for t in z]
            torch.autograd.backward(z, [d.view_as(t) for d, t in zip(direction.split(sizes), z, strict=True)])
        else:
            from torchjd.autojac import jac

            trunk = [p for p in shared if p.requires_grad]
            jac_z = [torch.stack([r[i] for r in rows]) for i in range(len(z))]  # each (T, *Z_i)
            chunk = self.config.parallel_chunk_size or None
            jacobians = jac(z, trunk, jac_outputs=jac_z, parallel_chunk_size=chunk)  # each (T, *θ)
            matrix = torch.cat([j.reshape(j.shape[0], -1) for j in jacobians], 1)  # (T, P); 0-d parameters too
            direction = self.combiner(matrix)
            offset = 0
            for p in trunk:
                g = direction[offset : offset + p.numel()].view_as(p)
                p.grad = g if p.grad is None else p.grad + g
                offset += p.numel()
        metrics.update(gradient_metrics(matrix, direction, list(self.tasks)))
        return metrics

    def _harmony(self, losses: Mapping[str, Tensor], log_scales: Tensor | None) -> dict[str, float]:
        """HarmonyDream's learned loss coefficients (Ma et al., ICML 2024): Σ_k w_k (L_k / σ_k + log(1 + σ_k)),
        σ_k = exp(s_k) learned with the model, so each σ_k tracks its loss's scale (the optimum has
        σ_k² = L_k (1 + σ_k)) and every task enters at a comparable scale."""
        if log_scales is None or log_scales.shape != (len(losses),):
            raise ValueError(f"mtl.combiner='harmony' needs the model's {len(losses)} learned log scales")
        weights = self.weights.to(log_scales.device)
        total = sum(w * (loss * torch.exp(-s) + torch.log1p(torch.exp(s)))
                    for w, loss, s in zip(weights, losses.values(), log_scales, strict=True))  # fmt: skip
        total.backward()
        return {f"mtl/sigma_{name}": float(s.exp()) for name, s in zip(losses, log_scales.detach(), strict=True)}


def gradient_metrics(matrix: Tensor, direction: Tensor, names: Sequence[str]) -> dict[str, float]:
    """Pairwise cosines of the task gradients (rows of ``matrix``), each task's cosine with ``direction``,
    and ``mtl/conflict``: 1 when some task's cosine with the direction is below −1e-6, else 0."""
    unit = matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = unit @ unit.T
    with_d = unit @ direction / direction.norm().clamp_min(1e-12)
    out = {f"mtl/cos_{names[i]}_{names[j]}": cos[i, j].item() for i in range(len(names))
           for j in range(i + 1, len(names))}  # fmt: skip
    out.update({f"mtl/cos_direction_{name}": with_d[i].item() for i, name in enumerate(names)})
    out["mtl/conflict"] = float(bool((with_d < -1e-6).any()))
    return out
