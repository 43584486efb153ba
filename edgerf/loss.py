"""The reset-free loss (Yin & Corradi 2024) and the baselines' losses.

Per step t with class probabilities p_t = softmax(logits_t):

    reset-free:  l_t = m_t * CE(p_t, y_t) + (1 - m_t) * (1 + (w - 1) * g_t) * KL(U || p_t)
    ce:          l_t = m_t * CE(p_t, y_t)

g_t (default none) marks the first few noise steps after each sample (``edgerf train
--grace``), whose KL term is weighted w (``--end-weight``). w = 0, a grace: no loss where
the model cannot see when the activity mask's hangover ended. w > 1: the output asked to
clear sooner at a sample's end, where a model's false alarms linger. Without g_t: the
paper's loss.

KL(U || p) = sum_c (1/C) * (log(1/C) - log p_c) = -log C - mean_c log p_c, zero
exactly when p is uniform. Averaging: the reset-free loss is the mean of l_t over
all B*T steps (every step carries a target); the ce loss is the mean over the
informative steps only (noise steps carry none).

``TRAINING_MODES`` is the one table of training modes: which loss, and whether the
state is zeroed at sample boundaries (periodic-reset, which needs an oracle that
sees boundaries, in training and at evaluation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from edgerf.choices import TRAINING_MODE_NAMES, check_table


@dataclass(frozen=True)
class TrainingMode:
    loss: str            # "reset-free" or "ce"
    oracle_reset: bool   # zero the state at every sample start


TRAINING_MODES = {
    "reset-free": TrainingMode(loss="reset-free", oracle_reset=False),
    "periodic-reset": TrainingMode(loss="ce", oracle_reset=True),
    "ce": TrainingMode(loss="ce", oracle_reset=False),
}
check_table(TRAINING_MODES, TRAINING_MODE_NAMES, "TRAINING_MODES")


def kl_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(U || softmax(logits)) per step: [..., C] -> [...]."""
    logp = F.log_softmax(logits, -1)
    return -math.log(logits.shape[-1]) - logp.mean(-1)


def stream_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor,
                loss: str = "reset-free", grace: torch.Tensor | None = None,
                end_weight: float = 0.0) -> torch.Tensor:
    """logits [B, T, C], labels [B, T] (any value where mask is False), mask [B, T] bool,
    grace [B, T] bool or None (noise steps whose KL term is weighted ``end_weight``)."""
    ce = F.cross_entropy(logits.flatten(0, -2), labels.clamp(min=0).flatten(),
                         reduction="none").view(mask.shape)        # [B, T]
    m = mask.to(logits.dtype)
    if loss == "reset-free":
        noise = 1 - m if grace is None else (1 - m) * (1 + (end_weight - 1) * grace.to(logits.dtype))
        return (m * ce + noise * kl_uniform(logits)).mean()
    if loss == "ce":
        return (m * ce).sum() / m.sum().clamp(min=1)
    raise ValueError(f"unknown loss {loss!r}; known: reset-free, ce")
