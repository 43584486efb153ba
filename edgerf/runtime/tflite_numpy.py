"""A .tflite step graph run by numpy alone: TFLite Micro's arithmetic, for boards with no
interpreter wheel (32-bit ARM, RISC-V) and as an independent definition of what edgerf's
int8 graphs compute.

Three parts:

- ``read_model``: a minimal FlatBuffers reader for the fields of the TFLite schema the step
  graphs use (tensors, buffers, quantisation, operators and their fused activation). No
  ``flatbuffers`` or ``tflite`` package is needed.
- The integer arithmetic of TFLite Micro's reference kernels, written from their definitions:
  ``quantize_multiplier`` (frexp and round half away from zero), ``multiply_by_quantized_multiplier``
  (gemmlowp's saturating rounding doubling high multiply, then a rounding right shift: the
  double-rounding build TFLite Micro ships), gemmlowp's fixed-point ``logistic`` and ``tanh``,
  and each op's parameter preparation (ADD in double, SUB in float like TFLite Micro's, per-
  channel FULLY_CONNECTED multipliers in double...).
- ``compile_graph``: each operator becomes one closure over preallocated buffers. Element-wise
  int8 ops are functions of at most two int8 inputs, so at load every possible input is run
  through the arithmetic above once and the op becomes a table lookup (256 or 65,536
  entries): exact by construction, and cheap per step.

Every operator or tensor type outside this set is refused at load, by name.
``tests/test_numpy_backend.py`` checks it bit for bit against TFLite Micro.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from edgerf.runtime.errors import ArtifactError

# TFLite schema enums (schema.fbs), as far as the step graphs use them
FLOAT32, INT32, INT64, BOOL, INT16, INT8 = 0, 2, 4, 6, 7, 9
TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool", 7: "int16",
         9: "int8", 10: "float64"}
DTYPES = {FLOAT32: np.float32, INT32: np.int32, INT64: np.int64, BOOL: np.bool_, INT16: np.int16, INT8: np.int8}
OPS = {0: "ADD", 6: "DEQUANTIZE", 9: "FULLY_CONNECTED", 14: "LOGISTIC", 18: "MUL", 28: "TANH", 41: "SUB",
       53: "CAST", 62: "GREATER_EQUAL", 114: "QUANTIZE"}
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# -- FlatBuffers ------------------------------------------------------------------------------
class _Table:
    """One FlatBuffers table: fields by their index in the schema."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        vt = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vtable, self.vsize = vt, struct.unpack_from("<H", buf, vt)[0]

    def _at(self, field: int) -> int | None:
        o = 4 + 2 * field
        if o >= self.vsize:
            return None
        rel = struct.unpack_from("<H", self.buf, self.vtable + o)[0]
        return self.pos + rel if rel else None

    def scalar(self, field: int, fmt: str, default=0):
        p = self._at(field)
        return default if p is None else struct.unpack_from("<" + fmt, self.buf, p)[0]

    def _ref(self, field: int) -> int | None:
        p = self._at(field)
        return None if p is None else p + struct.unpack_from("<I", self.buf, p)[0]

    def table(self, field: int) -> "_Table | None":
        p = self._ref(field)
        return None if p is None else _Table(self.buf, p)

    def _vector(self, field: int) -> tuple[int, int]:
        p = self._ref(field)
        return (0, 0) if p is None else (p + 4, struct.unpack_from("<I", self.buf, p)[0])

    def tables(self, field: int) -> list["_Table"]:
        start, n = self._vector(field)
        return [_Table(self.buf, start + 4 * k + struct.unpack_from("<I", self.buf, start + 4 * k)[0])
                for k in range(n)]

    def array(self, field: int, dtype) -> np.ndarray:
        start, n = self._vector(field)
        return np.frombuffer(self.buf, np.dtype(dtype).newbyteorder("<"), n, start).copy()

    def string(self, field: int) -> str:
        start, n = self._vector(field)
        return bytes(self.buf[start:start + n]).decode("utf-8", errors="replace")


