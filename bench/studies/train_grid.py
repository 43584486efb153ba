"""Train the 4 families x 3 training modes on a task and tabulate no-reset (and
oracle-reset) results on one unreset test stream.

    python -m edgerf.bench.studies.train_grid [--task sfmnist|gsc] [--engine auto|ray|pool] [--out runs/<task>]
                                      [--seeds 0,1,2] [--readout gated] ...

Checkpoints go to ``--out`` (not committed); one JSON record per run and evaluation
goes to ``bench/results/<task>_train.jsonl`` and a table to ``<task>_train.md``.
Runs already in ``--out`` are reused, so the script resumes after an interruption. The
trials run through ``edgerf.sweep`` (Ray Tune when installed, else a process pool).
Per-task settings live in ``GRID``: the same trainer, other data. With several seeds the
table also gives each model and loss's mean and range over the seeds (one seed moved the
speech GRU's acc_p by 2 points).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgerf.runtime.atomic import write_text
from edgerf.bench.report import markdown_table, read_records, write_records
from edgerf.choices import READOUT_NAMES
from edgerf.bench.studies import RESULTS

COLUMNS = ["model", "loss", "seed", "eval", "acc_p", "acc_f", "false_alarm", "noise_conf", "steps", "samples",
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


SUMMARY_METRICS = ("acc_p", "false_alarm", "miss_at_1fa_h")


def run_label(r: dict) -> str:
    """A run and evaluation as the DET plot names it ("gru reset-free s1 no-reset")."""
    seed = f" s{r['seed']}" if r.get("seed") else ""
    return f"{r['model']} {r['loss']}{seed} {r['eval']}"


def seed_summary(records: list[dict]) -> str:
    """Mean and range over seeds of each model, loss and evaluation run with more than one."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["model"], r["loss"], r["eval"]), []).append(r)
    rows = []
    for (model, loss, ev), rs in groups.items():
        if len(rs) < 2:
            continue
        row = {"model": model, "loss": loss, "eval": ev, "seeds": ",".join(str(r.get("seed", 0)) for r in rs)}
        for m in SUMMARY_METRICS:
            vals = [r[m] for r in rs if r.get(m) is not None]
            if vals:
                row[m] = f"{sum(vals) / len(vals):.4f} [{min(vals):.4f}, {max(vals):.4f}]"
        rows.append(row)
    if not rows:
        return ""
    cols = ["model", "loss", "eval", "seeds"] + [m for m in SUMMARY_METRICS if any(m in r for r in rows)]
    return "\n\n## Over seeds: mean [min, max]\n\n" + markdown_table(rows, cols)


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
    p.add_argument("--readout", default=None, choices=READOUT_NAMES,
                   help="edgerf train --readout; a non-default one sends results to <name>_<readout>_train.*")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds (each a run)")
    a = p.parse_args(argv)
    seeds = tuple(int(s) for s in a.seeds.split(","))
    name = a.task + (f"_stack{a.frame_stack}" if a.frame_stack else "") + (f"_frontend{a.frontend}" if a.frontend
                                                                            else "")
    name += f"_{a.readout}" if a.readout and a.readout != "linear" else ""
    a.out = a.out or f"runs/{name}"
    Path(a.out).mkdir(parents=True, exist_ok=True)
    settings = dict(GRID[a.task], **({"epochs": a.epochs} if a.epochs else {}),
                    **({"frame_stack": a.frame_stack} if a.frame_stack else {}),
                    **({"frontend": a.frontend} if a.frontend else {}),
                    **({"readout": a.readout} if a.readout else {}))
    base = TrainConfig(task=a.task, **settings)
    # the grid is a sweep over families x losses x seeds (the task's width); trials keep the
    # grid's historic checkpoint names (seed 0: <model>-<loss>), which export_table and
    # `make results` read
    from edgerf.sweep import SweepConfig, run_sweep
    models, losses = tuple(a.models.split(",")), tuple(a.losses.split(","))
    jobs = {(m, lo, s) for m in models for lo in losses for s in seeds}
    sweep = SweepConfig(base=base, models=models, losses=losses, hidden=(base.hidden,), seeds=seeds,
                        out=a.out, results=str(Path(a.out) / "sweep"), engine=a.engine,
                        names={(m, lo, s): f"{m}-{lo}" + (f"-s{s}" if s else "") for m, lo, s in jobs})
    grid = (f"python -m edgerf.bench.studies.train_grid --task {a.task}"
            f"{f' --frame-stack {a.frame_stack}' if a.frame_stack else ''}"
            f"{f' --frontend {a.frontend}' if a.frontend else ''}"
            f"{f' --readout {a.readout}' if a.readout else ''}"
            f"{f' --seeds {a.seeds}' if a.seeds != '0' else ''}"
            f"{f' --epochs {a.epochs}' if a.epochs else ''}"
            f"{f' --models {a.models}' if a.models != ','.join(FAMILIES) else ''}"
            f"{f' --losses {a.losses}' if a.losses != ','.join(TRAINING_MODES) else ''}")
    # each record names the invocation that made it: a table grown by several runs says so
    records = [{**r, "grid_command": grid} for r in run_sweep(sweep)["records"]]
    jsonl = RESULTS / f"{name}_train.jsonl"
    keep = [r for r in read_records(jsonl) if (r["model"], r["loss"], r.get("seed", 0)) not in jobs]
    records = sorted(keep + records, key=lambda r: (r["model"], r["loss"], r.get("seed", 0), r["eval"]))
    curves = {run_label(r): r.pop("det") for r in records if "det" in r}
    write_records(jsonl, records)
    columns = COLUMNS + (KEYWORD_COLUMNS if curves else []) + (["note"] if any("note" in r for r in records) else [])
    if curves:
        from edgerf.bench.render import plot_det
        det = RESULTS / f"{name}_det.json"        # a partial re-run keeps the other runs' curves
        curves = {**(json.loads(det.read_text()) if det.exists() else {}), **curves}
        write_text(det, json.dumps(curves, indent=1) + "\n")
        plot_det({k: v for k, v in curves.items() if "no-reset" in k}, RESULTS / f"{name}_det.png")
    invocations = " and ".join(f"`{c}`" for c in dict.fromkeys(r.get("grid_command", grid) for r in records))
    md = (f"# {TITLES[a.task]}: training grid\n\n"
          f"Produced by {invocations} (the last: {base.command()} for each model and loss; every run's "
          "command is in the JSONL). The models of one seed are evaluated on the same unreset test stream (drawn from "
          "the seed); periodic-reset also "
          "with oracle resets at sample starts." + (
              " Keyword columns: events of the runtime's detector on the test stream at the decision "
              "threshold (hits, misses, false accepts), false accepts per hour on an hour of real "
              "background, and the miss rate at 1 false accept per hour (the DET curves: "
              f"{name}_det.png, {name}_det.json)." if curves else "") + "\n\n" + markdown_table(records, columns)
          + seed_summary(records))
    write_text(RESULTS / f"{name}_train.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
