"""Combiners: a (tasks × parameters) matrix G of task gradients → one update direction d, as TorchJD aggregators.

Every combiner is a ``torchjd.aggregation.Aggregator`` (an ``nn.Module``; ``combiner(G) -> d``), so TorchJD's
``jac_to_grad``, its forward hooks and its other aggregators all work with them. Rows of G are the gradients of
the *unweighted* task losses; task weights w (positive, one per task) are given to the combiner, which decides
what they mean. What each one does with magnitudes and weights:

* ``sum``: d = Σ_i w_i g_i (TorchJD's ``Constant``). Magnitudes kept: the largest gradient dominates. Weights
  scale each task's pull. With one task and w = 1 this is plain backpropagation.
* ``rgb``: rotation-based gradient balancing (OpenReview l0QAezg8HX). Rows are normalised (ḡ_i = g_i/‖g_i‖), an
  EMA consensus d_t of their mean is kept across updates, each ḡ_i is rotated toward d_t in the plane they span
  by an angle α_i ∈ [0, π/2) found by a few gradient steps (warm-started), and d = Σ w_i r_i / Σ w_i. Magnitudes
  are discarded (‖d‖ ≤ 1; Adam sets the scale), so rescaling one task's loss changes nothing; weights decide
  how much each rotated direction counts. RGB alone does not guarantee ⟨d, g_i⟩ ≥ 0 (see ``rgb_projected``).
* ``rgb_projected``: RGB, then d projected onto the dual cone {x : ⟨x, g_i⟩ ≥ 0 ∀i} (the closest such x).
  The cone is the same for normalised rows, so magnitudes do not enter; weights as in ``rgb``.
* ``upgrad``: TorchJD's UPGrad (Quinton & Rey 2024), its defaults: each g_i projected onto the dual cone, then
  combined with the weights as its preference vector. Magnitudes kept (a large gradient moves d more).
  Non-conflicting in exact arithmetic; TorchJD regularises the trace-normalised Gramian by 1e-4, so with task
  norms spread over e^±3 it conflicted (cosine −0.14 in 200 random draws; none at e^±1).
* ``mgda``: TorchJD's MGDA (Sener & Koltun 2018): the minimum-norm point of the rows' convex hull, so
  ⟨d, g_i⟩ ≥ ‖d‖² at the optimum. TorchJD reaches it by Frank–Wolfe (tolerance 1e-3, 100 iterations): with
  norms spread over e^±3 the margin is not met, though no cosine fell below −1e-6 in our draws. Weights are
  ignored; the smallest gradient dominates.

``combine(G, method, weights)`` is the functional form, with fresh state. (``harmony``, HarmonyDream's learned
loss coefficients, weights the task losses rather than their gradients: see ``aggregator.py``.)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchjd.aggregation import MGDA, Aggregator, Constant, UPGrad

_EPS = 1e-12


def _unit_rows(matrix: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(rows scaled to norm 1, mask of the rows whose norm is above ``eps``); rows below it become 0."""
    norms = matrix.norm(dim=1, keepdim=True)
    alive = norms.squeeze(1) > eps
    return torch.where(alive.unsqueeze(1), matrix / norms.clamp_min(eps), 0.0), alive


def _normalised(vector: Tensor) -> Tensor:
    return vector / vector.norm().clamp_min(_EPS)