def read_model(data: bytes) -> dict:
    """The first subgraph of a .tflite file: tensors (name, shape, type, constant data,
    scales, zero points), operators (name, inputs, outputs, fused activation), inputs, outputs."""
    try:
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise ValueError("no TFL3 identifier")
        model = _Table(data, struct.unpack_from("<I", data, 0)[0])
        codes = [max(c.scalar(0, "b"), c.scalar(3, "i")) for c in model.tables(1)]
        buffers = [b.array(0, np.uint8) for b in model.tables(4)]
        sg = model.tables(2)[0]
        tensors = []
        for t in sg.tables(0):
            q = t.table(4)
            ttype = t.scalar(1, "b")
            buf = buffers[t.scalar(2, "I")] if t.scalar(2, "I") < len(buffers) else np.zeros(0, np.uint8)
            shape = tuple(int(v) for v in t.array(0, np.int32))
            const = None
            if buf.size:
                if ttype not in DTYPES:
                    raise ArtifactError(f"tensor {t.string(3)!r} has type {TYPES.get(ttype, ttype)}")
                const = np.frombuffer(buf.tobytes(), np.dtype(DTYPES[ttype]).newbyteorder("<")).reshape(shape)
            tensors.append({"name": t.string(3), "shape": shape, "type": ttype, "const": const,
                            "scale": q.array(2, np.float32) if q else np.zeros(0, np.float32),
                            "zero_point": q.array(3, np.int64) if q else np.zeros(0, np.int64)})
        ops = []
        for o in sg.tables(3):
            code = codes[o.scalar(0, "I")]
            opts = o.table(4)
            ops.append({"op": OPS.get(code, f"builtin operator {code}"), "inputs": [int(i) for i in o.array(1, np.int32)],
                        "outputs": [int(i) for i in o.array(2, np.int32)],
                        "activation": ACTIVATIONS.get(opts.scalar(0, "b") if opts else 0, "?")})
        return {"tensors": tensors, "ops": ops, "inputs": [int(i) for i in sg.array(1, np.int32)],
                "outputs": [int(i) for i in sg.array(2, np.int32)]}
    except ArtifactError:
        raise
    except (struct.error, IndexError, ValueError) as e:
        raise ArtifactError(f"not a readable .tflite model ({e}).") from e


# -- TFLite Micro's integer arithmetic --------------------------------------------------------
def round_half_away(x: float) -> int:
    """TfLiteRound (std::round): halves away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(q31 multiplier, shift) with real = multiplier * 2^(shift - 31) (QuantizeMultiplier)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    fixed = round_half_away(q * (1 << 31))
    if fixed == 1 << 31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return fixed, shift


def _wrap32(x: np.ndarray) -> np.ndarray:
    """int32 arithmetic as C does it (wrapping), held in int64."""
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def srdhm(a: np.ndarray, b) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values held in int64."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    s = ab + nudge
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))          # C division truncates toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, q)


def rounding_divide_by_pot(x: np.ndarray, exponent) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: a right shift rounding to nearest, halves away from zero."""
    x = np.asarray(x, np.int64)
    e = np.asarray(exponent, np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(x: np.ndarray, multiplier, shift) -> np.ndarray:
    """TFLite's MultiplyByQuantizedMultiplier (double rounding), elementwise; ``multiplier`` and
    ``shift`` may be per element (per channel)."""
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rounding_divide_by_pot(srdhm(_wrap32(np.asarray(x, np.int64) << left), multiplier), right)


def _smaller_than_one(x, multiplier: int, shift: int) -> np.ndarray:
    """MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0)."""
    return rounding_divide_by_pot(srdhm(x, multiplier), -shift)


class _Fixed:
    """gemmlowp FixedPoint<int32, integer_bits> on numpy int64 arrays (raw int32 values)."""

    def __init__(self, raw, bits: int):
        self.raw, self.bits = _wrap32(np.asarray(raw, np.int64)), bits

    @staticmethod
    def const_pot(exponent: int, bits: int) -> "_Fixed":
        return _Fixed(1 << (31 - bits + exponent), bits)

    @staticmethod
    def one(bits: int) -> "_Fixed":
        return _Fixed(INT32_MAX if bits == 0 else 1 << (31 - bits), bits)

    def __add__(self, o):
        return _Fixed(self.raw + o.raw, self.bits)

    def __sub__(self, o):
        return _Fixed(self.raw - o.raw, self.bits)

    def __neg__(self):
        return _Fixed(-self.raw, self.bits)

    def __mul__(self, o):
        return _Fixed(srdhm(self.raw, o.raw), self.bits + o.bits)

    def mul_pot(self, exponent: int) -> "_Fixed":
        """SaturatingRoundingMultiplyByPOT<exponent>, keeping the format."""
        return _Fixed(_sat_round_mul_pot(self.raw, exponent), self.bits)

    def rescale(self, bits: int) -> "_Fixed":
        return _Fixed(_sat_round_mul_pot(self.raw, self.bits - bits), bits)

    def exact_mul_pot(self, exponent: int) -> "_Fixed":
        """ExactMulByPot: the value times 2^exponent by a change of format, raw unchanged."""
        return _Fixed(self.raw, self.bits + exponent)


def _sat_round_mul_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, x << exponent))


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a: _Fixed) -> _Fixed:
    constant_term = _Fixed(1895147668, 0)
    constant_1_over_3 = _Fixed(715827883, 0)
    x = a + _Fixed.const_pot(-3, 0)
    x2 = x * x
    x3 = x2 * x
    x4 = x2 * x2
    x4_over_4 = x4.mul_pot(-2)
    poly = (((x4_over_4 + x3) * constant_1_over_3) + x2).mul_pot(-1)
    return constant_term + constant_term * (x + poly)


