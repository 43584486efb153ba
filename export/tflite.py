"""Step graph -> TFLite flatbuffer, written directly with the schema LiteRT ships.

Why a generator of our own and not a converter (each measured on this project's GRU):
litert-torch adds ~1.2 GB of dependencies (jaxlib, transformers) and its PT2E int8
leaves GRU cells in float; ai-edge-quantizer's default moving-average calibration
broke a streamed GRU (30% agreement); onnx2tf needs TensorFlow 2.19 and numpy<2. The
step graph uses a handful of ops (FULLY_CONNECTED, ADD, SUB, MUL, LOGISTIC, TANH,
GREATER_EQUAL, CAST; a float SOFTMAX for its probabilities output), and writing them
ourselves gives what a recurrent model needs and converters do not: control of every
tensor's scale, so a tanh-bounded state keeps TFLite's fixed 1/128 tanh scale and
feeds back as int8 with no requantisation.

How it works: each family's step is lowered once into a small graph (``Graph``) while
numpy evaluates every tensor on the calibration batch (the same closed-loop trajectory
rows the ONNX int8 export calibrates on: min/max of the same data, hence the same
ranges). Emitters then write that graph as float32, full int8, or 16x8 (int16
activations, int8 weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from edgerf.cells import RecurrentClassifier
from edgerf.export.quantize import PLANS
from edgerf.runtime.manifest import INPUT, OUTPUT, PROBS, state_io_names
from edgerf.runtime.metrics import softmax


# ---------------------------------------------------------------------------------
# A tiny graph IR, evaluated with numpy as it is built.
@dataclass(eq=False)
class Tensor:
    name: str
    value: np.ndarray                 # calibration value [N, F] (activations) or the constant
    const: bool = False
    fixed: dict | None = None         # {"int8": (scale, zp), "int16": (scale, zp)}: forced quantisation
    per_channel: bool = False         # FC weights: quantise per output row


@dataclass
class Op:
    kind: str                         # FULLY_CONNECTED, ADD, SUB, MUL, LOGISTIC, TANH, GREATER_EQUAL, CAST
    inputs: list[Tensor]
    output: Tensor
    relu: bool = False                # FULLY_CONNECTED: fused RELU activation


@dataclass
class Graph:
    inputs: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)       # logits, then each state
    ops: list[Op] = field(default_factory=list)
    probs: Tensor | None = None       # softmax(logits), a float op after the logits (a last output)
    _n: int = 0

    def _name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def input(self, name: str, value: np.ndarray) -> Tensor:
        t = Tensor(name, np.asarray(value, np.float32))
        self.inputs.append(t)
        return t

    def const(self, value, name="const") -> Tensor:
        return Tensor(self._name(name), _np(value), const=True)

    def _op(self, kind, inputs, value, name, relu: bool = False) -> Tensor:
        out = Tensor(self._name(name), value)
        self.ops.append(Op(kind, inputs, out, relu))
        return out

    def fc(self, x: Tensor, linear: torch.nn.Linear | tuple, name="fc", relu: bool = False) -> Tensor:
        """x W^T + b, with ``relu`` the FULLY_CONNECTED's fused RELU (no op of its own)."""
        w, b = _weights(linear)
        wt = Tensor(self._name(name + "_w"), w, const=True, per_channel=True)
        bt = Tensor(self._name(name + "_b"), b, const=True)
        y = x.value @ w.T + b
        return self._op("FULLY_CONNECTED", [x, wt, bt], np.maximum(y, 0) if relu else y, name, relu)

    def add(self, a, b, name="add"):
        return self._op("ADD", [a, b], a.value + b.value, name)

    def sub(self, a, b, name="sub"):
        return self._op("SUB", [a, b], a.value - b.value, name)

    def mul(self, a, b, name="mul"):
        return self._op("MUL", [a, b], a.value * b.value, name)

    def sigmoid(self, a, name="sigmoid"):
        with np.errstate(over="ignore"):            # exp(-x) overflows to inf for x << 0: the logistic is 0 there
            value = 1 / (1 + np.exp(-a.value))
        out = self._op("LOGISTIC", [a], value, name)
        out.fixed = {"int8": (1 / 256, -128), "int16": (1 / 32768, 0)}   # TFLite's required output params
        return out

    def tanh(self, a, name="tanh"):
        out = self._op("TANH", [a], np.tanh(a.value), name)
        out.fixed = {"int8": (1 / 128, 0), "int16": (1 / 32768, 0)}
        return out

    def step_fn(self, v: Tensor, threshold: float, name="spike") -> Tensor:
        """float(v >= threshold) as GREATER_EQUAL + CAST."""
        cmp = self._op("GREATER_EQUAL", [v, self.const(np.full(1, threshold), "theta")],
                       (v.value >= threshold), name + "_cmp")
        return self._op("CAST", [cmp], cmp.value.astype(np.float32), name)