class RGB(Aggregator):
    """Rotation-based gradient balancing. ``forward(G (T, P)) -> d (P,)``.

    Consensus: y = normalise(Σ w_i ḡ_i), d_t = normalise(μ·d_{t−1} + (1 − μ)·y) (d_1 = y). Rotation plane of
    task i: u_i = normalise(d_t − ⟨ḡ_i, d_t⟩ ḡ_i); rotated r_i(α) = cos α·ḡ_i + sin α·u_i. The angles minimise
        L(α) = Σ_{i<j} (1 − ⟨r_i, r_j⟩) / (T(T−1)) + λ Σ_i ‖r_i − ḡ_i‖² / (4T),   ‖r_i − ḡ_i‖² = 2 − 2 cos α_i,
    by ``steps`` gradient steps of size ``lr`` from the previous update's angles, clamped to [0, π/2). All inner
    products come from the (2T × 2T) Gram matrix of [ḡ; u], so a step costs O(T²), not O(T·P).

    Tasks whose gradient norm is below ``eps`` are left out (normalising them would amplify noise); with
    ``steps=0`` the output is the weighted mean of the unit rows. State (the consensus and the angles) lives
    in buffers that are not saved: after a load the consensus restarts, forgetting within ~1/(1 − μ) updates.
    """

    def __init__(self, weights: Tensor | None = None, mu: float = 0.9, lam: float = 1.0, steps: int = 3,
                 lr: float = 0.2, eps: float = 1e-8):  # fmt: skip
        super().__init__()
        if not 0.0 <= mu < 1.0:
            raise ValueError(f"rgb mu must lie in [0, 1), got {mu}")
        self.weights, self.mu, self.lam, self.steps, self.lr, self.eps = weights, mu, lam, steps, lr, eps
        self.register_buffer("consensus", None, persistent=False)
        self.register_buffer("angles", None, persistent=False)

    def reset(self) -> None:
        """Forget the consensus and the angles (a fresh combiner)."""
        self.consensus = self.angles = None

    def _weights(self, tasks: int, like: Tensor) -> Tensor:
        if self.weights is None:
            return torch.ones(tasks, dtype=like.dtype, device=like.device)
        if len(self.weights) != tasks:
            raise ValueError(f"{len(self.weights)} task weights for a matrix of {tasks} task gradients")
        return self.weights.to(like)

    def forward(self, matrix: Tensor, /) -> Tensor:
        unit, alive = _unit_rows(matrix, self.eps)
        weights = self._weights(matrix.shape[0], matrix) * alive
        if not alive.any():
            return torch.zeros_like(matrix[0])
        y = _normalised(weights @ unit)
        fresh = self.consensus is None or self.consensus.shape != y.shape
        d = y if fresh else _normalised(self.mu * self.consensus + (1 - self.mu) * y)
        self.consensus = d.detach()
        rotated = self._rotate(unit, d, alive)
        return (weights @ rotated) / weights.sum()

    def _rotate(self, unit: Tensor, d: Tensor, alive: Tensor) -> Tensor:
        tasks = unit.shape[0]
        plane = d.unsqueeze(0) - (unit @ d).unsqueeze(1) * unit  # (T, P): the part of d orthogonal to ḡ_i
        plane, in_plane = _unit_rows(plane, 1e-5)  # ḡ_i (unit) already along d: nothing to rotate
        if self.angles is None or self.angles.shape[0] != tasks:
            self.angles = torch.zeros(tasks, dtype=unit.dtype, device=unit.device)
        basis = torch.cat([unit, plane])  # (2T, P)
        gram = (basis @ basis.T).detach()  # (2T, 2T)
        live = (alive & in_plane).to(unit.dtype)
        alpha = self.angles.clone() * live
        pairs = max(tasks * (tasks - 1), 1)
        for _ in range(self.steps):
            alpha = alpha.detach().requires_grad_(True)
            with torch.enable_grad():
                coef = torch.cat([torch.diag(torch.cos(alpha)), torch.diag(torch.sin(alpha) * live)], 1)  # (T, 2T)
                inner = coef @ gram @ coef.T  # ⟨r_i, r_j⟩
                loss = (1 - inner).triu(1).sum() / pairs + self.lam * (2 - 2 * torch.cos(alpha)).sum() / (4 * tasks)
                (grad,) = torch.autograd.grad(loss, alpha)
            alpha = (alpha - self.lr * grad).clamp(0.0, math.pi / 2 - 1e-6) * live
        alpha = alpha.detach()
        self.angles = alpha
        return torch.cos(alpha).unsqueeze(1) * unit + (torch.sin(alpha) * live).unsqueeze(1) * plane

    def __repr__(self) -> str:
        return f"RGB(mu={self.mu}, lam={self.lam}, steps={self.steps}, lr={self.lr})"


