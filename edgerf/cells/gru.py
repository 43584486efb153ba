"""The GRU cell (torch): PyTorch's GRU equations as explicit Linear and elementwise ops,
so every op maps one to one onto the exported step graph."""

from __future__ import annotations

import torch
from torch import nn

from edgerf.cells.base import Cell, State


class GRUCell(Cell):
    """GRU with PyTorch's equations, written as explicit Linear + elementwise ops so
    the exported graph is Gemm/Sigmoid/Tanh/Mul/Add (never the fused ONNX ``GRU``).

        r_t = sigmoid(W_ir u_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = sigmoid(W_iz u_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in u_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
        h_t = (1 - z_t) * n_t + z_t * h_{t-1} = n_t + z_t * (h_{t-1} - n_t)
        y_t = h_t

    Legend: [W_ir; W_iz; W_in], [b_i*] = ``x_proj`` (rows in that order, as in
    ``nn.GRUCell.weight_ih``); [W_hr; W_hz; W_hn], [b_h*] = ``h_proj``. State: ``h`` [B, H].
    """

    state_names = ("h",)

    def __init__(self, input_size: int, hidden: int):
        super().__init__(input_size, hidden)
        self.x_proj = nn.Linear(input_size, 3 * hidden)
        self.h_proj = nn.Linear(hidden, 3 * hidden)

    def project(self, u: torch.Tensor) -> torch.Tensor:
        return (self.x_proj(u),)

    def recur(self, pu_t: tuple[torch.Tensor, ...], state: State) -> tuple[torch.Tensor, State]:
        (h,), (px,) = state, pu_t
        # split, not slicing: ONNX Split. ONNX Runtime's QDQ propagation rewrites a quantised
        # Slice into a QuantizeLinear it then refuses to load (1.32, default options).
        xr, xz, xn = px.split(self.hidden, dim=1)
        hr, hz, hn = self.h_proj(h).split(self.hidden, dim=1)     # [B, H] each
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = n + z * (h - n)                                        # [B, H]
        return h, (h,)

    @classmethod
    def from_torch(cls, ref: nn.GRUCell) -> "GRUCell":
        """A GRUCell carrying the weights of an ``nn.GRUCell``."""
        cell = cls(ref.input_size, ref.hidden_size)
        with torch.no_grad():
            cell.x_proj.weight.copy_(ref.weight_ih)
            cell.x_proj.bias.copy_(ref.bias_ih)
            cell.h_proj.weight.copy_(ref.weight_hh)
            cell.h_proj.bias.copy_(ref.bias_hh)
        return cell
