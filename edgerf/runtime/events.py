"""Per-step probabilities -> events, for continual use.

A reset-free model is near-uniform between samples and confident inside them, so a
moving average of the class probabilities and a threshold turn the stream into
detections. An event opens when the smoothed top probability rises above the
threshold, and closes when it falls below it or the top class changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Classes that mean "none of the keywords": they never fire an event unless asked for.
FILLER_CLASSES = ("_unknown_",)


@dataclass(frozen=True)
class Event:
    label: int          # class index
    name: str           # class name from the manifest
    start: int          # first step above threshold
    end: int            # last step above threshold
    confidence: float   # peak smoothed probability

    def to_dict(self) -> dict:
        return asdict(self)


class EventDetector:
    """Moving average over ``window`` steps, then hysteresis-free thresholding. ``keywords``:
    the classes that fire events (``StepModel.keywords``: every class but filler such as
    ``_unknown_``); None: every class."""

    def __init__(self, classes: list[str], threshold: float = 0.9, window: int = 3, min_steps: int = 1,
                 keywords: list[str] | None = None):
        if not 0.0 < threshold < 1.0:
            raise ValueError("threshold must be in (0, 1)")
        self.classes, self.threshold, self.min_steps = list(classes), threshold, min_steps
        self.keywords = None if keywords is None else set(keywords)
        self._ring = np.full((max(1, window), len(classes)), 1.0 / len(classes), np.float32)
        self._i = 0
        self._t = -1
        self._open: list | None = None   # [label, start, last, peak]

    def update(self, probs: np.ndarray) -> Event | None:
        """Feed one step's probabilities [C]; returns an event when one closes."""
        self._t += 1
        self._ring[self._i % len(self._ring)] = probs
        self._i += 1
        smooth = self._ring.mean(0)
        label = int(smooth.argmax())
        p = float(smooth[label])
        closed = None
        if self._open is not None and (p < self.threshold or label != self._open[0]):
            closed = self._close()
        if p >= self.threshold:
            if self._open is None:
                self._open = [label, self._t, self._t, p]
            else:
                self._open[2], self._open[3] = self._t, max(self._open[3], p)
        return closed

    def flush(self) -> Event | None:
        """Close an event still open at the end of the input."""
        return self._close() if self._open is not None else None

    def _close(self) -> Event | None:
        label, start, last, peak = self._open
        self._open = None
        if last - start + 1 < self.min_steps or (self.keywords is not None
                                                 and self.classes[label] not in self.keywords):
            return None
        return Event(label, self.classes[label], start, last, peak)


def detect_events(probs: np.ndarray, classes: list[str], threshold: float = 0.9, window: int = 3,
                  min_steps: int = 1) -> list[Event]:
    """Every event ``EventDetector`` emits over probs [T, C] fed one step at a time
    (flush included), computed at once: for scoring long streams at many thresholds.
    tests/test_runtime.py checks it against the detector step by step."""
    T, C = probs.shape
    w = max(1, window)
    # the detector's ring starts full of uniform rows, then holds the last ``w`` steps
    padded = np.concatenate([np.full((w, C), 1.0 / C, np.float32), probs.astype(np.float32)])
    csum = np.cumsum(padded, axis=0, dtype=np.float64)
    smooth = (csum[w:] - csum[:-w]) / w                               # [T, C]
    label = smooth.argmax(-1)
    peak = smooth[np.arange(T), label]
    on = peak >= threshold
    # an event is a maximal run of steps above threshold with one label
    start = on & ~np.concatenate([[False], on[:-1] & (label[1:] == label[:-1])])
    starts = np.flatnonzero(start)
    events = []
    for s in starts:
        e = s
        while e + 1 < T and on[e + 1] and label[e + 1] == label[s]:
            e += 1
        if e - s + 1 >= min_steps:
            events.append(Event(int(label[s]), classes[label[s]], int(s), int(e), float(peak[s:e + 1].max())))
    return events
