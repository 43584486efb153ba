"""The recurrent leaky integrate-and-fire cell (torch): a membrane with a leak, a spike by
threshold with a surrogate gradient, and a subtractive self-reset."""

from __future__ import annotations

import torch
from torch import nn

from edgerf.cells.base import Cell, State


def spike(v: torch.Tensor, threshold: float, slope: float, training: bool) -> torch.Tensor:
    """Heaviside H(v - threshold): exact at inference; in training the backward pass
    uses the derivative of sigmoid(slope * (v - threshold)) (a surrogate gradient),
    written as a straight-through sum so the graph stays plain ops."""
    hard = (v >= threshold).to(v.dtype)
    if not training:
        return hard
    soft = torch.sigmoid(slope * (v - threshold))
    return soft + (hard - soft).detach()


class LIFCell(Cell):
    """Recurrent leaky integrate-and-fire layer with a spike-trace output.

        s_{t-1} = H(v_{t-1} - theta)                     spike emitted at t-1
        v_t     = beta * v_{t-1} + W_x u_t + b + W_s s_{t-1} - theta * s_{t-1}
        s_t     = H(v_t - theta)
        a_t     = alpha * a_{t-1} + (1 - alpha) * s_t    low-passed spike train
        y_t     = a_t

    The ``- theta * s_{t-1}`` term is the neuron's own subtractive reset after a
    spike: part of the neuron model, not a reset of the network state.
    Legend: beta = sigmoid(``logit_beta``) [H] membrane leak, alpha =
    sigmoid(``logit_alpha``) [H] trace leak, theta = ``threshold`` (fixed 1.0),
    W_x, b = ``x_proj``, W_s = ``s_proj`` (no bias). States: ``v`` [B, H]
    membrane potential, ``a`` [B, H] spike trace. H is the surrogate-gradient step
    of ``spike`` in training and the exact step at inference.
    """

    state_names = ("v", "a")

    def __init__(self, input_size: int, hidden: int, threshold: float = 1.0, slope: float = 5.0):
        super().__init__(input_size, hidden)
        self.threshold, self.slope = threshold, slope
        self.logit_beta = nn.Parameter(torch.full((hidden,), 2.2))   # beta ~ 0.9
        self.logit_alpha = nn.Parameter(torch.full((hidden,), 2.2))  # alpha ~ 0.9
        self.x_proj = nn.Linear(input_size, hidden)
        self.s_proj = nn.Linear(hidden, hidden, bias=False)

    def project(self, u: torch.Tensor) -> torch.Tensor:
        return (self.x_proj(u),)

    def recur(self, pu_t: tuple[torch.Tensor, ...], state: State) -> tuple[torch.Tensor, State]:
        (v, a), (px,) = state, pu_t
        beta, alpha = torch.sigmoid(self.logit_beta), torch.sigmoid(self.logit_alpha)
        s_prev = spike(v, self.threshold, self.slope, self.training)       # [B, H]
        v = beta * v + px + self.s_proj(s_prev) - self.threshold * s_prev
        s = spike(v, self.threshold, self.slope, self.training)
        a = alpha * a + (1 - alpha) * s
        return a, (v, a)
