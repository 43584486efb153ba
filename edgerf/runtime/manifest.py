"""The manifest: the state contract of an exported step model (JSON, numpy-free).

One module reads and writes it; export writes it (as a sidecar ``<artifact>.json``
and inside the artifact's metadata), the runtime and bench read it to bind tensors
by name. Schema ``edgerf-step/1``:

    format      "edgerf-step/1"
    artifact    file, runtime ("onnx" | "tflite"), precision ("fp32" | "int8" | ...), sha256
    model       family, hidden, layers, frontend (ReLU layers before the cells), readout
                (linear or gated), classes (names)
    inputs      {"x": {name, shape, dtype[, scale, zero_point]}}     batch dim is null (any)
    outputs     {"logits": {...}, "probs": {...}}   probs: softmax of the logits, computed in
                the graph (a float op after the int8 graph's DEQUANTIZE), so a device reads class
                probabilities with no per-step numpy; artifacts exported before it have none
    states      [{name, input, output, shape, dtype, init, range[, scale, zero_point]}]
                bound by name, never by position; ``range`` is the calibrated
                [min, max] over a long unreset stream (the watchdog's reference)
    frame       the task spec: what a frame is (features, normalisation, period...)
    decision    {"threshold": ..., "keywords": [classes that fire events; filler such as
                _unknown_ does not], "window": steps of probability smoothing, "merge":
                steps within which runs above threshold are one event, and
                "operating_point": how both were chosen on validation data (audio models
                trained by this edgerf)}
    precision   the int8 plan and why it was chosen (per-state error figures)
    source      checkpoint_sha256, train_command, train_data and export_data (what was read:
                edgerf.data.source), test results of the checkpoint
    versions    edgerf, torch, onnx, onnxruntime... that produced it

Two parts, one authority. The **contract** (``CONTRACT``: format, runtime and precision,
model and classes, inputs/outputs and their quantisation, states with their ranges and
quantisation, the frame spec and normalisation, the decision threshold, the checkpoint it
came from) is what changes what the model computes or how its output is read. It is
embedded in the artifact with a ``digest``: the SHA-256 of the artifact's bytes outside
the embedded text plus the canonical contract, so neither the graph nor the contract can
change unseen, sidecar or not. Everything else (the precision report, provenance,
versions, parity and timings) only reports. The sidecar ``<artifact>.json`` carries both
and the artifact's whole-file hash; a sidecar whose contract disagrees with the embedded
one is refused with both values named, and nothing in it is ever used to compute.
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
PROBS = "probs"            # the optional output: softmax(logits), computed in the graph

# The contract: top-level key -> True (all of it) or the fields of it that compute.
CONTRACT = {"format": True, "artifact": ("runtime", "precision"), "model": True, "inputs": True,
            "outputs": True, "states": True, "frame": True, "decision": True, "source": ("checkpoint_sha256",)}
DIGEST_PLACEHOLDER = "0" * 64      # written first, replaced in place by the digest (same length)
MAX_ARTIFACT_BYTES = 1 << 28       # 256 MB: far above any step model, far below a device's memory


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


def file_sha256(path: str | os.PathLike, max_bytes: int = MAX_ARTIFACT_BYTES) -> str:
    """SHA-256 of a regular file of at most ``max_bytes`` (a FIFO or /dev/zero is refused, not hashed forever)."""
    from edgerf.runtime.files import open_regular

    h = hashlib.sha256()
    with open_regular(path, max_bytes, "a file edgerf wrote") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dumps(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, sort_keys=False)


def embedded_json(manifest: dict) -> str:
    """The one-line form stored inside an artifact (``format`` first, so it can be found;
    ASCII, so a character offset is a byte offset), with a placeholder digest that ``seal``
    replaces once the artifact's bytes are final."""
    return json.dumps({"format": manifest["format"], **manifest, "digest": DIGEST_PLACEHOLDER})


def contract(manifest: dict) -> dict:
    """The part of a manifest that computes (see the module docstring)."""
    out = {}
    for key, fields in CONTRACT.items():
        if key in manifest:
            v = manifest[key]
            out[key] = v if fields is True else {f: v[f] for f in fields if isinstance(v, dict) and f in v}
    return out


