"""``StepModel``: one exported step graph with its state kept inside.

The state of step t feeds step t+1 and is never reset. Around the interpreter call:

- a frame with the wrong shape or a NaN/Inf is rejected (``FrameError``) or skipped
  (``on_bad_frame="skip"``, counted) and never reaches the state;
- every ``check_every`` steps the state is checked (finite, and inside its calibrated
  range with a wide margin) and, when healthy, copied aside as a snapshot; a broken
  state is restored from the last snapshot (counted in ``health``), so the model
  keeps working with no reset. Checking every step would cost as much as the rest
  of this wrapper; a bad state lives at most ``check_every`` steps. A state the graph
  keeps in integers (full int8 TFLite) holds no NaN and cannot leave the range its type
  spans; when that range lies inside the healthy one there is nothing to check, and
  the model skips the check (``watched`` is False);
- ``save_state`` / ``load_state`` persist the state atomically, checked against the
  manifest's shapes and the checkpoint it came from, so a reboot resumes where it was
  and a state from another model is refused.
"""

from __future__ import annotations

import collections
import io
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np

from edgerf.runtime.atomic import write_bytes
from edgerf.runtime.errors import ArtifactError, EdgerfError
from edgerf.runtime.events import FILLER_CLASSES
from edgerf.runtime.files import FileRefused, loads, read_npz
from edgerf.runtime.features import featurizer
from edgerf.runtime.manifest import INPUT, read_verified, validate
from edgerf.runtime.progress import ticks
from edgerf.runtime.metrics import softmax
from edgerf.runtime.backends import BACKENDS, TARGET_BACKENDS
from edgerf.runtime.targets import choose as choose_target

STATE_FORMAT = "edgerf-state/1"
ALARM_WINDOW = 16      # watchdog checks over which restoring on more than half raises the alarm
FLT_MAX = float(np.finfo(np.float32).max)
_F32 = np.dtype(np.float32)


def _quiet_frame_check() -> None:
    """The frame check's sum of squares overflows on a frame of huge values, which it then
    refuses with a FrameError; numpy's RuntimeWarning would only repeat that (and np.errstate
    around every step costs more than the check). Installed per model, not at import, so a
    caller's warnings.catch_warnings block cannot have dropped it."""
    warnings.filterwarnings("ignore", "overflow encountered in dot", RuntimeWarning, __name__)


def _integer_state_within(carried, bounds: tuple[float, float]) -> bool:
    """Whether a state the interpreter carries as ``carried`` (dtype, scale, zero point;
    None: float) can only hold values inside ``bounds``: its type's whole range,
    dequantised, lies within them."""
    if carried is None:
        return False
    dtype, scale, zp = carried
    info = np.iinfo(dtype)
    return bounds[0] <= (info.min - zp) * scale and (info.max - zp) * scale <= bounds[1]


MAX_BATCH = 1 << 16        # streams stepped together: a gateway's sensors, not a typo's millions
MAX_THREADS = 1024


