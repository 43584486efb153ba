"""Per-step latency in the spirit of MLPerf Tiny: warm-up, then several timed windows.

Each call is timed on its own (``perf_counter_ns``), so a window yields a distribution,
not just a mean; we report median, p90, p99 and max per window and over all windows.
Claims are ratios against a reference measured in the same process, never absolute
times on a shared machine.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass
class LatencyStats:
    n: int
    mean_us: float
    median_us: float
    p90_us: float
    p99_us: float
    max_us: float

    @classmethod
    def of(cls, samples_ns: np.ndarray) -> "LatencyStats":
        us = np.asarray(samples_ns, np.float64) / 1e3
        p50, p90, p99 = np.percentile(us, [50, 90, 99])
        return cls(int(len(us)), float(us.mean()), float(p50), float(p90), float(p99), float(us.max()))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Latency:
    overall: LatencyStats
    windows: list[LatencyStats]
    warmup_s: float
    window_s: float
    samples_ns: np.ndarray | None = None   # every timed call, for plots (not serialised)

    @property
    def steps_per_s(self) -> float:
        return 1e6 / self.overall.mean_us

    def to_dict(self) -> dict:
        return {"overall": self.overall.to_dict(), "windows": [w.to_dict() for w in self.windows],
                "warmup_s": self.warmup_s, "window_s": self.window_s, "steps_per_s": self.steps_per_s}


def measure_latency(step: Callable[[int], object], windows: int = 5, window_s: float = 2.0,
                    warmup_s: float = 0.5, max_steps: int = 10_000_000, progress=None) -> Latency:
    """Time ``step(i)`` (i = running step index, for feeding a stream) call by call."""
    if windows < 1 or window_s <= 0:
        raise ValueError("need at least one window of positive length")
    clock = time.perf_counter_ns
    i = 0
    end = clock() + int(warmup_s * 1e9)
    while clock() < end:
        step(i)
        i += 1
    per_window = []
    for _ in range(windows):
        samples = []
        end = clock() + int(window_s * 1e9)
        while True:
            t0 = clock()
            step(i)
            t1 = clock()
            samples.append(t1 - t0)
            i += 1
            if t1 >= end or len(samples) >= max_steps:
                break
        per_window.append(np.asarray(samples, np.int64))
        if progress is not None:
            progress()
    allw = np.concatenate(per_window)
    return Latency(overall=LatencyStats.of(allw), windows=[LatencyStats.of(w) for w in per_window],
                   warmup_s=warmup_s, window_s=window_s, samples_ns=allw)
