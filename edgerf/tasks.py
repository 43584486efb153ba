"""Tasks: what a frame is and how a stream of a task is built (numpy only).

A task is data, not a fork of the trainer: every task gives frames [T, D], labels,
a mask and boundaries through ``Task.stream`` and a JSON-able ``spec`` that the
checkpoint and the manifest carry (so a device knows what a frame is).

``TASKS`` is the one table of tasks; the CLI choices are built from it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np

from edgerf.data import Stream, concat_samples
from edgerf.data import fashion
from edgerf.features import normalise_rows

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SeqFashionMNIST:
    """Sequential Fashion-MNIST: images fed row by row, noise rows between images.

    Frame: one image row, 28 pixels scaled to [0, 1] then normalised with the
    training-set mean and std. Gap before each image: ``G ~ U{gap_min..gap_max}``
    rows of i.i.d. Gaussian noise N(0, noise_std^2) in the normalised space (so noise
    is as loud as the images but carries no class). Mask: 1 on the 28 image rows,
    0 on gap rows. Splits: 'train' = first 55,000 training images, 'val' = last
    5,000 training images, 'test' = the 10,000 test images.
    """

    name: str = "sfmnist"
    features: int = 28
    frame_kind: str = "image-row"
    period_s: float | None = None       # rows have no wall-clock period
    mean: float = 0.2860                # Fashion-MNIST training pixel mean (pixels / 255)
    std: float = 0.3530                 # ... and std
    gap_min: int = 10                   # shortest noise gap, rows
    gap_max: int = 30                   # longest noise gap: on average 20 noise rows per image
    noise_std: float = 1.0              # noise as loud as normalised pixels
    threshold: float = 0.9              # decision threshold for events and false alarms
    classes: tuple[str, ...] = field(default=fashion.CLASSES)
    val_size: int = 5000

    @property
    def steps_per_sample(self) -> float:
        return 28 + (self.gap_min + self.gap_max) / 2

    def spec(self) -> dict:
        d = asdict(self)
        d["classes"] = list(self.classes)
        return d

    def normalise(self, images: np.ndarray) -> np.ndarray:
        return normalise_rows(images, self.mean, self.std)

    def split_arrays(self, split: str, data=None) -> tuple[np.ndarray, np.ndarray]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        images, labels = fashion.load("test" if split == "test" else "train", data)
        if split == "train":
            return images[: -self.val_size], labels[: -self.val_size]
        if split == "val":
            return images[-self.val_size:], labels[-self.val_size:]
        return images, labels

    def stream(self, split: str, samples: int | None = None, seed: int = 0,
               data: str | os.PathLike | None = None, arrays=None) -> Stream:
        """A stream of ``samples`` images of ``split`` in a seeded random order.

        ``samples=None`` takes the whole split. ``arrays`` skips reading the files
        again when the caller already holds (images, labels).
        """
        images, labels = arrays if arrays is not None else self.split_arrays(split, data)
        rng = np.random.default_rng(seed)
        n = len(images) if samples is None else min(samples, len(images))
        idx = rng.permutation(len(images))[:n]
        gaps = [rng.normal(0.0, self.noise_std, (g, self.features)).astype(np.float32)
                for g in rng.integers(self.gap_min, self.gap_max + 1, size=n)]
        return concat_samples(self.normalise(images[idx]), labels[idx].tolist(), gaps)

    def samples_for_steps(self, steps: int) -> int:
        """How many samples make a stream of at least ``steps`` steps (on average)."""
        return int(np.ceil(steps / self.steps_per_sample * 1.05))


TASKS = {"sfmnist": SeqFashionMNIST()}


def get_task(name_or_spec) -> SeqFashionMNIST:
    """The task from its name, or rebuilt from a stored spec (checkpoint/manifest)."""
    if isinstance(name_or_spec, dict):
        spec = dict(name_or_spec)
        base = TASKS.get(spec.get("name"))
        if base is None:
            raise ValueError(f"unknown task {spec.get('name')!r}; known: {', '.join(TASKS)}")
        spec["classes"] = tuple(spec.get("classes", base.classes))
        known = {k: v for k, v in spec.items() if k in base.__dataclass_fields__}
        return type(base)(**known)
    if name_or_spec not in TASKS:
        raise ValueError(f"unknown task {name_or_spec!r}; known: {', '.join(TASKS)}")
    return TASKS[name_or_spec]