def _exp_on_negative_values(a: _Fixed) -> _Fixed:
    bits = a.bits
    frac = 31 - bits
    quarter = _Fixed.const_pot(-2, bits)
    mask = quarter.raw - 1
    a_mod = _Fixed((a.raw & mask) - quarter.raw, bits)
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(a_mod.rescale(0))
    remainder = _wrap32(a_mod.raw - a.raw)
    for exponent, multiplier in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                                 (2, 39332535), (3, 720401), (4, 242)):
        if bits > exponent:
            hit = (remainder & (1 << (frac + exponent))) != 0
            result = _Fixed(np.where(hit, (result * _Fixed(multiplier, 0)).raw, result.raw), 0)
    if bits > 5:
        clamp = -(1 << (36 - bits))
        result = _Fixed(np.where(a.raw < clamp, 0, result.raw), 0)
    return _Fixed(np.where(a.raw == 0, INT32_MAX, result.raw), 0)


def _newton_one_over_half_denominator(a: _Fixed) -> _Fixed:
    """The Newton-Raphson division shared by logistic and tanh: x ~ 1 / half_denominator, F2."""
    half_denominator = _Fixed(_rounding_half_sum(a.raw, INT32_MAX), 0)
    x = _Fixed(1515870810, 2) + half_denominator * _Fixed(-1010580540, 2)
    for _ in range(3):
        one_minus = _Fixed.one(2) - half_denominator * x
        x = x + (x * one_minus).rescale(2)
    return x


