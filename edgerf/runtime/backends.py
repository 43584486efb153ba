"""Interpreter backends: run one step of a step graph with the state kept in numpy
buffers that the backend reads and writes in place (no per-step allocation).

A backend knows the graph's tensor names from the manifest and nothing about
models; ``StepModel`` adds validation, snapshots and persistence on top.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from edgerf.runtime.errors import ArtifactError
from edgerf.runtime.manifest import INPUT, OUTPUT, PROBS


def ort_session(src, threads: int = 1):
    """An ONNX Runtime CPU session (path or bytes) as every edgerf run makes it: ``threads``
    intra-op threads, no spinning, quiet. Nothing else departs from the defaults: what
    ships opens in a plain ``InferenceSession(path)`` (a test opens every plan so)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(str(src) if isinstance(src, (str, os.PathLike)) else src, so,
                                providers=["CPUExecutionProvider"])


def litert_interpreter():
    """(package name, Interpreter class): ai-edge-litert, else the older tflite-runtime that
    some devices still carry. ImportError when neither is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return "ai-edge-litert", Interpreter
    except ImportError:  # pragma: no cover - devices with only the old package
        from tflite_runtime.interpreter import Interpreter
        return "tflite-runtime", Interpreter

class OnnxBackend:
    """ONNX Runtime with IOBinding over numpy buffers.

    Two bindings are made once: A reads state buffers ``s0`` and writes ``s1``; B reads
    ``s1`` and writes ``s0``. Steps alternate A, B, A... so the state of step t feeds step
    t+1 with no copy and no rebinding; only the frame is copied into its buffer.
    """

    name = "onnxruntime"
    fresh = False          # step returns the bound logits buffer, overwritten by the next step
    probs = False          # step_probs reads the graph's probabilities output (when it has one)

    def __init__(self, path: Path, manifest: dict, batch: int, threads: int = 1, target: str = "ort"):
        try:
            import onnxruntime  # noqa: F401  (a clear message before anything else)
        except ImportError as e:
            raise ArtifactError(f"{path} needs ONNX Runtime: pip install onnxruntime (or 'edgerf[runtime]'), "
                                "or run the .tflite artifact with LiteRT.") from e

        try:
            self.session = ort_session(path, threads)
        except Exception as e:
            raise ArtifactError(f"onnxruntime cannot load {path}: {str(e).splitlines()[0][:200]}") from e
        bound = [*self.session.get_inputs(), *self.session.get_outputs()]
        _check_io(path, manifest, {i.name: i.shape for i in self.session.get_inputs()},
                  {o.name: o.shape for o in self.session.get_outputs()},
                  {t.name: ORT_DTYPES.get(t.type, t.type) for t in bound})
        states = manifest["states"]
        D = manifest["inputs"][INPUT]["shape"][1]
        C = manifest["outputs"][OUTPUT]["shape"][1]
        self.x = np.zeros((batch, D), np.float32)
        self.logits = np.zeros((batch, C), np.float32)
        self.probs = PROBS in manifest["outputs"]
        self.probs_buffer = np.zeros((batch, C), np.float32)
        self.buffers = [[np.zeros((batch, s["shape"][1]), np.float32) for s in states] for _ in range(2)]
        self.bindings = []
        for src, dst in ((0, 1), (1, 0)):
            b = self.session.io_binding()
            _bind(b.bind_input, INPUT, self.x)
            _bind(b.bind_output, OUTPUT, self.logits)
            if self.probs:
                _bind(b.bind_output, PROBS, self.probs_buffer)
            for k, s in enumerate(states):
                _bind(b.bind_input, s["input"], self.buffers[src][k])
                _bind(b.bind_output, s["output"], self.buffers[dst][k])
            self.bindings.append(b)
        self.current = 0   # index of the buffer set that holds the current state

    def carried_states(self) -> list[None]:
        """The state is fed back as float buffers (any quantisation is inside the graph)."""
        return [None] * len(self.buffers[0])

    def read_state(self) -> list[np.ndarray]:
        """The current state as float arrays (here: the live buffers themselves)."""
        return self.buffers[self.current]

    def write_state(self, values: list[np.ndarray]) -> None:
        for buf, v in zip(self.buffers[self.current], values):
            np.copyto(buf, v)

    def step(self, x: np.ndarray) -> np.ndarray:
        """Copy the frame in, run one step, flip the state buffers; returns the logits buffer."""
        np.copyto(self.x, x)
        self.session.run_with_iobinding(self.bindings[self.current])
        self.current ^= 1
        return self.logits

    def step_probs(self, x: np.ndarray) -> np.ndarray:
        """``step``, returning the graph's probabilities buffer."""
        self.step(x)
        return self.probs_buffer