def _check_count(name: str, value, most: int) -> None:
    """A whole number in [1, most], else a ValueError naming it (batch 0 loaded a model of no
    streams; -1 failed inside LiteRT; 2.5 as a TypeError)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= most:
        raise ValueError(f"{name} must be a whole number from 1 to {most:,}, not {value!r}")


class FrameError(EdgerfError, ValueError):
    """A frame that must not reach the state: wrong shape, NaN or Inf."""


class StateError(EdgerfError):
    """A saved state that does not belong to this model or is damaged."""


MAX_STATE_META_BYTES = 1 << 16


def _keep_refused(path: Path) -> str:
    """Move a refused state file (a regular file or a link) aside as NAME.refused, so the state
    saved next does not destroy what it held (another model's state, evidence of damage); what
    the refusal message adds. A FIFO, device or directory is left where it is: no state is
    ever written over one."""
    try:
        if not (path.is_symlink() or path.is_file()):
            return ""
        kept = path.with_name(path.name + ".refused")
        os.replace(path, kept)
        return f" Kept it as {kept}."
    except OSError as e:
        return f" (It could not be kept aside: {e.strerror or e}.)"


class StepModel:
    def __init__(self, path: Path, manifest: dict, backend, batch: int, on_bad_frame: str,
                 check_every: int, range_margin: float):
        self.path, self.manifest, self.backend, self.batch = path, manifest, backend, batch
        _quiet_frame_check()
        self.state_names = [s["name"] for s in manifest["states"]]
        self.classes = list(manifest["model"]["classes"])
        self.features = manifest["inputs"][INPUT]["shape"][1]
        self.threshold = float(manifest.get("decision", {}).get("threshold", 0.9))
        self.window = int(manifest.get("decision", {}).get("window", 3))      # steps of probability smoothing
        self.merge = int(manifest.get("decision", {}).get("merge", 0))        # steps within which runs are one event
        # the classes that fire events: the manifest's, else every class but the filler
        self.keywords = list(manifest.get("decision", {}).get("keywords")
                             or [c for c in self.classes if c not in FILLER_CLASSES])
        if on_bad_frame not in ("raise", "skip"):
            raise ValueError("on_bad_frame must be 'raise' or 'skip'")
        self.on_bad_frame, self.check_every = on_bad_frame, check_every
        self._shapes = ((self.features,), (batch, self.features)) if batch == 1 else ((batch, self.features),)
        self._bounds = self._state_bounds(range_margin)
        # from the interpreter's own tensors, not the manifest: a wrong manifest cannot turn it off
        self.watched = any(not _integer_state_within(c, b) for c, b in zip(backend.carried_states(), self._bounds))
        self._featurizer = None
        self._backend_step, self._fresh = backend.step, backend.fresh    # the hot path, looked up once
        self._backend_step_many = getattr(backend, "step_many", None) or self._step_each
        # the graph computes the class probabilities itself (exported with them, and the
        # backend reads them; its outputs were checked against the manifest's at load):
        # step_many(probs=True) then runs no softmax in numpy
        self.graph_probs = backend.probs
        self._snapshot = self.get_state()
        self.steps = 0
        self.health = {"bad_frames": 0, "state_restores": 0}
        self._recent_restores = collections.deque(maxlen=ALARM_WINDOW)
        self.integrity = "unverified"
        self.target = getattr(backend, "name", "?")

    # -- loading -------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, batch: int = 1, threads: int = 1, on_bad_frame: str = "raise",
             check_every: int = 32, range_margin: float = 1.0, allow_unverified: bool = False,
             target: str | None = None) -> "StepModel":
        """Open an exported artifact; the backend is chosen by the file's suffix.

        batch: independent streams stepped together (one state row each).
        range_margin: a state outside [lo - m*(hi-lo), hi + m*(hi-lo)] of its calibrated
        range [lo, hi] counts as broken (m = 1: twice the width ever seen in calibration).
        allow_unverified: run an artifact whose manifest is not sealed into it (then
        ``integrity`` says UNVERIFIED); by default such an artifact is refused.
        target: what runs it (``edgerf.runtime.targets``: litert, litert-nodelegate, litert-ref,
        tflm, ort, onnx-ref); default: the first installed default for the format
        (``model.target`` says which).
        """
        path = Path(path)
        _check_count("batch", batch, MAX_BATCH)
        _check_count("threads", threads, MAX_THREADS)
        if not path.exists():
            raise ArtifactError(f"{path} does not exist.")
        backend_cls = BACKENDS.get(path.suffix)
        if backend_cls is None:
            raise ArtifactError(f"{path}: unknown artifact type {path.suffix!r}; "
                                f"supported: {', '.join(BACKENDS)}.")
        manifest, integrity = read_verified(path, allow_unverified)
        chosen = choose_target(path.suffix, target)
        backend = TARGET_BACKENDS[chosen.name](path, manifest, batch, threads, target=chosen.name)
        model = cls(path, manifest, backend, batch, on_bad_frame, check_every, range_margin)
        model.integrity, model.target = integrity, chosen.name
        return model

    @classmethod
    def for_export(cls, path: str | os.PathLike, manifest: dict, threads: int = 1,
                   target: str | None = None) -> "StepModel":
        """A graph being exported, with the manifest it is to carry (neither embedded nor hashed
        yet): the export's parity gate and precision ladder run their candidates through this,
        the same backend and watchdog a device runs, on ``target`` (default: the format's
        default), so what they check is what ships."""
        path = Path(path)
        manifest = validate(json.loads(json.dumps(manifest)), str(path))   # as a device will read it
        chosen = choose_target(path.suffix, target)
        backend = TARGET_BACKENDS[chosen.name](path, manifest, 1, threads, target=chosen.name)
        model = cls(path, manifest, backend, 1, "raise", 32, 1.0)
        model.target = chosen.name
        return model

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
        # Checked as the graph will see it: float32 (a float64 1e300 is Inf there).
        if type(frame) is not np.ndarray or frame.dtype is not _F32:
            frame = self._as_float32(frame)
            if frame is None:
                return None
        if frame.shape not in self._shapes:
            return self._bad(f"frame has shape {frame.shape}; this model takes {self._shapes[-1]}")
        one = frame.ndim == 1
        # sum of squares: one BLAS call (0.3 us, a third of x.sum()); it is not finite when
        # an element is NaN or Inf, or so large (> 1.8e19) that the float32 graph overflows
        if not math.isfinite(frame.dot(frame) if one else np.vdot(frame, frame)):
            return self._bad("frame contains NaN, Inf or values beyond 1e19")
        logits = self._backend_step(frame)
        self.steps += 1
        if self.watched and self.steps % self.check_every == 0:
            self._check_and_snapshot()
        if self._fresh:               # the backend handed out a new array: no copy needed
            return logits[0] if one else logits
        return logits[0].copy() if one else logits.copy()

    def step_many(self, frames: np.ndarray, probs: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Frames [T, D] of one stream (batch 1), in order -> ``(logits [n, C], stepped)``
        (``probs``: class probabilities instead, the graph's own where ``graph_probs``, else
        the softmax of the logits): what
        T calls of ``step`` give, at a chunk's cost: the frames are checked once as a block,
        the backend steps them in a loop of its own (LiteRT: nothing but the interpreter's
        calls per frame) into one logits array, and the watchdog checks after the same steps
        as ``step``'s. ``stepped``: None when every frame took a step, else the
        indices of those that did (a chunk with a bad frame goes frame by frame, so a bad
        frame raises or is skipped exactly as in ``step``). ``logits`` is a new array."""
        if self.batch != 1:
            raise ValueError(f"step_many steps one stream; this model steps {self.batch} at once: use step "
                             "with frames [B, D].")
        try:
            frames = np.asarray(frames)
        except (TypeError, ValueError) as e:          # ragged rows: no step at all
            self._bad(f"frames are not an array [T, D] of numbers ({str(e)[:80]})")
            return np.empty((0, len(self.classes)), np.float32), np.empty(0, np.int64)
        if frames.ndim < 2:           # one frame [D] (or a scalar, refused below as a frame)
            frames = frames.reshape(1, -1)
        n = len(frames)
        clean = frames.dtype == _F32 and frames.shape == (n, self.features) and math.isfinite(np.vdot(frames, frames))
        if not clean:
            rows = [self.step(f) for f in frames]
            stepped = [k for k, r in enumerate(rows) if r is not None]
            out = np.array([rows[k] for k in stepped], np.float32).reshape(len(stepped), len(self.classes))
            if probs:                 # frame by frame: the softmax of the logits ``step`` gave
                softmax(out, out=out)
            return out, (None if len(stepped) == n else np.asarray(stepped, np.int64))
        frames = np.ascontiguousarray(frames)
        out = np.empty((n, len(self.classes)), np.float32)
        in_graph = probs and self.graph_probs
        t = 0
        while t < n:
            # up to the watchdog's next check, so it reads the state after the same steps as step's
            k = n - t if not self.watched else min(n - t, self.check_every - self.steps % self.check_every)
            self._backend_step_many(frames[t:t + k], out[t:t + k], in_graph)
            self.steps, t = self.steps + k, t + k
            if self.watched and self.steps % self.check_every == 0:
                self._check_and_snapshot()
        if probs and not in_graph:
            softmax(out, out=out)
        return out, None

    def _step_each(self, frames: np.ndarray, out: np.ndarray, probs: bool = False) -> None:
        """A backend without a chunk loop of its own: its step (``probs``: step_probs), frame by frame."""
        step = self.backend.step_probs if probs else self._backend_step
        for k in range(len(frames)):
            out[k] = step(frames[k])[0]

    def _as_float32(self, frame) -> np.ndarray | None:
        try:
            arr = np.asarray(frame)
            if arr.dtype.kind in "fiu":
                with np.errstate(over="ignore", invalid="ignore"):
                    return np.ascontiguousarray(arr, np.float32)
        except (TypeError, ValueError) as e:
            return self._bad(f"frame is not an array of numbers ({str(e)[:80]})")
        # outside the try: the refusal (a FrameError, a ValueError) is not counted twice
        return self._bad(f"frame has dtype {arr.dtype}; frames are real numbers")

    @staticmethod
    def probs(logits: np.ndarray) -> np.ndarray:
        return softmax(logits)

    def run(self, frames: np.ndarray, states: bool = False, progress=None):
        """Step through frames [T, D] (batch 1); returns logits [T, C], and with ``states`` also
        the state after each step, one [T, S_k] float array per state (the closed-loop
        trajectory the export's parity gate compares with torch). ``progress(n)`` is called
        as steps are done."""
        out = np.empty((len(frames), len(self.classes)), np.float32)
        traj = [np.empty((len(frames), s["shape"][1]), np.float32) for s in self.manifest["states"]] if states else []
        for t in ticks(len(frames), progress):
            out[t] = self.step(frames[t])
            for k, s in enumerate(self.backend.read_state() if states else ()):
                traj[k][t] = s[0]
        return (out, traj) if states else out

    def _bad(self, why: str):
        self.health["bad_frames"] += 1
        if self.on_bad_frame == "skip":
            return None
        raise FrameError(f"{why}; the frame was rejected and the state is unchanged.")

    def _healthy(self, state: list[np.ndarray]) -> bool:
        # NaN fails both comparisons, Inf fails its bound: one test covers all three
        return all(lo <= s.min() and s.max() <= hi for s, (lo, hi) in zip(state, self._bounds))

    def _unhealthy_reason(self, state: dict[str, np.ndarray]) -> str | None:
        for (n, v), (lo, hi) in zip(state.items(), self._bounds):
            if not np.isfinite(v).all():
                return f"state {n!r} holds NaN or Inf"
            if not (lo <= float(v.min()) and float(v.max()) <= hi):
                return (f"state {n!r} spans [{float(v.min()):.4g}, {float(v.max()):.4g}], outside its healthy "
                        f"range [{lo:.4g}, {hi:.4g}] (the calibrated range with its margin)")
        return None

    def _check_and_snapshot(self) -> None:
        # the state is read once, checked, and kept (this runs every check_every steps: a
        # second read and dequantisation cost 1.4k aarch64 instructions per step on a GRU-128)
        state = self.backend.read_state()
        healthy = self._healthy(state)
        self._recent_restores.append(not healthy)
        if healthy:
            self._snapshot = self._as_dict(state)
            return
        self.set_state(self._snapshot)
        self.health["state_restores"] += 1
        if len(self._recent_restores) == ALARM_WINDOW and sum(self._recent_restores) > ALARM_WINDOW // 2:
            # restoring on most checks means the range, not the state, is wrong for this stream:
            # say so once, and from then on restore only a non-finite state (never forever)
            self.health["alarm"] = (f"the watchdog restored the state on {sum(self._recent_restores)} of the last "
                                    f"{ALARM_WINDOW} checks: the calibrated state range does not fit this stream. "
                                    "Range checks are off from here (NaN/Inf still restored); re-export with "
                                    "calibration data like this stream.")
            self._bounds = [(-FLT_MAX, FLT_MAX)] * len(self._bounds)
            self._recent_restores.clear()

    # -- state ---------------------------------------------------------------------
    def get_state(self) -> dict[str, np.ndarray]:
        """The state as float arrays (dequantised where the graph keeps it in int8/int16)."""
        return self._as_dict(self.backend.read_state())

    def _as_dict(self, state: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Copies: a backend may hand out its live buffers."""
        return {n: np.array(s, np.float32) for n, s in zip(self.state_names, state)}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        values = []
        for n, cur in zip(self.state_names, self.backend.read_state()):
            if n not in state:
                raise StateError(f"state has no tensor {n!r}; expected {self.state_names}")
            v = np.asarray(state[n], np.float32)
            if v.shape != cur.shape:
                raise StateError(f"state {n!r} has shape {v.shape}; this model needs {cur.shape}")
            if not np.isfinite(v).all():
                raise StateError(f"state {n!r} holds NaN or Inf; the state was left unchanged")
            values.append(v)
        self.backend.write_state(values)

    state = property(get_state, set_state)

    def _identity(self) -> dict:
        """What a saved state must match: the checkpoint and the state contract."""
        return {"checkpoint_sha256": self.manifest.get("source", {}).get("checkpoint_sha256"),
                "states": [[s["name"], s["shape"][1]] for s in self.manifest["states"]],
                "batch": self.batch}

    def save_state(self, path: str | os.PathLike) -> None:
        """Write the state atomically (npz with the model's identity inside). An unhealthy
        state is never written: the last healthy snapshot is saved instead (counted in
        ``health["unhealthy_saves"]``), so a reboot never resumes into a broken state."""
        if self._unhealthy_reason(self.get_state()) is not None:
            self.set_state(self._snapshot)
            self.health["unhealthy_saves"] = self.health.get("unhealthy_saves", 0) + 1
        buf = io.BytesIO()
        meta = {"format": STATE_FORMAT, **self._identity(), "steps": self.steps}
        np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **self.get_state())
        write_bytes(path, buf.getvalue())

    def load_state(self, path: str | os.PathLike) -> None:
        """Resume from a saved state; refuses (StateError, state unchanged) a state of another
        model, a damaged file, or a state outside its healthy range. ``resume`` is the
        recovery path a device wants."""
        path = Path(path)
        try:
            # a regular file about the size of this model's state, checked before anything is read
            z = read_npz(path, 2 * self._state_bytes() + MAX_STATE_META_BYTES, "a state of this model")
            meta = loads(bytes(z.pop("__meta__")).decode(), f"{path}: metadata")
            arrays = z
        except FileNotFoundError as e:
            raise StateError(f"no saved state at {path}") from e
        except (FileRefused, KeyError, UnicodeDecodeError, ValueError) as e:
            raise StateError(f"{path} is not a readable edgerf state ({str(e)[:200]}); start from the initial "
                             "state or restore a good copy.") from e
        if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
            raise StateError(f"{path} is not an edgerf state file.")
        mine = self._identity()
        for key in ("checkpoint_sha256", "states", "batch"):
            if meta.get(key) != mine[key]:
                raise StateError(f"{path} belongs to another model ({key} differs: saved "
                                 f"{meta.get(key)!r}, this model {mine[key]!r}); refusing to load it.")
        if set(arrays) != set(self.state_names):
            raise StateError(f"{path} holds tensors {sorted(arrays)}; this model's state is {self.state_names}.")
        for n, cur in zip(self.state_names, self.backend.read_state()):
            if arrays[n].shape != cur.shape or arrays[n].dtype.kind != "f":
                raise StateError(f"{path}: state {n!r} is {arrays[n].dtype} {arrays[n].shape}; this model needs "
                                 f"float {cur.shape}.")
        why = self._unhealthy_reason({n: arrays[n].astype(np.float32) for n in self.state_names})
        if why is not None:
            raise StateError(f"{path}: {why}; refusing to load it (the state is unchanged).")
        steps = meta.get("steps", 0)
        self.set_state(arrays)
        self._snapshot = self.get_state()
        self.steps = steps if isinstance(steps, int) and steps >= 0 else 0

    def resume(self, path: str | os.PathLike) -> bool:
        """Start from the state saved at ``path`` if it is this model's and healthy; else from
        the initial state, counted in ``health["refused_states"]`` (the reason in
        ``health["last_refusal"]``), so a device never stays down over a bad state file.
        A missing file is a first boot, not a refusal. A refused file (another model's state, a
        damaged one) is kept as ``NAME.refused`` before this model's state is ever saved over
        it. Returns whether the file was used."""
        path = Path(path)
        if not path.exists() and not path.is_symlink():
            return False
        try:
            self.load_state(path)
            return True
        except Exception as e:        # any file at all: a counted refusal and a fresh start, never down
            self._initial_state()
            self._snapshot = self.get_state()
            self.health["refused_states"] = self.health.get("refused_states", 0) + 1
            self.health["last_refusal"] = str(e) + _keep_refused(path)
            return False

    def _state_bytes(self) -> int:
        return sum(int(np.prod(s.shape)) * 4 for s in self.backend.read_state())

    def _initial_state(self) -> None:
        """Back to the initial state: only when a saved state is refused (``resume``)."""
        self.set_state({s["name"]: np.full_like(b, s.get("init", 0.0))
                        for s, b in zip(self.manifest["states"], self.backend.read_state())})

    # -- features ------------------------------------------------------------------
    def featurize(self, raw: np.ndarray) -> np.ndarray:
        """Raw input (pixel rows, or PCM chunks of any length) -> frames, exactly as in
        training. Streaming: audio samples that do not fill a frame wait for the next call."""
        if self._featurizer is None:
            self._featurizer = featurizer(self.manifest["frame"])
        return self._featurizer(raw)
