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
MAX_WINDOW = 100_000     # steps of smoothing: over an hour of 40 ms steps


def _max(a: np.ndarray) -> float:
    """The largest element: ndarray.max without its Python wrapper (called on every chunk)."""
    return float(np.maximum.reduce(a, axis=None))


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
    ``_unknown_``); None: every class. ``update`` takes one step, ``update_many`` a chunk of
    steps at once (the same events for any chunking: tests/test_runtime.py).

    ``merge``: runs above threshold that follow each other within ``merge`` steps are one
    utterance and make one event, labelled with the class of the most confident run (a
    word heard first as its look-alike, "no" after "on", is reported once, as what the
    model settled on; an ``_unknown_`` run that wins silences the keyword it absorbed).
    The event is reported ``merge`` steps after it ends. 0: every run is its own event."""

    def __init__(self, classes: list[str], threshold: float = 0.9, window: int = 3, min_steps: int = 1,
                 keywords: list[str] | None = None, merge: int = 0):
        if not 0.0 < threshold < 1.0:
            raise ValueError("threshold must be in (0, 1)")
        for name, value, least in (("window", window, 1), ("merge", merge, 0), ("min_steps", min_steps, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise ValueError(f"{name} must be a whole number of steps, at least {least} (got {value!r})")
        if window > MAX_WINDOW:        # the window is held as an array: a typo must not ask for terabytes
            raise ValueError(f"window must be at most {MAX_WINDOW:,} steps (got {window:,})")
        self.classes, self.threshold, self.min_steps = list(classes), threshold, int(min_steps)
        self.keywords = None if keywords is None else set(keywords)
        # the last ``window`` steps, oldest first; before the first step: uniform
        self._recent = np.full((int(window), len(classes)), 1.0 / len(classes), np.float32)
        self._recent_max = _max(self._recent)
        self._t = -1
        self._open: list | None = None   # [label, start, last, peak]
        self.merge = int(merge)
        self._pending: list | None = None   # a closed run that a run within ``merge`` steps may join

    def update(self, probs: np.ndarray) -> Event | None:
        """Feed one step's probabilities [C]; returns an event when one closes."""
        events = self.update_many(np.asarray(probs, np.float32).reshape(1, -1))
        return events[0] if events else None

    def update_many(self, probs: np.ndarray) -> list[Event]:
        """Feed steps [T, C]; returns the events that closed, in order. The smoothing is
        vectorised over the chunk; Python runs only on steps above threshold and the step
        after each (where an event can open, grow or close), so a quiet stream costs a few
        array operations per chunk."""
        probs = np.asarray(probs, np.float32)
        n, w = len(probs), len(self._recent)
        if n == 0:
            return []
        # below ``quiet`` a step cannot open a run (a margin over float rounding of the moving mean)
        quiet = self.threshold - 1e-6
        if self._open is None and self._pending is None and self._recent_max < quiet:
            top = _max(probs)
            if top < quiet:
                # the quiet stream, most of it: each smoothed value is a mean of values all
                # under the threshold, so no run opens; only the window moves on
                self._recent = probs[-w:].copy() if n >= w else np.concatenate([self._recent[n:], probs])
                self._recent_max = top if n >= w else float(self._recent.max())     # top: an upper bound
                self._t += n
                return []
        padded = np.concatenate([self._recent, probs])
        csum = np.cumsum(padded, axis=0, dtype=np.float64)
        smooth = (csum[w:] - csum[:n]) / w                              # mean of the w steps ending at each
        self._recent = padded[-w:]
        self._recent_max = _max(self._recent)
        label = smooth.argmax(1)
        peak = smooth.max(1)
        on = peak >= self.threshold
        watch = on.copy()
        watch[1:] |= on[:-1]
        watch[0] |= self._open is not None
        events, t0 = [], self._t + 1
        for i in np.flatnonzero(watch).tolist():
            lab, p = int(label[i]), float(peak[i])
            if self._open is not None and (p < self.threshold or lab != self._open[0]):
                self._end_run()
            if on[i]:
                if self._open is None:
                    if self._pending is not None and t0 + i - self._pending[2] > self.merge:
                        events += self._emit()
                    self._open = [lab, t0 + i, t0 + i, p]
                else:
                    self._open[2], self._open[3] = t0 + i, max(self._open[3], p)
        self._t += n
        if self._pending is not None and self._open is None and self._t - self._pending[2] > self.merge:
            events += self._emit()
        return events

    def flush(self) -> Event | None:
        """The event still open or waiting at the end of the input."""
        if self._open is not None:
            self._end_run()
        events = self._emit() if self._pending is not None else []
        return events[0] if events else None

    def _end_run(self) -> None:
        """The open run ends: it waits as the pending event, or joins the one waiting (the
        more confident run gives the label)."""
        run, self._open = self._open, None
        if self._min_ok(run) and self._pending is not None:
            keep = self._pending if self._pending[3] >= run[3] else run
            run = [keep[0], self._pending[1], run[2], keep[3]]
        elif not self._min_ok(run):
            return
        self._pending = run

    def _min_ok(self, run) -> bool:
        return run[2] - run[1] + 1 >= self.min_steps

    def _emit(self) -> list[Event]:
        label, start, last, peak = self._pending
        self._pending = None
        if self.keywords is not None and self.classes[label] not in self.keywords:
            return []
        return [Event(label, self.classes[label], start, last, peak)]


def detect_events(probs: np.ndarray, classes: list[str], threshold: float = 0.9, window: int = 3,
                  min_steps: int = 1, keywords: list[str] | None = None, merge: int = 0) -> list[Event]:
    """Every event ``EventDetector`` emits over probs [T, C] (flush included): for scoring
    long streams at many thresholds."""
    det = EventDetector(classes, threshold, window, min_steps, keywords, merge)
    events = det.update_many(probs)
    return events + [ev] if (ev := det.flush()) is not None else events
