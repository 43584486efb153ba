"""Recurrent classifiers (torch). ``FAMILIES`` is the one table of model families:
the CLI choices, export dispatch and test parametrisation are built from it, so a
new family is one file plus one line here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from edgerf.cells.base import Cell, State
from edgerf.choices import FAMILY_NAMES, READOUT_NAMES, check_table
from edgerf.cells.gru import GRUCell
from edgerf.cells.lif import LIFCell
from edgerf.cells.rnn import ElmanCell
from edgerf.cells.ssm import DiagSSMCell, SelectiveSSMCell

FAMILIES: dict[str, type[Cell]] = {
    "rnn": ElmanCell,
    "gru": GRUCell,
    "ssm": DiagSSMCell,
    "ssm-sel": SelectiveSSMCell,
    "lif": LIFCell,
}
check_table(FAMILIES, FAMILY_NAMES, "FAMILIES")


class GatedReadout(nn.Module):
    """logits = sigmoid(g . y + c) * (W y + b): which class, and whether to say so, apart.

    On noise steps the loss asks for the uniform distribution. A linear readout can only
    get there by moving its scores, and on speech it starts moving them before the word's
    label ends (the silence after a word looks like the gap to come), so the end-of-sample
    argmax drifts. Here the gate closes the output (gate -> 0: uniform) while the scores
    may keep the word: scaling by a positive gate never changes the argmax.
    """

    def __init__(self, hidden: int, classes: int):
        super().__init__()
        self.scores = nn.Linear(hidden, classes)
        self.gate = nn.Linear(hidden, 1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.scores(y) * torch.sigmoid(self.gate(y))


READOUTS: dict[str, type[nn.Module]] = {"linear": nn.Linear, "gated": GatedReadout}
check_table(READOUTS, READOUT_NAMES, "READOUTS")


@dataclass(frozen=True)
class ModelConfig:
    family: str = "gru"      # which row of FAMILIES
    input_size: int = 28     # features per frame (the task decides)
    hidden: int = 128        # width of every recurrent layer (and of the input layer)
    layers: int = 1          # stacked recurrent layers; one is enough for these tasks
    classes: int = 10        # logits per step
    frontend: int = 0        # ReLU layers (width hidden) before the input layer; 0: the input layer alone
    readout: str = "linear"  # which row of READOUTS

    def to_dict(self) -> dict:
        return asdict(self)


class RecurrentClassifier(nn.Module):
    """Frontend -> input layer -> ``layers`` recurrent cells -> readout, one logit vector
    per step.

        f_t      = relu(W_k ... relu(W_1 x_t + b_1) ... + b_k)    [B, H]  ``frontend`` = k layers (k >= 0)
        u_t      = W_in f_t + b_in                          [B, H]
        y_t^(l)  = cell_l(y_t^(l-1), state^(l))             [B, H]
        logits_t = W_out y_t^(L) + b_out                    [B, C]  ``readout`` linear
                 = sigmoid(w_g y_t^(L) + c) * (W_out y_t^(L) + b_out)   gated (GatedReadout)

    States are named ``l<layer>_<name>`` (``l0_h``, ``l0_v``...); export binds them
    by these names.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.family not in FAMILIES:
            raise ValueError(f"unknown model family {config.family!r}; known: {', '.join(FAMILIES)}")
        if config.readout not in READOUTS:
            raise ValueError(f"unknown readout {config.readout!r}; known: {', '.join(READOUTS)}")
        self.config = config
        cell = FAMILIES[config.family]
        # the frontend is per-frame feature extraction shared by every family: the cells
        # then recur over features, not raw log-mel bands (what a plain RNN cannot learn alone)
        widths = [config.input_size] + [config.hidden] * config.frontend
        self.frontend = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.input = nn.Linear(widths[-1], config.hidden)
        self.cells = nn.ModuleList(cell(config.hidden, config.hidden) for _ in range(config.layers))
        self.readout = READOUTS[config.readout](config.hidden, config.classes)

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(f"l{i}_{n}" for i, c in enumerate(self.cells) for n in c.state_names)

    def state_sizes(self) -> tuple[int, ...]:
        return tuple(n for c in self.cells for n in c.state_sizes())

    def init_state(self, batch: int = 1) -> State:
        return tuple(s for c in self.cells for s in c.init_state(batch))

    def _split(self, state: State) -> list[State]:
        out, i = [], 0
        for c in self.cells:
            k = len(c.state_names)
            out.append(tuple(state[i:i + k]))
            i += k
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The cells' input u from frames x (any leading dimensions)."""
        for layer in self.frontend:
            x = torch.relu(layer(x))
        return self.input(x)

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """(x_t [B, D], state) -> (logits_t [B, C], state'): the exported function."""
        y, new = self.features(x_t), []
        for cell, s in zip(self.cells, self._split(state)):
            y, s = cell.step(y, s)
            new += s
        return self.readout(y), tuple(new)

    def forward(self, x: torch.Tensor, state: State | None = None,
                resets: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """x [B, T, D] -> logits [B, T, C] and the last state; equal to the step loop.

        resets [B, T] bool (optional): zero the state before those steps (oracle
        resets at sample boundaries, for the periodic-reset baseline only).
        """
        if state is None:
            state = self.init_state(x.shape[0])
        keep = None if resets is None else (~resets).to(x.dtype)   # [B, T]
        y, new = self.features(x), []
        for cell, s in zip(self.cells, self._split(state)):
            y, s = cell(y, s, keep)
            new += s
        return self.readout(y), tuple(new)
