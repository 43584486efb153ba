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
  int8 ops are functions of at most two int8 inputs, and int16 LOGISTIC, TANH and DEQUANTIZE
  of one int16 input, so at load every possible input is run through the arithmetic above
  once and the op becomes a table lookup (256 or 65,536 entries): exact by construction,
  and cheap per step. int16 ADD, SUB and MUL (the 16x8 plans) compute per step.

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
OPS = {0: "ADD", 6: "DEQUANTIZE", 9: "FULLY_CONNECTED", 14: "LOGISTIC", 18: "MUL", 25: "SOFTMAX", 28: "TANH",
       41: "SUB", 53: "CAST", 62: "GREATER_EQUAL", 114: "QUANTIZE"}
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
            kind = OPS.get(code, f"builtin operator {code}")
            ops.append({"op": kind, "inputs": [int(i) for i in o.array(1, np.int32)],
                        "outputs": [int(i) for i in o.array(2, np.int32)],
                        # SoftmaxOptions hold beta (float, default 0) where the others hold the activation
                        **({"activation": "NONE", "beta": opts.scalar(0, "f") if opts else 0.0} if kind == "SOFTMAX"
                           else {"activation": ACTIVATIONS.get(opts.scalar(0, "b") if opts else 0, "?")})})
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


def _limits(t: dict) -> tuple[int, int]:
    info = np.iinfo(DTYPES[t["type"]])
    return int(info.min), int(info.max)


def _activation_range(activation: str, t: dict) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 and int16 outputs."""
    scale, zp = _qparams(t)
    lo, hi = _limits(t)
    if activation == "NONE":
        return lo, hi
    if activation == "RELU":
        return max(lo, zp + round_half_away(0.0 / scale)), hi
    raise ArtifactError(f"fused activation {activation} is not supported by the numpy backend")


def binary_arithmetic(op: str, a: dict, b: dict, out: dict, activation: str):
    """TFLite Micro's quantised ADD/SUB/MUL (int8 or int16, as ``out``): its preparation done
    once; returns f(x1, x2) -> clamped outputs, on raw input values held in int64."""
    (s1, z1), (s2, z2), (so, zo) = _qparams(a), _qparams(b), _qparams(out)
    lo, hi = _activation_range(activation, out)
    if op == "MUL":
        m, sh = quantize_multiplier(float(np.float64(s1) * np.float64(s2) / np.float64(so)))
        return lambda x1, x2: np.clip(multiply_by_quantized_multiplier((x1 - z1) * (x2 - z2), m, sh) + zo, lo, hi)
    int16 = out["type"] == INT16
    left = 15 if int16 else 20                       # the headroom left in int32 for each width
    if op == "ADD" or int16:                       # TFLite Micro prepares ADD (and int16 SUB) in double...
        twice = 2.0 * max(float(s1), float(s2))
        r1, r2, ro = float(s1) / twice, float(s2) / twice, twice / ((1 << left) * float(so))
    else:                      # ...and int8 SUB in float, then widens (both measured bit for bit)
        twice32 = np.float32(2) * max(np.float32(s1), np.float32(s2))
        r1, r2 = float(np.float32(s1) / twice32), float(np.float32(s2) / twice32)
        ro = float(twice32 / (np.float32(1 << left) * np.float32(so)))
    (m1, e1), (m2, e2), (mo, eo) = (quantize_multiplier(r) for r in (r1, r2, ro))
    sign = 1 if op == "ADD" else -1

    def f(x1, x2):
        v1 = _smaller_than_one((x1 - z1) << left, m1, e1)
        v2 = _smaller_than_one((x2 - z2) << left, m2, e2)
        return np.clip(_smaller_than_one(_wrap32(v1 + sign * v2), mo, eo) + zo, lo, hi)
    return f


def int8_binary_table(op: str, a: dict, b: dict, out: dict, activation: str) -> np.ndarray:
    """TFLite Micro's int8 ADD/SUB/MUL for every pair of int8 inputs: table[x1 + 128, x2 + 128]."""
    x = np.arange(-128, 128, dtype=np.int64)
    return binary_arithmetic(op, a, b, out, activation)(x[:, None], x[None, :]).astype(np.int8)


