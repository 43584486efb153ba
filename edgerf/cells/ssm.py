"""The state-space cells (torch): the diagonal SSM (A, B, C, D with a GLU output and a
state bounded by (1 - a) input scaling) and its selective variant (input-dependent decay)."""

from __future__ import annotations

import math

import torch
from torch import nn

from edgerf.cells.base import Cell, State


class DiagSSMCell(Cell):
    """Diagonal real state-space block (the paper's A, B, C, D with a GLU output), one
    step per frame, with a state that stays bounded:

        a   = exp(-max(exp(log_rate), r_min))      in (0, 1) by construction: stable
        h_t = a * h_{t-1} + (1 - a) * (B u_t)      [B, N]  a convex mix: |h| <= max |B u|
        v_t = C_v h_t + D_v u_t                    [B, H]
        g_t = C_g h_t + D_g u_t                    [B, H]
        y_t = v_t * sigmoid(g_t)                   [B, H]  GLU

    Legend: A = diag(a) from ``log_rate`` [N] (decay rate per channel, in log space);
    B = ``b_proj`` (I -> N, with bias); C = (``c_val``, ``c_gate``) (N -> H, with bias);
    D = (``d_val``, ``d_gate``) (I -> H, no bias). State: ``h`` [B, N], N = ``hidden``.
    Time constants 1/rate start log-uniform over [1, 1000] steps. The (1 - a) input scale
    keeps h inside the range of B u whatever the time constant, so a long-memory channel
    no longer integrates its input to O(100) (what made the earlier form's int8 fail)
    and a fixed-point state has a range fixed by its input. r_min = 1e-4 keeps a <= 0.9999
    in fp32 (exp(-r) rounds to exactly 1.0 below r ~ 6e-8: a state that never decays).
    """

    min_rate = 1e-4
    state_names = ("h",)

    def __init__(self, input_size: int, hidden: int, tau_min: float = 1.0, tau_max: float = 1000.0):
        super().__init__(input_size, hidden)
        tau = torch.exp(torch.linspace(math.log(tau_min), math.log(tau_max), hidden))
        self.log_rate = nn.Parameter(-torch.log(tau))
        self.b_proj = nn.Linear(input_size, hidden)
        self.c_val, self.c_gate = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.d_val = nn.Linear(input_size, hidden, bias=False)
        self.d_gate = nn.Linear(input_size, hidden, bias=False)

    def decay(self) -> torch.Tensor:
        return torch.exp(-torch.exp(self.log_rate).clamp(min=self.min_rate))   # [N]

    def project(self, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # separate tensors, not one concatenation: each gets its own int8 scale
        return self.b_proj(u), self.d_val(u), self.d_gate(u)       # [..., N], [..., H], [..., H]

    def mix(self, pu_t: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, (1 - a) * B u) of this step; the selective variant makes a depend on u."""
        a = self.decay()
        return a, (1 - a) * pu_t[0]

    def recur(self, pu_t: tuple[torch.Tensor, ...], state: State) -> tuple[torch.Tensor, State]:
        (h,) = state
        a, inject = self.mix(pu_t)
        h = a * h + inject                                         # [B, N]
        y = (self.c_val(h) + pu_t[1]) * torch.sigmoid(self.c_gate(h) + pu_t[2])   # [B, H]
        return y, (h,)


class SelectiveSSMCell(DiagSSMCell):
    """The SSM block with an input-dependent decay (selective, in the spirit of Mamba):

        a_t = sigmoid(W_a u_t + b_a)               [B, N]
        h_t = a_t * h_{t-1} + (1 - a_t) * (B u_t)

    and the GLU readout of ``DiagSSMCell``. A linear recurrence with a fixed decay can only
    forget at its fixed rates, so without an oracle reset it carries the previous sample
    into the next; here the input can close a channel's memory (a_t -> 0) on noise and
    open it (a_t -> 1) inside a sample. Legend: W_a, b_a = ``a_proj``, initialised with
    zero weights and biases logit(exp(-1/tau)) for tau log-uniform over [1, 1000]: at
    initialisation this is the linear cell. The state stays bounded by max |B u|.
    """

    def __init__(self, input_size: int, hidden: int, tau_min: float = 1.0, tau_max: float = 1000.0):
        super().__init__(input_size, hidden, tau_min, tau_max)
        del self.log_rate
        self.a_proj = nn.Linear(input_size, hidden)
        tau = torch.exp(torch.linspace(math.log(tau_min), math.log(tau_max), hidden))
        a0 = torch.exp(-1 / tau).clamp(max=1 - 1e-4)
        with torch.no_grad():
            self.a_proj.weight.zero_()
            self.a_proj.bias.copy_(torch.log(a0 / (1 - a0)))

    def project(self, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (*super().project(u), self.a_proj(u))                # ..., [..., N] decay logits

    def mix(self, pu_t: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        a = torch.sigmoid(pu_t[3])
        return a, (1 - a) * pu_t[0]
