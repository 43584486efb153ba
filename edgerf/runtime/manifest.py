"""The manifest: the state contract of an exported step model (JSON, numpy-free).

One module reads and writes it; export writes it (as a sidecar ``<artifact>.json``
and inside the artifact's metadata), the runtime and bench read it to bind tensors
by name. Schema ``edgerf-step/1``:

    format      "edgerf-step/1"
    artifact    file, runtime ("onnx" | "tflite"), precision ("fp32" | "int8" | ...), sha256
    model       family, hidden, layers, frontend (ReLU layers before the cells), readout
                (linear or gated), classes (names)
    inputs      {"x": {name, shape, dtype[, scale, zero_point]}}     batch dim is null (any)
    outputs     {"logits": {...}}
    states      [{name, input, output, shape, dtype, init, range[, scale, zero_point]}]
                bound by name, never by position; ``range`` is the calibrated
                [min, max] over a long unreset stream (the watchdog's reference)
    frame       the task spec: what a frame is (features, normalisation, period...)
    decision    {"threshold": ...}
    precision   the int8 plan and why it was chosen (per-state error figures)
    source      checkpoint_sha256, train_command, train_data and export_data (what was read:
                edgerf.data.source), test results of the checkpoint
    versions    edgerf, torch, onnx, onnxruntime... that produced it
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from edgerf.runtime.atomic import write_text
from edgerf.runtime.errors import ArtifactError

FORMAT = "edgerf-step/1"
METADATA_KEY = "edgerf.runtime.manifest"   # key in ONNX metadata_props / TFLite metadata
INPUT, OUTPUT = "x", "logits"


def state_io_names(state: str) -> tuple[str, str]:
    """Graph input and output names of a state tensor: the one place they are made."""
    return f"{state}_in", f"{state}_out"


# Artifact names: <base><suffix> for fp32, <base>.int8<suffix> for the integer plan;
# <base>.bundle.npz beside them (edgerf.runtime.bundle), <name>.json is each one's manifest.
INT8_TAG = ".int8"
ARTIFACT_SUFFIXES = (".onnx", ".tflite")


def artifact_name(base: str, suffix: str, int8: bool = False) -> str:
    """``("gru", ".onnx", True)`` -> ``gru.int8.onnx``: the one place artifact names are made."""
    return f"{base}{INT8_TAG if int8 else ''}{suffix}"


def is_int8(artifact: str | os.PathLike) -> bool:
    p = Path(artifact)
    return p.name.endswith(INT8_TAG + p.suffix)


def base_name(artifact: str | os.PathLike) -> str:
    """``gru.int8.tflite`` / ``gru.onnx`` / ``gru`` -> ``gru``."""
    name = Path(artifact).name
    for suffix in ARTIFACT_SUFFIXES:
        name = name.removesuffix(suffix)
    return name.removesuffix(INT8_TAG)


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


# Upper bounds far above any model edgerf makes, far below what would exhaust a device:
# a manifest is read before anything is allocated from it.
MAX_FEATURES = 1 << 16
MAX_CLASSES = 1 << 14
MAX_STATES = 64
MAX_STATE_SIZE = 1 << 20
MAX_MANIFEST_BYTES = 1 << 20
RUNTIMES = ("onnx", "tflite")


def _bad(where: str, field: str, why: str) -> ArtifactError:
    return ArtifactError(f"{where}: {field} {why}. Re-export the model with `edgerf export` "
                         "(a manifest is written by edgerf, never edited by hand).")


def _get(d: dict, key: str, kind, where: str, field: str):
    v = d.get(key) if isinstance(d, dict) else None
    if kind is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    elif kind is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    else:
        ok = isinstance(v, kind)
    if not ok:
        name = getattr(kind, "__name__", str(kind)).replace("float", "finite number")
        raise _bad(where, f"{field}.{key}", f"must be a {name}, not {v!r:.60}")
    return v


def _size(shape, where: str, field: str, limit: int) -> int:
    """A [null, N] shape (batch first, any size) with 1 <= N <= limit."""
    if not (isinstance(shape, list) and len(shape) == 2 and shape[0] is None and isinstance(shape[1], int)
            and not isinstance(shape[1], bool) and 1 <= shape[1] <= limit):
        raise _bad(where, f"{field}.shape", f"must be [null, N] with 1 <= N <= {limit}, not {shape!r:.60}")
    return shape[1]


def _quant(q, where: str, field: str) -> None:
    if q is None:
        return
    scale = _get(q, "scale", float, where, field)
    zp = _get(q, "zero_point", int, where, field)
    if not scale > 0 or abs(zp) > 1 << 16:
        raise _bad(where, field, f"needs scale > 0 and a small zero point, not {scale}, {zp}")


def validate(manifest, where: str = "manifest") -> dict:
    """Check every field a reader relies on (types, shapes, ranges, names, sizes); raise
    ArtifactError naming the field. Every reader of a manifest goes through here."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ArtifactError(f"{where} is not an edgerf step manifest (expected format {FORMAT}, got {got!r:.40}). "
                            "Re-export the model with `edgerf export`.")
    for key in ("artifact", "inputs", "outputs", "model", "frame", "decision", "source"):
        _get(manifest, key, dict, where, "manifest")
    art = manifest["artifact"]
    if _get(art, "runtime", str, where, "artifact") not in RUNTIMES:
        raise _bad(where, "artifact.runtime", f"must be one of {RUNTIMES}")
    _get(art, "file", str, where, "artifact")
    _get(art, "precision", str, where, "artifact")
    if "sha256" in art and not (isinstance(art["sha256"], str) and len(art["sha256"]) == 64):
        raise _bad(where, "artifact.sha256", "must be 64 hex digits")
    x, y = _validate_io(manifest, where)
    _validate_states(manifest, where, taken={x["name"], y["name"]})
    _validate_frame(manifest["frame"], x["shape"][1], where)
    t = _get(manifest["decision"], "threshold", float, where, "decision")
    if not 0 < t < 1:
        raise _bad(where, "decision.threshold", f"must lie in (0, 1), not {t}")
    if "checkpoint_sha256" in manifest["source"]:
        _get(manifest["source"], "checkpoint_sha256", str, where, "source")
    return manifest


