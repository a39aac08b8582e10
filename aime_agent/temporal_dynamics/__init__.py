"""Recurrent state h_t = f(h_{t−1}, z_{t−1}, a_t) (RSSM form: no frame-derived input, so imagination
runs on (h, z, a) alone). Cells: LayerNorm LSTM, the same LSTM with a Stiefel-orthogonal recurrent
matrix (geoopt), and LayerNorm GRU."""

from aime_agent.temporal_dynamics.cells import CELLS, GRUCell, LSTMCell, RecurrentCell, StiefelLSTMCell, make_cell

__all__ = ["CELLS", "GRUCell", "LSTMCell", "RecurrentCell", "StiefelLSTMCell", "make_cell"]
