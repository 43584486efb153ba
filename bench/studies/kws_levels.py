"""A keyword model at other speech levels and SNRs: bench/results/kws_levels.{md,json,png}.

    python -m edgerf.bench.studies.kws_levels [MODEL ...] [--steps 20000]

MODEL: exported artifacts or checkpoints (default: the built-in kws-gru, its int8 TFLite on
the default target). Each point is one unreset test stream of ``--steps`` steps (the same
clips and gaps for every point, seed EVAL_SEED): ``gain`` scales every word by that many dB
over gaps of real background as recorded; ``snr`` puts every word at that SNR over a
background bed that runs on beneath it (``SpeechCommands.stream``). Per point: acc_p (and
how many samples have an informative step: the activity mask needs a word about 9 dB over
its floor), keyword hits, misses and false accepts at the model's operating point, and the
per-step false alarm rate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edgerf.bench.report import markdown_table
from edgerf.bench.studies import RESULTS

GAINS_DB = (-30, -20, -10, -6, 0, 6, 10)
SNRS_DB = (-5, 0, 5, 10, 15, 20)
COLUMNS = ["model", "sweep", "db", "acc_p", "samples", "hits", "misses", "false_accepts", "false_alarm"]


def _load(path: str):
    from edgerf.models import BUILTINS, builtin_artifact
    from edgerf.runtime import StepModel
    if path in BUILTINS:
        return StepModel.load(builtin_artifact(path)), builtin_artifact(path).name
    if path.endswith(".pt"):
        from edgerf import torch_step
        return torch_step.load(Path(path)), Path(path).name + " (torch)"
    return StepModel.load(Path(path)), Path(path).name


def evaluate(model, task, steps: int, **level) -> dict:
    from edgerf.runtime.events import detect_events
    from edgerf.runtime.metrics import keyword_metrics, softmax, stream_metrics
    from edgerf.tasks import EVAL_SEED
    stream = task.stream("test", task.samples_for_steps(steps), seed=EVAL_SEED, **level)
    model.set_state({n: np.zeros_like(v) for n, v in model.get_state().items()})
    logits = model.run(stream.x)
    sm = stream_metrics(logits, stream.labels, stream.mask, stream.ends, task.threshold)
    km = keyword_metrics(detect_events(softmax(logits), list(task.classes), model.threshold), stream,
                         list(task.classes), task.period_s)
    return {"acc_p": sm["acc_p"], "samples": sm["samples"], "hits": km["hits"], "misses": km["misses"],
            "false_accepts": km["false_accepts"], "false_alarm": sm["false_alarm"]}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, sweep, label in ((axes[0], "gain", "speech gain, dB (gaps as recorded)"),
                             (axes[1], "snr", "SNR over a real background bed, dB")):
        for name in dict.fromkeys(r["model"] for r in rows):
            pts = [r for r in rows if r["model"] == name and r["sweep"] == sweep]
            ax.plot([r["db"] for r in pts], [r["acc_p"] for r in pts], "o-", label=name)
            ax.plot([r["db"] for r in pts], [r["hits"] / max(r["hits"] + r["misses"], 1) for r in pts], "x--",
                    alpha=0.6, label=f"{name}: keywords found")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("acc_p (o) / share of keywords found (x)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    from edgerf.bench.machine import machine_info
    from edgerf.tasks import get_task

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", default=["kws-gru"])
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--out", default=str(RESULTS / "kws_levels"))
    a = p.parse_args(argv)
    rows = []
    for path in a.models:
        model, name = _load(path)
        task = get_task(model.manifest["frame"]).bind()
        for sweep, points in (("gain", GAINS_DB), ("snr", SNRS_DB)):
            for db in points:
                r = evaluate(model, task, a.steps, **{f"{sweep}_db": float(db)})
                rows.append({"model": name, "sweep": sweep, "db": db, **r})
                print(rows[-1], flush=True)
    m = machine_info()
    command = "python -m edgerf.bench.studies.kws_levels " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(a.out)
    out.with_suffix(".json").write_text(json.dumps({"command": command.strip(), "machine": m, "steps": a.steps,
                                                    "rows": rows}, indent=1) + "\n")
    plot(rows, out.with_suffix(".png"))
    text = (f"# Keyword models at other speech levels and SNRs\n\nProduced by `{command.strip()}`. Each row: one "
            f"unreset test stream of about {a.steps:,} steps (test-split speakers; the same clips and gaps for every "
            "row), events at each model's operating point. `gain`: every word scaled by `db`, gaps of real "
            "background as recorded. `snr`: every word at `db` over a real background bed running beneath it "
            "(active RMS of the word over the bed's RMS). `samples`: words with an informative step (the "
            "activity mask needs a word about 9 dB over its floor; acc_p counts only those). Plot: "
            f"{out.with_suffix('.png').name}.\n\n" + markdown_table(rows, COLUMNS) + "\n")
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
