"""Every artifact of the built-ins and of each family on every installed target:
bench/results/targets.{md,json}.

    python -m edgerf.bench.studies.targets [--steps all] [--models default-gru,kws-gru]
                                           [--grid runs/sfmnist]

``--grid``: also each family's reset-free model (checkpoint ``<grid>/<family>-reset-free.pt``)
as ``edgerf export --int8`` makes it by default, no fine-tuning (into ``<grid>/export-default/``,
exported first where missing): what a user's export gives on each target. (``int8_table``'s
exports, fine-tuned where it is told to, are in ``<grid>/export-int8/``.)
Each model's four artifacts (fp32 and int8, ONNX and TFLite) run through ``edgerf bench``
on each target that runs their format (litert, litert-nodelegate, litert-ref, tflm, numpy;
ort, onnx-ref), over one unreset test stream of the dataset (``--steps``; default the whole
test split), beside torch eager: precision, us/step (median of 5 windows; tflm and numpy
host-emulated for a microcontroller or a board without wheels), acc_p, false alarms, argmax
agreement with torch, and for TFLite TFLite Micro's arena and the flash the file takes. Each int8 row also
gives its acc_p change against the fp32 graph of its format on the same target, and what its
export decided for that target (``within budget``, or the fallback and why).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgerf.bench.report import markdown_table, merge_rows, result_file
from edgerf.bench.studies import RESULTS


COLUMNS = ["model", "artifact", "target", "precision", "us_step", "p99_us", "acc_p", "false_alarm", "agreement",
           "int8_drop_pt", "export_verdict", "timing", "arena_bytes", "flash_bytes"]
FAMILIES = ("rnn", "gru", "ssm", "ssm-sel", "lif")


def _models(names: str, grid: str | None, families: str) -> list[tuple[str, Path, Path]]:
    """(label, artifact base path, checkpoint) of each model to run."""
    from edgerf.models import BUILTIN_DIR, builtin_checkpoint
    out = [(n, BUILTIN_DIR / n, builtin_checkpoint(n)) for n in names.split(",") if n]
    if grid:
        from edgerf.bench.studies.int8_table import export_family
        g = Path(grid)
        for f in families.split(","):
            if (g / f"{f}-reset-free.pt").exists():
                ckpt = export_family(g / f"{f}-reset-free.pt", g / EXPORTS)
                out.append((f"{f} (grid)", ckpt.with_suffix(""), ckpt))
    return out


EXPORTS = "export-default"      # the grid's exports this study runs: `edgerf export --int8`, nothing else


NOT_JUDGED = "not judged at export"


def _verdict(artifact, target: str) -> str:
    """What the int8 artifact's export decided for ``target`` (its manifest's ``targets``)."""
    from edgerf.runtime import manifest
    rec = (manifest.read(artifact).get("targets") or {}).get(target)
    if not rec or "within_budget" not in rec:
        return NOT_JUDGED
    return "within budget" if rec["within_budget"] else f"fallback fp32: {rec.get('summary', '')}"


def _twin_verdicts(rows: list[dict]) -> None:
    """A target the export left out as bit-identical to one it judged (``SAME_AS``: numpy is
    TFLite Micro's integer arithmetic) takes that one's verdict, saying so. A ``-gemm`` plan
    keeps its recurrence in float, where the two are not bit-identical (numpy's float32 is
    not TFLite Micro's float kernels): the row says whose verdict it carries and that."""
    from edgerf.runtime.targets import SAME_AS

    def derived(v) -> bool:           # a verdict carried over from a twin (re-derived on --render)
        return v == NOT_JUDGED or " (as " in v or " (judged on " in v
    judged = {(r["model"], r["artifact"], r["target"]): r["export_verdict"] for r in rows
              if r.get("export_verdict") and not derived(r["export_verdict"])}
    for r in rows:
        if r.get("export_verdict") and derived(r["export_verdict"]):
            twin = next((t for (m, a, t) in judged if (m, a) == (r["model"], r["artifact"])
                         and frozenset({t, r["target"]}) in SAME_AS), None)
            if twin is not None:
                how = ("judged on " + twin + "; not bit-identical to it: a float recurrence"
                       if str(r.get("precision", "")).endswith("-gemm") else f"as {twin}: bit-identical")
                r["export_verdict"] = f"{judged[(r['model'], r['artifact'], twin)]} ({how})"


def _int8_columns(rows: list[dict], base) -> None:
    """Each int8 row's acc_p change against its format's fp32 graph on the same target."""
    fp32 = {(r["artifact"].rsplit(".", 1)[-1], r["target"]): r["acc_p"] for r in rows if r["precision"] == "fp32"}
    for r in rows:
        if r["precision"] == "fp32" or r["artifact"] == "torch eager":
            continue
        ref = fp32.get((r["artifact"].rsplit(".", 1)[-1], r["target"]))
        if ref is not None and r["acc_p"] is not None:
            r["int8_drop_pt"] = round((ref - r["acc_p"]) * 100, 2)
        r["export_verdict"] = _verdict(base.parent / r["artifact"], r["target"])


WHOLE_SPLIT = 1 << 30      # more steps than any test split: the stream is the whole split


def _steps(text: str) -> int:
    return WHOLE_SPLIT if text == "all" else int(text)


def main(argv=None) -> int:
    from edgerf.bench.machine import machine_info
    from edgerf.bench.run import BenchConfig, run_bench
    from edgerf.runtime.backends import tflm_figures
    from edgerf.runtime.targets import TARGETS, installed

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=_steps, default="all",
                   help="test-stream steps per model; 'all' (default): the whole test split, every test "
                        "sample once (a 0.5 pt acc_p change is within sampling noise on 10^5 steps)")
    p.add_argument("--models", default="default-gru,kws-gru", help="built-ins (comma-separated)")
    p.add_argument("--grid", help="a train_grid folder whose reset-free models to add, exported with the "
                                  "default --int8 where not yet (e.g. runs/sfmnist)")
    p.add_argument("--targets", help="comma-separated targets (default: every installed one)")
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--families", default=",".join(FAMILIES), help="with --grid: which families")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of models not run now from the previous results (a partial re-run)")
    p.add_argument("--render", action="store_true",
                   help="measure nothing: rewrite the .md (and the verdicts) from the previous .json")
    p.add_argument("--out", default=str(RESULTS / "targets"))
    a = p.parse_args(argv)
    previous = result_file(a.out, ".json")
    if a.render:
        old = json.loads(previous.read_text())
        _twin_verdicts(old["rows"])
        return _write(Path(a.out), old)
    targets = tuple(a.targets.split(",")) if a.targets else tuple(installed())
    rows, records, streams = [], [], {}
    for name, base, ckpt in _models(a.models, a.grid, a.families):
        arts = [base.with_name(base.name + s) for s in (".onnx", ".int8.onnx", ".tflite", ".int8.tflite")]
        cfg = BenchConfig(steps=a.steps, seconds=a.seconds, windows=5, rss=False, targets=targets)
        rep = run_bench(arts, ckpt, cfg, progress=False, log=print).report
        records.append({"model": name, "report": rep})
        streams[name] = {"steps": rep["accuracy_steps"], "samples": rep["accuracy_samples"]}
        model_rows = []
        for r in rep["targets"]:
            acc = r.get("accuracy", {})
            target = r["target"].split("@")[-1] if "@" in r["target"] else r["target"]
            row = {"model": name, "artifact": r["file"] if r["target"] != "torch" else "torch eager", "target": target,
                   "precision": r["precision"], "us_step": round(r["latency"]["overall"]["median_us"], 1),
                   "p99_us": round(r["latency"]["overall"]["p99_us"], 1), "acc_p": acc.get("acc_p"),
                   "false_alarm": acc.get("false_alarm"), "agreement": acc.get("argmax_agreement"),
                   "timing": "host-emulated" if target in TARGETS and TARGETS[target].host_emulated else "measured"}
            if r["file"] and r["file"].endswith(".tflite") and r["target"].endswith("@tflm"):
                mcu = tflm_figures(base.parent / r["file"])
                row |= {"arena_bytes": mcu.get("arena_bytes"), "flash_bytes": mcu.get("flash_bytes")}
            model_rows.append(row)
        _int8_columns(model_rows, base)
        for r in rep.get("skipped", []):        # a pair the target cannot run, with its own words
            model_rows.append({"model": name, "artifact": r["file"], "target": r["target"].split("@")[-1],
                               "precision": r["precision"],
                               "export_verdict": "does not run: " + r["why"].split(": ", 1)[-1][:120]})
        rows += model_rows
    m = machine_info()
    command = ("python -m edgerf.bench.studies.targets " + " ".join(argv if argv is not None else sys.argv[1:])).strip()
    result = {"command": command, "commands": [command], "machine": m, "machines": {command: m},
              "steps": a.steps, "streams": streams, "targets": targets, "rows": rows}
    if a.merge and previous.exists():
        result = merged(json.loads(previous.read_text()), result)
    _twin_verdicts(result["rows"])
    return _write(Path(a.out), result)