def _bind(fn, name: str, arr: np.ndarray) -> None:
    fn(name, "cpu", 0, arr.dtype, list(arr.shape), arr.ctypes.data)


# What an edgerf graph's bound tensors hold: float frames, logits and probabilities at its
# boundary; states float, or (TFLite's int8 and 16x8 plans) carried quantised.
FLOAT_STATES, QUANTISED_STATES = ("float32",), ("float32", "int8", "int16")
ORT_DTYPES = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(int16)": "int16"}


def _check_io(path, manifest, inputs: dict, outputs: dict, dtypes: dict | None = None,
              state_dtypes: tuple = FLOAT_STATES) -> None:
    """The graph must have exactly the tensors the manifest names (bound by name), and, given
    ``dtypes`` (name -> numpy dtype name), of the types an edgerf graph has: a graph from
    elsewhere with a uint8 output failed inside ONNX Runtime's binding, or ran on onnx.reference
    and its uint8 logits were read as scores."""
    want_in = {INPUT} | {s["input"] for s in manifest["states"]}
    want_out = {OUTPUT} | {s["output"] for s in manifest["states"]} | (set(manifest["outputs"]) & {PROBS})
    if set(inputs) != want_in or set(outputs) != want_out:
        raise ArtifactError(
            f"{path} does not match its manifest: graph inputs {sorted(inputs)} / outputs {sorted(outputs)}, "
            f"manifest names {sorted(want_in)} / {sorted(want_out)}. Re-export the model.")
    for s in manifest["states"]:
        shape = inputs[s["input"]]
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != s["shape"][1]):
            raise ArtifactError(f"{path}: state {s['input']} has shape {shape} in the graph but "
                                f"{s['shape']} in the manifest. Re-export the model.")
    if dtypes is not None:
        states = {n for st in manifest["states"] for n in (st["input"], st["output"])}
        for name, dtype in sorted(dtypes.items()):
            allowed = state_dtypes if name in states else ("float32",)
            if dtype not in allowed:
                raise ArtifactError(f"{path}: tensor {name!r} holds {dtype}; an edgerf graph's is "
                                    f"{' or '.join(allowed)}. Not an edgerf export: re-export the model.")


