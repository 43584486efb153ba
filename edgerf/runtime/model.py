"""``StepModel``: one exported step graph with its state kept inside.

The state of step t feeds step t+1 and is never reset. Around the interpreter call:

- a frame with the wrong shape or a NaN/Inf is rejected (``FrameError``) or skipped
  (``on_bad_frame="skip"``, counted) and never reaches the state;
- every ``check_every`` steps the state is checked (finite, and inside its calibrated
  range with a wide margin) and, when healthy, copied aside as a snapshot; a broken
  state is restored from the last snapshot (counted in ``health``), so the model
  keeps working with no reset. Checking every step would cost as much as the rest
  of this wrapper; a bad state lives at most ``check_every`` steps;
- ``save_state`` / ``load_state`` persist the state atomically, checked against the
  manifest's shapes and the checkpoint it came from, so a reboot resumes where it was
  and a state from another model is refused.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import numpy as np

from edgerf.atomic import write_bytes
from edgerf.errors import ArtifactError, EdgerfError
from edgerf.features import featurizer
from edgerf.manifest import INPUT, read as read_manifest
from edgerf.metrics import softmax
from edgerf.runtime.backends import BACKENDS

STATE_FORMAT = "edgerf-state/1"
FLT_MAX = float(np.finfo(np.float32).max)


class FrameError(EdgerfError, ValueError):
    """A frame that must not reach the state: wrong shape, NaN or Inf."""


class StateError(EdgerfError):
    """A saved state that does not belong to this model or is damaged."""


class StepModel:
    def __init__(self, path: Path, manifest: dict, backend, batch: int, on_bad_frame: str,
                 check_every: int, range_margin: float):
        self.path, self.manifest, self.backend, self.batch = path, manifest, backend, batch
        self.state_names = [s["name"] for s in manifest["states"]]
        self.classes = list(manifest["model"]["classes"])
        self.features = manifest["inputs"][INPUT]["shape"][1]
        self.threshold = float(manifest.get("decision", {}).get("threshold", 0.9))
        if on_bad_frame not in ("raise", "skip"):
            raise ValueError("on_bad_frame must be 'raise' or 'skip'")
        self.on_bad_frame, self.check_every = on_bad_frame, check_every
        self._shapes = ((self.features,), (batch, self.features)) if batch == 1 else ((batch, self.features),)
        self._bounds = self._state_bounds(range_margin)
        self._featurizer = None
        self._snapshot = self.get_state()
        self.steps = 0
        self.health = {"bad_frames": 0, "state_restores": 0}

    # -- loading -------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, batch: int = 1, threads: int = 1, on_bad_frame: str = "raise",
             check_every: int = 32, range_margin: float = 1.0) -> "StepModel":
        """Open an exported artifact; the backend is chosen by the file's suffix.

        batch: independent streams stepped together (one state row each).
        range_margin: a state outside [lo - m*(hi-lo), hi + m*(hi-lo)] of its calibrated
        range [lo, hi] counts as broken (m = 1: twice the width ever seen in calibration).
        """
        path = Path(path)
        if not path.exists():
            raise ArtifactError(f"{path} does not exist.")
        backend_cls = BACKENDS.get(path.suffix)
        if backend_cls is None:
            raise ArtifactError(f"{path}: unknown artifact type {path.suffix!r}; "
                                f"supported: {', '.join(BACKENDS)}.")
        manifest = read_manifest(path)
        backend = backend_cls(path, manifest, batch, threads)
        return cls(path, manifest, backend, batch, on_bad_frame, check_every, range_margin)

    def _state_bounds(self, margin: float) -> list[tuple[float, float]]:
        out = []
        for s in self.manifest["states"]:
            if "range" not in s:      # finite bounds still catch Inf
                out.append((-FLT_MAX, FLT_MAX))
                continue
            lo, hi = s["range"]
            w = max(hi - lo, 1e-6)
            out.append((lo - margin * w, hi + margin * w))
        return out

    # -- stepping ------------------------------------------------------------------
    def step(self, frame: np.ndarray) -> np.ndarray | None:
        """One frame [D] (or [B, D] for a batch of streams) -> logits [C] (or [B, C]).

        Returns None for a skipped bad frame (``on_bad_frame="skip"``). ``probs``
        turns logits into class probabilities; they are not computed here because a
        softmax costs more than the rest of this wrapper on a small model.
        """
        x = frame if type(frame) is np.ndarray else np.asarray(frame, np.float32)
        if x.shape not in self._shapes:
            return self._bad(f"frame has shape {x.shape}; this model takes {self._shapes[-1]}")
        if not math.isfinite(x.sum()):
            return self._bad("frame contains NaN or Inf")
        logits = self.backend.step(x)
        self.steps += 1
        if self.steps % self.check_every == 0:
            self._check_and_snapshot()
        return logits[0].copy() if x.ndim == 1 else logits.copy()

    @staticmethod
    def probs(logits: np.ndarray) -> np.ndarray:
        return softmax(logits)

    def run(self, frames: np.ndarray) -> np.ndarray:
        """Step through frames [T, D] (batch 1); returns logits [T, C]. For scoring and tests."""
        out = np.empty((len(frames), len(self.classes)), np.float32)
        for t in range(len(frames)):
            out[t] = self.step(frames[t])
        return out

    def _bad(self, why: str):
        self.health["bad_frames"] += 1
        if self.on_bad_frame == "skip":
            return None
        raise FrameError(f"{why}; the frame was rejected and the state is unchanged.")

    def _healthy(self) -> bool:
        # NaN fails both comparisons, Inf fails its bound: one test covers all three
        return all(b[0] <= s.min() and s.max() <= b[1] for s, b in zip(self.backend.read_state(), self._bounds))

    def _check_and_snapshot(self) -> None:
        if self._healthy():
            self._snapshot = self.get_state()
        else:
            self.set_state(self._snapshot)
            self.health["state_restores"] += 1

    # -- state ---------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        """The state as float arrays (dequantised where the graph keeps it in int8/int16)."""
        return {n: np.array(s, np.float32) for n, s in zip(self.state_names, self.backend.read_state())}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        values = []
        for n, cur in zip(self.state_names, self.backend.read_state()):
            if n not in state:
                raise StateError(f"state has no tensor {n!r}; expected {self.state_names}")
            v = np.asarray(state[n], np.float32)
            if v.shape != cur.shape:
                raise StateError(f"state {n!r} has shape {v.shape}; this model needs {cur.shape}")
            values.append(v)
        self.backend.write_state(values)

    state = property(get_state, set_state)

    def _identity(self) -> dict:
        """What a saved state must match: the checkpoint and the state contract."""
        return {"checkpoint_sha256": self.manifest.get("source", {}).get("checkpoint_sha256"),
                "states": [[s["name"], s["shape"][1]] for s in self.manifest["states"]],
                "batch": self.batch}

    def save_state(self, path: str | os.PathLike) -> None:
        """Write the state atomically (npz with the model's identity inside)."""
        buf = io.BytesIO()
        meta = {"format": STATE_FORMAT, **self._identity(), "steps": self.steps}
        np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **self.get_state())
        write_bytes(path, buf.getvalue())

    def load_state(self, path: str | os.PathLike) -> None:
        """Resume from a saved state; refuses a state of another model or a damaged file."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["__meta__"]).decode())
                arrays = {k: z[k] for k in z.files if k != "__meta__"}
        except FileNotFoundError as e:
            raise StateError(f"no saved state at {path}") from e
        except Exception as e:
            raise StateError(f"{path} is not a readable edgerf state ({e}); start from the initial state "
                             "or restore a good copy.") from e
        if meta.get("format") != STATE_FORMAT:
            raise StateError(f"{path} is not an edgerf state file.")
        mine = self._identity()
        for key in ("checkpoint_sha256", "states", "batch"):
            if meta.get(key) != mine[key]:
                raise StateError(f"{path} belongs to another model ({key} differs: saved "
                                 f"{meta.get(key)!r}, this model {mine[key]!r}); refusing to load it.")
        for n, v in arrays.items():
            if not np.isfinite(v).all():
                raise StateError(f"{path}: state {n!r} holds NaN or Inf; refusing to load it.")
        self.set_state(arrays)
        self._snapshot = self.get_state()
        self.steps = int(meta.get("steps", 0))

    def reset_state(self) -> None:
        """Back to the initial state (the model never needs this; tests and tools may)."""
        self.set_state({s["name"]: np.full_like(b, s.get("init", 0.0))
                        for s, b in zip(self.manifest["states"], self.backend.read_state())})

    # -- features ------------------------------------------------------------------
    def featurize(self, raw: np.ndarray) -> np.ndarray:
        """Raw input (pixel rows, or PCM chunks of any length) -> frames, exactly as in
        training. Streaming: audio samples that do not fill a frame wait for the next call."""
        if self._featurizer is None:
            self._featurizer = featurizer(self.manifest["frame"])
        return self._featurizer(raw)
