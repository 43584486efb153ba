"""The stream: samples concatenated with non-informative gaps, never reset.

A stream is what a device sees: one long sequence of frames with no marker of where
a sample begins. The labels, mask and boundaries travel beside it for training and
scoring only.

Shapes: T steps, D features per frame, N samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edgerf.errors import DataError

NO_LABEL = -1  # label of a non-informative step


@dataclass(frozen=True)
class Stream:
    """One unreset stream with its annotations.

    x       [T, D] float32  frames, already normalised as the model sees them
    labels  [T]    int64    class of the sample a step belongs to, NO_LABEL in gaps
    mask    [T]    bool     m_t: True on informative steps (CE), False on noise (KL to uniform)
    starts  [N]    int64    first step of each sample (where an oracle would reset)
    ends    [N]    int64    last informative step of each sample (where acc_p is read)
    """

    x: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def problems(self) -> str | None:
        """What breaks the invariants above (for streams read from files), or None."""
        x, lab, m, s, e = self.x, self.labels, self.mask, self.starts, self.ends
        if x.ndim != 2 or x.shape[1] < 1:
            return f"frames have shape {x.shape}, not [T, D]"
        T = len(x)
        if lab.shape != (T,) or m.shape != (T,):
            return f"labels {lab.shape} and mask {m.shape} do not match {T} frames"
        if s.ndim != 1 or s.shape != e.shape:
            return f"starts {s.shape} and ends {e.shape} do not pair up"
        if len(s) and not (0 <= s.min() and (s <= e).all() and e.max() < T):
            return "a sample boundary lies outside the stream or ends before it starts"
        if len(e) and not m[e].all():
            return "a sample's last step is not informative"
        if T and (lab.min() < NO_LABEL or (lab[m] < 0).any()):
            return "labels are out of range (informative steps need a class)"
        return None

    @property
    def sample_labels(self) -> np.ndarray:
        return self.labels[self.ends]

    def resets(self) -> np.ndarray:
        """[T] bool, True where an oracle that sees boundaries zeroes the state."""
        r = np.zeros(len(self), dtype=bool)
        r[self.starts] = True
        return r

    def after_ends(self, steps: int) -> np.ndarray:
        """[T] bool, True on the noise steps within ``steps`` after a sample's last informative
        step (up to the next informative step): where the reset-free loss may grant grace."""
        near = np.zeros(len(self), dtype=bool)
        for e in self.ends.tolist():
            near[e + 1:e + 1 + steps] = True
        return near & ~self.mask

    def head(self, steps: int) -> "Stream":
        """The first ``steps`` steps, keeping only samples that end inside them."""
        keep = self.ends < steps
        return Stream(self.x[:steps], self.labels[:steps], self.mask[:steps],
                      self.starts[keep], self.ends[keep])


def concat_samples(samples: Sequence[np.ndarray], labels: Sequence[int],
                   gaps: Sequence[np.ndarray]) -> Stream:
    """Build ``gap_0, sample_0, gap_1, sample_1, ...`` into one Stream.

    samples[i] [T_i, D] informative frames of sample i, labels[i] its class,
    gaps[i] [G_i, D] the non-informative frames that precede it (G_i may be 0).
    Every frame of a sample is marked informative; tasks whose informative frames
    are decided per frame (speech) adjust ``mask`` and ``ends`` afterwards.
    """
    if not (len(samples) == len(labels) == len(gaps)):
        raise ValueError("samples, labels and gaps must have the same length")
    if len(samples) == 0:
        raise DataError("a stream needs at least one sample; the split or subset is empty.")
    parts, lab, msk, starts, ends = [], [], [], [], []
    t = 0
    for s, y, g in zip(samples, labels, gaps):
        parts += [g, s]
        lab += [np.full(len(g), NO_LABEL), np.full(len(s), y)]
        msk += [np.zeros(len(g), bool), np.ones(len(s), bool)]
        t += len(g)
        starts.append(t)
        t += len(s)
        ends.append(t - 1)
    return Stream(
        x=np.concatenate(parts).astype(np.float32, copy=False),
        labels=np.concatenate(lab).astype(np.int64),
        mask=np.concatenate(msk),
        starts=np.asarray(starts, np.int64),
        ends=np.asarray(ends, np.int64),
    )