class TFLiteBackend:
    """LiteRT (ai-edge-litert; tflite_runtime as a fallback). Quantised graphs take and
    return int8/int16 tensors: the frame is quantised once in numpy into preallocated
    buffers, the logits dequantised, and a quantised state is fed back as is (no
    requantisation). ``set_tensor``/``get_tensor`` measured faster here than views
    from ``tensor()``, which must be re-fetched around every ``invoke``.
    """

    name = "litert"
    fresh = True           # step returns a new array every call
    probs = False          # step_many/step_probs read the graph's probabilities output
    # target -> LiteRT's op resolver (None: its default, which delegates to XNNPACK)
    RESOLVERS = {"litert": None, "litert-nodelegate": "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "litert-ref": "BUILTIN_REF"}

    def __init__(self, path: Path, manifest: dict, batch: int, threads: int = 1, target: str = "litert"):
        try:
            self.name, Interpreter = litert_interpreter()
        except ImportError as e:
            raise ArtifactError(f"{path} needs a LiteRT interpreter: pip install ai-edge-litert "
                                "(or tflite-runtime on devices that have nothing else).") from e
        kwargs = {}
        if self.RESOLVERS[target] is not None:
            module = __import__(Interpreter.__module__, fromlist=["OpResolverType"])
            kwargs["experimental_op_resolver_type"] = getattr(module.OpResolverType, self.RESOLVERS[target])
        try:
            it = Interpreter(model_path=str(path), num_threads=threads, **kwargs)
        except Exception as e:
            raise ArtifactError(f"LiteRT cannot load {path}: {str(e).splitlines()[0][:200]}") from e
        ins = {d["name"]: d for d in it.get_input_details()}
        outs = {d["name"]: d for d in it.get_output_details()}
        _check_io(path, manifest, {k: list(d["shape"]) for k, d in ins.items()},
                  {k: list(d["shape"]) for k, d in outs.items()},
                  {k: np.dtype(d["dtype"]).name for k, d in (ins | outs).items()}, QUANTISED_STATES)
        if batch != 1:
            for d in ins.values():
                it.resize_tensor_input(d["index"], [batch, int(d["shape"][1])])
        it.allocate_tensors()
        self.it = it
        ins = {d["name"]: d for d in it.get_input_details()}
        outs = {d["name"]: d for d in it.get_output_details()}
        self._x, self._out = ins[INPUT], outs[OUTPUT]
        self._pairs = [(ins[s["input"]], outs[s["output"]]) for s in manifest["states"]]
        self._links = [(i["index"], o["index"]) for i, o in self._pairs]
        D = int(self._x["shape"][1])
        self._xshape = (batch, D)
        self._xq = _Quantizer(self._x, (batch, D)) if self._x["dtype"] != np.float32 else None
        self.write_state([np.zeros((batch, int(i["shape"][1])), np.float32) for i, _ in self._pairs])

        self._xi, self._oi = self._x["index"], self._out["index"]
        if PROBS in outs and outs[PROBS]["dtype"] == np.float32:
            self.probs, self._pi = True, outs[PROBS]["index"]
        raw = getattr(it, "_interpreter", None)
        if all(hasattr(raw, f) for f in ("SetTensor", "GetTensor", "Invoke")):
            # The interpreter's own bindings: the public invoke() first checks (by reference
            # count) that no numpy view of its buffers is alive, which this backend never makes
            self._set, self._get, self._invoke = raw.SetTensor, raw.GetTensor, raw.Invoke
        else:
            self._set, self._get, self._invoke = it.set_tensor, it.get_tensor, it.invoke
        if self._xq is not None or self._out["dtype"] != np.float32:
            self.step = self._step_quantised     # an artifact with integer frames/logits at its boundary
            self.step_many = None                # (not one edgerf exports): StepModel steps it frame by frame
            self.probs = False

    def step(self, x: np.ndarray) -> np.ndarray:
        """Float frame in, float logits out (quantised inside the graph when it is integer):
        the hot path is the interpreter's own calls and nothing else."""
        set_, get = self._set, self._get
        set_(self._xi, x[None] if x.ndim == 1 else x)
        self._invoke()
        for i, o in self._links:
            set_(i, get(o))
        return get(self._oi)                         # a new array: callers may keep it

    def _step_quantised(self, x: np.ndarray) -> np.ndarray:
        set_, get = self._set, self._get
        x = x[None] if x.ndim == 1 else x
        set_(self._xi, self._xq(x) if self._xq is not None else x)
        self._invoke()
        for i, o in self._links:
            set_(i, get(o))
        raw = get(self._oi)
        if raw.dtype == np.float32:
            return raw
        scale, zp = self._out["quantization"]
        return (raw - np.float32(zp)) * np.float32(scale)

    def step_probs(self, x: np.ndarray) -> np.ndarray:
        """``step``, returning the graph's probabilities."""
        self.step(x)
        return self._get(self._pi)

    def step_many(self, xs: np.ndarray, out: np.ndarray, probs: bool = False) -> None:
        """Float frames [T, D] -> logits (``probs``: the graph's probabilities) into ``out``
        [T, C], stepped in order (batch 1): per frame the interpreter's own calls and nothing else."""
        set_, get, invoke, xi, links = self._set, self._get, self._invoke, self._xi, self._links
        oi = self._pi if probs else self._oi
        for k in range(len(xs)):
            set_(xi, xs[k:k + 1])
            invoke()
            for i, o in links:
                set_(i, get(o))
            out[k] = get(oi)[0]

    def carried_states(self) -> list[tuple | None]:
        """Per state, (integer dtype, scale, zero point) of the tensor fed back between steps,
        or None for a float state."""
        return [None if i["dtype"] == np.float32 else (i["dtype"], *i["quantization"]) for i, _ in self._pairs]

    def read_state(self) -> list[np.ndarray]:
        return [dequantize_tensor(i, self.it.get_tensor(i["index"])) for i, _ in self._pairs]

    def write_state(self, values: list[np.ndarray]) -> None:
        for (i, _), val in zip(self._pairs, values):
            self.it.set_tensor(i["index"], quantize_tensor(i, np.asarray(val, np.float32)))


class TFLMBackend:
    """TFLite Micro's Python interpreter (``tflite-micro``): the kernels a microcontroller runs,
    on this host. Batch 1; tensors are bound by position, their names and quantisation read
    from the model file (``tflite_numpy.read_model``)."""

    name = "tflm"
    fresh = True
    probs = False

    def __init__(self, path: Path, manifest: dict, batch: int, threads: int = 1, target: str = "tflm"):
        try:
            from tflite_micro.python.tflite_micro import runtime
        except ImportError as e:
            raise ArtifactError(f"{path} on TFLite Micro needs tflite-micro (pip install tflite-micro).") from e
        if batch != 1:
            raise ArtifactError("TFLite Micro runs one stream (batch 1).")
        data, model = _read_tflite(path)
        t = model["tensors"]
        # the graph's names against the manifest first: another graph is refused as on every target
        _check_io(path, manifest, {t[i]["name"]: [1, None] for i in model["inputs"]},
                  {t[i]["name"]: [1, None] for i in model["outputs"]}, _tflite_dtypes(model), QUANTISED_STATES)
        ins = {t[i]["name"]: (k, tensor_detail(t[i])) for k, i in enumerate(model["inputs"])}
        outs = {t[i]["name"]: (k, tensor_detail(t[i])) for k, i in enumerate(model["outputs"])}
        try:
            self.it = runtime.Interpreter.from_bytes(data, arena_size=_tflm_arena(data))
        except Exception as e:
            raise ArtifactError(f"TFLite Micro cannot load {path}: {str(e).splitlines()[0][:200]}") from e
        self._x, self._y = ins[INPUT], outs[OUTPUT]
        if PROBS in outs and outs[PROBS][1]["dtype"] == np.float32:
            self.probs, self._p = True, outs[PROBS][0]
        self._links = [(ins[s["input"]], outs[s["output"]][0]) for s in manifest["states"]]
        self._shape = tuple(t[model["inputs"][self._x[0]]]["shape"])
        self._state = [np.zeros(tuple(t[model["inputs"][k]]["shape"]), d["dtype"]) for (k, d), _ in self._links]

    def step(self, x: np.ndarray) -> np.ndarray:
        k, d = self._x
        x = np.asarray(x, np.float32).reshape(self._shape)
        self.it.set_input(x if d["dtype"] == np.float32 else quantize_tensor(d, x), k)
        for ((ki, _), _), s in zip(self._links, self._state):
            self.it.set_input(s, ki)
        self.it.invoke()
        self._state = [self.it.get_output(ko) for _, ko in self._links]
        k, d = self._y
        out = self.it.get_output(k)
        return out if d["dtype"] == np.float32 else dequantize_tensor(d, out)

    def step_probs(self, x: np.ndarray) -> np.ndarray:
        self.step(x)
        return self.it.get_output(self._p)

    def carried_states(self) -> list[tuple | None]:
        return [None if d["dtype"] == np.float32 else (d["dtype"], *d["quantization"]) for (_, d), _ in self._links]

    def read_state(self) -> list[np.ndarray]:
        return [dequantize_tensor(d, s) for ((_, d), _), s in zip(self._links, self._state)]

    def write_state(self, values: list[np.ndarray]) -> None:
        self._state = [quantize_tensor(d, np.asarray(v, np.float32).reshape(s.shape))
                       for ((_, d), _), v, s in zip(self._links, values, self._state)]


class NumpyBackend:
    """The .tflite step graph run by numpy alone (``edgerf.runtime.tflite_numpy``): TFLite
    Micro's integer arithmetic, for boards with no interpreter wheel. Batch 1."""

    name = "numpy"
    fresh = False          # step returns the graph's logits buffer, overwritten by the next step
    probs = False

    def __init__(self, path: Path, manifest: dict, batch: int, threads: int = 1, target: str = "numpy"):
        from edgerf.runtime import tflite_numpy as tn

        if batch != 1:
            raise ArtifactError("the numpy backend runs one stream (batch 1).")
        _, model = _read_tflite(path)
        names = [t["name"] for t in model["tensors"]]
        ins = {names[i]: i for i in model["inputs"]}
        outs = {names[i]: i for i in model["outputs"]}
        _check_io(path, manifest, {n: [1, None] for n in ins}, {n: [1, None] for n in outs}, _tflite_dtypes(model),
                  QUANTISED_STATES)
        try:
            self._bufs, self._steps = tn.compile_graph(model)
        except ArtifactError as e:
            raise ArtifactError(f"{path}: {e}") from e
        t = model["tensors"]
        self._x = self._bufs[ins[INPUT]]
        if self._x.dtype != np.float32:
            raise ArtifactError(f"{path}: the numpy backend needs a float frame at the graph boundary")
        self._y, self._y_d = self._bufs[outs[OUTPUT]], tensor_detail(t[outs[OUTPUT]])
        if PROBS in outs and self._bufs[outs[PROBS]].dtype == np.float32:
            self.probs, self._p = True, self._bufs[outs[PROBS]]
        self._links = [(self._bufs[ins[s["input"]]], self._bufs[outs[s["output"]]],
                        tensor_detail(t[ins[s["input"]]])) for s in manifest["states"]]

    def step(self, x: np.ndarray) -> np.ndarray:
        self._x[...] = x
        for run in self._steps:
            run()
        for state_in, state_out, _ in self._links:
            np.copyto(state_in, state_out)
        return self._y if self._y.dtype == np.float32 else dequantize_tensor(self._y_d, self._y)

    def step_probs(self, x: np.ndarray) -> np.ndarray:
        self.step(x)
        return self._p

    def carried_states(self) -> list[tuple | None]:
        return [None if d["dtype"] == np.float32 else (d["dtype"], *d["quantization"]) for _, _, d in self._links]

    def read_state(self) -> list[np.ndarray]:
        return [dequantize_tensor(d, buf) for buf, _, d in self._links]

    def write_state(self, values: list[np.ndarray]) -> None:
        for (buf, _, d), v in zip(self._links, values):
            buf[...] = quantize_tensor(d, np.asarray(v, np.float32).reshape(buf.shape))


def tflm_figures(path: Path) -> dict:
    """What a microcontroller would need for a .tflite artifact, measured with TFLite Micro on
    this host: whether it loads and steps, the arena its recording allocator used, the flash
    the model takes (the file as stored) and its ops. Refusals are reported, not raised."""
    from edgerf.runtime.targets import TARGETS
    data, model = _read_tflite(path)
    out = {"flash_bytes": len(data), "ops": sorted({op["op"] for op in model["ops"]})}
    if not TARGETS["tflm"].present():
        return out | {"runs": None, "why": f"tflite-micro is not installed here ({TARGETS['tflm'].extra})"}
    from tflite_micro.python.tflite_micro import runtime
    said: list[str] = []
    try:
        with _c_stderr(said):                  # TFLite Micro names what it cannot run there, not in the exception
            it = runtime.Interpreter.from_bytes(data, arena_size=_tflm_arena(data))
            for k, i in enumerate(model["inputs"]):
                t = model["tensors"][i]
                it.set_input(np.zeros(t["shape"], tensor_detail(t)["dtype"]), k)
            it.invoke()
    except Exception as e:                     # an op outside TFLite Micro's set, or an arena it cannot plan
        detail = " ".join(line.strip() for line in "".join(said).splitlines() if line.strip())
        return out | {"runs": False, "why": (f"{detail} ({str(e).splitlines()[0]})" if detail
                                             else str(e).splitlines()[0])[:300]}
    return out | {"runs": True, "arena_bytes": _tflm_arena_used(it),
                  "arena_note": "TFLite Micro's recording allocator on a 64-bit host (overstates a 32-bit MCU)",
                  "tflite_micro": TARGETS["tflm"].extra.split("==")[-1].rstrip('"')}


def _tflm_arena(data: bytes) -> int:
    """The arena handed to TFLite Micro on this host: its own heuristic (10x the model), at
    least 64 KB (a tiny graph's planner needs more than 10x); what it uses is recorded apart."""
    return max(10 * len(data), 1 << 16)


@contextlib.contextmanager
def _c_stderr(into: list[str]):
    """What C code writes on file descriptor 2 meanwhile, appended to ``into`` (TFLite Micro
    reports there, not through Python)."""
    import tempfile
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            into.append(tmp.read().decode(errors="replace"))


def _tflm_arena_used(it) -> int:
    """The arena TFLite Micro's recording allocator used (it prints it on the C stderr)."""
    import re
    said: list[str] = []
    with _c_stderr(said):
        it.print_allocations()
    m = re.search(r"Arena allocation total (\d+) bytes", "".join(said))
    return int(m.group(1)) if m else -1


def _read_tflite(path: Path) -> tuple[bytes, dict]:
    """A .tflite file's bytes (a bounded regular-file read) and its parsed graph."""
    from edgerf.runtime.files import read_bytes
    from edgerf.runtime.manifest import MAX_ARTIFACT_BYTES
    from edgerf.runtime.tflite_numpy import read_model
    data = read_bytes(path, MAX_ARTIFACT_BYTES, "an artifact")
    return data, read_model(data)


def _tflite_dtypes(model: dict) -> dict:
    """A parsed .tflite graph's inputs and outputs: name -> numpy dtype name."""
    from edgerf.runtime.tflite_numpy import TYPES
    t = model["tensors"]
    return {t[i]["name"]: TYPES.get(t[i]["type"], str(t[i]["type"])) for i in [*model["inputs"], *model["outputs"]]}


def _onnx_dtype(elem_type: int) -> str:
    """An ONNX tensor element type as a numpy dtype name (an unknown one named as such)."""
    import onnx
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, ValueError, TypeError):
        return f"ONNX element type {elem_type}"