def _rounding_half_sum(a: np.ndarray, b: int) -> np.ndarray:
    s = np.asarray(a, np.int64) + b
    sign = np.where(s >= 0, 1, -1)
    t = s + sign
    return np.where(t >= 0, t // 2, -((-t) // 2))             # C division truncates toward zero


def fixed_logistic(raw: np.ndarray, bits: int) -> np.ndarray:
    """gemmlowp::logistic on FixedPoint<int32, bits> raw values -> FixedPoint<int32, 0> raw."""
    a = _Fixed(raw, bits)
    positive = a.raw > 0
    abs_a = _Fixed(np.where(positive, a.raw, -a.raw), bits)
    x = _newton_one_over_half_denominator(_exp_on_negative_values(-abs_a))
    if_positive = x.exact_mul_pot(-1).rescale(0)
    if_negative = _Fixed.one(0) - if_positive
    return np.where(a.raw == 0, 1 << 30, np.where(positive, if_positive.raw, if_negative.raw))


def fixed_tanh(raw: np.ndarray, bits: int) -> np.ndarray:
    """gemmlowp::tanh on FixedPoint<int32, bits> raw values -> FixedPoint<int32, 0> raw."""
    a = _Fixed(raw, bits)
    negative = a.raw < 0
    n = _Fixed(np.where(negative, a.raw, -a.raw), bits)
    x = _newton_one_over_half_denominator(_exp_on_negative_values(n.exact_mul_pot(1)))
    t = (x - _Fixed.one(2)).rescale(0)
    return np.where(a.raw == 0, 0, np.where(negative, -t.raw, t.raw))


def _input_radius(integer_bits: int, left_shift: int, total_bits: int = 31) -> int:
    """CalculateInputRadius."""
    return int(math.floor(((1 << integer_bits) - 1) * (1 << (total_bits - integer_bits)) / (1 << left_shift)))


def int8_logistic_table(scale: float, zero_point: int) -> np.ndarray:
    """TFLite Micro's int8 LOGISTIC for every int8 input (output scale 1/256, zero point -128)."""
    return _int8_sigmoid_like(scale, zero_point, fixed_logistic, 31 - 8, -128)


def int8_tanh_table(scale: float, zero_point: int) -> np.ndarray:
    """TFLite Micro's int8 TANH for every int8 input (output scale 1/128, zero point 0)."""
    return _int8_sigmoid_like(scale, zero_point, fixed_tanh, 31 - 7, 0)


def _int8_sigmoid_like(scale: float, zero_point: int, fn, out_shift: int, out_zp: int) -> np.ndarray:
    real = float(np.float32(scale)) * float(1 << (31 - 4))
    q, left_shift = math.frexp(real)
    multiplier = round_half_away(q * (1 << 31))
    radius = _input_radius(4, left_shift)
    x = np.arange(-128, 128, dtype=np.int64) - zero_point
    in_q4 = multiply_by_quantized_multiplier(x, multiplier, left_shift)
    out = rounding_divide_by_pot(fn(in_q4, 4), out_shift) + out_zp
    out = np.clip(out, -128, 127)
    out = np.where(x <= -radius, -128, np.where(x >= radius, 127, out))
    return out.astype(np.int8)


def _qparams(t: dict) -> tuple[float, int]:
    return (float(t["scale"][0]), int(t["zero_point"][0])) if len(t["scale"]) else (0.0, 0)


def _activation_range(activation: str, t: dict) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 outputs."""
    scale, zp = _qparams(t)
    if activation == "NONE":
        return -128, 127
    if activation == "RELU":
        return max(-128, zp + round_half_away(0.0 / scale)), 127
    raise ArtifactError(f"fused activation {activation} is not supported by the numpy backend")


def int8_binary_table(op: str, a: dict, b: dict, out: dict, activation: str) -> np.ndarray:
    """TFLite Micro's int8 ADD/SUB/MUL for every pair of int8 inputs: table[x1 + 128, x2 + 128]."""
    (s1, z1), (s2, z2), (so, zo) = _qparams(a), _qparams(b), _qparams(out)
    lo, hi = _activation_range(activation, out)
    x1 = np.arange(-128, 128, dtype=np.int64)[:, None] - z1
    x2 = np.arange(-128, 128, dtype=np.int64)[None, :] - z2
    if op == "MUL":
        m, sh = quantize_multiplier(float(np.float64(s1) * np.float64(s2) / np.float64(so)))
        raw = multiply_by_quantized_multiplier(x1 * x2, m, sh) + zo
    else:
        left = 20
        if op == "ADD":            # TFLite Micro prepares ADD in double...
            twice = 2.0 * max(float(s1), float(s2))
            r1, r2, ro = float(s1) / twice, float(s2) / twice, twice / ((1 << left) * float(so))
        else:                      # ...and SUB in float, then widens
            twice32 = np.float32(2) * max(np.float32(s1), np.float32(s2))
            r1, r2 = float(np.float32(s1) / twice32), float(np.float32(s2) / twice32)
            ro = float(twice32 / (np.float32(1 << left) * np.float32(so)))
        (m1, e1), (m2, e2), (mo, eo) = (quantize_multiplier(r) for r in (r1, r2, ro))
        v1 = _smaller_than_one(x1 << left, m1, e1)
        v2 = _smaller_than_one(x2 << left, m2, e2)
        raw = _smaller_than_one(_wrap32(v1 + v2 if op == "ADD" else v1 - v2), mo, eo) + zo
    return np.clip(raw, lo, hi).astype(np.int8)


def int8_greater_equal_table(a: dict, b: dict) -> np.ndarray:
    """TFLite Micro's int8 GREATER_EQUAL (both sides rescaled with an 8-bit left shift)."""
    (s1, z1), (s2, z2) = _qparams(a), _qparams(b)
    left = 8
    m1, e1 = quantize_multiplier(float(s1))
    m2, e2 = quantize_multiplier(float(s2))
    x1 = np.arange(-128, 128, dtype=np.int64)[:, None] - z1
    x2 = np.arange(-128, 128, dtype=np.int64)[None, :] - z2
    return _smaller_than_one(x1 << left, m1, e1) >= _smaller_than_one(x2 << left, m2, e2)


# -- the compiled graph ----------------------------------------------------------------------
def compile_graph(model: dict):
    """(buffers, steps): one numpy buffer per tensor, and per operator a closure that reads
    and writes them in graph order. Refuses what it does not implement, by name."""
    tensors = model["tensors"]
    for t in tensors:
        if t["type"] not in DTYPES:
            raise ArtifactError(f"tensor {t['name']!r} has type {TYPES.get(t['type'], t['type'])}, which the numpy "
                                "backend does not run")
        if t["type"] == INT16:
            raise ArtifactError(f"tensor {t['name']!r} is int16 (an a16w8 plan): the numpy backend runs fp32 and "
                                "full-int8 graphs only; use the fp32 or int8 artifact, or LiteRT")
    bufs = [t["const"] if t["const"] is not None else np.zeros(tuple(max(1, d) for d in t["shape"]),
                                                               DTYPES[t["type"]]) for t in tensors]
    # int8 FULLY_CONNECTED layers that read the same tensor run as one matmul and one
    # requantisation over all their channels (the arithmetic is per channel, so fusing
    # changes no result), at the place of the first: their only other inputs are constants
    groups: dict[int, list] = {}
    for k, op in enumerate(model["ops"]):
        spec = _fc_int8_spec(op, tensors, bufs) if op["op"] == "FULLY_CONNECTED" else None
        if spec is not None:
            groups.setdefault(op["inputs"][0], []).append((k, spec))
    fused = {members[0][0]: _fc_int8_group([s for _, s in members], bufs[x]) for x, members in groups.items()}
    skip = {k for members in groups.values() for k, _ in members[1:]}
    steps = [fused[k] if k in fused else _compile_op(op, tensors, bufs)
             for k, op in enumerate(model["ops"]) if k not in skip]
    return bufs, steps


def _compile_op(op: dict, tensors: list[dict], bufs: list[np.ndarray]):
    kind, act = op["op"], op["activation"]
    ins, (o,) = op["inputs"], op["outputs"]
    t_in = [tensors[i] if i >= 0 else None for i in ins]
    t_out = tensors[o]
    types = {t["type"] for t in t_in if t is not None} | {t_out["type"]}
    out = bufs[o]
    if kind == "QUANTIZE":
        scale, zp = _qparams(t_out)
        scale32, x = np.float32(scale), bufs[ins[0]]

        def quantize():
            v = x / scale32                                 # float32 division, as AffineQuantize
            np.clip(np.trunc(v + np.copysign(np.float32(0.5), v)) + zp, -128, 127, out=v)
            out[...] = v
        return quantize
    if kind == "DEQUANTIZE":
        scale, zp = _qparams(t_in[0])
        table = _by_raw_bytes(((np.arange(-128, 128) - zp) * np.float64(scale)).astype(np.float32))
        x = bufs[ins[0]].view(np.uint8)
        return lambda: np.copyto(out, table[x])
    if kind == "FULLY_CONNECTED":
        return _fully_connected(t_in, t_out, act, bufs[ins[0]], bufs[ins[1]],
                                bufs[ins[2]] if len(ins) > 2 and ins[2] >= 0 else None, out)
    if kind in ("ADD", "SUB", "MUL") and types == {INT8}:
        table = _by_raw_bytes(int8_binary_table(kind, t_in[0], t_in[1], t_out, act))
        a, b = bufs[ins[0]].view(np.uint8), bufs[ins[1]].view(np.uint8)
        return lambda: np.copyto(out, table[a, b])
    if kind in ("ADD", "SUB", "MUL") and types == {FLOAT32}:
        fn = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply}[kind]
        a, b = bufs[ins[0]], bufs[ins[1]]
        if act == "NONE":
            return lambda: fn(a, b, out=out)
        if act == "RELU":
            return lambda: (fn(a, b, out=out), np.maximum(out, 0, out=out))
    if kind in ("LOGISTIC", "TANH") and types == {INT8}:
        s, zp = _qparams(t_in[0])
        table = _by_raw_bytes(int8_logistic_table(s, zp) if kind == "LOGISTIC" else int8_tanh_table(s, zp))
        x = bufs[ins[0]].view(np.uint8)
        return lambda: np.copyto(out, table[x])
    if kind == "LOGISTIC" and types == {FLOAT32}:
        x = bufs[ins[0]]
        return lambda: _logistic_f32(x, out)
    if kind == "TANH" and types == {FLOAT32}:
        x = bufs[ins[0]]
        return lambda: np.tanh(x, out=out)
    if kind == "GREATER_EQUAL" and t_out["type"] == BOOL:
        a, b = bufs[ins[0]], bufs[ins[1]]
        if types == {INT8, BOOL}:
            table = _by_raw_bytes(int8_greater_equal_table(t_in[0], t_in[1]))
            av, bv = a.view(np.uint8), b.view(np.uint8)
            return lambda: np.copyto(out, table[av, bv])
        if types == {FLOAT32, BOOL}:
            return lambda: np.greater_equal(a, b, out=out)
    if kind == "CAST" and t_in[0]["type"] == BOOL and t_out["type"] in (FLOAT32, INT8):
        x = bufs[ins[0]]
        return lambda: np.copyto(out, x, casting="unsafe")
    raise ArtifactError(f"operator {kind} on {sorted(TYPES.get(t, t) for t in types)} tensors is not implemented by "
                        "the numpy backend")


