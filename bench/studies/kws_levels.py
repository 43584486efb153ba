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

from edgerf.bench.levels import COLUMNS, plot, sweep
from edgerf.bench.report import markdown_table, result_file
from edgerf.bench.studies import RESULTS


def _load(path: str):
    from edgerf.models import BUILTINS, builtin_artifact
    from edgerf.runtime import StepModel
    if path in BUILTINS:
        return StepModel.load(builtin_artifact(path)), builtin_artifact(path).name
    if path.endswith(".pt"):
        from edgerf import torch_step
        return torch_step.load(Path(path)), Path(path).name + " (torch)"
    return StepModel.load(Path(path)), Path(path).name


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
        rows += sweep(model, get_task(model.manifest["frame"]).bind(), a.steps, name, log=print)
    m = machine_info()
    command = "python -m edgerf.bench.studies.kws_levels " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(a.out)
    result_file(out, ".json").write_text(json.dumps({"command": command.strip(), "machine": m, "steps": a.steps,
                                                    "rows": rows}, indent=1) + "\n")
    plot(rows, result_file(out, ".png"))
    text = (f"# Keyword models at other speech levels and SNRs\n\nProduced by `{command.strip()}`. Each row: one "
            f"unreset test stream of about {a.steps:,} steps (test-split speakers; the same clips and gaps for every "
            "row), events at each model's operating point. `gain`: every word scaled by `db`, gaps of real "
            "background as recorded. `snr`: every word at `db` over a real background bed running beneath it "
            "(active RMS of the word over the bed's RMS). `samples`: words with an informative step (the "
            "activity mask needs a word about 9 dB over its floor; acc_p counts only those). Plot: "
            f"{out.with_suffix('.png').name}.\n\n" + markdown_table(rows, COLUMNS) + "\n")
    result_file(out, ".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
