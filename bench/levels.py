"""An audio model at other speech levels and SNRs (``edgerf bench --levels`` and the
kws_levels study): each point one unreset test stream, the same clips and gaps for every
point; ``gain``: every word scaled by ``db`` over gaps of real background as recorded;
``snr``: every word at ``db`` over a real background bed running beneath it
(``SpeechCommands.stream``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

GAINS_DB = (-30, -20, -10, -6, 0, 6, 10)
SNRS_DB = (-5, 0, 5, 10, 15, 20)
COLUMNS = ["model", "sweep", "db", "acc_p", "samples", "hits", "misses", "false_accepts", "false_alarm"]


def evaluate(model, task, steps: int, **level) -> dict:
    """One point: acc_p (and how many words have an informative step: the activity mask needs a
    word about 9 dB over its floor), keyword events at the model's operating point, and per-step
    false alarms at the task's threshold."""
    from edgerf.runtime.events import detect_events
    from edgerf.runtime.metrics import keyword_metrics, softmax, stream_metrics
    from edgerf.tasks import EVAL_SEED
    stream = task.stream("test", task.samples_for_steps(steps), seed=EVAL_SEED, **level)
    model.set_state({n: np.zeros_like(v) for n, v in model.get_state().items()})
    logits = model.run(stream.x)
    sm = stream_metrics(logits, stream.labels, stream.mask, stream.ends, task.threshold)
    km = keyword_metrics(detect_events(softmax(logits), list(task.classes), model.threshold,
                                       getattr(model, "window", 3)), stream, list(task.classes), task.period_s)
    return {"acc_p": sm["acc_p"], "samples": sm["samples"], "hits": km["hits"], "misses": km["misses"],
            "false_accepts": km["false_accepts"], "false_alarm": sm["false_alarm"]}


def sweep(model, task, steps: int, name: str, log=lambda s: None) -> list[dict]:
    rows = []
    for kind, points in (("gain", GAINS_DB), ("snr", SNRS_DB)):
        for db in points:
            rows.append({"model": name, "sweep": kind, "db": db,
                         **evaluate(model, task, steps, **{f"{kind}_db": float(db)})})
            log(f"{name} {kind} {db:+d} dB: acc_p {rows[-1]['acc_p']:.4f}, {rows[-1]['hits']} keywords found, "
                f"{rows[-1]['false_accepts']} false accepts")
    return rows


def plot(rows: list[dict], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, kind, label in ((axes[0], "gain", "speech gain, dB (gaps as recorded)"),
                            (axes[1], "snr", "SNR over a real background bed, dB")):
        for name in dict.fromkeys(r["model"] for r in rows):
            pts = [r for r in rows if r["model"] == name and r["sweep"] == kind]
            ax.plot([r["db"] for r in pts], [r["acc_p"] for r in pts], "o-", label=f"{name}: acc_p")
            ax.plot([r["db"] for r in pts], [r["hits"] / max(r["hits"] + r["misses"], 1) for r in pts], "x--",
                    alpha=0.6, label=f"{name}: keywords found")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("acc_p (o) / share of keywords found (x)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    from edgerf.runtime.atomic import atomic_path
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
