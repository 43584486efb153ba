"""The annotated stream: what a device sees (frames, never reset) and what scoring needs
beside it (labels, mask, sample boundaries).

Shapes: T steps, D features per frame, N samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_LABEL = -1  # label of a non-informative step


@dataclass(frozen=True)
class Stream:
    """One unreset stream with its annotations.

    x       [T, D] float32  frames, already normalised as the model sees them
    labels  [T]    int64    class of the sample a step belongs to, NO_LABEL in gaps
    mask    [T]    bool     m_t: True on informative steps (CE), False on noise (KL to uniform)
    starts  [N]    int64    first step of each sample (where an oracle would reset)
    ends    [N]    int64    last informative step of each sample (where acc_p is read)
    ids     [N]    int64    each sample's index in its split, or None: streams drawn again
                            from the same split pair a sample's outcomes (edgerf.configs.Budget)
    """

    x: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    ids: np.ndarray | None = None

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
        if self.ids is not None and self.ids.shape != s.shape:
            return f"ids {self.ids.shape} do not match {len(s)} samples"
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
                      self.starts[keep], self.ends[keep], None if self.ids is None else self.ids[keep])
