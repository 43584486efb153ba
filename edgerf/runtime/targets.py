"""Targets: what runs an artifact, defined by what it computes.

An int8 graph's numbers depend on who runs it: LiteRT hands int8 graphs to XNNPACK by
default, its builtin kernels and its reference kernels round differently, and TFLite
Micro (what a microcontroller runs) differs again. A target is one interpreter with one
kernel configuration; ``TARGETS`` lists them with the formats they run and the extra that
installs them. ``tests/test_targets.py`` measures which targets compute the same next
state from the same state, and this table claims only what that test shows (``SAME_AS``).

``StepModel.load(path, target=...)`` runs on a named target; without one it takes the
first target of ``DEFAULTS`` for the file's format that is installed, and says which
(``model.target``).
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

from edgerf.runtime.errors import ArtifactError


@dataclass(frozen=True)
class Target:
    name: str
    suffix: str            # the artifact format it runs
    interpreter: str
    kernels: str           # the kernel configuration: what decides its arithmetic
    extra: str             # what installs it
    module: str            # imported to tell whether it is present
    host_emulated: bool = False   # stands for a device it is not: its timings here are not that device's

    def present(self) -> bool:
        return _importable(self.module)


# tflite-micro is published only as dated x86_64 pre-releases: pin the exact build.
TFLM_PIN = "tflite-micro==0.dev20261023182759"

TARGETS = {t.name: t for t in (
    Target("litert", ".tflite", "LiteRT (ai-edge-litert)", "XNNPACK delegate for int8 and fp32 (LiteRT's default)",
           'pip install "edgerf[runtime-litert]"', "ai_edge_litert"),
    Target("litert-nodelegate", ".tflite", "LiteRT (ai-edge-litert)", "builtin optimised kernels, no default delegate",
           'pip install "edgerf[runtime-litert]"', "ai_edge_litert"),
    Target("litert-ref", ".tflite", "LiteRT (ai-edge-litert)", "builtin reference kernels",
           'pip install "edgerf[runtime-litert]"', "ai_edge_litert"),
    Target("tflm", ".tflite", "TFLite Micro (tflite-micro's Python interpreter)",
           "TFLite Micro's reference kernels (what a microcontroller runs)", f'pip install "{TFLM_PIN}"',
           "tflite_micro", host_emulated=True),
    Target("numpy", ".tflite", "edgerf's own executor (edgerf.runtime.tflite_numpy), numpy only",
           "TFLite Micro's reference integer arithmetic (int8, 16x8); float32 numpy (fp32)", "numpy (always there)",
           "numpy", host_emulated=True),
    Target("ort", ".onnx", "ONNX Runtime, InferenceSession(path) with default options",
           "CPU execution provider, default graph optimisations",
           'pip install onnxruntime (or "edgerf[runtime]")', "onnxruntime"),
    Target("onnx-ref", ".onnx", "onnx.reference (the ONNX specification in numpy)", "reference implementation",
           'pip install onnx', "onnx"),
)}

DEFAULTS = {".tflite": ("litert", "tflm", "numpy"), ".onnx": ("ort", "onnx-ref")}

# Pairs of targets measured to compute bit-identical next states from the same state on
# every shipped int8 artifact (tests/test_targets.py): ONNX Runtime and onnx.reference do,
# and so do TFLite Micro and edgerf's numpy executor (which implements its arithmetic). No
# other two TFLite targets do: LiteRT's XNNPACK, builtin and reference kernels and TFLite
# Micro each round some int8 elements their own way.
SAME_AS: frozenset[frozenset[str]] = frozenset({frozenset({"ort", "onnx-ref"}), frozenset({"tflm", "numpy"})})


def listing() -> str:
    """Every target by name, with what tells them apart, for option help: one list, so no help
    text forgets one."""
    notes = {"litert": "XNNPACK", "tflm": "TFLite Micro", "numpy": "numpy alone"}
    return ", ".join(f"{n} ({notes[n]})" if n in notes else n for n in TARGETS)


def known(names, option: str) -> tuple[str, ...]:
    """Target names an option gave, each once, in order; a ValueError naming ``option`` for
    one that is not a target (before any work: it failed as a KeyError after minutes)."""
    for n in names:
        if n not in TARGETS:
            raise ValueError(f"{option} {n!r} is not a target; known: {', '.join(TARGETS)}")
    return tuple(dict.fromkeys(names))


@functools.lru_cache(maxsize=None)
def _importable(module: str) -> bool:
    """Whether ``module`` imports here (a real import: a package that is there but broken
    counts as absent)."""
    try:
        importlib.import_module(module)
        return True
    except Exception:
        return False


def choose(suffix: str, name: str | None = None) -> Target:
    """The target for an artifact of format ``suffix``: ``name`` if given, else the first
    installed default. Refuses an unknown name, another format's target, or an absent one."""
    if name is not None:
        t = TARGETS.get(name)
        if t is None:
            raise ArtifactError(f"unknown target {name!r}; known: {', '.join(TARGETS)}.")
        if t.suffix != suffix:
            raise ArtifactError(f"target {name} runs {t.suffix} artifacts, not {suffix}; for {suffix}: "
                                f"{', '.join(n for n, u in TARGETS.items() if u.suffix == suffix)}.")
        if not t.present():
            raise ArtifactError(f"target {name} ({t.interpreter}) is not installed here: {t.extra}.")
        return t
    for n in DEFAULTS.get(suffix, ()):
        if TARGETS[n].present():
            return TARGETS[n]
    wanted = " or ".join(TARGETS[n].extra for n in DEFAULTS.get(suffix, ()))
    raise ArtifactError(f"no interpreter for {suffix} artifacts is installed: {wanted}.")


def installed(suffix: str | None = None) -> list[str]:
    """Names of the targets present here (for one format, or all)."""
    return [n for n, t in TARGETS.items() if (suffix is None or t.suffix == suffix) and t.present()]


def runnable(suffix: str) -> bool:
    """Whether one of the format's default targets is installed (imports the first found only)."""
    return any(TARGETS[n].present() for n in DEFAULTS.get(suffix, ()))


def representatives(suffix: str) -> list[str]:
    """The installed targets of a format, leaving out any measured bit-identical to one before
    it (``SAME_AS``): what an export judges its int8 plans on by default."""
    out: list[str] = []
    for n in installed(suffix):
        if not any(frozenset({n, m}) in SAME_AS for m in out):
            out.append(n)
    return out
