"""The parity gate: an exported graph against torch over a long real stream.

Both run closed loop (each one's own state feeds its next step), so errors that a
recurrence amplifies show up, as they would on a device. The report names the
first tensor that left tolerance and when.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from edgerf.cells import RecurrentClassifier
from edgerf.runtime.metrics import agreement
from edgerf.runtime.progress import ticks


@torch.no_grad()
def torch_trajectory(model: RecurrentClassifier, x: np.ndarray, progress=None) -> tuple[np.ndarray, list[np.ndarray]]:
    """The fp32 reference: logits [T, C] and each state after each step [T, S_k], batch 1.
    ``progress(n)`` is told every few hundred steps."""
    model.eval()
    state = model.init_state(1)
    xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    logits = torch.empty(len(x), model.config.classes)
    traj = [torch.empty(len(x), n) for n in model.state_sizes()]
    for t in ticks(len(x), progress):
        y, state = model.step(xt[t:t + 1], state)
        logits[t] = y[0]
        for k, s in enumerate(state):
            traj[k][t] = s[0]
    return logits.numpy(), [s.numpy() for s in traj]


@dataclass
class Parity:
    """``argmax_agreement`` counts informative steps only: on noise steps a reset-free
    model is near-uniform by design, so its argmax there is a coin toss among equal
    logits that any rounding flips and nobody acts on (what matters on noise is the
    false-alarm rate, reported beside). ``argmax_agreement_all`` counts every step."""

    steps: int
    argmax_agreement: float
    argmax_agreement_all: float
    max_abs_logits: float
    max_abs_state: dict[str, float]
    rms_state: dict[str, float]
    first_divergence: dict | None = None   # {"tensor", "step", "error"} or None
    passed: bool = True
    tolerance: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        states = ", ".join(f"{k} {v:.2e}" for k, v in self.max_abs_state.items())
        s = (f"{self.steps:,} steps: argmax agreement {self.argmax_agreement:.4%} "
             f"(all steps {self.argmax_agreement_all:.4%}), "
             f"max |d logits| {self.max_abs_logits:.2e}, max |d state| {states}")
        if self.first_divergence:
            d = self.first_divergence
            s += f"; first divergence: {d['tensor']} at step {d['step']:,} (|d| = {d['error']:.3g})"
        return s


def compare(ref_logits: np.ndarray, ref_states: list[np.ndarray], logits: np.ndarray,
            states: list[np.ndarray], state_names: list[str], atol: float | list[float],
            min_agreement: float, mask: np.ndarray | None = None) -> Parity:
    """Compare two closed-loop trajectories; ``passed`` when argmax agreement reaches
    ``min_agreement`` and no tensor leaves its tolerance (``atol``: one for all, or one
    per tensor, logits first; inf checks agreement only)."""
    names = ["logits", *state_names]
    tols = list(atol) if isinstance(atol, (list, tuple)) else [atol] * len(names)
    errs = [np.abs(a - b).max(-1) for a, b in zip([ref_logits, *ref_states], [logits, *states])]  # each [T]
    first = None
    for name, e, tol in zip(names, errs, tols):
        bad = np.flatnonzero(~(e <= tol))           # NaN counts as divergence
        if len(bad) and (first is None or bad[0] < first["step"]):
            first = {"tensor": name, "step": int(bad[0]), "error": float(e[bad[0]])}
    agree = agreement(ref_logits[mask], logits[mask]) if mask is not None else agreement(ref_logits, logits)
    return Parity(
        steps=len(ref_logits), argmax_agreement=agree, argmax_agreement_all=agreement(ref_logits, logits),
        max_abs_logits=float(errs[0].max()),
        max_abs_state={n: float(e.max()) for n, e in zip(state_names, errs[1:])},
        rms_state={n: float(np.sqrt(((a - b) ** 2).mean())) for n, a, b in zip(state_names, ref_states, states)},
        first_divergence=first, passed=(first is None and agree >= min_agreement),
        tolerance={"atol": dict(zip(names, map(float, tols))), "min_agreement": min_agreement})
