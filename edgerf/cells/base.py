"""The cell contract every recurrent family follows.

A cell maps one layer input u_t [B, I] and its state (a tuple of [B, S_k] tensors,
named by ``state_names``) to an output y_t [B, H] and the next state. The input
dependent part that needs no state (``project``) is split off so that training can
compute it for a whole sequence in one matmul; ``step`` and ``forward`` both go
through the same ``recur``, so what export traces (``step``) is what training runs.
"""

from __future__ import annotations

import torch
from torch import nn

State = tuple[torch.Tensor, ...]


class Cell(nn.Module):
    #: names of the state tensors, in the order ``recur`` takes and returns them
    state_names: tuple[str, ...] = ()

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        self.input_size, self.hidden = input_size, hidden

    def state_sizes(self) -> tuple[int, ...]:
        """Feature size of each state tensor (the batch dimension comes first)."""
        return (self.hidden,) * len(self.state_names)

    def init_state(self, batch: int) -> State:
        p = next(self.parameters())
        return tuple(torch.zeros(batch, n, dtype=p.dtype, device=p.device) for n in self.state_sizes())

    def project(self, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """State-free part of the update: tensors [B, P_k] (or [B, T, P_k] for a sequence)."""
        raise NotImplementedError

    def recur(self, pu_t: tuple[torch.Tensor, ...], state: State) -> tuple[torch.Tensor, State]:
        """One update from the projected inputs and the state."""
        raise NotImplementedError

    def step(self, u_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """(u_t [B, I], state) -> (y_t [B, H], state'): the function export traces."""
        return self.recur(self.project(u_t), state)

    def forward(self, u: torch.Tensor, state: State,
                keep: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """Run a sequence u [B, T, I] as the step loop; returns y [B, T, H] and the last state.

        keep [B, T] (optional) multiplies the state before step t: 0 where an oracle
        resets at a sample boundary (the periodic-reset baseline), 1 elsewhere.
        """
        pu = self.project(u)                                       # each [B, T, P_k]
        ys = []
        for t in range(u.shape[1]):
            if keep is not None:
                k = keep[:, t, None]                               # [B, 1]
                state = tuple(s * k for s in state)
            y, state = self.recur(tuple(p[:, t] for p in pu), state)
            ys.append(y)
        return torch.stack(ys, 1), state                           # [B, T, H]