def project_to_dual_cone(vector: Tensor, matrix: Tensor) -> Tensor:
    """The point of {x : G x ≥ 0} closest to ``vector`` (P,), for G = ``matrix`` (T, P).

    The cone depends only on the rows' directions, so the rows are normalised first (Ḡ). The projection is
    x + Ḡᵀλ with λ = argmin_{λ ≥ 0} ‖x + Ḡᵀλ‖² (the QP's dual; KKT gives Ḡ(x + Ḡᵀλ) ≥ 0). That is a
    non-negative least-squares problem in T unknowns; with the Gramian ḠḠᵀ = VΛVᵀ it reads
    min_{λ≥0} ‖Λ^½Vᵀλ + Λ^-½Vᵀ Ḡx‖² over the non-zero eigenvalues, solved exactly by ``scipy.optimize.nnls``
    (duplicated or dependent tasks, a singular Gramian, need no regulariser)."""
    from scipy.optimize import nnls

    x = vector.double()  # float64: the constraints that end up active hold to ~1e-12, not float32's ~1e-6
    unit, alive = _unit_rows(matrix.double(), 1e-12)
    unit = unit[alive]
    if unit.shape[0] == 0 or bool((unit @ x >= 0).all()):
        return vector
    evals, evecs = torch.linalg.eigh(unit @ unit.T)
    keep = evals > 1e-10 * evals.max()
    root, basis = evals[keep].sqrt(), evecs[:, keep]  # (r,), (T, r)
    a = root.unsqueeze(1) * basis.T  # (r, T): aᵀa = ḠḠᵀ
    c = -(basis.T @ (unit @ x)) / root  # (r,): aᵀc = −Ḡx, since Ḡx lies in the Gramian's range
    lam, _ = nnls(a.cpu().numpy(), c.cpu().numpy())
    return (x + torch.as_tensor(lam, dtype=x.dtype, device=x.device) @ unit).to(vector.dtype)


class RGBProjected(RGB):
    """RGB followed by ``project_to_dual_cone``: ⟨d, g_i⟩ ≥ 0 for every task (within solver tolerance)."""

    def forward(self, matrix: Tensor, /) -> Tensor:
        return project_to_dual_cone(super().forward(matrix), matrix)

    def __repr__(self) -> str:
        return "RGBProjected" + super().__repr__()[3:]


COMBINERS = ("sum", "rgb", "rgb_projected", "upgrad", "mgda")


def make_combiner(method: str, weights: Tensor | None = None, **rgb: float) -> Aggregator:
    """The combiner named ``method`` (one of ``COMBINERS``) for task weights ``weights`` (T,), default all 1.
    ``rgb`` passes mu / lam / steps / lr to the RGB combiners."""
    if method not in COMBINERS:
        raise ValueError(f"unknown combiner {method!r}; choose from {', '.join(COMBINERS)}")
    if weights is not None and not bool((weights > 0).all()):
        raise ValueError(f"task weights must be positive, got {weights.tolist()}")
    if method == "sum":
        if weights is None:
            raise ValueError("the sum combiner needs the task weights (use torch.ones(T) for a plain sum)")
        return Constant(weights)
    if method == "rgb":
        return RGB(weights, **rgb)
    if method == "rgb_projected":
        return RGBProjected(weights, **rgb)
    if method == "upgrad":
        return UPGrad(pref_vector=None if weights is None else weights / weights.sum())
    return MGDA()


def combine(matrix: Tensor, method: str = "upgrad", weights: Tensor | None = None, **rgb: float) -> Tensor:
    """One direction (P,) from task gradients ``matrix`` (T, P) by ``method``, with fresh state.

    >>> combine(torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]]), "mgda")
    tensor([0., 1., 1.])
    """
    if matrix.dim() != 2:
        raise ValueError(f"task gradients must form a (tasks, parameters) matrix, got shape {tuple(matrix.shape)}")
    if method == "sum" and weights is None:
        weights = torch.ones(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    return make_combiner(method, weights, **rgb)(matrix)
