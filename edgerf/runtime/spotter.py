"""``Spotter``: audio (or frames) in, events out. The whole device path of a keyword model,
done per chunk rather than per 10 ms hop.

    spotter = Spotter(StepModel.load("kws-gru.int8.tflite"))
    for pcm in microphone_chunks():                 # float PCM in [-1, 1], any length
        for event in spotter.feed(pcm):
            print(event.name, event.start)
    spotter.flush()

Per chunk: the front end turns every sample that fills a frame into frames at once (one
FFT call for the chunk), the model steps frame by frame (its state carries over, as it
must; ``StepModel.step_many`` checks the chunk once) and hands out class probabilities
computed by the graph itself (an artifact exported before graphs had them: one softmax
over the chunk's logits here), and the detector smooths and thresholds the chunk as one
array. Only the recurrence is per step. The same events come out for any chunking (tests/test_spotter.py);
``seconds`` says where the time went.
"""

from __future__ import annotations

import time

import numpy as np

from edgerf.runtime.events import Event, EventDetector
from edgerf.runtime.metrics import softmax
from edgerf.runtime.model import FrameError


def steady_heap() -> bool:
    """Keep glibc from returning freed heap to the kernel after every chunk. A chunk's front-end
    buffers (~1 MB for 1 s of audio) sit at the top of the heap; glibc trims that on each free
    and the next chunk faults it all back in: with the int8 keyword model, 474,000 page faults
    and 0.46 s of system time over 20 minutes of audio, a third of the whole path (7,000 faults
    and 0.02 s with the thresholds raised). Process-wide, so the command line calls it, not the
    library. Returns whether it applied (glibc only)."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version                               # glibc, not musl or macOS
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        return bool(libc.mallopt(M_TRIM_THRESHOLD, 256 << 20) and libc.mallopt(M_MMAP_THRESHOLD, 32 << 20))
    except (OSError, AttributeError):
        return False


class Spotter:
    def __init__(self, model, threshold: float | None = None, window: int | None = None, all_classes: bool = False,
                 keep=None, timed: bool = False, merge: int | None = None):
        """``model``: a StepModel (or anything with its step_many/featurize/classes/keywords).
        ``threshold``, ``window``, ``merge``: default the manifest's operating point. ``all_classes``: also events
        of filler classes such as ``_unknown_``. ``keep(frames, probs)``: called with each
        chunk's stepped frames and probabilities (for plots). ``timed``: add the process
        time of each stage to ``seconds``."""
        self.model, self.keep = model, keep
        self.detector = EventDetector(model.classes, model.threshold if threshold is None else threshold,
                                      getattr(model, "window", 3) if window is None else window,
                                      keywords=None if all_classes else model.keywords,
                                      merge=getattr(model, "merge", 0) if merge is None else merge)
        self.seconds = {"features": 0.0, "model": 0.0, "probs": 0.0, "detection": 0.0}
        self._held: list[Event] = []          # events closed by a chunk whose frame was refused
        self._clock = time.process_time if timed else None
        self._in_graph = getattr(model, "graph_probs", False)     # the graph hands out probabilities
        manifest = getattr(model, "manifest", None)
        self._kind = manifest["frame"].get("frame_kind") if manifest else "log-mel"

    def feed(self, pcm: np.ndarray) -> list[Event]:
        """A chunk of audio (float PCM); returns the events it closed."""
        if self._kind != "log-mel":       # an image model's featurize reads a chunk as pixel rows
            raise ValueError(f"feed takes audio, and this model takes {self._kind} frames: give them to "
                             "feed_frames.")
        if self._clock is None:
            return self.feed_frames(self.model.featurize(pcm))
        t = self._clock()
        frames = self.model.featurize(pcm)
        self.seconds["features"] += self._clock() - t
        return self.feed_frames(frames)

    def feed_frames(self, frames: np.ndarray) -> list[Event]:
        """Frames [T, D] (or one frame [D]); returns the events they closed. A frame the model
        skips (``on_bad_frame="skip"``) takes no step, and a chunk whose frame the model refuses
        (``"raise"``) raises; either way their time passes for the detector as uniform
        probabilities (no evidence), so later events keep their place in the stream."""
        frames = np.asarray(frames)
        if frames.ndim == 1:
            frames = frames[None]
        clock = self._clock
        t0 = clock() if clock else 0.0
        in_graph = self._in_graph
        try:
            probs, stepped = self.model.step_many(frames, probs=True) if in_graph else self.model.step_many(frames)
        except FrameError:
            # the chunk's time passed with no evidence: uniform rows keep the detector's clock
            # (event times are stream time), and what they close waits for the next call
            self._held += self.detector.update_many(self._uniform(len(frames)))
            raise
        if not len(frames):
            return self._release([])
        t1 = clock() if clock else 0.0
        if not in_graph:
            softmax(probs, out=probs)                 # the chunk's logits, a new array: in place
        if stepped is not None:                       # a skipped frame took no step: no evidence, its time passes
            full = self._uniform(len(frames))
            full[stepped] = probs
            probs = full
        t2 = clock() if clock else 0.0
        if self.keep is not None:
            self.keep(frames, probs)
        events = self._release(self.detector.update_many(probs))
        if clock:
            t3 = clock()
            self.seconds["model"] += t1 - t0
            self.seconds["probs"] += t2 - t1
            self.seconds["detection"] += t3 - t2
        return events

    def flush(self) -> list[Event]:
        """The event still open at the end of the input, if any."""
        ev = self.detector.flush()
        return self._release([] if ev is None else [ev])

    def _uniform(self, n: int) -> np.ndarray:
        return np.full((n, len(self.detector.classes)), 1.0 / len(self.detector.classes), np.float32)

    def _release(self, events: list[Event]) -> list[Event]:
        """``events`` after any closed by a chunk that raised (kept for the call after it)."""
        if self._held:
            events, self._held = self._held + events, []
        return events

    @property
    def threshold(self) -> float:
        return self.detector.threshold
