"""ONNX Runtime's per-step latency tail: bench/results/ort_tail.{md,json}.

    python -m edgerf.bench.studies.ort_tail [--model kws-gru] [--plans int8-gemm,int8] [--windows 5]

A GRU-128 with a frontend once showed a steady p99 of 4.1 ms at an 81 us median on ONNX
Runtime in ``int8-gemm``. This study looks for that tail where it was seen: the built-in's
fp32 graph, and the same graph quantised to each plan (calibrated on the built-in's evaluation
bundle, closed loop), each opened two ways, as a plain ``InferenceSession(path)`` and as
edgerf's session (one intra-op thread, no spinning), stepped with the state fed back; per
window the median, p90, p99 and max of single calls (``edgerf.bench.latency``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgerf.bench.report import markdown_table, result_file
from edgerf.bench.studies import RESULTS
from edgerf.runtime.manifest import INPUT

COLUMNS = ["plan", "session", "window", "steps", "median_us", "p90_us", "p99_us", "max_us", "p99_over_median"]


def closed_loop_feeds(path: Path, frames: np.ndarray) -> dict[str, np.ndarray]:
    """The inputs the graph meets when its state is fed back over ``frames`` (calibration
    data): each frame with the state before it (zeros first)."""
    from edgerf.runtime import StepModel
    model = StepModel.load(path)
    _, states = model.run(frames, states=True)
    return {INPUT: frames,
            **{s["input"]: np.concatenate([np.zeros((1, t.shape[1]), np.float32), t[:-1]])
               for s, t in zip(model.manifest["states"], states)}}


def time_session(session, manifest: dict, frames: np.ndarray, windows: int, seconds: float) -> list[dict]:
    from edgerf.bench.latency import measure_latency

    names = [o.name for o in session.get_outputs()]
    state = {s["input"]: np.zeros((1, s["shape"][1]), np.float32) for s in manifest["states"]}

    def step(i: int):
        nonlocal state
        out = session.run(None, {INPUT: frames[i % len(frames)][None], **state})
        state = {s["input"]: out[names.index(s["output"])] for s in manifest["states"]}

    lat = measure_latency(step, windows=windows, window_s=seconds, warmup_s=0.5)
    return [{"window": k + 1, "steps": w.n, "median_us": w.median_us, "p90_us": w.p90_us, "p99_us": w.p99_us,
             "max_us": w.max_us, "p99_over_median": w.p99_us / w.median_us} for k, w in enumerate(lat.windows)]


def main(argv=None) -> int:
    import onnxruntime as ort

    from edgerf.bench.machine import machine_info
    from edgerf.export.quantize import quantize
    from edgerf.models import BUILTIN_DIR
    from edgerf.runtime.backends import ort_session

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="kws-gru", help="a built-in with an fp32 ONNX graph")
    p.add_argument("--plans", default="int8-gemm,int8")
    p.add_argument("--windows", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--calibration-steps", type=int, default=3000)
    p.add_argument("--out", default=str(RESULTS / "ort_tail"))
    a = p.parse_args(argv)
    src = BUILTIN_DIR / f"{a.model}.onnx"
    manifest = json.loads(src.with_name(src.name + ".json").read_text())
    with np.load(BUILTIN_DIR / f"{a.model}.bundle.npz") as z:
        frames = np.ascontiguousarray(z["x"], np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {"fp32": src}
        feeds = closed_loop_feeds(src, frames[:a.calibration_steps])
        for plan in a.plans.split(","):
            graphs[plan] = Path(tmp) / f"{a.model}.{plan}.onnx"
            quantize(src, graphs[plan], feeds, plan)
        for plan, path in graphs.items():
            for label, session in (("InferenceSession(path)", ort.InferenceSession(str(path))),
                                   ("edgerf", ort_session(path))):
                for r in time_session(session, manifest, frames, a.windows, a.seconds):
                    rows.append({"plan": plan, "session": label, **r})
                    print(rows[-1], flush=True)
    worst = max(r["p99_over_median"] for r in rows)
    command = "python -m edgerf.bench.studies.ort_tail " + " ".join(argv if argv is not None else sys.argv[1:])
    m = machine_info()
    out = Path(a.out)
    result_file(out, ".json").write_text(json.dumps({"command": command.strip(), "machine": m,
                                                    "onnxruntime": ort.__version__, "rows": rows}, indent=1) + "\n")
    text = (f"# ONNX Runtime's latency tail\n\nProduced by `{command.strip()}` on {m['cpu']} ({m['arch']}), "
            f"onnxruntime {ort.__version__}, one intra-op thread. `{a.model}`'s fp32 graph and the same graph in "
            f"each plan (calibrated closed loop on {min(a.calibration_steps, len(frames)):,} steps of its evaluation "
            "bundle), each opened as a plain `InferenceSession(path)` and as edgerf's session, stepped with the "
            f"state fed back: {a.windows} windows of {a.seconds:g} s after 0.5 s of warm-up, each call timed on "
            f"its own.\n\nThe highest p99 of any window is **{worst:.1f} times** its median.\n\n"
            + markdown_table(rows, COLUMNS))
    result_file(out, ".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
