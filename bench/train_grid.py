"""Train the 4 families x 3 training modes on a task and tabulate no-reset (and
oracle-reset) results on one unreset test stream.

    python -m edgerf.bench.train_grid [--task sfmnist|gsc] [--jobs 2] [--out runs/<task>]

Checkpoints go to ``--out`` (not committed); one JSON record per run and evaluation
goes to ``bench/results/<task>_train.jsonl`` and a table to ``<task>_train.md``.
Runs already in ``--out`` are reused, so the script resumes after an interruption.
Per-task settings live in ``GRID``: the same trainer, other data.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
from dataclasses import replace
from pathlib import Path

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
TITLES = {"sfmnist": "Sequential Fashion-MNIST", "gsc": "Google Speech Commands (12-class test set, speaker split)"}


def run_one(args: tuple) -> list[dict]:
    from edgerf import checkpoint
    from edgerf.train import train

    cfg, out = args
    path = Path(out) / f"{cfg.model}-{cfg.loss}.pt"
    if path.exists():
        return checkpoint.load(path).results["test"]
    log = Path(out) / f"{cfg.model}-{cfg.loss}.log"
    with open(log, "w") as f:
        ckpt = train(cfg, progress=False, log=lambda s: print(s, file=f, flush=True))
    checkpoint.save(path, ckpt)
    return ckpt.results["test"]


def main(argv=None) -> int:
    from edgerf.cells import FAMILIES
    from edgerf.loss import TRAINING_MODES
    from edgerf.train import TrainConfig

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sfmnist", choices=sorted(GRID))
    p.add_argument("--out", default=None, help="checkpoint folder (default runs/<task>)")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (one torch thread each)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--models", default=",".join(FAMILIES))
    p.add_argument("--losses", default=",".join(TRAINING_MODES))
    a = p.parse_args(argv)
    a.out = a.out or f"runs/{a.task}"
    Path(a.out).mkdir(parents=True, exist_ok=True)
    settings = dict(GRID[a.task], **({"epochs": a.epochs} if a.epochs else {}))
    base = TrainConfig(task=a.task, **settings)
    # Longest runs first so two workers finish together.
    order = {"gru": 0, "ssm": 1, "lif": 2, "rnn": 3}
    jobs = [(replace(base, model=m, loss=l), a.out)
            for m in sorted(a.models.split(","), key=lambda m: order.get(m, 9))
            for l in a.losses.split(",")]
    with mp.get_context("spawn").Pool(a.jobs) as pool:
        results = pool.map(run_one, jobs, chunksize=1)
    records = [r for rs in results for r in rs]
    jsonl = RESULTS / f"{a.task}_train.jsonl"
    keep = [r for r in read_records(jsonl) if (r["model"], r["loss"]) not in {(j[0].model, j[0].loss) for j in jobs}]
    records = sorted(keep + records, key=lambda r: (r["model"], r["loss"], r["eval"]))
    write_records(jsonl, records)
    md = (f"# {TITLES[a.task]}: training grid\n\n"
          f"Produced by `python -m edgerf.bench.train_grid --task {a.task}` ({base.command()} for each "
          "model and loss). Every model is evaluated on the same unreset test stream; periodic-reset also "
          "with oracle resets at sample starts.\n\n" + markdown_table(records, COLUMNS))
    (RESULTS / f"{a.task}_train.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
