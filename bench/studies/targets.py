"""Every artifact of the built-ins on every installed target: bench/results/targets.{md,json}.

    python -m edgerf.bench.studies.targets [--steps 100000] [--models default-gru,kws-gru]

Each built-in's four artifacts (fp32 and int8, ONNX and TFLite) run through ``edgerf bench``
on each target that runs their format (litert, litert-nodelegate, litert-ref, tflm, numpy;
ort, onnx-ref), over one unreset test stream of the dataset (``--steps``), beside torch
eager: precision, us/step (median of 5 windows; tflm and numpy host-emulated for a
microcontroller or a board without wheels), acc_p, false alarms, argmax agreement with
torch, and for TFLite TFLite Micro's arena and the flash the file takes.
"""

from __future__ import annotations

import argparse
import json

from edgerf.bench.report import markdown_table
from edgerf.bench.studies import RESULTS


COLUMNS = ["model", "artifact", "target", "precision", "us_step", "p99_us", "acc_p", "false_alarm", "agreement",
           "timing", "arena_bytes", "flash_bytes"]


def main(argv=None) -> int:
    from edgerf.bench.machine import machine_info
    from edgerf.bench.run import BenchConfig, run_bench
    from edgerf.models import BUILTIN_DIR, builtin_checkpoint
    from edgerf.runtime.backends import tflm_figures
    from edgerf.runtime.targets import TARGETS, installed

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--models", default="default-gru,kws-gru")
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--out", default=str(RESULTS / "targets"))
    a = p.parse_args(argv)
    targets = tuple(installed())
    rows, records = [], []
    for name in a.models.split(","):
        ckpt = builtin_checkpoint(name)
        arts = [BUILTIN_DIR / f"{name}{s}" for s in (".onnx", ".int8.onnx", ".tflite", ".int8.tflite")]
        cfg = BenchConfig(steps=a.steps, seconds=a.seconds, windows=5, rss=False, targets=targets)
        rep = run_bench(arts, ckpt, cfg, progress=False, log=print).report
        records.append({"model": name, "report": rep})
        for r in rep["targets"]:
            acc = r.get("accuracy", {})
            target = r["target"].split("@")[-1] if "@" in r["target"] else r["target"]
            row = {"model": name, "artifact": r["file"] if r["target"] != "torch" else "torch eager", "target": target,
                   "precision": r["precision"], "us_step": round(r["latency"]["overall"]["median_us"], 1),
                   "p99_us": round(r["latency"]["overall"]["p99_us"], 1), "acc_p": acc.get("acc_p"),
                   "false_alarm": acc.get("false_alarm"), "agreement": acc.get("argmax_agreement"),
                   "timing": "host-emulated" if target in TARGETS and TARGETS[target].host_emulated else "measured"}
            if r["file"] and r["file"].endswith(".tflite") and r["target"].endswith("@tflm"):
                mcu = tflm_figures(BUILTIN_DIR / r["file"])
                row |= {"arena_bytes": mcu.get("arena_bytes"), "flash_bytes": mcu.get("flash_bytes")}
            rows.append(row)
    m = machine_info()
    out = {"command": "python -m edgerf.bench.studies.targets " + " ".join(argv or []), "machine": m,
           "steps": a.steps, "targets": targets, "rows": rows}
    from pathlib import Path
    Path(a.out).with_suffix(".json").write_text(json.dumps(out, indent=1, default=str) + "\n")
    text = (f"# The built-ins on every target\n\nProduced by `python -m edgerf.bench.studies.targets --steps {a.steps}` "
            f"on {m['cpu']} ({m['arch']}), one thread, over one unreset test stream of {a.steps:,} steps of each "
            "dataset (fresh, seeded; the same for every row of a model), state fed back. `us_step`: median of 5 "
            "windows through `StepModel.step`. `timing` host-emulated: tflm (TFLite Micro's kernels) and numpy "
            "(edgerf's numpy executor) run here on x86, standing for a microcontroller and a board with no "
            "interpreter wheel; their times are not those devices'. `agreement`: argmax agreement with torch fp32 "
            "on informative steps. `arena_bytes`: TFLite Micro's recording allocator on this 64-bit host "
            "(overstates a 32-bit MCU); `flash_bytes`: the file as stored.\n\n"
            + markdown_table(rows, COLUMNS) + "\n")
    Path(a.out).with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
