"""Models on every kind of quiet: bench/results/gap_kinds.{md,json}.

    python -m edgerf.bench.studies.gap_kinds CKPT [CKPT ...] [--steps 100000]

Each checkpoint on one unreset test stream per gap kind the task offers (``GAP_KINDS``:
gaussian, uniform, silence, shuffled; background for audio), the same images in the same
order for every kind (seed EVAL_SEED): acc_p, and the per-step false alarm rate (top class
over the decision threshold on a gap step). The kinds a model never saw in training
(its recorded ``--gap-kind``) are marked ``left out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgerf.bench.report import markdown_table
from edgerf.bench.studies import RESULTS

COLUMNS = ["model", "gap_kind", "trained_on", "acc_p", "vs_gaussian_pt", "false_alarm", "samples", "steps"]


def main(argv=None) -> int:
    from edgerf import checkpoint
    from edgerf.tasks import EVAL_SEED, GAP_KINDS, get_task
    from edgerf.train import evaluate

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--out", default=str(RESULTS / "gap_kinds"))
    a = p.parse_args(argv)
    rows = []
    for path in a.checkpoints:
        ck = checkpoint.load(path)
        task = get_task(ck.task).bind()
        trained = set(task.gap_kind.split(","))
        kinds = [k for k in GAP_KINDS if k != "background" or task.period_s]
        base = None
        for kind in kinds:
            t = task.with_gaps(kind)
            stream = t.stream("test", t.samples_for_steps(a.steps), seed=EVAL_SEED)
            m = evaluate(ck.model, stream, task.threshold)
            base = m["acc_p"] if kind == "gaussian" else base
            rows.append({"model": path.name, "gap_kind": kind, "trained_on": "yes" if kind in trained else "left out",
                         "acc_p": m["acc_p"], "vs_gaussian_pt": None if base is None else 100 * (m["acc_p"] - base),
                         "false_alarm": m["false_alarm"], "samples": m["samples"], "steps": m["steps"],
                         "command": ck.training.get("command")})
            print(rows[-1], flush=True)
    command = "python -m edgerf.bench.studies.gap_kinds " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps({"command": command.strip(), "steps": a.steps, "rows": rows},
                                                   indent=1) + "\n")
    trained = "\n".join(f"- {p.name}: `{checkpoint.load(p).training.get('command')}`" for p in a.checkpoints)
    text = (f"# Every kind of quiet\n\nProduced by `{command.strip()}` (torch, fp32). Each row: one unreset test "
            f"stream of about {a.steps:,} steps, the same samples in the same order for every gap kind; "
            "`vs_gaussian_pt`: acc_p minus the Gaussian-gap acc_p, in points; `false_alarm`: share of gap steps whose "
            "top class passes the decision threshold. `trained_on`: whether the model's training streams had this "
            "kind of gap (`left out`: never seen).\n\n" + markdown_table(rows, COLUMNS)
            + f"\n\nHow each model was trained:\n\n{trained}\n")
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
