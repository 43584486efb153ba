"""Continual-inference metrics on one unreset stream (numpy only; shared by
training, export parity and bench so every number means the same thing).

- acc_f: frame accuracy, argmax == label over informative steps (m_t = 1).
- acc_p: prediction accuracy at each sample's last informative step.
- false_alarm: fraction of non-informative steps (m_t = 0) whose top class
  probability exceeds the decision threshold: a confident output during noise is
  a false detection on a device.
- noise_conf: mean top-class probability on non-informative steps (1/C is uniform).
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def stream_metrics(logits: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                   ends: np.ndarray, threshold: float = 0.9) -> dict[str, float]:
    """Metrics of logits [T, C] against a stream's labels [T], mask [T] and ends [N]."""
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError(f"logits {logits.shape} do not match {len(labels)} steps")
    pred = logits.argmax(-1)
    top = softmax(logits).max(-1)
    noise = ~mask
    return {
        "acc_f": float((pred[mask] == labels[mask]).mean()) if mask.any() else float("nan"),
        "acc_p": float((pred[ends] == labels[ends]).mean()) if len(ends) else float("nan"),
        "false_alarm": float((top[noise] > threshold).mean()) if noise.any() else float("nan"),
        "noise_conf": float(top[noise].mean()) if noise.any() else float("nan"),
        "steps": int(len(labels)),
        "samples": int(len(ends)),
    }


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of steps where two logit trajectories [T, C] pick the same class."""
    return float((np.asarray(a).argmax(-1) == np.asarray(b).argmax(-1)).mean())
