"""Export every reset-free Sequential Fashion-MNIST checkpoint to ONNX and TFLite (fp32 +
int8) and score torch and every artifact on one unreset test stream of >= 10^5 steps.

    python -m edgerf.bench.studies.export_table [--runs runs/sfmnist] [--steps 100000] [--min-agreement 0.995]

Needs the checkpoints of ``python -m edgerf.bench.studies.train_grid``. Writes one JSON record
per model and artifact to ``bench/results/sfmnist_export.jsonl`` and a table to
``sfmnist_export.md``. ``argmax_agreement`` is against the torch fp32 trajectory, on
informative steps (see edgerf.export.parity.Parity). ``--min-agreement`` relaxes the int8
budget's agreement term (the acc_p term stays 0.5 points); the results then go to
``sfmnist_export_agree<NN>.{jsonl,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgerf.runtime.atomic import write_text
from edgerf.bench.report import markdown_table, write_records
from edgerf.bench.studies import RESULTS

COLUMNS = ["model", "artifact", "precision", "acc_p", "acc_f", "false_alarm", "argmax_agreement",
           "max_abs_logits", "size_kib", "steps"]


def main(argv=None) -> int:
    from edgerf import checkpoint
    from edgerf.cells import FAMILIES
    from edgerf.bench.run import artifact_kind
    from edgerf.runtime import StepModel
    from edgerf.export.parity import compare, torch_trajectory
    from edgerf.export.pipeline import ExportConfig, export_checkpoint
    from edgerf.export.quantize import Budget
    from edgerf.runtime.metrics import stream_metrics
    from edgerf.tasks import EVAL_SEED, get_task

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs/sfmnist")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--models", default=",".join(FAMILIES))
    p.add_argument("--min-agreement", type=float, default=Budget().min_agreement)
    a = p.parse_args(argv)
    relaxed = a.min_agreement != Budget().min_agreement
    stem = f"sfmnist_export_agree{round(a.min_agreement * 100)}" if relaxed else "sfmnist_export"
    runs, out = Path(a.runs), Path(a.runs) / ("export" if not relaxed else f"export-agree{round(a.min_agreement * 100)}")
    records, plans = [], {}
    for fam in a.models.split(","):
        ck_path = runs / f"{fam}-reset-free.pt"
        print(f"== {fam}: exporting {ck_path}", file=sys.stderr)
        rep = export_checkpoint(ck_path, out, ExportConfig(int8=True, force=True,
                                                            budget=Budget(min_agreement=a.min_agreement)),
                                log=lambda s: print("  " + s, file=sys.stderr))
        plans[fam] = rep.plan
        ck = checkpoint.load(ck_path)
        task = get_task(ck.task).bind()
        stream = task.stream("test", task.samples_for_steps(a.steps), seed=EVAL_SEED)
        names = list(ck.model.state_names)
        ref_logits, ref_states = torch_trajectory(ck.model, stream.x)
        runs_ = {"torch": (ref_logits, ref_states, None, "fp32")}
        for art in rep.artifacts:
            path = out / art.file
            logits, states = StepModel.load(path).run(stream.x, states=True)
            runs_[artifact_kind(path)] = (logits, states, path, art.precision)
        for kind, (logits, states, path, precision) in runs_.items():
            m = stream_metrics(logits, stream.labels, stream.mask, stream.ends, task.threshold)
            par = compare(ref_logits, ref_states, logits, states, names, atol=float("inf"), min_agreement=0.0,
                          mask=stream.mask)
            records.append({"task": task.name, "model": fam, "loss": "reset-free", "artifact": kind,
                            "precision": precision, **m, "argmax_agreement": par.argmax_agreement,
                            "argmax_agreement_all": par.argmax_agreement_all,
                            "max_abs_logits": par.max_abs_logits, "max_abs_state": par.max_abs_state,
                            "size_kib": round(path.stat().st_size / 1024, 1) if path else None})
            print(f"  {kind:10s} {precision:10s} acc_p {m['acc_p']:.4f} acc_f {m['acc_f']:.4f} "
                  f"false_alarm {m['false_alarm']:.5f} agreement {par.argmax_agreement:.4%}", file=sys.stderr)
    records = [{k: v for k, v in r.items()} for r in records]
    write_records(RESULTS / f"{stem}.jsonl", records)
    lines = ["# Sequential Fashion-MNIST: exported step graphs vs torch\n",
             f"Produced by `python -m edgerf.bench.studies.export_table --min-agreement {a.min_agreement}`: reset-free "
             f"checkpoints of the training grid, exported with `edgerf export --int8 --min-agreement "
             f"{a.min_agreement}`, all artifacts run closed loop on the same unreset test "
             f"stream ({records[0]['steps']:,} steps). `argmax_agreement` is against torch fp32 on informative "
             "steps.\n", markdown_table(records, COLUMNS), "\n## int8 precision plans (chosen on a held-out val stream)\n"]
    for fam, per_format in plans.items():
        for fmt, plan in per_format.items():
            lines.append(f"- **{fam}** ({fmt}): `{plan['plan']}`: {plan['why']}")
            for t in plan["tried"]:
                if "error" in t:
                    lines.append(f"  - `{t['plan']}`: not available ({t['error']})")
                    continue
                lines.append(f"  - tried `{t['plan']}`: agreement {t['argmax_agreement']:.4%}, acc_p {t['acc_p']:.4f} "
                             f"(fp32 {t['acc_p_fp32']:.4f}), state rms error "
                             + ", ".join(f"{k} {v:.3g}" for k, v in t["rms_state"].items()))
    write_text(RESULTS / f"{stem}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    write_text(RESULTS / f"{stem}_plans.json", json.dumps(plans, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
