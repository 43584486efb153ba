"""A checkpoint stepped through torch behind the device API: ``edgerf stream ckpt.pt`` tries a
trained model on a recording before it is exported.

The backend has the interface of ``edgerf.runtime.backends`` (step, read/write the state),
and the manifest it is given holds what ``StepModel`` reads (classes, frame spec, threshold,
state names), taken from the checkpoint; so featurizing, events, the frame checks and the
watchdog are the runtime's own. Calibrated state ranges exist only after export: here the
watchdog checks finiteness alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgerf import checkpoint
from edgerf.runtime.manifest import INPUT, OUTPUT
from edgerf.runtime.model import StepModel


class TorchBackend:
    name = "torch"
    fresh = True           # each step returns a new array
    probs = False          # probabilities come from its logits (the runtime's softmax)

    def __init__(self, model, threads: int = 1):
        torch.set_num_threads(threads)
        self.model = model
        self.state = [s.clone() for s in model.init_state(1)]

    def carried_states(self) -> list[None]:
        return [None] * len(self.state)

    def read_state(self) -> list[np.ndarray]:
        return [s.numpy() for s in self.state]

    def write_state(self, values: list[np.ndarray]) -> None:
        self.state = [torch.from_numpy(np.array(v, np.float32).reshape(s.shape)) for v, s in zip(values, self.state)]

    @torch.no_grad()
    def step(self, x: np.ndarray) -> np.ndarray:
        """A frame [D] or [1, D] -> logits [1, C], as the interpreter backends return them."""
        logits, state = self.model.step(torch.from_numpy(x.reshape(1, -1)), tuple(self.state))
        self.state = list(state)
        return logits.numpy()


def load(path: str | Path, on_bad_frame: str = "raise", threads: int = 1) -> StepModel:
    """A ``StepModel`` running checkpoint ``path`` in torch (batch 1)."""
    ck = checkpoint.load(path)
    model = ck.model
    names, sizes = model.state_names, model.state_sizes()
    classes = list(ck.task["classes"])
    manifest = {
        "model": {"classes": classes},
        "frame": ck.task,
        "decision": {"threshold": float(ck.task.get("threshold", 0.9)),      # the operating point, if any
                     **({k: ck.decision[k] for k in ("threshold", "window", "merge") if k in ck.decision}
                        if ck.decision else {})},
        "inputs": {INPUT: {"name": INPUT, "shape": [1, int(model.config.input_size)]}},
        "outputs": {OUTPUT: {"name": OUTPUT, "shape": [1, len(classes)]}},
        "states": [{"name": n, "input": f"{n}_in", "output": f"{n}_out", "shape": [1, int(k)]}
                   for n, k in zip(names, sizes)],
    }
    m = StepModel(Path(path), manifest, TorchBackend(model, threads), 1, on_bad_frame, 32, 1.0)
    m.integrity = "checkpoint digest verified (run in torch, not an exported artifact)"
    return m
