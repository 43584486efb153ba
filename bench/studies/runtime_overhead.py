"""What ``StepModel.step`` costs over a bare interpreter call, same process, same model.

    python -m edgerf.bench.studies.runtime_overhead ARTIFACT [ARTIFACT ...] [--seconds 2 --windows 5]

Bare call, ONNX Runtime: ``session.run_with_iobinding`` on a binding prepared once (the
fastest loop its Python API allows, state buffers flipped by hand); also timed, plain
``session.run`` with numpy in/out (what most code does). Bare call, LiteRT, through the
interpreter's own bindings as the backend calls them: the frame
(quantised beforehand) copied into the input tensor, ``invoke``, the state outputs
copied onto the state inputs, the logits read (a step model's user needs them). Frames come from a real Sequential Fashion-MNIST test
stream. Writes bench/results/runtime_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

from edgerf.runtime.atomic import write_text
from edgerf.bench.latency import measure_latency
from edgerf.bench.report import markdown_table
from edgerf.bench.studies import RESULTS



def _onnx_loops(model, x) -> dict:
    from edgerf.runtime.manifest import INPUT, OUTPUT
    backend, T = model.backend, len(x)
    sess, bindings, flip = backend.session, backend.bindings, [0]

    def bare(i):
        np.copyto(backend.x, x[i % T])
        sess.run_with_iobinding(bindings[flip[0]])
        flip[0] ^= 1

    names = [s["input"] for s in model.manifest["states"]]
    outs = [OUTPUT] + [s["output"] for s in model.manifest["states"]]
    state = [[np.zeros((1, s["shape"][1]), np.float32) for s in model.manifest["states"]]]

    def plain(i):
        state[0] = sess.run(outs, {INPUT: x[i % T][None], **dict(zip(names, state[0]))})[1:]

    return {"bare": bare, "run": plain}


def _litert_loops(model, x) -> dict:
    from edgerf.runtime.backends import quantize_tensor
    b, T = model.backend, len(x)
    xq = quantize_tensor(b._x, x[:, None, :])          # quantised once, outside the timed call
    xi, oi, links = b._x["index"], b._out["index"], b._links
    set_, get, invoke = b._set, b._get, b._invoke      # the fastest calls the interpreter offers

    def bare(i):
        set_(xi, xq[i % T])
        invoke()
        for a, o in links:
            set_(a, get(o))
        get(oi)                                        # a step model's user needs its logits

    return {"bare": bare}


def main(argv=None) -> int:
    import onnxruntime as ort

    from edgerf.runtime import StepModel
    from edgerf.tasks import get_task

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifacts", nargs="+")
    p.add_argument("--seconds", type=float, default=2.0, help="length of each timed window")
    p.add_argument("--windows", type=int, default=5)
    p.add_argument("--out", default=str(RESULTS / "runtime_overhead"))
    a = p.parse_args(argv)
    x = get_task("sfmnist").bind().stream("test", 2000, seed=5).x
    T = len(x)
    rows = []
    for art in a.artifacts:
        model = StepModel.load(art)
        loops = _onnx_loops(model, x) if art.endswith(".onnx") else _litert_loops(model, x)

        def wrapped(i):
            model.step(x[i % T])

        loops["StepModel"] = wrapped
        res = {}
        # interleave the three twice so drift in machine load hits all of them alike
        for rep in range(2):
            for name, fn in loops.items():
                lat = measure_latency(fn, windows=a.windows, window_s=a.seconds / 2, warmup_s=0.3)
                res.setdefault(name, []).append(lat)
        for name, lats in res.items():
            med = float(np.median([lt.overall.median_us for lt in lats]))
            p99 = float(np.median([lt.overall.p99_us for lt in lats]))
            rows.append({"artifact": Path(art).name, "precision": model.manifest["artifact"]["precision"],
                         "loop": name, "median_us": med, "p99_us": p99,
                         "steps": int(sum(lt.overall.n for lt in lats))})
        base = next(r for r in rows if r["artifact"] == Path(art).name and r["loop"] == "bare")
        for r in rows:
            if r["artifact"] == Path(art).name:
                r["median_vs_bare"] = r["median_us"] / base["median_us"]
                r["p99_vs_bare"] = r["p99_us"] / base["p99_us"]
    machine = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
               "onnxruntime": ort.__version__, "threads": 1}
    write_text(Path(a.out + ".json"), json.dumps({"machine": machine, "rows": rows}, indent=2))
    md = ("# StepModel overhead over a bare interpreter call\n\n"
          f"Produced by `python -m edgerf.bench.studies.runtime_overhead {' '.join(a.artifacts)}`. One intra-op thread, "
          "frames from a real test stream, state fed back. ONNX: `bare` = `run_with_iobinding` on a prepared "
          "binding; `run` = `session.run` with numpy feeds. LiteRT: `bare` = frame in, `invoke`, state outputs "
          "copied onto state inputs, logits read. `StepModel` = the runtime with frame checks and the state "
          "watchdog. Medians of per-step times over 2 x 5 windows, interleaved.\n\n"
          + markdown_table(rows, ["artifact", "precision", "loop", "median_us", "p99_us", "median_vs_bare",
                                  "p99_vs_bare", "steps"]))
    write_text(Path(a.out + ".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
