"""The Elman RNN cell (torch): h' = tanh(W_x x + W_h h + b)."""

from __future__ import annotations

import torch
from torch import nn

from edgerf.cells.base import Cell, State


class ElmanCell(Cell):
    """Vanilla (Elman) RNN.

        h_t = tanh(W_x u_t + b_x + W_h h_{t-1} + b_h)
        y_t = h_t

    Legend: W_x, b_x = ``x_proj``; W_h, b_h = ``h_proj``. State: ``h`` [B, H].
    """

    state_names = ("h",)

    def __init__(self, input_size: int, hidden: int):
        super().__init__(input_size, hidden)
        self.x_proj = nn.Linear(input_size, hidden)
        self.h_proj = nn.Linear(hidden, hidden)

    def project(self, u: torch.Tensor) -> torch.Tensor:
        return (self.x_proj(u),)

    def recur(self, pu_t: tuple[torch.Tensor, ...], state: State) -> tuple[torch.Tensor, State]:
        (h,), (px,) = state, pu_t
        h = torch.tanh(px + self.h_proj(h))                      # [B, H]
        return h, (h,)
