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

import math

import numpy as np


def softmax(logits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities of logits [..., C]; ``out`` (which may be ``logits`` itself) takes
    them in place, the same numbers without three temporaries."""
    logits = np.asarray(logits)
    if out is None:
        out = np.empty(logits.shape, np.result_type(logits, 1.0))
    # the ufuncs' reduce, not ndarray.max/sum: the same numbers without a Python wrapper
    # (a keyword stream calls this every 100 ms chunk on a few rows)
    np.subtract(logits, np.maximum.reduce(logits, axis=-1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= np.add.reduce(out, axis=-1, keepdims=True)
    return out


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


# -- keyword spotting, as the field reports it ----------------------------------------
UNKNOWN = "_unknown_"      # a class that is never an accepted keyword


def keyword_metrics(events: list, stream, classes: list[str], period_s: float, tolerance_s: float = 0.5) -> dict:
    """Event-level scoring of one unreset stream (events from ``edgerf.runtime`` detection).

    A keyword sample (its label is not ``_unknown_``) is a hit when an event of its class
    overlaps [first step, last informative step + tolerance]; otherwise a miss. Every other
    keyword event (wrong class, during an ``_unknown_`` word, in a gap, a second event
    for the same sample) is a false accept. ``_unknown_`` events are never accepts.
    ``latency_ms``: from the end of each found word (its last informative step) to its
    event's decision (the end of the step where the smoothed probability first crosses the
    threshold; negative when the model knows the word before it ends), median and p90;
    ``reported_latency_ms``: to the end of the step after the event closes, when ``edgerf
    stream`` prints it.
    """
    unknown = classes.index(UNKNOWN) if UNKNOWN in classes else -1
    tol = int(round(tolerance_s / period_s))
    keyword = [(int(s), int(e), int(stream.labels[e])) for s, e in zip(stream.starts, stream.ends)
               if stream.labels[e] != unknown]
    used, hits, onset, reported = set(), 0, [], []
    for s, e, y in keyword:
        match = next((k for k, ev in enumerate(events) if k not in used and ev.label == y
                      and ev.start <= e + tol and ev.end >= s), None)
        if match is not None:
            used.add(match)
            hits += 1
            # from the end of the word (its last informative step) to the end of the step at which
            # the event opens (the decision), and to the step at which it closes (when it is printed)
            onset.append((events[match].start - e) * period_s * 1e3)
            reported.append((events[match].end + 1 - e) * period_s * 1e3)
    accepts = [k for k, ev in enumerate(events) if ev.label != unknown]
    false_accepts = sum(k not in used for k in accepts)
    hours = len(stream) * period_s / 3600.0
    return {"keywords": len(keyword), "hits": hits, "misses": len(keyword) - hits,
            "miss_rate": (len(keyword) - hits) / len(keyword) if keyword else float("nan"),
            "false_accepts": false_accepts, "hours": hours,
            "fa_per_hour": false_accepts / hours if hours else float("nan"),
            "latency_ms": _percentiles(onset), "reported_latency_ms": _percentiles(reported)}


def _percentiles(ms: list[float]) -> dict:
    """Median and p90 of latencies in ms (None without any)."""
    if not ms:
        return {"median": None, "p90": None, "n": 0}
    return {"median": float(np.median(ms)), "p90": float(np.percentile(ms, 90)), "n": len(ms)}


def det_curve(test_probs: np.ndarray, test_stream, background_probs: np.ndarray, classes: list[str],
              period_s: float, thresholds=None, window: int = 3, merge: int = 0) -> list[dict]:
    """Miss rate (on the test stream) against false accepts per hour (on a background-only
    stream) at each decision threshold, events detected with ``window`` and ``merge`` as the
    operating point does: the curve a user picks an operating point on."""
    from edgerf.runtime.events import detect_events

    unknown = classes.index(UNKNOWN) if UNKNOWN in classes else -1
    hours = len(background_probs) * period_s / 3600.0
    rows = []
    for thr in thresholds if thresholds is not None else np.round(np.linspace(0.5, 0.99, 50), 3):
        km = keyword_metrics(detect_events(test_probs, classes, float(thr), window, merge=merge), test_stream,
                             classes, period_s)
        fa = sum(ev.label != unknown
                 for ev in detect_events(background_probs, classes, float(thr), window, merge=merge))
        rows.append({"threshold": float(thr), "miss_rate": km["miss_rate"], "stream_fa_per_hour": km["fa_per_hour"],
                     "fa_per_hour": fa / hours if hours else float("nan"), "background_hours": hours})
    return rows


def poisson_upper(k: int, confidence: float = 0.95) -> float:
    """The one-sided upper confidence bound of a Poisson mean after ``k`` events (exact: the
    mean at which seeing ``k`` or fewer has probability 1 - confidence; 2.996 for k = 0)."""
    def cdf(mu: float) -> float:
        term = total = math.exp(-mu)
        for i in range(1, k + 1):
            term *= mu / i
            total += term
        return total
    lo, hi = 0.0, k + 10.0 * math.sqrt(k + 1) + 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) > 1 - confidence else (lo, mid)
    return hi


def rate_per_hour(events: int, seconds: float) -> dict:
    """False accepts as the field should report them: the count, the distinct audio it was
    counted on, the rate per hour and its 95% upper bound (0 in 82 s bounds it only below 132/h)."""
    hours = seconds / 3600.0
    return {"false_accepts": int(events), "seconds": round(float(seconds), 1),
            "per_hour": events / hours if hours else float("nan"),
            "per_hour_upper95": poisson_upper(int(events)) / hours if hours else float("nan")}


def operating_point(curve: list[dict], max_fa_per_hour: float = 1.0) -> dict | None:
    """The lowest-miss threshold whose background false accepts stay at or under the target."""
    ok = [r for r in curve if r["fa_per_hour"] <= max_fa_per_hour]
    return min(ok, key=lambda r: (r["miss_rate"], r["threshold"])) if ok else None