def _validate_io(manifest: dict, where: str) -> tuple[dict, dict]:
    """The frame input and the logits output: float32 at the boundary, one logit per class."""
    classes = _get(manifest["model"], "classes", list, where, "model")
    if not (2 <= len(classes) <= MAX_CLASSES and all(isinstance(c, str) and c for c in classes)
            and len(set(classes)) == len(classes)):
        raise _bad(where, "model.classes", f"must be 2..{MAX_CLASSES} distinct non-empty names")
    x = _get(manifest["inputs"], INPUT, dict, where, "inputs")
    y = _get(manifest["outputs"], OUTPUT, dict, where, "outputs")
    for io, field in ((x, f"inputs.{INPUT}"), (y, f"outputs.{OUTPUT}")):
        _get(io, "name", str, where, field)
        if io.get("dtype") != "float32":
            raise _bad(where, f"{field}.dtype", "must be float32 (quantisation is described by 'quant')")
        _quant(io.get("quant"), where, f"{field}.quant")
    _size(x.get("shape"), where, f"inputs.{INPUT}", MAX_FEATURES)
    if _size(y.get("shape"), where, f"outputs.{OUTPUT}", MAX_CLASSES) != len(classes):
        raise _bad(where, f"outputs.{OUTPUT}.shape", f"must have one logit per class ({len(classes)})")
    return x, y


def _validate_states(manifest: dict, where: str, taken: set) -> None:
    """Each state: distinct tensor names, float32, a bounded size, a finite range holding its init."""
    states = _get(manifest, "states", list, where, "manifest")
    if not 1 <= len(states) <= MAX_STATES:
        raise _bad(where, "states", f"must list 1..{MAX_STATES} state tensors")
    for k, st in enumerate(states):
        field = f"states[{k}]"
        for key in ("name", "input", "output"):
            if _get(st, key, str, where, field) in taken and key != "name":
                raise _bad(where, f"{field}.{key}", "names a tensor twice")
            taken.add(st[key])
        if st.get("dtype") != "float32":
            raise _bad(where, f"{field}.dtype", "must be float32")
        _size(st.get("shape"), where, field, MAX_STATE_SIZE)
        if "init" in st:
            _get(st, "init", float, where, field)
        if "range" in st:
            r = st["range"]
            if not (isinstance(r, list) and len(r) == 2
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in r)
                    and r[0] < r[1]):
                raise _bad(where, f"{field}.range", f"must be [lo, hi] with finite lo < hi, not {r!r:.60}")
            if "init" in st and not r[0] <= st["init"] <= r[1]:
                raise _bad(where, f"{field}.init", f"{st['init']} lies outside its range {r}")
        _quant(st.get("quant"), where, f"{field}.quant")


