"""When in a sample a model's decision is right: argmax accuracy at steps before and after
each sample's last informative step (where acc_p is read), and at the sample's most
confident step.

    python -m edgerf.bench.studies.decision_timing CKPT [CKPT ...] [--split val] [--samples 900]
                                          [--out bench/results/NAME_timing]

Every checkpoint runs over the same unreset stream of its task (the split's samples, its
own gaps; state never reset; periodic-reset checkpoints a second time with the oracle's
resets at sample starts, their baseline). Offset 0 is acc_p. A model
that holds its decision through the end of the informative run scores the same at -2 and
at 0; one that relaxes towards the uniform output before the mask ends loses points at 0
that it had at -2: the loss's KL term pulls it to uniform right after the run, and it
cannot tell exactly where the run ends. Writes ``<out>.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from edgerf.bench.report import result_file
from edgerf.bench.studies import RESULTS

OFFSETS = (-8, -4, -2, -1, 0, 1, 2, 4)


def timing(logits: np.ndarray, stream, threshold: float = 0.9) -> dict:
    """Accuracy at each offset from the samples' ends, at their most confident step, and the
    per-step false alarm (top class above ``threshold`` on a noise step)."""
    from edgerf.runtime.metrics import softmax, stream_metrics

    pred, top = logits.argmax(-1), softmax(logits).max(-1)
    y = stream.labels[stream.ends]
    row = {f"at_{k:+d}": float((pred[np.clip(stream.ends + k, 0, len(pred) - 1)] == y).mean()) for k in OFFSETS}
    peak = [pred[a + int(top[a:b + 1].argmax())] == c for a, b, c in zip(stream.starts, stream.ends, y)]
    row["at_peak"] = float(np.mean(peak))
    row["false_alarm"] = stream_metrics(logits, stream.labels, stream.mask, stream.ends, threshold)["false_alarm"]
    return row


def main(argv=None) -> int:
    from edgerf import checkpoint
    from edgerf.runtime.atomic import write_text
    from edgerf.bench.report import markdown_table
    from edgerf.configs import TrainConfig
    from edgerf.tasks import get_task
    from edgerf.train import evaluations, predict

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--split", default="val", choices=("val", "test"))
    p.add_argument("--samples", type=int, default=900)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--out", type=Path, default=None, help="default bench/results/<first folder>_timing")
    a = p.parse_args(argv)
    rows, trained = [], []
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for path in a.checkpoints:
        ck = checkpoint.load(path)
        task = get_task(ck.task).bind()
        stream = task.stream(a.split, a.samples, seed=a.seed)
        cfg = ck.training.get("config", {})
        loss = cfg.get("loss", "?")
        for name, oracle in evaluations(loss):
            rows.append({"checkpoint": path.stem, "model": cfg.get("model", ck.model.config.family), "loss": loss,
                         "eval": name, "grace": cfg.get("grace", 0),
                         "seed": cfg.get("seed", 0), "samples": len(stream.ends),
                         **timing(predict(ck.model, stream, oracle), stream, task.threshold)})
            print(json.dumps(rows[-1]), flush=True)
        if cfg and set(cfg) <= known:           # a checkpoint of this version: its own train command
            trained.append(f"- {path.stem}: `{TrainConfig(**cfg).command()}`")
    out = a.out or RESULTS / f"{a.checkpoints[0].parent.name}_timing"
    write_text(result_file(out, ".json"), json.dumps({"split": a.split, "seed": a.seed, "rows": rows}, indent=1) + "\n")
    cmd = "python -m edgerf.bench.studies.decision_timing " + " ".join(str(c) for c in a.checkpoints) + \
        f" --split {a.split} --samples {a.samples}"
    md = (f"# Decision timing ({a.split} split, unreset stream)\n\n"
          f"Produced by `{cmd}`. `at_k`: argmax accuracy k steps after each sample's last informative "
          "step (`at_+0` is acc_p); `at_peak`: at the sample's most confident step; `false_alarm`: noise "
          "steps whose top class passes the decision threshold. Never the test split for choices.\n\n" +
          markdown_table(rows, ["checkpoint", "model", "loss", "eval", "grace", "seed", "samples",
                                *(f"at_{k:+d}" for k in OFFSETS), "at_peak", "false_alarm"]) +
          ("\n\nHow each checkpoint was trained:\n\n" + "\n".join(trained) + "\n" if trained else ""))
    write_text(result_file(out, ".md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