def merged(old: dict, new: dict) -> dict:
    """``new``, a run over some models, over ``old``: the other models' rows stay as that run
    measured them, and the result names every run it still holds with the machine that ran
    it (a run repeated for the same models replaces the earlier one's mention)."""
    command = new["command"]
    kept = [c for c in old.get("commands", [old["command"]]) if c != command]
    return new | {"rows": merge_rows(old["rows"], new["rows"], key=lambda r: r["model"]),
                  "commands": kept + [command],
                  "machines": {c: old.get("machines", {}).get(c, old["machine"]) for c in kept} | new["machines"],
                  "streams": {m: v for m, v in old.get("streams", {}).items() if m not in new["streams"]}
                  | new["streams"]}


def _streams_text(result: dict) -> str:
    """How long each model's test stream was (older results record only the requested steps)."""
    streams = result.get("streams")
    if not streams:
        return f"({result['steps']:,} steps)"
    return "(" + "; ".join(f"{m}: {v['steps']:,} steps, {v['samples']:,} samples" for m, v in streams.items()) + ")"


def _write(out: Path, result: dict) -> int:
    """targets.json and targets.md from one result."""
    result_file(out, ".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    commands, rows = result.get("commands", [result["command"]]), result["rows"]
    machines = result.get("machines", {})

    def on(c: str) -> str:
        m = machines.get(c, result["machine"])
        return f"`{c}` on {m['cpu']} ({m['arch']})"
    text = ("# Every artifact on every target\n\nProduced by " + " then ".join(map(on, commands))
            + (" (the later run re-measured its models; the other rows are the earlier run's)"
               if len(commands) > 1 else "")
            + ", one thread, over one unreset test stream of each dataset "
            + _streams_text(result)
            + " (fresh, seeded; the same for every row of a model), state fed back. `us_step`: median of 5 "
            "windows through `StepModel.step`. `timing` host-emulated: tflm (TFLite Micro's kernels) and numpy "
            "(edgerf's numpy executor) run here on x86, standing for a microcontroller and a board with no "
            "interpreter wheel; their times are not those devices'. `agreement`: argmax agreement with torch fp32 "
            "on informative steps. `arena_bytes`: TFLite Micro's recording allocator on this 64-bit host "
            "(overstates a 32-bit MCU); `flash_bytes`: the file as stored. `int8_drop_pt`: acc_p of the fp32 "
            "graph of the same format on the same target minus the int8 graph's, in points; `export_verdict`: what "
            "the int8 export decided for that target (its manifest's `targets`). The built-ins run as shipped; "
            "each `(grid)` model is its `make grid` checkpoint exported by `edgerf export CKPT --int8` (the "
            "default budget, no int8 fine-tuning).\n\n"
            + markdown_table(rows, COLUMNS) + "\n")
    result_file(out, ".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
