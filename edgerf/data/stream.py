"""Building streams: samples concatenated with non-informative gaps, never reset.

A stream is what a device sees: one long sequence of frames with no marker of where
a sample begins (``edgerf.runtime.stream.Stream``). The labels, mask and boundaries
travel beside it for training and scoring only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edgerf.runtime.errors import DataError
from edgerf.runtime.stream import NO_LABEL, Stream


def concat_samples(samples: Sequence[np.ndarray], labels: Sequence[int],
                   gaps: Sequence[np.ndarray], ids: Sequence[int] | None = None) -> Stream:
    """Build ``gap_0, sample_0, gap_1, sample_1, ...`` into one Stream.

    samples[i] [T_i, D] informative frames of sample i, labels[i] its class,
    gaps[i] [G_i, D] the non-informative frames that precede it (G_i may be 0),
    ids[i] its index in its split (optional).
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
        ids=None if ids is None else np.asarray(ids, np.int64),
    )


def join(streams: Sequence[Stream]) -> Stream:
    """Streams one after another, as one unreset stream (each keeps its samples' ids)."""
    offsets = np.cumsum([0] + [len(s) for s in streams[:-1]])
    ids = None if any(s.ids is None for s in streams) else np.concatenate([s.ids for s in streams])
    return Stream(np.concatenate([s.x for s in streams]), np.concatenate([s.labels for s in streams]),
                  np.concatenate([s.mask for s in streams]),
                  np.concatenate([s.starts + o for s, o in zip(streams, offsets)]),
                  np.concatenate([s.ends + o for s, o in zip(streams, offsets)]), ids)
