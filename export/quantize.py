"""Static int8 (QDQ) quantization with a state-aware precision plan.

ONNX Runtime's ``quantize_static`` inserts Quantize/DequantizeLinear pairs, weights
per channel (int8, symmetric), activations per tensor from the calibrated min/max.
A recurrent state is fed back every step, so its quantization error compounds; the
plan is chosen by measuring, closed loop over a long held-out stream, what each
precision does to the output, from cheapest to safest:

    int8        every activation int8 (state included)
    int8-gemm   only the matmuls (Gemm) in int8: weights and the matmul inputs/outputs;
                the elementwise recurrence (a*h + Bu, leak, threshold, gates) stays
                float, so the state itself is never re-quantized and its error does
                not compound through the loop
    a16w8       every activation int16, weights int8
    a16w8-gemm  the matmuls with int16 activations, int8 weights; recurrence float
    fp32        no quantization (reported as such)

The first plan within ``Budget`` (by default: acc_p within 0.5 points of fp32 on the same
held-out samples, the upper end of its paired 95% interval within 1 point, and per-step
false alarms within +0.05 points) is kept; the figures of every plan tried are reported,
with the smallest drop the check could have detected at its sample size. A small val
split is streamed several times (new order, new gaps) so that rounding flips that depend
on context average out; the interval still counts each sample once.
"""

from __future__ import annotations

import os

import numpy as np
import onnx

from edgerf.configs import Z95, Budget  # noqa: F401  (the budget the plan ladder judges by)
from edgerf.runtime.manifest import state_io_names
from edgerf.runtime.progress import quiet

# The integer plans, cheapest first (the ladder), each with the dtype of its activations;
# both exporters (ONNX here, TFLite in edgerf.export.tflite) take their plans from here.
PLANS = {"int8": "int8", "int8-gemm": "int8", "a16w8": "int16", "a16w8-gemm": "int16"}
# Tried and dropped: int8 with only the state inputs/outputs overridden to int16. The
# intermediate tensors of the recurrent path (a*h, the Add that forms h') stay int8,
# so it gained nothing on SSM (worse: 34% vs 48% agreement on a small model) and
# little on LIF; the whole-graph A16W8 rung is what helps.


def paired_acc_p_drop(pred_ref: np.ndarray, pred: np.ndarray, labels: np.ndarray,
                      ids: np.ndarray | None = None) -> dict:
    """acc_p(fp32) - acc_p(plan) over the same samples, with its paired 95% interval.

    A sample met in several contexts (``ids``: the held-out split streamed again in a new
    order with new gaps) counts once, with the mean of its paired differences: contexts
    average out the rounding flips that depend on what came before, but they are not new
    samples, so the interval rests on the distinct samples alone (normal approximation on
    the per-sample differences; the discordant ones carry it)."""
    d = (pred_ref == labels).astype(np.float64) - (pred == labels).astype(np.float64)
    ids = np.arange(len(d)) if ids is None else np.asarray(ids)
    _, inv, counts = np.unique(ids, return_inverse=True, return_counts=True)
    per_sample = np.bincount(inv, weights=d) / counts
    n = len(per_sample)
    mean = float(per_sample.mean()) if n else float("nan")
    se = float(per_sample.std(ddof=1)) / np.sqrt(n) if n > 1 else float("nan")
    # The spread a plan as good as fp32 would show here: under equivalence the samples it
    # loses and those it wins back are alike, so twice the smaller side estimates it. A plan
    # that loses the same samples in every context (a real drop) does not widen it.
    side = min(float((per_sample[per_sample > 0] ** 2).sum()), float((per_sample[per_sample < 0] ** 2).sum()))
    se_null = float(np.sqrt(2 * side)) / n if n else float("nan")
    return {"drop": mean, "ci95": [mean - Z95 * se, mean + Z95 * se], "se": se, "se_null": se_null, "samples": n,
            "contexts": round(float(counts.mean()), 2) if n else 0.0, "decisions": len(d),
            "discordant": int((d != 0).sum()),
            "decision_agreement": float((pred_ref == pred).mean()) if len(d) else 1.0}


class _OneBatch:
    """A CalibrationDataReader that yields the whole calibration run as one batch."""

    def __init__(self, feeds: dict[str, np.ndarray]):
        self._feeds = [feeds]

    def get_next(self):
        return self._feeds.pop() if self._feeds else None

    def rewind(self):  # pragma: no cover - part of the reader protocol
        pass


def quantize(fp32_path: str | os.PathLike, out_path: str | os.PathLike, feeds: dict[str, np.ndarray],
             plan: str) -> None:
    """Write a QDQ-quantized copy of ``fp32_path`` following ``plan``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if plan not in PLANS:
        raise ValueError(f"unknown precision plan {plan!r}; known: {', '.join(PLANS)}")
    act = QuantType.QInt16 if plan.startswith("a16w8") else QuantType.QInt8
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    ops = ["Gemm", "MatMul"] if plan.endswith("-gemm") else None
    # The graph is opset 21, whose standard QuantizeLinear/DequantizeLinear take int16: no
    # com.microsoft ops, so any ONNX runtime (onnx.reference included) runs every plan.
    extra["UseQDQContribOps"] = False
    # the probabilities output stays float: its softmax reads the dequantised logits
    softmax = [n.name for n in onnx.load(str(fp32_path)).graph.node if n.op_type == "Softmax"]
    with quiet():
        quantize_static(str(fp32_path), str(out_path), _OneBatch(dict(feeds)), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=act, op_types_to_quantize=ops, weight_type=QuantType.QInt8,
                        nodes_to_exclude=softmax,
                        calibrate_method=CalibrationMethod.MinMax, extra_options=extra,
                        calibration_providers=["CPUExecutionProvider"])


def state_quant_params(path: str | os.PathLike, state_names: list[str]) -> dict[str, dict]:
    """Scale, zero point and dtype of each state input as quantized in the graph."""
    proto = onnx.load(str(path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    out = {}
    for s in state_names:
        name = state_io_names(s)[0]
        for n in proto.graph.node:
            if n.op_type == "QuantizeLinear" and n.input[0] == name:
                zp = inits.get(n.input[2]) if len(n.input) > 2 else None
                out[s] = {"scale": float(inits[n.input[1]]),
                          "zero_point": int(zp) if zp is not None else 0,
                          "qdtype": str(zp.dtype) if zp is not None else "uint8"}
                break
    return out
