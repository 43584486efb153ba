"""Scaling out on this machine: DDP ranks against one process, and the sweep engines.

    python -m edgerf.bench.studies.scaling [--quick]

1. Training throughput (lane-steps per second of the training loop, stream building
   excluded) of the grid's GRU-128 on Sequential Fashion-MNIST: one process with one
   torch thread, one process with two, and torchrun with 2 gloo ranks of one thread each
   (the same total batch of 64 lanes).
2. Wall time of the GRU row of the Sequential Fashion-MNIST grid (3 training modes, the
   built-in GRU-48 recipe) through ``edgerf sweep`` on a local process pool and on Ray Tune.
3. The all-reduce each update needs (parameters x 4 bytes) and what it predicts for N
   machines. Writes bench/results/scaling.{json,md}.
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
import time
from pathlib import Path

from edgerf.bench.report import markdown_table, result_file
from edgerf.bench.studies import RESULTS

DDP_RUN = ["--task", "sfmnist", "--model", "gru", "--hidden", "128", "--epochs", "1", "--batch", "64",
           "--train-samples", "8192", "--val-samples", "50", "--test-steps", "2000", "-q"]
GRID_RUN = ["--task", "sfmnist", "--models", "gru", "--losses", "reset-free,periodic-reset,ce", "--hidden", "48",
            "--epochs", "3", "--batch", "32", "--train-samples", "16000", "--test-steps", "20000"]


def _ddp(label: str, nproc: int, threads: int, work: Path) -> dict:
    from edgerf import checkpoint
    out = work / f"{label}.pt"
    args = [*DDP_RUN, "--threads", str(threads), "-o", str(out), "--force"]
    cmd = [sys.executable, "-m", "edgerf", "train", *args] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "-m", "edgerf", "train", *args]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    wall = time.perf_counter() - t0
    ck = checkpoint.load(out)
    h = ck.training["history"][0]
    params = sum(p.numel() for p in ck.model.parameters())
    return {"run": label, "processes": nproc, "threads_each": threads, "lane_steps": h["lane_steps"],
            "loop_seconds": round(h["seconds"], 2), "lane_steps_per_s": round(h["lane_steps"] / h["seconds"]),
            "wall_seconds": round(wall, 1), "params": params, "allreduce_bytes": params * 4,
            "updates": h["lane_steps"] // (64 * 128), "loss": round(h["loss"], 4)}


def _sweep(engine: str, work: Path) -> dict:
    out = work / f"sweep-{engine}"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgerf", "sweep", *GRID_RUN, "-o", str(out), "--engine", engine],
                   check=True, capture_output=True)
    return {"engine": engine, "trials": 3, "wall_seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=RESULTS / "scaling")
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="edgerf-scaling-"))
    try:
        ddp = [_ddp("1 process x 1 thread", 1, 1, work), _ddp("1 process x 2 threads", 1, 2, work),
               _ddp("torchrun 2 ranks x 1 thread", 2, 1, work)]
        sweeps = [_sweep("pool", work), _sweep("ray", work)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = ddp[0]
    step_s = 64 * 128 / base["lane_steps_per_s"]          # one update of the whole batch on one rank
    rows = []
    for n in (1, 2, 4, 8, 16):
        compute = step_s / n
        comm = 2 * (n - 1) / n * base["allreduce_bytes"] / 1.25e8 + (n > 1) * 2 * (n - 1) * 50e-6
        rows.append({"machines": n, "compute_ms": round(compute * 1e3, 2), "allreduce_ms_1gbe": round(comm * 1e3, 2),
                     "speedup": round(step_s / (compute + comm), 2)})
    rec = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
           "ddp": ddp, "sweep": sweeps, "projection": rows}
    from edgerf.runtime.atomic import write_text
    write_text(result_file(a.out, ".json"), json.dumps(rec, indent=1) + "\n")
    md = f"""# Scaling out: DDP ranks and sweep engines on {os.cpu_count()} cores

Produced by `python -m edgerf.bench.studies.scaling` (also `make scaling`).

## DDP: training throughput of GRU-128 (Sequential Fashion-MNIST, batch 64 lanes, BPTT 128)

Lane-steps per second of the training loop (forward, backward, all-reduce, Adam; stream
building excluded), one epoch of 8,192 training images. The same total batch in every run.

{markdown_table(ddp, ["run", "processes", "threads_each", "lane_steps", "loop_seconds", "lane_steps_per_s", "wall_seconds", "loss"])}
## Sweep: the GRU row of the grid (3 training modes, GRU-48, 3 epochs of 16,000 images)

{markdown_table(sweeps, ["engine", "trials", "wall_seconds"])}
Both engines run two trials at a time on two cores; Ray adds its start-up (a few seconds)
and buys resumability across machines, per-trial resources and a cluster address.

## What 2 cores can and cannot show

Two ranks on two cores can show that DDP is correct (the loss curve matches one process:
tests/test_distributed.py) and what it costs in communication on one host; they cannot
show a speed-up over one process using both cores for its matmuls, because both runs have
the same two cores. Each update all-reduces the gradients: {base['params']:,} parameters x
4 bytes = {base['allreduce_bytes'] / 1024:.0f} KiB, once per BPTT chunk.

## Expected scaling on N machines (a projection from the measurements above)

One update of the whole batch costs {step_s * 1e3:.0f} ms on one rank here; with N ranks each
computes 1/N of the lanes, and a ring all-reduce moves 2(N-1)/N x {base['allreduce_bytes'] / 1024:.0f} KiB
(assumed 1 Gb/s Ethernet, 50 us per hop). The model is small, so communication stays far
below compute until the lanes per rank get few (64 lanes: at most 64 ranks).

{markdown_table(rows, ["machines", "compute_ms", "allreduce_ms_1gbe", "speedup"])}"""
    write_text(result_file(a.out, ".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
