"""Recurrent cells behind one interface, with a learned initial state and resets at episode starts.

A cell's whole state is ONE tensor ``state`` (N, state_size) so that batching, masking and
checkpoints treat every cell alike; ``deter(state)`` → h (N, deter) is what the rest of the model sees.

* ``LSTMCell`` — LayerNorm LSTM (Ba et al. 2016, "Layer Normalization", §3.3 form):
  gates = LN(W_x x) + LN(W_h h) + b;  c' = σ(f)⊙c + σ(i)⊙tanh(g);  h' = σ(o)⊙tanh(LN(c')).
  state = [h, c] (N, 2·deter). The recurrent matrix W_h (4·deter × deter) is kept separate from W_x so
  that a Stiefel-manifold W_h can replace it.
* ``StiefelLSTMCell`` — the same LSTM with W_h a ``geoopt.ManifoldParameter`` on the Stiefel manifold
  {W ∈ R^{4H×H} : WᵀW = I} (orthonormal columns; Wisdom et al. 2016, Vorontsov et al. 2017: an
  orthogonal recurrence neither explodes nor vanishes through W_h). ``geoopt.optim.RiemannianAdam``
  keeps it on the manifold (``world_model.make_optimizer`` picks it whenever a model has one).
* ``GRUCell`` — LayerNorm GRU as in DreamerV3: [r, u, n] = LN(W [x, h]); n' = tanh(σ(r)⊙n);
  u' = σ(u − 1); h' = u'⊙n' + (1 − u')⊙h. state = h (N, deter).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import geoopt
import torch
from torch import Tensor, nn


class RecurrentCell(nn.Module, ABC):
    """Interface: ``state_size``, ``deter_size``, ``initial(n)``, ``forward(x, state)``, ``deter(state)``."""

    state_size: int
    deter_size: int

    def __init__(self, state_size: int, deter_size: int):
        super().__init__()
        self.state_size, self.deter_size = state_size, deter_size
        self.init_state = nn.Parameter(torch.zeros(state_size))  # learned initial state

    def initial(self, n: int) -> Tensor:
        """The learned initial state for ``n`` sequences: (n, state_size)."""
        return self.init_state.unsqueeze(0).expand(n, -1)

    def reset(self, state: Tensor, is_first: Tensor) -> Tensor:
        """Replace ``state`` rows where ``is_first`` (N,) bool by the initial state."""
        return torch.where(is_first.unsqueeze(-1), self.initial(state.shape[0]).to(state.dtype), state)

    def deter(self, state: Tensor) -> Tensor:
        return state[..., : self.deter_size]

    @abstractmethod
    def forward(self, x: Tensor, state: Tensor) -> Tensor:
        """One step: input (N, I) and state (N, S) → next state (N, S)."""


class LSTMCell(RecurrentCell):
    def __init__(self, input_size: int, deter: int):
        super().__init__(2 * deter, deter)
        self.w_x = nn.Linear(input_size, 4 * deter, bias=True)
        self.w_h = nn.Linear(deter, 4 * deter, bias=False)
        nn.init.orthogonal_(self.w_h.weight)
        self.norm_x, self.norm_h, self.norm_c = nn.LayerNorm(4 * deter), nn.LayerNorm(4 * deter), nn.LayerNorm(deter)
        with torch.no_grad():  # forget-gate bias +1 (Jozefowicz et al. 2015)
            self.norm_x.bias[deter : 2 * deter].fill_(1.0)

    def recurrent(self, h: Tensor) -> Tensor:
        """W_h h — the product a Stiefel cell overrides."""
        return self.w_h(h)

    def forward(self, x: Tensor, state: Tensor) -> Tensor:
        h, c = state.chunk(2, dim=-1)
        gates = self.norm_x(self.w_x(x)) + self.norm_h(self.recurrent(h))
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(self.norm_c(c))
        return torch.cat([h, c], dim=-1)


class StiefelLSTMCell(LSTMCell):
    def __init__(self, input_size: int, deter: int):
        super().__init__(input_size, deter)
        # orthogonal_ init (4H × H, tall) already has WᵀW = I: it starts on the manifold.
        self.w_h.weight = geoopt.ManifoldParameter(self.w_h.weight.detach().clone(), manifold=geoopt.Stiefel())

    def orthogonality_error(self) -> float:
        """‖WᵀW − I‖_F of the recurrent matrix."""
        w = self.w_h.weight.detach()
        return float(torch.linalg.matrix_norm(w.T @ w - torch.eye(w.shape[1], device=w.device, dtype=w.dtype)))


class GRUCell(RecurrentCell):
    def __init__(self, input_size: int, deter: int):
        super().__init__(deter, deter)
        self.linear = nn.Linear(input_size + deter, 3 * deter, bias=False)
        self.norm = nn.LayerNorm(3 * deter)

    def forward(self, x: Tensor, state: Tensor) -> Tensor:
        reset, cand, update = self.norm(self.linear(torch.cat([x, state], -1))).chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update - 1.0)
        return update * cand + (1 - update) * state


CELLS = {"lstm": LSTMCell, "lstm_stiefel": StiefelLSTMCell, "gru": GRUCell}


def make_cell(name: str, input_size: int, deter: int) -> RecurrentCell:
    if name not in CELLS:
        raise ValueError(f"unknown recurrent cell {name!r}; choose from {sorted(CELLS)}")
    return CELLS[name](input_size, deter)