def _np(value) -> np.ndarray:
    return np.asarray(value.detach().cpu().numpy() if torch.is_tensor(value) else value, np.float32)


def weight_bias(linear) -> tuple:
    """(weight, bias) of a Linear or of a (weight, bias) pair, as given (torch or numpy)."""
    if isinstance(linear, tuple):
        return linear
    b = linear.bias if linear.bias is not None else torch.zeros(linear.weight.shape[0])
    return linear.weight, b


def _weights(linear) -> tuple[np.ndarray, np.ndarray]:
    w, b = weight_bias(linear)
    return _np(w), _np(b)


def _rows(linear: torch.nn.Linear, k: int, parts: int) -> tuple:
    """Rows k of ``parts`` stacked gates of a Linear (GRU's [r; z; n]), still torch tensors:
    the fake-quant twin (edgerf.export.qat) trains through this same lowering."""
    w, b = weight_bias(linear)
    H = w.shape[0] // parts
    return w[k * H:(k + 1) * H], b[k * H:(k + 1) * H]


# ---------------------------------------------------------------------------------
# Lowering per family: the same equations as edgerf.cells (see their docstrings).
TANH_BOUNDED = {"rnn", "gru"}     # states in [-1, 1]: tanh's fixed scale fits them exactly


def _lower_rnn(g: Graph, cell, u: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    (h,) = state
    h = g.tanh(g.add(g.fc(u, cell.x_proj, "x_proj"), g.fc(h, cell.h_proj, "h_proj")), "h")
    return h, [h]


def _lower_gru(g: Graph, cell, u: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    (h,) = state
    xr, xz, xn = (g.fc(u, _rows(cell.x_proj, k, 3), f"x_{n}") for k, n in enumerate("rzn"))
    hr, hz, hn = (g.fc(h, _rows(cell.h_proj, k, 3), f"h_{n}") for k, n in enumerate("rzn"))
    r = g.sigmoid(g.add(xr, hr), "r")
    z = g.sigmoid(g.add(xz, hz), "z")
    n = g.tanh(g.add(xn, g.mul(r, hn)), "n")
    h = g.add(n, g.mul(z, g.sub(h, n)), "h")
    return h, [h]


def _glu(g: Graph, cell, u: Tensor, h: Tensor) -> Tensor:
    v = g.add(g.fc(h, cell.c_val, "c_val"), g.fc(u, cell.d_val, "d_val"), "v")
    return g.mul(v, g.sigmoid(g.add(g.fc(h, cell.c_gate, "c_gate"), g.fc(u, cell.d_gate, "d_gate"))), "y")


def _lower_ssm(g: Graph, cell, u: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    (h,) = state
    a = cell.decay()
    w, b = weight_bias(cell.b_proj)
    inject = g.fc(u, ((1 - a)[:, None] * w, (1 - a) * b), "b_proj")   # (1 - a) folded into B
    h = g.add(g.mul(h, g.const(a[None], "decay")), inject, "h")
    return _glu(g, cell, u, h), [h]


def _lower_ssm_sel(g: Graph, cell, u: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    (h,) = state
    a = g.sigmoid(g.fc(u, cell.a_proj, "a_proj"), "decay")
    bu = g.fc(u, cell.b_proj, "b_proj")
    h = g.add(g.mul(a, h), g.sub(bu, g.mul(a, bu)), "h")              # a h + (1 - a) B u
    return _glu(g, cell, u, h), [h]


def _lower_lif(g: Graph, cell, u: Tensor, state: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    v, a = state
    beta = torch.sigmoid(cell.logit_beta)[None]
    alpha = torch.sigmoid(cell.logit_alpha)[None]
    s_prev = g.step_fn(v, cell.threshold, "s_prev")
    rec = g.sub(g.fc(s_prev, cell.s_proj, "s_proj"), g.mul(s_prev, g.const(np.full((1, 1), cell.threshold))))
    v = g.add(g.add(g.mul(v, g.const(beta, "beta")), g.fc(u, cell.x_proj, "x_proj")), rec, "v")
    s = g.step_fn(v, cell.threshold, "s")
    a = g.add(g.mul(a, g.const(alpha, "alpha")), g.mul(s, g.const(1 - alpha, "one_minus_alpha")), "a")
    return a, [v, a]


LOWERINGS = {"rnn": _lower_rnn, "gru": _lower_gru, "ssm": _lower_ssm, "ssm-sel": _lower_ssm_sel,
             "lif": _lower_lif}


def step_ops(g, model: RecurrentClassifier, x, states: list) -> tuple:
    """One step of ``model`` built with ``g`` (a ``Graph``, or the fake-quant twin's builder):
    frontend, input layer, each cell's lowering, readout. Returns (logits, new states)."""
    for k, layer in enumerate(model.frontend):
        x = g.fc(x, layer, f"frontend{k}", relu=True)
    y = g.fc(x, model.input, "input")
    new, i = [], 0
    for cell in model.cells:
        k = len(cell.state_names)
        y, s = LOWERINGS[model.config.family](g, cell, y, states[i:i + k])
        new += s
        i += k
    if model.config.readout == "gated":
        gate = g.sigmoid(g.fc(y, model.readout.gate, "gate"), "gate_open")
        return g.mul(g.fc(y, model.readout.scores, "scores"), gate, "readout"), new
    return g.fc(y, model.readout, "readout"), new


def lower(model: RecurrentClassifier, feeds: dict[str, np.ndarray]) -> Graph:
    """The step graph of ``model`` evaluated on calibration ``feeds`` (graph input -> [N, F])."""
    family = model.config.family
    if family not in LOWERINGS:
        raise NotImplementedError(f"no TFLite lowering for family {family!r}")
    g = Graph()
    x = g.input(INPUT, feeds[INPUT])
    states = [g.input(state_io_names(n)[0], feeds[state_io_names(n)[0]]) for n in model.state_names]
    with torch.no_grad():
        logits, new = step_ops(g, model, x, states)
    logits.name = OUTPUT
    g.probs = Tensor(PROBS, softmax(logits.value).astype(np.float32))
    outputs = [logits]
    for name, t, t_in in zip(model.state_names, new, states):
        if t in outputs or t in g.inputs:     # a state that is also the output (rnn/gru h): copy name
            t = g.add(t, g.const(np.zeros((1, 1))), "state_copy")
        t.name = state_io_names(name)[1]
        outputs.append(t)
    g.outputs = outputs
    return g


# ---------------------------------------------------------------------------------
# Emitters: Graph -> .tflite bytes.
# Precision plans (shared with the ONNX export, see edgerf.export.quantize):
#   fp32        everything float32
#   int8        full integer: int8 activations, inputs, outputs and states
#   a16w8       16x8: int16 activations (symmetric), int8 weights, int64 bias
#   int8-gemm   only FULLY_CONNECTED quantised (int8), QUANTIZE/DEQUANTIZE around it;
#   a16w8-gemm  the elementwise recurrence stays float


# The narrowest activation range quantised: a tensor that never moved in calibration (a dead
# ReLU) would otherwise get a vanishing scale, and TFLite Micro refuses a FULLY_CONNECTED
# whose bias scale then differs from input x weight scale by more than 2% of that scale
# (found by tests/test_numpy_backend.py's random one-op graphs).
MIN_RANGE = 1e-4


def _qparams(lo: float, hi: float, qtype: str) -> tuple[float, int]:
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if qtype == "int16":                       # 16x8 mode wants symmetric activations
        return max(abs(lo), abs(hi), MIN_RANGE) / 32767.0, 0
    scale = max(hi - lo, MIN_RANGE) / 255.0
    return scale, int(np.clip(np.round(-128 - lo / scale), -128, 127))


def state_quant(g: Graph, family: str, qtype: str) -> dict[str, tuple[float, int]]:
    """One (scale, zp) per state, shared by its input and output tensors so the
    quantised state of step t is fed back to step t+1 as is."""
    out = {}
    for t_in, t_out in zip(g.inputs[1:], g.outputs[1:]):
        if family in TANH_BOUNDED:
            q = (1 / 128, 0) if qtype == "int8" else (1 / 32768, 0)
        else:
            q = _qparams(min(t_in.value.min(), t_out.value.min()), max(t_in.value.max(), t_out.value.max()), qtype)
        out[t_in.name] = out[t_out.name] = q
    return out


class _Writer:
    """A flatbuffer being written: its tensors, buffers and operator codes, and the
    quantisation of every tensor emitted so far (``params``), which later ops read."""

    def __init__(self, g: Graph, plan: str, family: str):
        from ai_edge_litert import schema_py_generated as fb

        self.fb, self.B = fb, fb.BuiltinOperator
        self.qtype = PLANS.get(plan)
        self.full = plan in ("int8", "a16w8")
        self.sq = state_quant(g, family, self.qtype) if self.full else {}
        self.TT = {"float32": fb.TensorType.FLOAT32, "int8": fb.TensorType.INT8, "int16": fb.TensorType.INT16,
                   "int32": fb.TensorType.INT32, "int64": fb.TensorType.INT64, "bool": fb.TensorType.BOOL}
        self.model = fb.ModelT()
        self.model.version = 3
        self.model.buffers = [fb.BufferT()]
        self.sub = fb.SubGraphT()
        self.sub.tensors, self.sub.operators = [], []
        self.opcodes: dict[int, int] = {}
        self.index: dict[tuple, int] = {}        # (id(tensor), quantised) -> tensor index
        self.params: dict[tuple, tuple] = {}     # (id(tensor), quantised) -> (dtype, scale, zp) as emitted
        self.cast_outputs = {o.output for o in g.ops if o.kind == "CAST"}
        self.shadow: set = set()                 # float tensors that also get a quantised twin ("_q")

    def add_tensor(self, name, shape, dtype, data=None, scale=None, zp=None, axis=None) -> int:
        fb = self.fb
        t = fb.TensorT()
        t.name, t.shape, t.type = name.encode(), list(shape), self.TT[dtype]
        if data is not None:
            buf = fb.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            self.model.buffers.append(buf)
            t.buffer = len(self.model.buffers) - 1
        else:
            t.buffer = 0
        if scale is not None:
            q = fb.QuantizationParametersT()
            q.scale = [float(v) for v in np.atleast_1d(scale)]
            q.zeroPoint = [int(v) for v in np.atleast_1d(zp)]
            if axis is not None:
                q.quantizedDimension = axis
            t.quantization = q
        self.sub.tensors.append(t)
        return len(self.sub.tensors) - 1

    def _act_params(self, t: Tensor, qt: str) -> tuple[float, int]:
        if t.name in self.sq:
            return self.sq[t.name]
        if t.fixed and qt in t.fixed:
            return t.fixed[qt]
        return _qparams(t.value.min(), t.value.max(), qt)

    def tensor(self, t: Tensor, quantised: bool, like: Tensor | None = None) -> int:
        """Emit (once) the tensor ``t``; quantised activations get int8/int16 params, a
        quantised constant compared with ``like`` shares its scale."""
        key = (id(t), quantised)
        if key in self.index:
            return self.index[key]
        width = t.value.shape[-1] if t.value.ndim else 1
        if t.value.dtype == bool:
            i = self.add_tensor(t.name, [1, width], "bool")
        elif t.const and quantised:
            if like is not None and (id(like), True) in self.params:
                dt, s, z = self.params[(id(like), True)]
            else:
                dt = self.qtype
                s, z = _qparams(t.value.min(), t.value.max(), self.qtype)
            qv = np.clip(np.round(t.value / s) + z, *_limits(dt)).astype(dt)
            i = self.add_tensor(t.name, t.value.shape, dt, qv, s, z)
            self.params[key] = (dt, s, z)
        elif t.const:
            i = self.add_tensor(t.name, t.value.shape, "float32", t.value.astype(np.float32))
        elif quantised:
            s, z = self._act_params(t, self.qtype)
            if t.value.dtype == np.float32 and t in self.cast_outputs:   # 0/1 from a CAST: scale 1
                s, z = 1.0, 0
            i = self.add_tensor(t.name if t not in self.shadow else t.name + "_q", [1, width], self.qtype,
                                scale=s, zp=z)
            self.params[key] = (self.qtype, s, z)
        else:
            i = self.add_tensor(t.name, [1, width], "float32")
            self.params[key] = ("float32", None, None)
        self.index[key] = i
        return i

    def op(self, code: int, ins: list[int], outs: list[int], opt_type=0, opt=None) -> None:
        if code not in self.opcodes:
            oc = self.fb.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            self.model.operatorCodes = (self.model.operatorCodes or []) + [oc]
            self.opcodes[code] = len(self.model.operatorCodes) - 1
        o = self.fb.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = self.opcodes[code], ins, outs
        if opt is not None:
            o.builtinOptionsType, o.builtinOptions = opt_type, opt
        self.sub.operators.append(o)

    def fully_connected(self, ins: list[int], outs: list[int], relu: bool = False) -> None:
        opt = self.fb.FullyConnectedOptionsT()
        if relu:
            opt.fusedActivationFunction = self.fb.ActivationFunctionType.RELU
        self.op(self.B.FULLY_CONNECTED, ins, outs, self.fb.BuiltinOptions.FullyConnectedOptions, opt)


def fc_weight_scale(w: np.ndarray, b: np.ndarray, s_in: float, bias_dtype: str = "int32") -> np.ndarray:
    """Per output row: the int8 weight scale (symmetric, 127 levels). A row of zero weights (a
    gate the training switched off) would get a vanishing scale and push its bias past the
    integer range: such a row's scale is set by its bias instead."""
    scale = np.maximum(np.abs(w).max(1) / 127.0, np.abs(b) / (s_in * (np.iinfo(bias_dtype).max // 2)))
    return np.maximum(scale, 1e-12 / 127.0)


# One emitter per op kind of the IR: (writer, op) -> operators appended.
def _emit_fully_connected(w: _Writer, o: Op) -> None:
    x, wt, b = o.inputs
    if not (w.full or w.qtype is not None):                  # fp32
        w.fully_connected([w.tensor(x, False), w.tensor(wt, False), w.tensor(b, False)], [w.tensor(o.output, False)],
                          o.relu)
        return
    if w.full:
        xi = w.tensor(x, True)
    else:                                                    # mixed: QUANTIZE the float input (once)
        fresh = (id(x), True) not in w.index
        xi_f = w.tensor(x, False)
        w.shadow.add(x)
        xi = w.tensor(x, True)
        if fresh:
            w.op(w.B.QUANTIZE, [xi_f], [xi])
    # int8 weights per output row, bias int32 (int64 with int16 activations) at input x weight scale
    s_in = w.params[(id(x), True)][1]
    bdt = "int32" if w.qtype == "int8" else "int64"
    w_scale = fc_weight_scale(wt.value, b.value, s_in, bdt)
    wq = np.clip(np.round(wt.value / w_scale[:, None]), -127, 127).astype(np.int8)
    zeros = np.zeros(len(w_scale), int)
    wi = w.add_tensor(wt.name, wt.value.shape, "int8", wq, w_scale, zeros, axis=0)
    bq = np.round(b.value / (s_in * w_scale)).astype(bdt)
    bi = w.add_tensor(b.name, b.value.shape, bdt, bq, s_in * w_scale, zeros, axis=0)
    if w.full:
        w.fully_connected([xi, wi, bi], [w.tensor(o.output, True)], o.relu)
        return
    w.shadow.add(o.output)                                   # mixed: DEQUANTIZE back to float
    yi = w.tensor(o.output, True)
    w.fully_connected([xi, wi, bi], [yi], o.relu)
    w.op(w.B.DEQUANTIZE, [yi], [w.tensor(o.output, False)])


def _emit_binary(w: _Writer, o: Op) -> None:
    fb = w.fb
    a, b = o.inputs
    # A constant added to or subtracted from a tensor shares its scale (the kernel rescales
    # both inputs anyway). A constant factor gets its own: a decay in (0, 1) at the scale of
    # the state it multiplies (~0.01 to 0.1) kept a handful of levels and broke the SSM.
    share = o.kind != "MUL"
    ins = [w.tensor(a, w.full, like=b if a.const and share else None),
           w.tensor(b, w.full, like=a if b.const and share else None)]
    opt_t, opt = {"ADD": (fb.BuiltinOptions.AddOptions, fb.AddOptionsT()),
                  "SUB": (fb.BuiltinOptions.SubOptions, fb.SubOptionsT()),
                  "MUL": (fb.BuiltinOptions.MulOptions, fb.MulOptionsT())}[o.kind]
    if o.kind in ("ADD", "SUB"):
        # the default int16 path wants power-of-two scales with one input matching the
        # output ("sub.cc: input1_shift == 0 || input2_shift == 0" on a GRU-128);
        # calibrated scales are arbitrary, so take the general rescaling kernel
        opt.potScaleInt16 = False
    w.op(getattr(w.B, o.kind), ins, [w.tensor(o.output, w.full)], opt_t, opt)


def _emit_activation(w: _Writer, o: Op) -> None:
    w.op(getattr(w.B, o.kind), [w.tensor(o.inputs[0], w.full)], [w.tensor(o.output, w.full)])


def _emit_greater_equal(w: _Writer, o: Op) -> None:
    v, thr = o.inputs
    w.op(w.B.GREATER_EQUAL, [w.tensor(v, w.full), w.tensor(thr, w.full, like=v)], [w.tensor(o.output, w.full)])


def _emit_cast(w: _Writer, o: Op) -> None:
    opt = w.fb.CastOptionsT()
    opt.inDataType, opt.outDataType = w.TT["bool"], w.TT[w.qtype if w.full else "float32"]
    w.op(w.B.CAST, [w.tensor(o.inputs[0], w.full)], [w.tensor(o.output, w.full)], w.fb.BuiltinOptions.CastOptions, opt)


EMITTERS = {"FULLY_CONNECTED": _emit_fully_connected, "ADD": _emit_binary, "SUB": _emit_binary,
            "MUL": _emit_binary, "LOGISTIC": _emit_activation, "TANH": _emit_activation,
            "GREATER_EQUAL": _emit_greater_equal, "CAST": _emit_cast}


def emit(g: Graph, plan: str, family: str, metadata: dict[str, bytes] | None = None) -> tuple[bytes, dict]:
    """Write ``g`` under precision ``plan``; returns the flatbuffer and the I/O quantisation
    {tensor name: {"dtype", "scale", "zero_point"}} for the manifest."""
    from ai_edge_litert.tools import flatbuffer_utils

    if plan != "fp32" and plan not in PLANS:
        raise ValueError(f"unknown precision plan {plan!r}; known: fp32, {', '.join(PLANS)}")
    w = _written(g, plan, family)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(_finish(w, g, metadata))), _io_quant(w, g)


def _written(g: Graph, plan: str, family: str) -> _Writer:
    """Every operator of ``g`` under ``plan`` (the flatbuffer not yet serialised)."""
    w = _Writer(g, plan, family)
    # Graph inputs first, so their tensor params are known. Full-integer plans keep the
    # frame and the logits float at the graph boundary (QUANTIZE in, DEQUANTIZE out, done
    # by LiteRT's kernels) while the state crosses it as int8 and is fed back as is: the
    # device's Python never quantises a frame or dequantises a logit.
    x_in, logits_out = g.inputs[0], g.outputs[0]
    if w.full:
        w.shadow.update((x_in, logits_out))
        w.op(w.B.QUANTIZE, [w.tensor(x_in, False)], [w.tensor(x_in, True)])
    for t in g.inputs[1:]:
        w.tensor(t, w.full)
    for o in g.ops:
        EMITTERS[o.kind](w, o)
    if w.full:
        w.op(w.B.DEQUANTIZE, [w.index[(id(logits_out), True)]], [w.tensor(logits_out, False)])
    if g.probs is not None:
        # the class probabilities: a float SOFTMAX on the float logits under every plan, the
        # per-step softmax a keyword stream needs, done by the interpreter instead of numpy
        opt = w.fb.SoftmaxOptionsT()
        opt.beta = 1.0
        w.op(w.B.SOFTMAX, [w.tensor(logits_out, False)], [w.tensor(g.probs, False)],
             w.fb.BuiltinOptions.SoftmaxOptions, opt)
    return w


@dataclass(frozen=True)
class OpQuant:
    """One op of the full-int8 graph as emitted: its kind and the (scale, zero point) of each
    input (None for a weight or bias: those are quantised per row from their values) and of
    its output."""
    kind: str
    inputs: tuple
    output: tuple


def int8_quantisation(g: Graph, family: str) -> tuple[list[tuple], list[OpQuant]]:
    """What the full-int8 plan does to every tensor of ``g``: the (scale, zero point) of each
    graph input (frame, then states) and each op in order. The fake-quant twin
    (edgerf.export.qat) replays exactly these."""
    w = _written(g, "int8", family)

    def q(t: Tensor):
        p = w.params.get((id(t), True))
        return None if p is None or (t.const and t.per_channel) else (p[1], p[2])

    ops = [OpQuant(o.kind, tuple(None if (t.const and o.kind == "FULLY_CONNECTED") else q(t) for t in o.inputs),
                   q(o.output)) for o in g.ops]
    return [q(t) for t in g.inputs], ops


def _finish(w: _Writer, g: Graph, metadata: dict[str, bytes] | None):
    """Bind the subgraph's inputs and outputs, and embed ``metadata`` (the manifest)."""
    fb, sub, model = w.fb, w.sub, w.model
    x_in, logits_out = g.inputs[0], g.outputs[0]
    sub.inputs = [w.index[(id(x_in), False)]] + [w.index[(id(t), w.full)] for t in g.inputs[1:]]
    sub.outputs = ([w.index[(id(logits_out), False)]] + [w.index[(id(t), w.full)] for t in g.outputs[1:]]
                   + ([w.index[(id(g.probs), False)]] if g.probs is not None else []))
    sub.name = b"step"
    model.subgraphs = [sub]
    model.description = b"edgerf step graph"
    if metadata:
        model.metadata = []
        for k, v in metadata.items():
            buf = fb.BufferT()
            buf.data = np.frombuffer(v, np.uint8)
            model.buffers.append(buf)
            m = fb.MetadataT()
            m.name, m.buffer = k.encode(), len(model.buffers) - 1
            model.metadata.append(m)
    return model


def _io_quant(w: _Writer, g: Graph) -> dict[str, dict]:
    """How each graph input and output crosses the boundary (frame and logits stay float)."""
    boundary = (g.inputs[0], g.outputs[0], g.probs)
    out = {}
    for t in (*g.inputs, *g.outputs, *([g.probs] if g.probs is not None else [])):
        dt, s, z = w.params[(id(t), w.full and t not in boundary)]
        out[t.name] = {"dtype": dt, "scale": s, "zero_point": z}
    return out


def _limits(dt: str) -> tuple[int, int]:
    info = np.iinfo(dt)
    return int(info.min), int(info.max)


def interpreter(path_or_bytes, threads: int = 1):
    """A LiteRT interpreter (ai-edge-litert; tflite_runtime as a fallback)."""
    from edgerf.runtime.backends import litert_interpreter

    _, Interpreter = litert_interpreter()
    kw = {"model_content": path_or_bytes} if isinstance(path_or_bytes, (bytes, bytearray)) else \
        {"model_path": str(path_or_bytes)}
    it = Interpreter(**kw, num_threads=threads)
    it.allocate_tensors()
    return it
