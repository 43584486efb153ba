"""Per-step cost of each exported family on aarch64, fp32 against int8, without a board.

    python -m edgerf.bench.studies.arm_cost [--runs runs/sfmnist/export-int8] [--families rnn,gru,...]
                                    [--steps 2000]

On x86 (after ``edgerf bench --device arm64 --setup``): every artifact runs in the aarch64
Python under qemu user-mode emulation (``QEMU_CPU=neoverse-n1``, a Pi-5-class core) with a
TCG plugin (``insn_count.c``, built here with gcc) that counts the guest instructions
executed between two markers the worker sets around its loop: instructions per step,
through ``StepModel.step`` and through the bare interpreter call, with the aarch64 wheels'
own kernels (NEON, dot-product). Instructions are not cycles (an int8 SDOT does 16 MACs in
one instruction, a load may miss), but they count what the kernels execute, repeatably,
where emulated time measures the emulator.

On an aarch64 board the same command measures the same loops natively: median us per
step from the worker's clock, and, where ``perf`` can count (``perf stat -e instructions``
works), instructions per step from two runs of different length. Writes
bench/results/arm_cost.{json,md} (``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgerf.bench.report import markdown_table, merge_family_rows, result_file
from edgerf.bench.studies import RESULTS

MARK_OFFSET = 0xED6EF00D          # insn_count.c's MARK_OFFSET
PLUGIN_SOURCE = Path(__file__).resolve().parent / "insn_count.c"
WARMUP = 50
COLUMNS = ["family", "target", "precision", "size_kib", "insns_per_step", "bare_insns_per_step",
           "insns_vs_fp32", "us_per_step"]


def _mark() -> None:
    """The marker the counting plugin reacts to: lseek on fd -1 fails at once, anywhere."""
    try:
        os.lseek(-1, MARK_OFFSET, 0)
    except OSError:
        pass


def worker(artifact: str, frames: str, mode: str) -> None:
    """Run ``artifact`` over the frames (after a warm-up) between two markers; print the median
    ns per step. Device side: numpy and one interpreter."""
    import time

    from edgerf.bench.studies.runtime_overhead import _litert_loops, _onnx_loops
    from edgerf.runtime import StepModel

    x = np.load(frames)["x"].astype(np.float32)
    m = StepModel.load(artifact)
    if mode == "stepmodel":
        def step(i):
            m.step(x[i])
    else:
        step = (_onnx_loops(m, x) if artifact.endswith(".onnx") else _litert_loops(m, x))["bare"]
    for i in range(WARMUP):
        step(i)
    ns = np.empty(len(x) - WARMUP, np.int64)
    clock = time.perf_counter_ns
    _mark()
    for i in range(WARMUP, len(x)):
        t0 = clock()
        step(i)
        ns[i - WARMUP] = clock() - t0
    _mark()
    print(json.dumps({"steps": len(x) - WARMUP, "median_ns": float(np.median(ns))}))


# The emulated Python imports the source tree (no install there), where edgerf.bench is the
# top-level bench/ folder: map it as the installed package does, then run the worker.
_SOURCE_TREE_WORKER = (
    "import importlib.util, sys; from pathlib import Path; import edgerf; "
    "bench = Path(edgerf.__file__).resolve().parents[1] / 'bench'; "
    "spec = importlib.util.spec_from_file_location('edgerf.bench', bench / '__init__.py', "
    "submodule_search_locations=[str(bench)]); pkg = importlib.util.module_from_spec(spec); "
    "sys.modules['edgerf.bench'] = pkg; spec.loader.exec_module(pkg); "
    "from edgerf.bench.studies.arm_cost import worker; worker(*sys.argv[1:4])")


def _plugin(cache: Path) -> Path:
    lib = cache / "libinsn_count.so"
    if not lib.exists() or lib.stat().st_mtime < PLUGIN_SOURCE.stat().st_mtime:
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(PLUGIN_SOURCE)], check=True)
    return lib


def _emulated(artifact: Path, frames: Path, mode: str) -> dict:
    """Instructions per step under qemu with the counting plugin."""
    from edgerf.bench import arm64

    qemu = shutil.which("qemu-aarch64")          # the dynamic build: the static one cannot load plugins
    if not qemu or not arm64.ready():
        raise SystemExit("needs Debian's qemu-user (apt-get install qemu-user) and the arm64 Python "
                         "(edgerf bench --device arm64 --setup)")
    cmd, env = arm64.guest_python(qemu, ["-c", _SOURCE_TREE_WORKER, str(artifact), str(frames), mode],
                                  ("-plugin", str(_plugin(arm64.home()))))
    r = subprocess.run(cmd, env={**env, "PYTHONHASHSEED": "0"}, capture_output=True, text=True)
    marks = [int(line.split()[1]) for line in r.stderr.splitlines() if line.startswith("edgerf-mark ")]
    if r.returncode != 0 or len(marks) != 2:
        raise RuntimeError(f"emulated run of {artifact.name} failed:\n{r.stderr[-1500:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return {"insns_per_step": (marks[1] - marks[0]) / out["steps"]}


def _native(artifact: Path, frames: Path, mode: str) -> dict:
    """On the board: median us per step, and instructions per step where perf counts them."""
    cmd = [sys.executable, "-m", "edgerf.bench.studies.arm_cost", "--worker", str(artifact), str(frames), mode]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    row = {"us_per_step": out["median_ns"] / 1e3}
    if shutil.which("perf"):
        counts = []
        with np.load(frames) as z:
            x = z["x"]
        with tempfile.TemporaryDirectory() as tmp:
            for n in (len(x) // 2, len(x)):
                f = Path(tmp) / f"f{n}.npz"
                np.savez(f, x=x[:n])
                r = subprocess.run(["perf", "stat", "-x,", "-e", "instructions:u", *cmd[:4], str(artifact), str(f),
                                    mode], capture_output=True, text=True)
                line = next((ln for ln in r.stderr.splitlines() if "instructions" in ln), "")
                counts.append(float(line.split(",")[0]) if line.split(",")[0].replace(".", "").isdigit() else None)
        if None not in counts:
            row["insns_per_step"] = (counts[1] - counts[0]) / (len(x) - len(x) // 2)
    return row


def _row(family: str, art: Path, frames: Path, measure) -> dict:
    """One artifact: its StepModel and bare-loop cost per step."""
    from edgerf.runtime.manifest import is_int8, read
    row = {"family": family, "target": f"{art.suffix[1:]}-{'int8' if is_int8(art) else 'fp32'}",
           "precision": read(art)["precision"]["plan"], "size_kib": round(art.stat().st_size / 1024, 1),
           **measure(art, frames, "stepmodel")}
    row["bare_insns_per_step"] = measure(art, frames, "bare").get("insns_per_step")
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", nargs=3, metavar=("ARTIFACT", "FRAMES", "MODE"), help=argparse.SUPPRESS)
    p.add_argument("--runs", type=Path, default=Path("runs/sfmnist/export-int8"),
                   help="folder of <family>-reset-free exports (fp32 and int8, ONNX and TFLite, bundle)")
    p.add_argument("--families", default="rnn,gru,ssm,ssm-sel,lif")
    p.add_argument("--steps", type=int, default=2000, help="steps counted per artifact (after a warm-up)")
    p.add_argument("--out", type=Path, default=RESULTS / "arm_cost")
    a = p.parse_args(argv)
    if a.worker:
        worker(*a.worker)
        return 0
    from edgerf.runtime.atomic import write_text

    native = platform.machine() in ("aarch64", "arm64")
    measure = _native if native else _emulated
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fam in a.families.split(","):
            base = a.runs / f"{fam}-reset-free"
            bundle = base.with_suffix(".bundle.npz")
            if not bundle.exists():
                print(f"{bundle} missing: export {fam} with `python -m edgerf.bench.studies.int8_table` first; skipping")
                continue
            frames = Path(tmp) / f"{fam}.npz"
            with np.load(bundle) as z:
                np.savez(frames, x=z["x"][:a.steps + WARMUP])
            fp32 = {}
            for suffix in (".onnx", ".int8.onnx", ".tflite", ".int8.tflite"):
                row = _row(fam, Path(f"{base}{suffix}"), frames, measure)
                runtime, precision = row["target"].split("-")
                if precision == "fp32":
                    fp32[runtime] = row.get("insns_per_step")
                elif fp32.get(runtime) and row.get("insns_per_step"):
                    row["insns_vs_fp32"] = row["insns_per_step"] / fp32[runtime]
                rows.append(row)
                print(json.dumps(row), flush=True)
    machine = (f"native {platform.machine()}" if native else
               f"qemu-aarch64 7.2 user mode, QEMU_CPU=neoverse-n1, on {platform.machine()}")
    old = json.loads(result_file(a.out, ".json").read_text()) if result_file(a.out, ".json").exists() else {}
    if old.get("machine") == machine:          # a run over some families keeps the others' rows
        rows = merge_family_rows(old["rows"], rows)
    write_text(result_file(a.out, ".json"), json.dumps({"machine": machine, "steps": a.steps, "rows": rows},
                                                      indent=1) + "\n")
    md = (f"# aarch64 cost per step, fp32 against int8 ({machine})\n\n"
          f"Produced by `python -m edgerf.bench.studies.arm_cost --steps {a.steps}` from the exports of "
          f"`python -m edgerf.bench.studies.int8_table`. Each artifact runs {a.steps:,} frames of its evaluation "
          f"bundle after a {WARMUP}-step warm-up, state fed back. `insns_per_step`: guest instructions per "
          f"`StepModel.step` (frame checks, interpreter call, state feedback) counted between two markers "
          f"around the loop; `bare_insns_per_step`: the bare interpreter loop of `runtime_overhead`; "
          f"`insns_vs_fp32`: against the same runtime's fp32 graph. " +
          ("`us_per_step`: median wall time on this board.\n\n" if native else
           "Under emulation no time is reported (it would measure qemu).\n\n") + markdown_table(rows, COLUMNS))
    write_text(result_file(a.out, ".md"), md)
    print(md)
    from edgerf.bench.studies import int8_table
    if not native and a.out.parent == RESULTS and (RESULTS / "int8.json").exists():
        int8_table.render()                      # int8.md shows these counts beside its timings
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
