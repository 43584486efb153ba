"""Which int8 form, if any, makes ONNX Runtime faster than fp32 on a recurrent step graph?

    python -m edgerf.bench.studies.onnx_int8_forms [--runs runs/sfmnist] [--families rnn,gru] [--steps 1500]

For each family's reset-free checkpoint, the fp32 step graph and its int8 forms, all from
the same calibration (2x10^4 unreset training steps) and all run closed loop, batch 1,
one thread, state fed back, on the same real test frames:

    qdq-int8      the export's full-int8 plan (QDQ: Q/DQ pairs around every op, int8 state)
    qdq-gemm      the export's int8-gemm plan (Q/DQ around the matmuls only)
    qop-gemm      QOperator: QGemm kernels for the matmuls (uint8 activations), the rest float
    qop-all       QOperator everywhere ORT has an integer kernel (QGemm, QLinearAdd, ...)
    dynamic       quantize_dynamic: MatMulInteger with per-step activation quantisation

Median us per ``session.run`` step (what ``StepModel`` pays on top is the same for all).
Writes bench/results/onnx_int8_forms.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from edgerf.bench.report import result_file
from edgerf.bench.studies import RESULTS



def _forms(fp32: Path, feeds: dict, out: Path) -> dict[str, Path]:
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    from edgerf.export import quantize
    from edgerf.runtime.progress import quiet

    forms = {"fp32": fp32}
    for plan, name in (("int8", "qdq-int8"), ("int8-gemm", "qdq-gemm")):
        quantize.quantize(fp32, out / f"{name}.onnx", feeds, plan)
        forms[name] = out / f"{name}.onnx"
    for name, ops in (("qop-gemm", ["Gemm", "MatMul"]), ("qop-all", None)):
        with quiet():
            quantize_static(str(fp32), str(out / f"{name}.onnx"), quantize._OneBatch(dict(feeds)),
                            quant_format=QuantFormat.QOperator, per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, op_types_to_quantize=ops,
                            calibrate_method=CalibrationMethod.MinMax)
        forms[name] = out / f"{name}.onnx"
    with quiet():
        quantize_dynamic(str(fp32), str(out / "dynamic.onnx"), weight_type=QuantType.QInt8)
    forms["dynamic"] = out / "dynamic.onnx"
    return forms


def _time(path: Path, model, x: np.ndarray) -> tuple[float, dict]:
    import onnx

    from edgerf.runtime.manifest import INPUT, OUTPUT, state_io_names
    from edgerf.runtime.backends import ort_session

    sess = ort_session(str(path))
    names = [state_io_names(n) for n in model.state_names]
    outs = [OUTPUT] + [o for _, o in names]
    state = [np.zeros((1, n), np.float32) for n in model.state_sizes()]
    ns = []
    for rep in range(3):
        for t in range(len(x)):
            t0 = time.perf_counter_ns()
            r = sess.run(outs, {INPUT: x[t:t + 1], **{i: v for (i, _), v in zip(names, state)}})
            ns.append(time.perf_counter_ns() - t0)
            state = r[1:]
    ops: dict[str, int] = {}
    for n in onnx.load(str(path)).graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return float(np.median(ns)) / 1e3, ops


def main(argv=None) -> int:
    from edgerf.runtime.atomic import write_text
    from edgerf.bench.machine import machine_info
    from edgerf.bench.report import markdown_table
    from edgerf.checkpoint import load
    from edgerf.export import calibrate
    from edgerf.export import onnx as onnx_export
    from edgerf.tasks import get_task

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, default=Path("runs/sfmnist"))
    p.add_argument("--families", default="rnn,gru")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--out", type=Path, default=RESULTS / "onnx_int8_forms")
    a = p.parse_args(argv)
    rows = []
    for fam in a.families.split(","):
        ck = load(a.runs / f"{fam}-reset-free.pt")
        task = get_task(ck.task).bind()
        model = ck.model.eval()
        feeds = calibrate.calibration_feeds(model, task)
        x = task.stream("test", task.samples_for_steps(a.steps), seed=5).x[:a.steps]
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = Path(tmp) / "fp32.onnx"
            onnx_export.save(onnx_export.to_onnx(model), fp32)
            base = None
            for name, path in _forms(fp32, feeds, Path(tmp)).items():
                us, ops = _time(path, model, x)
                base = base or us
                rows.append({"family": fam, "form": name, "us_per_step": us, "vs_fp32": us / base,
                             "nodes": sum(ops.values()),
                             "ops": " ".join(f"{k}:{v}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1]))})
                print(json.dumps(rows[-1]), flush=True)
    write_text(result_file(a.out, ".json"), json.dumps({"machine": machine_info(), "rows": rows}, indent=1) + "\n")
    md = (f"# ONNX Runtime: int8 forms of the step graph against fp32\n\nProduced by "
          f"`python -m edgerf.bench.studies.onnx_int8_forms` on {machine_info()['cpu']}, one thread, batch 1, "
          f"{a.steps:,} closed-loop steps x 3, median of `session.run`. Hidden 128, reset-free checkpoints of "
          f"the Sequential Fashion-MNIST grid.\n\n" + markdown_table(rows, ["family", "form", "us_per_step",
                                                                          "vs_fp32", "nodes", "ops"]))
    write_text(result_file(a.out, ".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
