"""The device-side runtime: numpy plus one interpreter, never torch.

    from edgerf.runtime import StepModel
    model = StepModel.load("gru.int8.onnx")         # manifest read, state bound by name
    for frame in frames:                            # forever; no reset needed
        logits = model.step(frame)                  # logits [C]; model.probs(logits) for probabilities
    model.save_state("state.npz")                   # survive a reboot

See ``StepModel`` for the watchdog and persistence, ``EventDetector`` for turning
probabilities into detections, ``Spotter`` for the whole path from audio chunks to events,
and ``examples/`` for whole device loops.
"""

from edgerf.runtime.events import Event, EventDetector
from edgerf.runtime.model import FrameError, StateError, StepModel
from edgerf.runtime.spotter import Spotter

__all__ = ["StepModel", "Event", "EventDetector", "Spotter", "FrameError", "StateError"]
