"""Train the 4 families x 3 training modes on a task and tabulate no-reset (and
oracle-reset) results on one unreset test stream.

    python -m edgerf.bench.train_grid [--task sfmnist|gsc] [--engine auto|ray|pool] [--out runs/<task>]

Checkpoints go to ``--out`` (not committed); one JSON record per run and evaluation
goes to ``bench/results/<task>_train.jsonl`` and a table to ``<task>_train.md``.
Runs already in ``--out`` are reused, so the script resumes after an interruption. The
trials run through ``edgerf.sweep`` (Ray Tune when installed, else a process pool).
Per-task settings live in ``GRID``: the same trainer, other data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgerf.atomic import write_text
from edgerf.bench.report import markdown_table, read_records, write_records

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ["model", "loss", "eval", "acc_p", "acc_f", "false_alarm", "noise_conf", "steps", "samples",
           "train_seconds"]
# What differs per task. sfmnist: 55,000 images, 6 epochs are enough. gsc: ~3,000 word
# clips, so smaller batches (more updates per epoch) and more epochs.
GRID = {
    "sfmnist": {"epochs": 6},
    "gsc": {"epochs": 20, "batch": 16, "val_samples": 200, "test_steps": 60_000},
}
# Keyword spotting as the field reports it (audio tasks): event hits/misses/false accepts on
# the test stream at the decision threshold, false accepts per hour on an hour of
# background, and the miss rate at the threshold that allows 1 false accept per hour.
KEYWORD_COLUMNS = ["hits", "misses", "false_accepts", "fa_per_hour", "miss_at_1fa_h", "threshold_at_1fa_h"]
TITLES = {"sfmnist": "Sequential Fashion-MNIST", "gsc": "Google Speech Commands (12-class test set, speaker split)"}


def main(argv=None) -> int:
    from edgerf.cells import FAMILIES
    from edgerf.loss import TRAINING_MODES
    from edgerf.train import TrainConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sfmnist", choices=sorted(GRID))
    p.add_argument("--out", default=None, help="checkpoint folder (default runs/<task>)")
    p.add_argument("--engine", default="auto", choices=("auto", "ray", "pool"),
                   help="ray (edgerf[sweep]), a local process pool, or auto: ray when installed")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--models", default=",".join(FAMILIES))
    p.add_argument("--losses", default=",".join(TRAINING_MODES))
    p.add_argument("--frame-stack", type=int, default=None,
                   help="audio: log-mel frames per step; results go to <task>_stack<k>_train.*")
    p.add_argument("--frontend", type=int, default=None,
                   help="ReLU layers before the cells (edgerf train --frontend); results go to <task>[_stack<k>]"
                        "_frontend<n>_train.*")
    a = p.parse_args(argv)
    name = a.task + (f"_stack{a.frame_stack}" if a.frame_stack else "") + (f"_frontend{a.frontend}" if a.frontend
                                                                            else "")
    a.out = a.out or f"runs/{name}"
    Path(a.out).mkdir(parents=True, exist_ok=True)
    settings = dict(GRID[a.task], **({"epochs": a.epochs} if a.epochs else {}),
                    **({"frame_stack": a.frame_stack} if a.frame_stack else {}),
                    **({"frontend": a.frontend} if a.frontend else {}))
    base = TrainConfig(task=a.task, **settings)
    # the grid is a sweep over families x losses (one seed, the task's width); trials keep
    # the grid's historic checkpoint names, which export_table and `make results` read
    from edgerf.sweep import SweepConfig, run_sweep
    models, losses = tuple(a.models.split(",")), tuple(a.losses.split(","))
    sweep = SweepConfig(base=base, models=models, losses=losses, hidden=(base.hidden,), seeds=(base.seed,),
                        out=a.out, results=str(Path(a.out) / "sweep"), engine=a.engine,
                        names={(m, lo): f"{m}-{lo}" for m in models for lo in losses})
    records = run_sweep(sweep)["records"]
    jobs = [(m, lo) for m in models for lo in losses]
    jsonl = RESULTS / f"{name}_train.jsonl"
    keep = [r for r in read_records(jsonl) if (r["model"], r["loss"]) not in set(jobs)]
    records = sorted(keep + records, key=lambda r: (r["model"], r["loss"], r["eval"]))
    curves = {f"{r['model']} {r['loss']} {r['eval']}": r.pop("det") for r in records if "det" in r}
    write_records(jsonl, records)
    columns = COLUMNS + (KEYWORD_COLUMNS if curves else []) + (["note"] if any("note" in r for r in records) else [])
    if curves:
        from edgerf.bench.render import plot_det
        det = RESULTS / f"{name}_det.json"        # a partial re-run keeps the other runs' curves
        curves = {**(json.loads(det.read_text()) if det.exists() else {}), **curves}
        write_text(det, json.dumps(curves, indent=1) + "\n")
        plot_det({k: v for k, v in curves.items() if "no-reset" in k}, RESULTS / f"{name}_det.png")
    md = (f"# {TITLES[a.task]}: training grid\n\n"
          f"Produced by `python -m edgerf.bench.train_grid --task {a.task}"
          f"{f' --frame-stack {a.frame_stack}' if a.frame_stack else ''}"
          f"{f' --frontend {a.frontend}' if a.frontend else ''}"
          f"{f' --epochs {a.epochs}' if a.epochs else ''}"
          f"{f' --models {a.models}' if a.models != ','.join(FAMILIES) else ''}"
          f"{f' --losses {a.losses}' if a.losses != ','.join(TRAINING_MODES) else ''}` ({base.command()} for each "
          "model and loss). Every model is evaluated on the same unreset test stream; periodic-reset also "
          "with oracle resets at sample starts." + (
              " Keyword columns: events of the runtime's detector on the test stream at the decision "
              "threshold (hits, misses, false accepts), false accepts per hour on an hour of real "
              "background, and the miss rate at 1 false accept per hour (the DET curves: "
              f"{name}_det.png, {name}_det.json)." if curves else "") + "\n\n" + markdown_table(records, columns))
    write_text(RESULTS / f"{name}_train.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
