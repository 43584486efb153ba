"""Models on every kind of quiet: bench/results/gap_kinds.{md,json}.

    python -m edgerf.bench.studies.gap_kinds CKPT [CKPT ...] [--steps 100000]

Each checkpoint on one unreset test stream per gap kind the task offers (``GAP_KINDS``:
gaussian, uniform, silence, shuffled; background for audio), the same images in the same
order for every kind (seed EVAL_SEED): acc_p, the per-step false alarm rate (top class
over the decision threshold on a gap step), and how many of those false alarms come in the
first LAG steps after a sample's last informative step (the model still sure of the sample
it has just seen, rather than fooled by the gap). The kinds a model never saw in training
(its recorded ``--gap-kind``) are marked ``left out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edgerf.bench.report import markdown_table, result_file
from edgerf.bench.studies import RESULTS

COLUMNS = ["model", "gap_kind", "trained_on", "acc_p", "vs_gaussian_pt", "false_alarm", "false_alarms",
           "within_lag", "samples", "steps"]
LAG = 3


def false_alarms_after_ends(logits: np.ndarray, stream, threshold: float) -> tuple[int, int]:
    """(false alarms, those within LAG steps after the last informative step of a sample)."""
    from edgerf.runtime.metrics import softmax
    top = softmax(np.asarray(logits, np.float64)).max(-1)
    steps = np.flatnonzero(~stream.mask & (top > threshold))
    ends = np.sort(stream.ends)
    before = np.searchsorted(ends, steps) - 1          # the last sample end before each false alarm
    lag = np.where(before >= 0, steps - ends[np.maximum(before, 0)], LAG + 1)
    return int(len(steps)), int((lag <= LAG).sum())


def main(argv=None) -> int:
    from edgerf import checkpoint
    from edgerf.tasks import EVAL_SEED, GAP_KINDS, get_task
    from edgerf.runtime.metrics import stream_metrics
    from edgerf.train import predict

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
            logits = predict(ck.model, stream)
            m = stream_metrics(logits, stream.labels, stream.mask, stream.ends, task.threshold)
            alarms, within = false_alarms_after_ends(logits, stream, task.threshold)
            base = m["acc_p"] if kind == "gaussian" else base
            rows.append({"model": path.name, "gap_kind": kind, "trained_on": "yes" if kind in trained else "left out",
                         "acc_p": m["acc_p"], "vs_gaussian_pt": None if base is None else 100 * (m["acc_p"] - base),
                         "false_alarm": m["false_alarm"], "false_alarms": alarms, "within_lag": within,
                         "samples": m["samples"], "steps": m["steps"],
                         "command": ck.training.get("command")})
            print(rows[-1], flush=True)
    command = "python -m edgerf.bench.studies.gap_kinds " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(a.out)
    result_file(out, ".json").write_text(json.dumps({"command": command.strip(), "steps": a.steps, "rows": rows},
                                                   indent=1) + "\n")
    trained = "\n".join(f"- {p.name}: `{checkpoint.load(p).training.get('command')}`" for p in a.checkpoints)
    text = (f"# Every kind of quiet\n\nProduced by `{command.strip()}` (torch, fp32). Each row: one unreset test "
            f"stream of about {a.steps:,} steps, the same samples in the same order for every gap kind; "
            "`vs_gaussian_pt`: acc_p minus the Gaussian-gap acc_p, in points; `false_alarm`: share of gap steps whose "
            "top class passes the decision threshold (`false_alarms` of them, `within_lag` in the first "
            f"{LAG} steps after a sample's last informative step). `trained_on`: whether the model's training streams had this "
            "kind of gap (`left out`: never seen).\n\n" + markdown_table(rows, COLUMNS)
            + f"\n\nHow each model was trained:\n\n{trained}\n")
    result_file(out, ".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
