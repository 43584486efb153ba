"""Frame features, one implementation shared by training (edgerf.tasks) and the
device (StepModel.featurize): what the model saw in training is what the device feeds it.
"""

from __future__ import annotations

import numpy as np


def normalise_rows(pixels: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Image rows of uint8 pixels (or floats in 0..255) -> the normalised frames a model takes."""
    return ((np.asarray(pixels, np.float32) / 255.0) - mean) / std


def featurizer(frame: dict):
    """A callable raw input -> frames [T, D] for the manifest's frame spec."""
    kind = frame.get("frame_kind")
    if kind == "image-row":
        mean, std = float(frame["mean"]), float(frame["std"])
        return lambda raw: normalise_rows(raw, mean, std)
    raise ValueError(f"no feature extractor for frame kind {kind!r}")
