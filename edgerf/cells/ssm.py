from __future__ import annotations

import math

import torch
from torch import nn

from edgerf.cells.base import Cell, State


class DiagSSMCell(Cell):
    """Diagonal real state-space layer (S4D-real style, discretised, one step per frame).

        a   = exp(-max(exp(log_rate), r_min)) in (0, 1) by construction: always stable
        h_t = a * h_{t-1} + B u_t            [B, N]
        y_t = tanh(C h_t + D u_t)            [B, H]

    Legend: ``log_rate`` [N] (decay rate per state channel, kept in log space);
    B = ``b_proj`` (I -> N, with bias), C = ``c_proj`` (N -> H, with bias),
    D = ``d_proj`` (I -> H, no bias). State: ``h`` [B, N] with N = ``hidden``.
    ``log_rate`` is initialised so time constants 1/rate spread log-uniformly over
    [1, 1000] steps: some channels forget within a row, some span many samples.
    r_min = 1e-4 keeps a <= 0.9999 in fp32 (exp(-r) rounds to exactly 1.0 below
    r ~ 6e-8, which would be a state that never decays).
    """

    min_rate = 1e-4

    state_names = ("h",)

    def __init__(self, input_size: int, hidden: int, tau_min: float = 1.0, tau_max: float = 1000.0):
        super().__init__(input_size, hidden)
        tau = torch.exp(torch.linspace(math.log(tau_min), math.log(tau_max), hidden))
        self.log_rate = nn.Parameter(-torch.log(tau))
        self.b_proj = nn.Linear(input_size, hidden)
        self.c_proj = nn.Linear(hidden, hidden)
        self.d_proj = nn.Linear(input_size, hidden, bias=False)

    def decay(self) -> torch.Tensor:
        return torch.exp(-torch.exp(self.log_rate).clamp(min=self.min_rate))   # [N]

    def project(self, u: torch.Tensor) -> torch.Tensor:
        # two tensors, not one concatenation: B u and D u have different ranges and
        # get their own int8 scales
        return self.b_proj(u), self.d_proj(u)                      # [..., N], [..., H]

    def recur(self, pu_t: tuple[torch.Tensor, ...], state: State) -> tuple[torch.Tensor, State]:
        (h,), (bu, du) = state, pu_t
        h = self.decay() * h + bu                                  # [B, N]
        y = torch.tanh(self.c_proj(h) + du)                        # [B, H]
        return y, (h,)
