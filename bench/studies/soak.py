"""Soak: every artifact of a model over >= 10^6 unreset steps, watched in windows.

    python -m edgerf.bench.studies.soak CKPT [CKPT ...] [--steps 1000000] [--window 100000] [--out bench/results/soak]

For each checkpoint, every exported artifact beside it runs through ``edgerf.runtime.
StepModel`` (the device path, watchdog on) over one stream that is never reset: real test
images in a fresh order with fresh noise gaps for every window of ``--window`` steps (the
test split is cycled; only the order and the gaps repeat nothing). Per window: acc_p,
acc_f, false alarms, the state's min/max (sampled every 100 steps), the watchdog's
restores, and the process's resident memory; a drift or a leak shows as a trend over
windows. Writes ``<out>.jsonl`` (one record per artifact and window) and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from edgerf.bench.report import markdown_table, write_records, result_file
from edgerf.bench.run import artifact_kind, discover
from edgerf.runtime.manifest import ARTIFACT_SUFFIXES
from edgerf.runtime.metrics import stream_metrics
from edgerf.bench.studies import RESULTS

COLUMNS = ["model", "loss", "target", "precision", "windows", "steps", "acc_p", "acc_p_first", "acc_p_last",
           "acc_p_min", "false_alarm", "false_alarm_max", "state_min", "state_max", "state_restores",
           "rss_mib_first", "rss_mib_last", "us_per_step"]


def _rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def soak_artifact(path: Path, task, steps: int, window: int, log=print) -> list[dict]:
    from edgerf.runtime import StepModel

    m = StepModel.load(path)
    records, done, k = [], 0, 0
    while done < steps:
        n = min(window, steps - done)
        stream = task.stream("test", task.samples_for_steps(n), seed=10_000 + k).head(n)
        logits = np.empty((len(stream), len(m.classes)), np.float32)
        lo, hi = np.inf, -np.inf
        t0 = time.perf_counter()
        for t in range(len(stream)):
            logits[t] = m.step(stream.x[t])
            if t % 100 == 0:
                for v in m.get_state().values():
                    lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
        seconds = time.perf_counter() - t0
        met = stream_metrics(logits, stream.labels, stream.mask, stream.ends, m.threshold)
        records.append({"window": k, "steps": len(stream), "acc_p": met["acc_p"], "acc_f": met["acc_f"],
                        "false_alarm": met["false_alarm"], "state_min": lo, "state_max": hi,
                        "state_restores": m.health["state_restores"], "rss_mib": round(_rss_mib(), 1),
                        "us_per_step": round(seconds / len(stream) * 1e6, 2)})
        done += len(stream)
        k += 1
        log(f"  {path.name} window {k}: {done:,} steps, acc_p {met['acc_p']:.4f}, false alarm "
            f"{met['false_alarm']:.4%}, state [{lo:.3g}, {hi:.3g}], restores {m.health['state_restores']}, "
            f"RSS {records[-1]['rss_mib']} MiB")
    return records


def summarise(model: str, loss: str, path: Path, precision: str, windows: list[dict]) -> dict:
    acc = [w["acc_p"] for w in windows]
    fa = [w["false_alarm"] for w in windows]
    steps = sum(w["steps"] for w in windows)
    return {"model": model, "loss": loss, "target": artifact_kind(path), "file": path.name, "precision": precision,
            "windows": len(windows), "steps": steps,
            "acc_p": float(np.average(acc, weights=[w["steps"] for w in windows])),
            "acc_p_first": acc[0], "acc_p_last": acc[-1], "acc_p_min": min(acc),
            "false_alarm": float(np.average(fa, weights=[w["steps"] for w in windows])), "false_alarm_max": max(fa),
            "state_min": min(w["state_min"] for w in windows), "state_max": max(w["state_max"] for w in windows),
            "state_restores": windows[-1]["state_restores"], "rss_mib_first": windows[0]["rss_mib"],
            "rss_mib_last": windows[-1]["rss_mib"],
            "us_per_step": float(np.median([w["us_per_step"] for w in windows]))}


def main(argv=None) -> int:
    from edgerf.runtime.manifest import read as read_manifest
    from edgerf.tasks import get_task

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", type=Path, help="checkpoints with their exports beside them")
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--window", type=int, default=100_000)
    p.add_argument("--data", default=None, help="dataset folder (else $EDGERF_DATA, the defaults)")
    p.add_argument("--out", type=Path, default=RESULTS / "soak")
    a = p.parse_args(argv)
    summary, windows = [], []
    for ckpt in a.checkpoints:
        _, artifacts = discover([], ckpt)
        artifacts = [x for x in artifacts if x.suffix in ARTIFACT_SUFFIXES]
        man = read_manifest(artifacts[0])
        task = get_task(man["frame"]).bind(a.data)
        loss = (man["source"].get("train_command", "").split("--loss ") + ["?"])[1].split()[0]
        for art in artifacts:
            precision = read_manifest(art)["artifact"]["precision"]
            print(f"{ckpt.stem} {art.name} ({precision}): {a.steps:,} unreset steps", flush=True)
            recs = soak_artifact(art, task, a.steps, a.window)
            windows += [{"model": ckpt.stem, "file": art.name, **r} for r in recs]
            summary.append(summarise(ckpt.stem, loss, art, precision, recs))
    cmd = "python -m edgerf.bench.studies.soak " + " ".join(str(c) for c in a.checkpoints) + \
        ("" if a.steps == 1_000_000 else f" --steps {a.steps}")
    write_records(result_file(a.out, ".jsonl"), windows)
    md = [f"# Soak: {a.steps:,} unreset steps per artifact", "",
          f"Produced by `{cmd}`. Each artifact runs through `edgerf.runtime.StepModel` (watchdog on) over one "
          f"stream never reset: real test images, a fresh order and fresh noise gaps every {a.window:,} steps. "
          "acc_p / false alarms are step-weighted over all windows; first / last / min are per window; state "
          "min/max sampled every 100 steps; RSS of the process after the first and the last window "
          "(all artifacts share one process, so RSS includes the ones before). Per-window records: soak.jsonl.",
          "", markdown_table(summary, COLUMNS)]
    from edgerf.runtime.atomic import write_text
    write_text(result_file(a.out, ".md"), "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
