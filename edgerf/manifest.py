"""The manifest: the state contract of an exported step model (JSON, numpy-free).

One module reads and writes it; export writes it (as a sidecar ``<artifact>.json``
and inside the artifact's metadata), the runtime and bench read it to bind tensors
by name. Schema ``edgerf-step/1``:

    format      "edgerf-step/1"
    artifact    file, runtime ("onnx" | "tflite"), precision ("fp32" | "int8" | ...), sha256
    model       family, hidden, layers, classes (names)
    inputs      {"x": {name, shape, dtype[, scale, zero_point]}}     batch dim is null (any)
    outputs     {"logits": {...}}
    states      [{name, input, output, shape, dtype, init, range[, scale, zero_point]}]
                bound by name, never by position; ``range`` is the calibrated
                [min, max] over a long unreset stream (the watchdog's reference)
    frame       the task spec: what a frame is (features, normalisation, period...)
    decision    {"threshold": ...}
    precision   the int8 plan and why it was chosen (per-state error figures)
    source      checkpoint_sha256, train_command, test results of the checkpoint
    versions    edgerf, torch, onnx, onnxruntime... that produced it
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from edgerf.atomic import write_text
from edgerf.errors import ArtifactError

FORMAT = "edgerf-step/1"
METADATA_KEY = "edgerf.manifest"   # key in ONNX metadata_props / TFLite metadata
INPUT, OUTPUT = "x", "logits"


def state_io_names(state: str) -> tuple[str, str]:
    """Graph input and output names of a state tensor: the one place they are made."""
    return f"{state}_in", f"{state}_out"


def sidecar_path(artifact: str | os.PathLike) -> Path:
    """``gru.int8.onnx`` -> ``gru.int8.onnx.json`` (one rule for every format, so the
    ONNX and TFLite exports of one model never share a sidecar)."""
    p = Path(artifact)
    return p.with_name(p.name + ".json")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dumps(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, sort_keys=False)


def embedded_json(manifest: dict) -> str:
    """The one-line form stored inside an artifact (``format`` first, so it can be found)."""
    return json.dumps({"format": manifest["format"], **manifest})


def write(artifact: str | os.PathLike, manifest: dict) -> Path:
    path = sidecar_path(artifact)
    write_text(path, dumps(manifest) + "\n")
    return path


def validate(manifest: dict, where: str = "manifest") -> dict:
    """Check the fields the runtime relies on; raise ArtifactError naming what is wrong."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{where} is not an edgerf step manifest (expected format {FORMAT}, "
                            f"got {manifest.get('format') if isinstance(manifest, dict) else type(manifest).__name__}). "
                            "Re-export the model with `edgerf export`.")
    for key in ("inputs", "outputs", "states", "model", "frame"):
        if key not in manifest:
            raise ArtifactError(f"{where} has no '{key}' section; re-export the model.")
    if INPUT not in manifest["inputs"] or OUTPUT not in manifest["outputs"]:
        raise ArtifactError(f"{where} must name input '{INPUT}' and output '{OUTPUT}'.")
    for s in manifest["states"]:
        for key in ("name", "input", "output", "shape", "dtype"):
            if key not in s:
                raise ArtifactError(f"{where}: state {s.get('name', '?')} lacks '{key}'.")
    return manifest


def read(artifact: str | os.PathLike) -> dict:
    """The manifest of an artifact: its sidecar JSON, else the copy embedded in the file."""
    artifact = Path(artifact)
    side = sidecar_path(artifact)
    if side.exists():
        try:
            return validate(json.loads(side.read_text()), str(side))
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{side} is not valid JSON ({e}); re-export the model.") from e
    embedded = read_embedded(artifact)
    if embedded is None:
        raise ArtifactError(f"{artifact} has no manifest (no {side.name} beside it and none embedded). "
                            "Export it with `edgerf export`, which writes both.")
    return validate(embedded, f"{artifact} (embedded manifest)")


def read_embedded(artifact: Path) -> dict | None:
    """The manifest stored inside an ONNX or TFLite file, or None."""
    if not artifact.exists():
        raise ArtifactError(f"{artifact} does not exist.")
    data = artifact.read_bytes()
    key = METADATA_KEY.encode()
    # Both formats store the JSON verbatim after the key; a scan avoids needing the
    # onnx or flatbuffers packages on a device just to read a manifest.
    i = data.find(b'{"format": "' + FORMAT.encode())
    if i < 0 or key not in data:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(data[i:].decode("utf-8", errors="replace"))
        return obj
    except json.JSONDecodeError:
        return None


def make(*, artifact: str, runtime: str, precision: str, model: dict, classes: list[str],
         input_size: int, state_names: list[str], state_sizes: list[int], frame: dict,
         threshold: float, plan: dict, source: dict, versions: dict,
         state_ranges: dict[str, list[float]] | None = None,
         state_quant: dict[str, dict] | None = None, io_quant: dict[str, dict] | None = None) -> dict:
    """Assemble a manifest; every writer goes through here so the schema lives in one place."""
    states = []
    for name, size in zip(state_names, state_sizes):
        i, o = state_io_names(name)
        entry = {"name": name, "input": i, "output": o, "shape": [None, size],
                 "dtype": "float32", "init": 0.0}
        if state_ranges and i in state_ranges:
            entry["range"] = state_ranges[i]
        if state_quant and name in state_quant:
            entry["quant"] = state_quant[name]
        states.append(entry)
    return {
        "format": FORMAT,
        "artifact": {"file": artifact, "runtime": runtime, "precision": precision},
        "model": {**model, "classes": list(classes)},
        "inputs": {INPUT: {"name": INPUT, "shape": [None, input_size], "dtype": "float32",
                           **({"quant": io_quant[INPUT]} if io_quant and INPUT in io_quant else {})}},
        "outputs": {OUTPUT: {"name": OUTPUT, "shape": [None, len(classes)], "dtype": "float32",
                             **({"quant": io_quant[OUTPUT]} if io_quant and OUTPUT in io_quant else {})}},
        "states": states,
        "frame": frame,
        "decision": {"threshold": threshold},
        "precision": plan,
        "source": source,
        "versions": versions,
    }
