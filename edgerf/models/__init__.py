"""The built-in models, shipped already exported so a fresh install works with no dataset.

Each built-in is a checkpoint trained by this project's own ``edgerf train`` (the exact
command, seed, data and accuracy are inside it and in every manifest: ``edgerf inspect``)
beside its exports (fp32 and int8, ONNX and TFLite, manifests) and its evaluation
bundle, so ``edgerf bench`` needs neither a dataset nor an export step:

- ``default-gru``: Sequential Fashion-MNIST, GRU-48, reset-free; what ``edgerf bench``
  runs with no arguments.
- ``kws-gru``: keyword spotting on Speech Commands (10 keywords + ``_unknown_``), GRU,
  reset-free; with ``kws-demo.wav``, a real 20 s recording of test-split clips with real
  background between them (``kws-demo.json`` says which word is where; ATTRIBUTION.md).

``python -m edgerf.models.build`` (host side, needs the full data) rebuilds every file
here from the checkpoints; a test checks that the shipped files match each other.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgerf.runtime.errors import ArtifactError
from edgerf.runtime.manifest import artifact_name

BUILTIN_DIR = Path(__file__).resolve().parent
BUILTINS = {
    "default-gru": "Sequential Fashion-MNIST GRU-48 (the `edgerf bench` default)",
    "kws-gru": "keyword spotter: Speech Commands, 10 keywords + _unknown_",
}
DEFAULT_CHECKPOINT = BUILTIN_DIR / "default-gru.pt"
KWS_CHECKPOINT = BUILTIN_DIR / "kws-gru.pt"
DEMO_RECORDING = BUILTIN_DIR / "kws-demo.wav"
DEMO_TRUTH = BUILTIN_DIR / "kws-demo.json"


def _stream_artifact(name: str, target: str | None = None) -> str:
    """What `edgerf stream <built-in>` runs: the graph of ``target``'s format when one is named,
    else the TFLite graph where a TFLite interpreter is installed, else the ONNX graph where
    ONNX Runtime is, else the TFLite graph on the numpy backend (numpy alone); int8, unless
    the export measured its int8 plan slower than fp32 (an a16w8 plan on CPU kernels: int8
    then pays in size, not speed), and numpy alone, which runs full int8 and fp32 only, gets
    fp32 then too."""
    from edgerf.runtime.targets import TARGETS
    if target in TARGETS:
        suffix = TARGETS[target].suffix
    else:               # no target, or one StepModel.load refuses by name
        tflite = any(TARGETS[t].present() for t in ("litert", "tflm")) or not TARGETS["ort"].present()
        suffix = ".tflite" if tflite else ".onnx"
    return artifact_name(name, suffix, int8=_int8_pays(BUILTIN_DIR / artifact_name(name, suffix, int8=True)))


def _int8_pays(int8: Path) -> bool:
    """Whether the export timed the chosen int8 plan of ``int8`` at most as slow as fp32 (its
    sidecar's precision report; no record: int8)."""
    import json
    try:
        p = json.loads(int8.with_name(int8.name + ".json").read_text())["precision"]
        row = next(t for t in p.get("tried", []) if t["plan"] == p["plan"])
        return row["closed_loop_us"] <= row["closed_loop_us_fp32"]
    except (OSError, ValueError, KeyError, StopIteration, TypeError):
        return True


def cache_dir() -> Path:
    """Where edgerf keeps what it builds on this machine (the arm64 emulation sysroot):
    ``$EDGERF_CACHE``, default ``~/.cache/edgerf``."""
    return Path(os.environ.get("EDGERF_CACHE", Path.home() / ".cache" / "edgerf"))


def builtin_checkpoint(name: str = "default-gru") -> Path:
    """The shipped checkpoint of a built-in; its exports sit beside it."""
    if name not in BUILTINS:
        raise ArtifactError(f"unknown built-in model {name!r}; built-ins: {', '.join(BUILTINS)}.")
    ckpt = BUILTIN_DIR / f"{name}.pt"
    if not (BUILTIN_DIR / _stream_artifact(name)).exists():
        raise ArtifactError(f"the built-in {name} is not exported in {BUILTIN_DIR}; this installation is "
                            "incomplete: reinstall edgerf (or run `python -m edgerf.models.build`).")
    return ckpt


def builtin_artifact(name: str, target: str | None = None) -> Path:
    """The artifact ``edgerf stream`` runs for a built-in name (on ``target``, when named)."""
    return builtin_checkpoint(name).with_name(_stream_artifact(name, target))


def is_builtin_name(model: str | os.PathLike) -> bool:
    """Whether ``model`` names a built-in rather than a file (a file of that name wins)."""
    return str(model) in BUILTINS and not Path(model).exists()


def checkpoint_path(checkpoint: str | os.PathLike) -> Path:
    """What a user's CHECKPOINT argument means: a built-in name's shipped checkpoint, else the path."""
    return builtin_checkpoint(str(checkpoint)) if is_builtin_name(checkpoint) else Path(checkpoint)


def model_path(model: str | os.PathLike, target: str | None = None) -> Path:
    """What a user's MODEL argument means: a built-in name's artifact (on ``target``), else the path."""
    return builtin_artifact(str(model), target) if is_builtin_name(model) else Path(model)