def tensor_detail(t: dict) -> dict:
    """A parsed .tflite tensor's dtype and (scale, zero point), in LiteRT's detail form."""
    from edgerf.runtime.tflite_numpy import DTYPES, TYPES
    if t["type"] not in DTYPES:                # no edgerf graph has one: a graph from elsewhere
        raise ArtifactError(f"tensor {t['name']!r} has type {TYPES.get(t['type'], t['type'])}, which no edgerf "
                            "graph uses; re-export the model with `edgerf export`.")
    q = (float(t["scale"][0]), int(t["zero_point"][0])) if len(t["scale"]) else (0.0, 0)
    return {"dtype": DTYPES[t["type"]], "quantization": q}


class OnnxReferenceBackend:
    """``onnx.reference``: the ONNX specification's own numpy implementation (slow; a
    definition to compare against, not a runtime for devices)."""

    name = "onnx-ref"
    fresh = True
    probs = False          # a definition to compare against: probabilities come from its logits

    def __init__(self, path: Path, manifest: dict, batch: int, threads: int = 1, target: str = "onnx-ref"):
        import onnx
        from onnx.reference import ReferenceEvaluator
        proto = onnx.load(str(path))
        _check_io(path, manifest, {i.name: [d.dim_value or None for d in i.type.tensor_type.shape.dim]
                                   for i in proto.graph.input},
                  {o.name: [0, 0] for o in proto.graph.output},
                  {t.name: _onnx_dtype(t.type.tensor_type.elem_type)
                   for t in [*proto.graph.input, *proto.graph.output]})
        self.ref = ReferenceEvaluator(proto)
        self._states = manifest["states"]
        self._out_names = [o.name for o in proto.graph.output]
        self._state = [np.zeros((batch, s["shape"][1]), np.float32) for s in self._states]

    def step(self, x: np.ndarray) -> np.ndarray:
        feeds = {INPUT: np.asarray(x, np.float32).reshape(len(self._state[0]), -1)}
        feeds.update({s["input"]: v for s, v in zip(self._states, self._state)})
        outs = dict(zip(self._out_names, self.ref.run(None, feeds)))
        self._state = [outs[s["output"]] for s in self._states]
        return outs[OUTPUT]

    def carried_states(self) -> list[None]:
        return [None] * len(self._state)

    def read_state(self) -> list[np.ndarray]:
        return self._state

    def write_state(self, values: list[np.ndarray]) -> None:
        self._state = [np.asarray(v, np.float32).reshape(s.shape) for v, s in zip(values, self._state)]


