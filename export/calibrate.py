"""Calibration data from long unreset streams, state included.

The fp32 model runs closed loop over a long stream from the *training* split (never
test); every (x_t, state_{t-1}) pair it visits becomes one row of a single batch.
Because the step graph has a dynamic batch dimension, one batched run of the graph
visits exactly the activations of the closed-loop run, so min/max over that batch
is min/max over the whole trajectory: no moving average (which collapses on
one-step-at-a-time data) and no clipping of rare extremes from a short run.
"""

from __future__ import annotations

import numpy as np

from edgerf.cells import RecurrentClassifier
from edgerf.configs import CALIBRATION_STEPS
from edgerf.export.parity import torch_trajectory
from edgerf.runtime.manifest import INPUT, state_io_names
from edgerf.tasks import CALIBRATION_SEED



def calibration_feeds(model: RecurrentClassifier, task, steps: int = CALIBRATION_STEPS,
                      seed: int = CALIBRATION_SEED, progress=None) -> dict[str, np.ndarray]:
    """Graph inputs [steps, ...] visited by the fp32 model on an unreset training stream."""
    stream = task.stream("train", task.samples_for_steps(steps), seed=seed)
    x = stream.x[:steps]
    _, states = torch_trajectory(model, x, progress)
    feeds = {INPUT: x}
    for name, traj, size in zip(model.state_names, states, model.state_sizes()):
        # the state fed into step t is the state out of step t-1 (initial state at t=0)
        feeds[state_io_names(name)[0]] = np.concatenate([np.zeros((1, size), np.float32), traj[:-1]])
    return feeds


def ranges(feeds: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """[min, max] of every graph input over the calibration run."""
    return {k: [float(v.min()), float(v.max())] for k, v in feeds.items()}