def _by_raw_bytes(table: np.ndarray) -> np.ndarray:
    """A table indexed by int8 values (-128..127 along each axis) re-indexed by their raw
    bytes (0..255), so a step indexes it with a uint8 view of its int8 buffer, no conversion."""
    return np.roll(table, 128, axis=tuple(range(table.ndim)))


def _logistic_f32(x: np.ndarray, out: np.ndarray) -> None:
    """TFLite Micro's float LOGISTIC: 1 / (1 + exp(-x)), with its cut-offs."""
    with np.errstate(over="ignore"):
        np.negative(x, out=out)
        np.exp(out, out=out)
        np.add(out, np.float32(1), out=out)
        np.reciprocal(out, out=out)
    out[x > np.float32(16.619047164916992188)] = 1.0
    low = x < np.float32(-9.0)
    if low.any():
        out[low] = np.exp(x[low])


def _fully_connected(t_in, t_out, act, x, w, bias, out):
    if t_out["type"] == FLOAT32:
        wt = np.ascontiguousarray(w.T)
        b = bias if bias is not None else np.zeros(out.shape[-1], np.float32)
        if act not in ("NONE", "RELU"):
            raise ArtifactError(f"fused activation {act} is not supported by the numpy backend")
        relu = act == "RELU"

        def fc_f32():
            np.matmul(x, wt, out=out)
            np.add(out, b, out=out)
            if relu:
                np.maximum(out, 0, out=out)
        return fc_f32
    raise ArtifactError("FULLY_CONNECTED with these tensor types is not implemented by the numpy backend")