class _Quantizer:
    """float frames -> int8/int16 with preallocated buffers (no per-step allocation)."""

    def __init__(self, detail: dict, shape: tuple[int, int]):
        scale, zp = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        self.scale, self.zp = np.float32(scale), np.float32(zp)
        self.lo, self.hi = np.float32(info.min), np.float32(info.max)
        self.buf = np.empty(shape, np.float32)
        self.out = np.empty(shape, detail["dtype"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        b = self.buf
        np.divide(x, self.scale, out=b)      # divide, not multiply by 1/scale: same rounding as export
        np.rint(b, out=b)
        np.add(b, self.zp, out=b)
        np.maximum(b, self.lo, out=b)
        np.minimum(b, self.hi, out=b)
        self.out[...] = b
        return self.out


def quantize_tensor(detail: dict, v: np.ndarray) -> np.ndarray:
    """float -> the tensor's dtype with its (scale, zero point); float tensors pass through."""
    if detail["dtype"] == np.float32:
        return v
    scale, zp = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.rint(v / scale) + zp, info.min, info.max).astype(detail["dtype"])


def dequantize_tensor(detail: dict, v: np.ndarray) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return v
    scale, zp = detail["quantization"]
    return (v.astype(np.float32) - zp) * scale


BACKENDS = {".onnx": OnnxBackend, ".tflite": TFLiteBackend}      # a format's backend class (its default target)
# target name -> backend class (edgerf.runtime.targets lists what each target is)
TARGET_BACKENDS = {"litert": TFLiteBackend, "litert-nodelegate": TFLiteBackend, "litert-ref": TFLiteBackend,
                   "tflm": TFLMBackend, "numpy": NumpyBackend, "ort": OnnxBackend, "onnx-ref": OnnxReferenceBackend}