def _digest(outside: bytes, manifest: dict) -> str:
    canonical = json.dumps(contract(manifest), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(outside + canonical.encode()).hexdigest()


def _embedded_span(data: bytes) -> tuple[int, int, dict] | None:
    """(start, end, manifest) of the manifest text embedded in an artifact's bytes, or None."""
    i = data.find(b'{"format": "' + FORMAT.encode())
    if i < 0 or METADATA_KEY.encode() not in data:
        return None
    try:
        text = data[i:i + MAX_MANIFEST_BYTES].decode("ascii", errors="replace")
        obj, n = json.JSONDecoder().raw_decode(text)
    except (json.JSONDecodeError, RecursionError):
        return None
    return (i, i + n, obj) if isinstance(obj, dict) else None


def seal(artifact: str | os.PathLike) -> str:
    """Write the digest into an artifact whose embedded manifest holds the placeholder
    (export calls this once the bytes are final). Returns the digest."""
    from edgerf.runtime.atomic import write_bytes

    data = Path(artifact).read_bytes()
    span = _embedded_span(data)
    if span is None or span[2].get("digest") != DIGEST_PLACEHOLDER:
        raise ArtifactError(f"{artifact} has no embedded manifest to seal.")
    i, j, obj = span
    digest = _digest(data[:i] + data[j:], obj)
    k = data.index(DIGEST_PLACEHOLDER.encode(), i, j)
    write_bytes(artifact, data[:k] + digest.encode() + data[k + 64:])
    return digest


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
    for key in ("artifact", "inputs", "outputs", "model", "frame", "decision"):
        _get(manifest, key, dict, where, "manifest")
    art = manifest["artifact"]
    if _get(art, "runtime", str, where, "artifact") not in RUNTIMES:
        raise _bad(where, "artifact.runtime", f"must be one of {RUNTIMES}")
    _get(art, "file", str, where, "artifact")
    _get(art, "precision", str, where, "artifact")
    if "sha256" in art and not (isinstance(art["sha256"], str) and len(art["sha256"]) == 64):
        raise _bad(where, "artifact.sha256", "must be 64 hex digits")
    x, y = _validate_io(manifest, where)
    _validate_states(manifest, where, taken={x["name"], y["name"], *([PROBS] if PROBS in manifest["outputs"] else [])})
    _validate_frame(manifest["frame"], x["shape"][1], where)
    t = _get(manifest["decision"], "threshold", float, where, "decision")
    if not 0 < t < 1:
        raise _bad(where, "decision.threshold", f"must lie in (0, 1), not {t}")
    for key, lo, default in (("window", 1, 3), ("merge", 0, 0)):
        w = manifest["decision"].get(key, default)
        if isinstance(w, bool) or not isinstance(w, int) or not lo <= w <= 1000:
            raise _bad(where, f"decision.{key}", f"must be a whole number of steps in {lo}..1000, not {w!r}")
    kw = manifest["decision"].get("keywords")
    if kw is not None and not (isinstance(kw, list) and kw and all(k in manifest["model"]["classes"] for k in kw)):
        raise _bad(where, "decision.keywords", "must list classes of the model (those that fire events)")
    if isinstance(manifest.get("source"), dict) and "checkpoint_sha256" in manifest["source"]:
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
    extra = set(manifest["outputs"]) - {OUTPUT, PROBS}
    if extra:
        raise _bad(where, "outputs", f"names {sorted(extra)[0]!r}; the outputs are {OUTPUT!r} and optionally {PROBS!r}")
    if PROBS in manifest["outputs"]:
        p = _get(manifest["outputs"], PROBS, dict, where, "outputs")
        if _get(p, "name", str, where, f"outputs.{PROBS}") != PROBS or p.get("dtype") != "float32" or "quant" in p:
            raise _bad(where, f"outputs.{PROBS}", f"must be the float32 tensor {PROBS!r}")
        if _size(p.get("shape"), where, f"outputs.{PROBS}", MAX_CLASSES) != len(classes):
            raise _bad(where, f"outputs.{PROBS}.shape", f"must have one probability per class ({len(classes)})")
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
        if "range" in st:
            # a calibrated trajectory moves: a range narrower than one quantisation step of the
            # state (or degenerate) cannot hold it, and would make the watchdog restore forever
            lo, hi = st["range"]
            step = st["quant"]["scale"] if isinstance(st.get("quant"), dict) else 0.0
            if hi - lo < max(step, 1e-6 * max(1.0, abs(lo), abs(hi))):
                raise _bad(where, f"{field}.range", f"{st['range']} is narrower than one quantisation step of the "
                           "state (or degenerate): it cannot hold a calibrated trajectory")


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


def read(artifact: str | os.PathLike, allow_unverified: bool = False) -> dict:
    """The manifest of an artifact: see ``read_verified``."""
    return read_verified(artifact, allow_unverified)[0]


def read_verified(artifact: str | os.PathLike, allow_unverified: bool = False) -> tuple[dict, str]:
    """(manifest, integrity) of an artifact. The embedded contract, its digest checked
    against the artifact's bytes, is the authority; the sidecar adds the report and must
    agree with it field for field. An artifact without a verifiable manifest is refused
    unless ``allow_unverified`` (then ``integrity`` starts with "UNVERIFIED")."""
    from edgerf.runtime.files import read_bytes, read_json

    artifact = Path(artifact)
    if not artifact.exists():
        raise ArtifactError(f"{artifact} does not exist.")
    data = read_bytes(artifact, MAX_ARTIFACT_BYTES, "an artifact")
    span = _embedded_span(data)
    side = sidecar_path(artifact)
    sidecar = validate(read_json(side, MAX_MANIFEST_BYTES, "a manifest"), str(side)) if side.exists() else None
    if span is not None and isinstance(span[2].get("digest"), str) and span[2]["digest"] != DIGEST_PLACEHOLDER:
        i, j, embedded = span
        if _digest(data[:i] + data[j:], embedded) != embedded["digest"]:
            raise ArtifactError(f"{artifact} was changed after export: its bytes or its embedded manifest no "
                                "longer match the digest sealed into it. Re-export, or copy the file again from "
                                "its export.")
        embedded = validate(embedded, f"{artifact} (embedded manifest)")
        _check_name(artifact, embedded)
        if sidecar is None:
            return embedded, "embedded manifest verified (digest); no sidecar"
        _agree(contract(sidecar), contract(embedded), side, artifact)
        if sidecar["artifact"].get("sha256") not in (None, hashlib.sha256(data).hexdigest()):
            raise ArtifactError(f"{side} records another file hash than {artifact.name} has: the sidecar comes "
                                "from another export. Copy the artifact and its .json together, or delete the .json.")
        merged = dict(sidecar)      # the report from the sidecar; what computes from the artifact
        for k, v in contract(embedded).items():
            merged[k] = {**sidecar.get(k, {}), **v} if CONTRACT[k] is not True else v
        return merged, "embedded manifest verified (digest); sidecar agrees"
    if not allow_unverified:
        raise ArtifactError(f"{artifact} carries no verifiable manifest (none embedded, or one from before "
                            "manifests were sealed), so nothing proves what it computes. Re-export it with "
                            "`edgerf export`, or pass allow_unverified=True (--allow-unverified) to run it anyway.")
    m = sidecar if sidecar is not None else validate(span[2], f"{artifact} (embedded manifest)") if span else None
    if m is None:
        raise ArtifactError(f"{artifact} has no manifest (no {side.name} beside it and none embedded). "
                            "Export it with `edgerf export`, which writes both.")
    _check_name(artifact, m)
    return m, "UNVERIFIED: no sealed manifest (run with allow_unverified)"


def _agree(side: dict, embedded: dict, side_path: Path, artifact: Path, where: str = "") -> None:
    """Refuse the first field where the sidecar's contract differs from the embedded one."""
    if isinstance(side, dict) and isinstance(embedded, dict):
        for k in dict.fromkeys([*embedded, *side]):
            _agree(side.get(k, "<missing>"), embedded.get(k, "<missing>"), side_path, artifact,
                   f"{where}.{k}" if where else str(k))
        return
    if isinstance(side, list) and isinstance(embedded, list) and len(side) == len(embedded):
        for k, (a, b) in enumerate(zip(side, embedded)):
            _agree(a, b, side_path, artifact, f"{where}[{k}]")
        return
    if side != embedded:
        raise ArtifactError(f"{side_path.name} disagrees with the manifest sealed into {artifact.name}: {where} is "
                            f"{json.dumps(side)[:80]} in the sidecar but {json.dumps(embedded)[:80]} in the artifact. "
                            "The artifact's own copy counts; delete or restore the .json (re-export to regenerate it).")


def _check_name(artifact: Path, m: dict) -> None:
    """A file name that claims another format or precision than the manifest is refused
    (``gru.int8.onnx`` copied over ``gru.onnx``); a plain rename (``model.tflite``) is fine."""
    runtime, precision = m["artifact"]["runtime"], m["artifact"]["precision"]
    if {".onnx": "onnx", ".tflite": "tflite"}.get(artifact.suffix) != runtime:
        raise ArtifactError(f"{artifact.name} is named as {artifact.suffix or 'no known format'} but holds a "
                            f"{runtime} graph; name it *.{runtime}.")
    recorded = m["artifact"].get("file", "")
    claims_int8 = is_int8(artifact)
    # an export whose int8 ladder found no plan in budget writes the fp32 graph under the
    # .int8 name, and says so: that file under its own name is what was exported
    if (claims_int8 and precision == "fp32" and artifact.name != recorded) or (
            base_name(artifact) == base_name(recorded) and claims_int8 != is_int8(recorded)):
        raise ArtifactError(f"{artifact.name} is named as {'an int8' if claims_int8 else 'an fp32'} artifact but "
                            f"holds the {precision} plan (exported as {recorded}); a copy over the wrong name. "
                            f"Restore {recorded}, or rename it plainly.")


def read_embedded(artifact: Path) -> dict | None:
    """The manifest stored inside an ONNX or TFLite file (unverified), or None."""
    from edgerf.runtime.files import read_bytes

    span = _embedded_span(read_bytes(Path(artifact), MAX_ARTIFACT_BYTES, "an artifact"))
    return span[2] if span else None


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
    unchanged (a device may hold only the files it runs). Without an index (an export older than
    indices, or files copied alone)
    only the per-artifact checks apply, unless an interrupted export left its staging
    folder here, which is refused."""
    folder, base = artifact.parent, artifact.name.split(".")[0]
    path = index_path(folder, base)
    if not path.exists():
        if any(folder.glob(f"{STAGING_PREFIX}*")):
            raise ArtifactError(f"an export into {folder} was interrupted (its staging folder is still there and "
                                f"{path.name} is missing); run `edgerf export` again, which also cleans up.")
        return "no export index"
    from edgerf.runtime.files import FileRefused, read_json
    try:
        index = read_json(path, MAX_MANIFEST_BYTES, "an export index")
        files = index["files"] if isinstance(index, dict) and index.get("format") == INDEX_FORMAT else None
        if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise ValueError("not an export index")
    except (FileRefused, ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"{path} is damaged or not an index ({str(e)[:120]}); re-export.") from e
    if artifact.name not in files:
        raise ArtifactError(f"{artifact.name} is not part of the export {path.name} lists; re-export.")
    for name, digest in files.items():
        f = folder / Path(name).name          # an index lists names in its own folder, never paths
        if f.is_file() and file_sha256(f) != digest:
            raise ArtifactError(f"{f} is not the file the export index {path.name} lists: an interrupted export "
                                "or a copy that mixed two exports. Re-export, or copy the files of one export "
                                "together.")
    return "export index verified"


def make(*, artifact: str, runtime: str, precision: str, model: dict, classes: list[str],
         input_size: int, state_names: list[str], state_sizes: list[int], frame: dict,
         threshold: float, plan: dict, source: dict, versions: dict, keywords: list[str] | None = None,
         operating_point: dict | None = None,
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
                             **({"quant": io_quant[OUTPUT]} if io_quant and OUTPUT in io_quant else {})},
                    PROBS: {"name": PROBS, "shape": [None, len(classes)], "dtype": "float32"}},
        "states": states,
        "frame": frame,
        "decision": {"threshold": threshold, **({"keywords": list(keywords)} if keywords is not None else {}),
                     **({"window": int(operating_point.get("window", 3)),
                         "merge": int(operating_point.get("merge", 0)), "operating_point": operating_point}
                        if operating_point is not None else {})},
        "precision": plan,
        "source": source,
        "versions": versions,
    }