def _validate_frame(frame: dict, width: int, where: str) -> None:
    """The frame normalisation the device applies: one value, or one per band (audio bands
    before ``stack`` frames are joined into one step of ``width`` features)."""
    stack = frame.get("stack", 1)
    if not (isinstance(stack, int) and not isinstance(stack, bool) and stack >= 1 and width % stack == 0):
        raise _bad(where, "frame.stack", f"must be a whole number of frames dividing {width}, not {stack!r:.40}")
    features = width // stack
    for key in ("mean", "std"):
        v = frame.get(key)
        vals = v if isinstance(v, list) else [v] if v is not None else []
        if v is not None and not (isinstance(v, (int, float, list)) and not isinstance(v, bool)
                                  and (not isinstance(v, list) or len(v) == features)
                                  and all(isinstance(e, (int, float)) and not isinstance(e, bool)
                                          and math.isfinite(e) for e in vals)
                                  and (key == "mean" or all(e > 0 for e in vals))):
            raise _bad(where, f"frame.{key}", f"must be a finite number or {features} of them (std > 0)")


def read(artifact: str | os.PathLike) -> dict:
    """The manifest of an artifact: its sidecar JSON, else the copy embedded in the file."""
    artifact = Path(artifact)
    side = sidecar_path(artifact)
    if side.exists():
        if side.stat().st_size > MAX_MANIFEST_BYTES:
            raise ArtifactError(f"{side} is {side.stat().st_size:,} bytes, far more than a manifest; re-export the model.")
        try:
            return validate(json.loads(side.read_text()), str(side))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise ArtifactError(f"{side} is not valid JSON ({str(e)[:120]}); re-export the model.") from e
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


# -- the export index ------------------------------------------------------------------
# ``<base>.export.json`` lists every file of one export with its SHA-256. Export removes
# the old index first, moves the new files in, and writes the index last: an index that
# is present and matches proves a complete set from one export; a folder whose files do
# not match it (a kill during the moves, a hand copy that mixed two exports) is refused.
INDEX_FORMAT = "edgerf-export/1"
STAGING_PREFIX = ".edgerf-export"


def index_path(folder: Path, base: str) -> Path:
    return Path(folder) / f"{base}.export.json"


def write_index(folder: Path, base: str, files: dict[str, str], checkpoint_sha256: str) -> Path:
    path = index_path(folder, base)
    write_text(path, json.dumps({"format": INDEX_FORMAT, "checkpoint_sha256": checkpoint_sha256,
                                 "files": files}, indent=1) + "\n")
    return path


def verify_export(artifact: Path) -> str:
    """Check the export an artifact belongs to: every file its index lists that is here is
    unchanged (a device may hold only the files it runs). Without an index (an export older than indices, or files copied alone)
    only the per-artifact checks apply, unless an interrupted export left its staging
    folder here, which is refused."""
    folder, base = artifact.parent, artifact.name.split(".")[0]
    path = index_path(folder, base)
    if not path.exists():
        if any(folder.glob(f"{STAGING_PREFIX}*")):
            raise ArtifactError(f"an export into {folder} was interrupted (its staging folder is still there and "
                                f"{path.name} is missing); run `edgerf export` again, which also cleans up.")
        return "no export index"
    try:
        index = json.loads(path.read_text()) if path.stat().st_size <= MAX_MANIFEST_BYTES else None
        files = index["files"] if isinstance(index, dict) and index.get("format") == INDEX_FORMAT else None
        if not isinstance(files, dict):
            raise ValueError("not an export index")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is damaged ({str(e)[:80]}); re-export.") from e
    if artifact.name not in files:
        raise ArtifactError(f"{artifact.name} is not part of the export {path.name} lists; re-export.")
    for name, digest in files.items():
        f = folder / str(name)
        if f.is_file() and file_sha256(f) != digest:
            raise ArtifactError(f"{f} is not the file the export index {path.name} lists: an interrupted export "
                                "or a copy that mixed two exports. Re-export, or copy the files of one export "
                                "together.")
    return "export index verified"


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