def _fc_int8_spec(op: dict, tensors: list[dict], bufs: list[np.ndarray]) -> dict | None:
    """The per-channel constants of an int8 FULLY_CONNECTED (TFLite Micro's preparation), or
    None for another kind of FULLY_CONNECTED."""
    ins, (o,) = op["inputs"], op["outputs"]
    t_in, t_w, t_out = tensors[ins[0]], tensors[ins[1]], tensors[o]
    if not (t_in["type"] == INT8 and t_w["type"] == INT8 and t_out["type"] == INT8):
        return None
    w = bufs[ins[1]]
    bias = bufs[ins[2]] if len(ins) > 2 and ins[2] >= 0 else None
    if bias is not None and tensors[ins[2]]["type"] != INT32:
        raise ArtifactError("an int8 FULLY_CONNECTED with a non-int32 bias is not implemented by the numpy backend")
    s_in, z_in = _qparams(t_in)
    s_out, z_out = _qparams(t_out)
    w_scales = t_w["scale"].astype(np.float32)
    if len(w_scales) > 1:            # per channel: the multipliers in double, from float scales
        qs = [quantize_multiplier(float(s_in) * float(ws) / float(s_out)) for ws in w_scales]
    else:                            # per tensor (GetQuantizedConvolutionMultipler)
        qs = [quantize_multiplier(float(np.float64(s_in) * np.float64(w_scales[0]) / np.float64(s_out)))] * len(w)
    lo, hi = _activation_range(op["activation"], t_out)
    n = len(w)
    return {"w": w.astype(np.float64),
            # acc = sum w * (x - z_in) + bias: the zero point folded into a constant per channel
            "const": (bias.astype(np.float64) if bias is not None else np.zeros(n)) - z_in * w.astype(np.float64).sum(1),
            "mult": np.array([m for m, _ in qs], np.int64), "shift": np.array([e for _, e in qs], np.int64),
            "z_out": np.full(n, z_out, np.int64), "lo": np.full(n, lo, np.int64), "hi": np.full(n, hi, np.int64),
            "out": bufs[o]}