# -- 16x8: int16 activations ------------------------------------------------------------------
# The table TFLite's int16 LOGISTIC and TANH interpolate (tanh(x) = 2 sigmoid(2x) - 1):
# sigmoid(i / 24) in 0.16 fixed point, i = 0..255, as TFLite ships it. Its values are data, not
# a formula: 44 entries sit one above 65536 sigmoid(i / 24) rounded, so they are written out.
SIGMOID_TABLE_UINT16 = np.array([
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149, 40794,
    41432, 42064, 42688, 43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369, 47911, 48443,
    48964, 49475, 49975, 50464, 50942, 51409, 51865, 52311, 52745, 53169, 53581, 53983, 54374,
    54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433, 57724, 58007, 58280, 58544,
    58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110, 61279,
    61441, 61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886, 62990,
    63090, 63186, 63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835, 63903, 63968, 64030,
    64090, 64148, 64204, 64257, 64308, 64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652,
    64687, 64721, 64754, 64786, 64816, 64845, 64873, 64900, 64926, 64950, 64974, 64997, 65019,
    65039, 65060, 65079, 65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208, 65221, 65234,
    65246, 65258, 65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360,
    65367, 65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433,
    65438, 65442, 65445, 65449, 65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474, 65476,
    65479, 65481, 65483, 65485, 65488, 65489, 65491, 65493, 65495, 65497, 65498, 65500, 65501,
    65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513, 65514, 65515, 65516,
    65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524,
    65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529, 65529,
    65529, 65530, 65530, 65530, 65530, 65531, 65531, 65531, 65531, 65531, 65532, 65532, 65532,
    65532, 65532, 65532, 65533, 65533, 65533, 65533, 65533, 65533, 65533, 65533, 65534, 65534,
    65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65535], np.int64)


def _checked_log2(x: float) -> tuple[bool, int]:
    """CheckedLog2, in float32 as TFLite computes it: (is a power of two, its rounded log2)."""
    x_log2 = np.float32(math.log(np.float32(x))) * (np.float32(1.0) / np.float32(math.log(np.float32(2.0))))
    rounded = np.float32(round_half_away(float(x_log2)))
    return bool(abs(np.float32(x_log2 - rounded)) < np.float32(1e-3)), int(rounded)


def _int16_lut_multiplier(scale: float, pot_shifts: tuple[int, ...]) -> tuple[int, int]:
    """(input_multiplier, input_left_shift) of int16 LOGISTIC/TANH's preparation: a power-of-two
    input scale keeps its shift; any other is rescaled to 1/(3 * 4096) by a 15-bit multiplier."""
    pot, log2 = _checked_log2(scale)
    left_shift = (15 - 3) + log2
    if pot and left_shift in pot_shifts:
        return 3 << left_shift, 0                    # the kernel's power-of-two case
    multiplier, left_shift = float(np.float32(scale)) * 4096.0 * 3.0, 0
    while multiplier <= 32767.0 / 2.0 and left_shift <= 30:
        left_shift += 1
        multiplier *= 2.0
    if multiplier > 32767:                         # the kernel's 16-bit multiplier cannot hold it
        raise ArtifactError(f"int16 LOGISTIC/TANH input scale {scale:g} is beyond TFLite Micro's kernel "
                            "(at most 32767 / 12288)")
    return int(multiplier), left_shift


def _int16_lut_input(scale: float, pot_shifts: tuple[int, ...]) -> np.ndarray:
    """Every int16 input rescaled as the LOGISTIC/TANH kernels do, int64."""
    multiplier, left_shift = _int16_lut_multiplier(scale, pot_shifts)
    rnd = (1 << (left_shift - 1)) if left_shift > 0 else 0
    return (np.arange(-32768, 32768, dtype=np.int64) * multiplier + rnd) >> left_shift


def int16_logistic_table(scale: float) -> np.ndarray:
    """TFLite Micro's int16 LOGISTIC for every int16 input (zero points 0, output scale 2^-15)."""
    v = _int16_lut_input(scale, (0,))
    a = np.abs(v)
    uh = a >> 9
    i = np.minimum(uh, 254)
    ua, ub = SIGMOID_TABLE_UINT16[i], SIGMOID_TABLE_UINT16[i + 1]
    result = np.where(uh >= 255, 0x7FFF << 10, (ua << 9) + (a & 0x1FF) * (ub - ua))
    result = np.where(v >= 0, result + (1 << 9), (1 << 25) - result + (1 << 9) - 1) & 0xFFFFFFFF
    return (result >> 10).astype(np.uint16).view(np.int16)


