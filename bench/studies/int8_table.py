"""int8 across the families: what the default ``--int8`` budget gives, what it costs in
accuracy and false alarms, what it buys in size and speed, beside fp32 and torch eager.

    python -m edgerf.bench.studies.int8_table [--runs runs/sfmnist] [--families rnn,gru,ssm,ssm-sel,lif]
                                      [--steps 100000] [--reexport] [--qat-epochs ssm=3,ssm-sel=3,lif=3]
                                      [--qat-samples gru=12000]

For each family, the reset-free checkpoint ``<runs>/<family>-reset-free.pt`` is exported
with ``edgerf export --int8`` and the default budget (into ``<runs>/export-int8/``), then
every artifact runs through ``edgerf.runtime.StepModel`` over one unreset test stream of
``--steps`` steps (the ``edgerf bench`` protocol: acc_p, false alarms, argmax agreement
with torch, size, median and p99 us/step), and the bare interpreter call is timed beside
it in the same process. Writes bench/results/int8.{json,md}.

On a Raspberry Pi, the same numbers for copied exports come from one command per model
(numpy + one interpreter; the evaluation bundle is the reference):
``edgerf bench --device cpu <name>.onnx <name>.int8.onnx <name>.tflite <name>.int8.tflite --report pi-<name>``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from edgerf.bench.report import markdown_table, merge_family_rows, result_file
from edgerf.bench.studies import RESULTS

COLUMNS = ["family", "target", "precision", "full_int8", "size_kib", "acc_p", "false_alarm", "agreement",
           "stepmodel_us", "stepmodel_p99_us", "bare_us", "stepmodel_vs_bare", "vs_torch", "arm64_kinsns",
           "arm64_vs_fp32"]


def bare_us(path: Path, frames: np.ndarray, seconds: float) -> float:
    """Median us of the bare interpreter call (the runtime_overhead loops)."""
    from edgerf.bench.latency import measure_latency
    from edgerf.bench.studies.runtime_overhead import _litert_loops, _onnx_loops
    from edgerf.runtime import StepModel

    m = StepModel.load(path)
    loops = _onnx_loops(m, frames) if path.suffix == ".onnx" else _litert_loops(m, frames)
    return measure_latency(loops["bare"], windows=5, window_s=seconds, warmup_s=0.3).overall.median_us


def full_int8(plan: dict) -> str:
    """What the full-int8 rung measured when the export tried it: why it was kept or passed over."""
    t = next((t for t in plan.get("tried", []) if t["plan"] == "int8"), None)
    if t is None:
        return ""
    if "error" in t:
        return "refused: " + t["error"].split(" (")[0]
    lo, hi = t["acc_p_drop"]["ci95"]
    return (f"{'kept' if t['within_budget'] else 'over budget'}: drop {t['acc_p_drop']['drop'] * 100:+.2f} pt "
            f"[{lo * 100:+.2f}, {hi * 100:+.2f}], FA {(t['false_alarm'] - t['false_alarm_fp32']) * 100:+.3f} pt"
            + (f" after {plan['qat']['epochs']} QAT epoch(s)" if plan.get("qat") else ""))


def export_family(src: Path, folder: Path, qat_epochs: int = 0, qat_samples: int | None = None,
                  reexport: bool = False) -> Path:
    """``src`` (a grid checkpoint) copied into ``folder`` and exported there with ``--int8`` and
    the default budget (and ``qat_epochs`` of int8 fine-tuning), unless that export exists;
    returns the copied checkpoint."""
    from edgerf.export.pipeline import ExportConfig, export_checkpoint
    ckpt = folder / src.name
    if reexport or not ckpt.exists() or not (folder / f"{src.stem}.int8.tflite").exists():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, ckpt)
        print(f"exporting {src.stem} --int8 (default budget"
              + (f", {qat_epochs} fine-tuning epoch(s)" if qat_epochs else "") + f") into {folder} ...", flush=True)
        export_checkpoint(ckpt, folder, ExportConfig(int8=True, force=True, qat_epochs=qat_epochs,
                                                     qat_samples=qat_samples), log=print)
    return ckpt


def main(argv=None) -> int:
    from edgerf.bench.run import BenchConfig, run_bench

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, default=Path("runs/sfmnist"))
    p.add_argument("--families", default="rnn,gru,ssm,ssm-sel,lif")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=1.0, help="latency window length")
    p.add_argument("--reexport", action="store_true")
    p.add_argument("--render", action="store_true", help="only rewrite int8.md from int8.json (and arm_cost.json)")
    p.add_argument("--qat-epochs", default="", help="family=N,... : int8 fine-tuning epochs per family "
                                                     "(edgerf export --qat-epochs N)")
    p.add_argument("--qat-samples", default="", help="family=N,... : training samples per fine-tuning epoch "
                                                      "(edgerf export --qat-samples N; default the whole split)")
    p.add_argument("--out", type=Path, default=RESULTS / "int8")
    a = p.parse_args(argv)
    if a.render:
        print(render(a.out))
        return 0
    qat = {f: int(n) for f, n in (kv.split("=") for kv in a.qat_epochs.split(",") if kv)}
    qat_samples = {f: int(n) for f, n in (kv.split("=") for kv in a.qat_samples.split(",") if kv)}
    rows, plans = [], {}
    for fam in a.families.split(","):
        src = a.runs / f"{fam}-reset-free.pt"
        if not src.exists():
            print(f"{src} missing; train it with `make grid` first. Skipping {fam}.")
            continue
        ckpt = export_family(src, a.runs / "export-int8", qat.get(fam, 0), qat_samples.get(fam), a.reexport)
        run = run_bench([], ckpt, BenchConfig(steps=a.steps, seconds=a.seconds, windows=5, rss=False),
                        progress=False, log=print)
        rep, frames = run.report, run.stream.x[:2000]
        torch_us = next(t["latency"]["overall"]["median_us"] for t in rep["targets"] if t["target"] == "torch")
        for t in rep["targets"]:
            acc = t.get("accuracy", {})
            row = {"family": fam, "target": t["target"], "precision": t["precision"],
                   "size_kib": round(t["size_bytes"] / 1024, 1), "acc_p": acc.get("acc_p"),
                   "false_alarm": acc.get("false_alarm"), "agreement": acc.get("argmax_agreement"),
                   "stepmodel_us": t["latency"]["overall"]["median_us"],
                   "stepmodel_p99_us": t["latency"]["overall"]["p99_us"],
                   "vs_torch": t["latency"]["overall"]["median_us"] / torch_us}
            if t["target"] != "torch":
                from edgerf.runtime.manifest import read
                path = ckpt.with_name(t["file"])
                plan = read(path)["precision"]
                row["full_int8"] = full_int8(plan) if t["target"].endswith("int8") else ""
                row["bare_us"] = bare_us(path, frames, a.seconds)
                row["stepmodel_vs_bare"] = row["stepmodel_us"] / row["bare_us"]
                if t["target"].endswith("int8"):
                    plans[f"{fam} {t['target']}"] = plan
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "full_int8"}), flush=True)
    from edgerf.runtime.atomic import write_text
    from edgerf.bench.machine import machine_info
    done = {r["family"] for r in rows}
    if result_file(a.out, ".json").exists():     # a run over some families keeps the others' rows
        old = json.loads(result_file(a.out, ".json").read_text())
        rows = merge_family_rows(old["rows"], rows)
        plans = {**{k: v for k, v in old.get("plans", {}).items() if k.split()[0] not in done}, **plans}
    write_text(result_file(a.out, ".json"), json.dumps({"machine": machine_info(), "steps": a.steps, "rows": rows,
                                                       "plans": plans}, indent=1, default=str) + "\n")
    print(render(a.out))
    return 0


def render(out: Path = RESULTS / "int8") -> str:
    """int8.md from int8.json, with the aarch64 instruction counts of arm_cost.json beside each
    artifact when that file exists (``python -m edgerf.bench.studies.arm_cost`` re-renders it)."""
    from edgerf.runtime.atomic import write_text

    data = json.loads(result_file(out, ".json").read_text())
    arm_path = out.with_name("arm_cost.json")
    arm = {(r["family"], r["target"]): r for r in json.loads(arm_path.read_text())["rows"]} \
        if arm_path.exists() else {}
    rows = []
    for r in data["rows"]:
        a = arm.get((r["family"], r["target"]), {})
        rows.append({**r, "arm64_kinsns": a["insns_per_step"] / 1e3 if a.get("insns_per_step") else "",
                     "arm64_vs_fp32": a.get("insns_vs_fp32", "")})
    steps = data.get("steps", 100_000)
    md = (f"# int8 across the families (Sequential Fashion-MNIST, reset-free, hidden 128)\n\n"
          f"Produced by `python -m edgerf.bench.studies.int8_table` on {data['machine']['cpu']}, one thread. Each "
          f"family's checkpoint exported with `edgerf export --int8` and the **default budget** (acc_p drop "
          f"<= 0.5 pt on the same held-out samples, upper end of its paired 95% interval <= 1 pt, false alarms "
          f"rise <= 0.05 pt; frame agreement reported, not gated), with int8 fine-tuning (`--qat-epochs`) where "
          f"`full_int8` says so; every artifact then runs through `edgerf.runtime.StepModel` over one unreset "
          f"test stream of {steps:,} steps. `agreement`: argmax agreement with torch fp32 on informative steps. "
          f"`bare_us`: the interpreter call alone (frame in, invoke, state fed back), same process. "
          f"Precision `int8` = int8 weights, activations and state (TFLite: float frame and logits at the "
          f"graph boundary, quantised by the graph's own QUANTIZE/DEQUANTIZE). `full_int8`: what the full-int8 "
          f"rung measured on the held-out stream when the export tried it (acc_p drop against fp32 with its "
          f"paired 95% interval, false-alarm rise), hence why the plan in `precision` was chosen; every rung's "
          f"figures are in int8.json. `arm64_kinsns`: thousands of aarch64 instructions per `StepModel.step` "
          f"(qemu, neoverse-n1, counted by `python -m edgerf.bench.studies.arm_cost`, see arm_cost.md), "
          f"`arm64_vs_fp32` against the same runtime's fp32 graph.\n\n" + markdown_table(rows, COLUMNS))
    write_text(result_file(out, ".md"), md)
    return md


if __name__ == "__main__":
    raise SystemExit(main())