def _fc_int8_group(specs: list[dict], x: np.ndarray):
    """One closure for int8 FULLY_CONNECTED layers on the same input: a float64 matmul (exact:
    |acc| < 2^53 for any int8 layer edgerf makes), then TFLite Micro's requantisation."""
    cat = {k: np.concatenate([s[k] for s in specs]) for k in ("const", "mult", "shift", "z_out", "lo", "hi")}
    wf = np.ascontiguousarray(np.concatenate([s["w"] for s in specs]).T)
    cuts = np.cumsum([0] + [len(s["w"]) for s in specs])
    outs = [(s["out"], cuts[k], cuts[k + 1]) for k, s in enumerate(specs)]
    xf = np.zeros(x.shape, np.float64)
    accf = np.zeros((x.shape[0], wf.shape[1]), np.float64)
    acc = np.zeros(accf.shape, np.int64)
    neg = np.zeros(accf.shape, bool)
    mult, shift, const, z_out, lo, hi = (cat[k] for k in ("mult", "shift", "const", "z_out", "lo", "hi"))
    if (shift > 0).any():           # a multiplier above one: the general path, with its left shift
        def fc_int8_general():
            np.copyto(xf, x)
            v = (xf @ wf + const).astype(np.int64)
            v = np.clip(multiply_by_quantized_multiplier(v, mult, shift) + z_out, lo, hi)
            for out, a, b in outs:
                np.copyto(out, v[..., a:b], casting="unsafe")
        return fc_int8_general
    # shift <= 0 (every layer edgerf exports): SaturatingRoundingDoublingHighMul is (a*b + 2^30) >> 31
    # for every sign (the C nudge and truncation fold into one arithmetic shift), and
    # RoundingDivideByPOT is (v + 2^(e-1) - [v < 0]) >> e for e > 0; both checked against the
    # general functions above in tests/test_numpy_backend.py
    right = -shift
    rnd = (np.int64(1) << right) >> 1
    has = right > 0

    def fc_int8():
        np.copyto(xf, x)
        np.matmul(xf, wf, out=accf)
        np.add(accf, const, out=accf)
        np.copyto(acc, accf, casting="unsafe")
        np.multiply(acc, mult, out=acc)
        np.add(acc, 1 << 30, out=acc)
        np.right_shift(acc, 31, out=acc)
        np.less(acc, 0, out=neg)
        np.logical_and(neg, has, out=neg)
        np.add(acc, rnd, out=acc)
        np.subtract(acc, neg, out=acc)
        np.right_shift(acc, right, out=acc)
        np.add(acc, z_out, out=acc)
        np.clip(acc, lo, hi, out=acc)
        for out, a, b in outs:
            np.copyto(out, acc[..., a:b], casting="unsafe")
    return fc_int8