def int16_tanh_table(scale: float) -> np.ndarray:
    """TFLite Micro's int16 TANH for every int16 input (zero points 0, output scale 2^-15)."""
    v = _int16_lut_input(scale, (0, 1))
    a = np.abs(v)
    uh = a >> 8
    i = np.minimum(uh, 254)
    ua, ub = SIGMOID_TABLE_UINT16[i], SIGMOID_TABLE_UINT16[i + 1]
    result = np.where(uh >= 255, 0xFFFF << 8, (ua << 8) + (a & 0xFF) * (ub - ua))
    result = np.where(v >= 0, result - (1 << 23) + (1 << 7), -result + (1 << 23) + (1 << 7) - 1)
    return (result >> 8).astype(np.int16)


def multiply_by_quantized_multiplier_int64(x: np.ndarray, multiplier, shift) -> np.ndarray:
    """MultiplyByQuantizedMultiplier for int64 accumulators (16x8 FULLY_CONNECTED): the
    multiplier reduced to 16 bits, one rounding shift (the same in every TFLite build)."""
    multiplier = np.asarray(multiplier, np.int64)
    reduced = np.where(multiplier < 0x7FFF0000, (multiplier + (1 << 15)) >> 16, 0x7FFF)
    total = 15 - np.asarray(shift, np.int64)
    return (np.asarray(x, np.int64) * reduced + (np.int64(1) << (total - 1))) >> total


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
        scale = np.asarray(t["scale"], np.float64)
        if scale.size and not (np.isfinite(scale).all() and (scale > 0).all()):
            raise ArtifactError(f"tensor {t['name']!r} has quantisation scale {scale[~(np.isfinite(scale) & (scale > 0))][0]}"
                                ": a quantised tensor needs finite positive scales")
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
    if kind == "QUANTIZE" and t_in[0]["type"] == FLOAT32 and t_out["type"] in (INT8, INT16):
        scale, zp = _qparams(t_out)
        scale32, x = np.float32(scale), bufs[ins[0]]
        lo, hi = _limits(t_out)

        def quantize():
            v = x / scale32                                 # float32 division, as AffineQuantize
            np.clip(np.trunc(v + np.copysign(np.float32(0.5), v)) + zp, lo, hi, out=v)
            out[...] = v
        return quantize
    if kind == "DEQUANTIZE" and t_in[0]["type"] in (INT8, INT16):
        scale, zp = _qparams(t_in[0])
        lo, hi = _limits(t_in[0])
        table = _by_raw_bytes(((np.arange(lo, hi + 1) - zp) * np.float64(scale)).astype(np.float32))
        x = _raw(bufs[ins[0]])
        return lambda: np.copyto(out, table[x])
    if kind == "FULLY_CONNECTED":
        return _fully_connected(t_in, t_out, act, bufs[ins[0]], bufs[ins[1]],
                                bufs[ins[2]] if len(ins) > 2 and ins[2] >= 0 else None, out)
    if kind in ("ADD", "SUB", "MUL") and types == {INT8}:
        table = _by_raw_bytes(int8_binary_table(kind, t_in[0], t_in[1], t_out, act))
        a, b = bufs[ins[0]].view(np.uint8), bufs[ins[1]].view(np.uint8)
        return lambda: np.copyto(out, table[a, b])
    if kind in ("ADD", "SUB", "MUL") and types == {INT16}:
        f = binary_arithmetic(kind, t_in[0], t_in[1], t_out, act)
        a, b = bufs[ins[0]], bufs[ins[1]]
        return lambda: np.copyto(out, f(a.astype(np.int64), b.astype(np.int64)), casting="unsafe")
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
    if kind in ("LOGISTIC", "TANH") and types == {INT16}:
        if _qparams(t_in[0])[1] or _qparams(t_out)[1]:
            raise ArtifactError(f"int16 {kind} with a nonzero zero point (TFLite Micro refuses it too)")
        s_in = _qparams(t_in[0])[0]
        table = _by_raw_bytes(int16_logistic_table(s_in) if kind == "LOGISTIC" else int16_tanh_table(s_in))
        x = _raw(bufs[ins[0]])
        return lambda: np.copyto(out, table[x])
    if kind == "LOGISTIC" and types == {FLOAT32}:
        x = bufs[ins[0]]
        return lambda: _logistic_f32(x, out)
    if kind == "TANH" and types == {FLOAT32}:
        x = bufs[ins[0]]
        return lambda: np.tanh(x, out=out)
    if kind == "SOFTMAX" and types == {FLOAT32}:
        x = bufs[ins[0]]
        return lambda: _softmax_f32(x, np.float32(op["beta"]), out)
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
    """A table indexed by int8 (int16) values, -128..127 (-32768..32767) along each axis,
    re-indexed by their raw bits, so a step indexes it with an unsigned view of its buffer
    (``_raw``), no conversion."""
    return np.roll(table, [n // 2 for n in table.shape], axis=tuple(range(table.ndim)))


def _raw(buf: np.ndarray) -> np.ndarray:
    return buf.view(np.uint8 if buf.dtype == np.int8 else np.uint16)


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


def _softmax_f32(x: np.ndarray, beta: np.float32, out: np.ndarray) -> None:
    """TFLite Micro's float SOFTMAX over the last axis: exp((x - max) * beta) in float32, summed
    in column order in float32 (``accumulate`` adds in order, as its loop does), then divided.
    exp is computed in float64 and rounded, the float32 exp of a correctly rounding libm."""
    v = x - np.maximum.reduce(x, axis=-1, keepdims=True)
    if beta != 1:                     # times one changes no float: skipped (every graph edgerf writes)
        v *= beta
    np.copyto(out, np.exp(v, dtype=np.float64), casting="same_kind")
    np.divide(out, np.add.accumulate(out, axis=-1)[..., -1:], out=out)


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
    t_w = t_in[1]
    if t_in[0]["type"] == INT16 and t_w["type"] == INT8 and t_out["type"] == INT16:
        if bias is not None and t_in[2]["type"] != INT64:
            raise ArtifactError("a 16x8 FULLY_CONNECTED with a non-int64 bias is not implemented by the numpy backend")
        (s_in, z_in), (s_out, z_out) = _qparams(t_in[0]), _qparams(t_out)
        mult, shift = _fc_multipliers(s_in, t_w["scale"], s_out, len(w))
        lo, hi = _activation_range(act, t_out)
        wf = np.ascontiguousarray(w.astype(np.float64).T)
        # acc = sum w * (x - z_in) + bias, exact in float64 (|acc| < 2^53 for any 16x8 layer edgerf makes)
        const = (bias.astype(np.float64) if bias is not None else np.zeros(len(w))) - z_in * wf.sum(0)

        def fc_16x8():
            acc = (x.astype(np.float64) @ wf + const).astype(np.int64)
            np.copyto(out, np.clip(multiply_by_quantized_multiplier_int64(acc, mult, shift) + z_out, lo, hi),
                      casting="unsafe")
        return fc_16x8
    raise ArtifactError("FULLY_CONNECTED with these tensor types is not implemented by the numpy backend")


def _fc_multipliers(s_in: float, w_scales: np.ndarray, s_out: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """FULLY_CONNECTED's output multipliers and shifts, one per output channel."""
    w_scales = w_scales.astype(np.float32)
    if len(w_scales) > 1:            # per channel: the multipliers in double, from float scales
        qs = [quantize_multiplier(float(s_in) * float(ws) / float(s_out)) for ws in w_scales]
    else:                            # per tensor (GetQuantizedConvolutionMultipler)
        qs = [quantize_multiplier(float(np.float64(s_in) * np.float64(w_scales[0]) / np.float64(s_out)))] * n
    return np.array([m for m, _ in qs], np.int64), np.array([e for _, e in qs], np.int64)


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
    n = len(w)
    mult, shift = _fc_multipliers(s_in, t_w["scale"], s_out, n)
    lo, hi = _activation_range(op["activation"], t_out)
    return {"w": w.astype(np.float64),
            # acc = sum w * (x - z_in) + bias: the zero point folded into a constant per channel
            "const": (bias.astype(np.float64) if bias is not None else np.zeros(n)) - z_in * w.astype(np.float64).sum(1),
            "mult": mult, "shift": shift,
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
