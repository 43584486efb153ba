"""How well the causal activity mask separates speech from background, on real clips.

    python -m edgerf.bench.studies.gsc_mask [--split train]

Runs ``edgerf.runtime.features.ActivityMask`` over a long stream of the split's clips in the
order a device would hear them (word clips and ``_silence_`` clips alternating, with
no reset of the mask's noise floor), and reports the fraction of frames marked
informative on word clips and on ``_silence_`` clips. Writes
``bench/results/gsc_mask.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from edgerf.bench.studies import RESULTS



def main(argv=None) -> int:
    from edgerf.runtime.atomic import write_text
    from edgerf.data import speech
    from edgerf.runtime.features import HOP, WIN, ActivityMask, LogMelStream
    from edgerf.tasks import get_task

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="train", choices=["train", "val", "test"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="dataset folder (else $EDGERF_DATA, the defaults)")
    a = p.parse_args(argv)
    task = get_task("gsc").bind(a.data)
    waves, words = speech.load_split(a.split, task.data.root)
    rng = np.random.default_rng(a.seed)
    order = rng.permutation(len(waves))
    wav = np.concatenate([waves[i] for i in order])
    kinds = np.concatenate([np.full(len(waves[i]), words[i]) for i in order])
    _, logvar = LogMelStream().feed(wav)
    _, mask = ActivityMask(theta=task.threshold).update(logvar)
    centre_kind = kinds[np.arange(len(mask)) * HOP + WIN // 2]
    per_word = {w: float(mask[centre_kind == w].mean()) for w in sorted(set(words))}
    word_frames = centre_kind != speech.SILENCE
    res = {"split": a.split, "frames": int(len(mask)), "theta": task.threshold,
           "informative_on_word_clips": float(mask[word_frames].mean()),
           "informative_on_silence_clips": float(mask[~word_frames].mean()),
           "per_folder": per_word}
    # clips whose frames never cross the threshold give no acc_p point
    starts = np.cumsum([0] + [len(waves[i]) for i in order])
    silent = 0
    for k, i in enumerate(order):
        if words[i] == speech.SILENCE:
            continue
        f0, f1 = np.searchsorted(np.arange(len(mask)) * HOP + WIN // 2, [starts[k], starts[k + 1]])
        silent += not mask[f0:f1].any()
    res["word_clips_with_no_informative_frame"] = silent
    res["word_clips"] = int(sum(w != speech.SILENCE for w in words))
    write_text(RESULTS / "gsc_mask.json", json.dumps(res, indent=2))
    md = ["# Speech Commands: causal activity mask (theta = 0.9)", "",
          f"`python -m edgerf.bench.studies.gsc_mask --split {a.split}`: {res['frames']:,} frames of real clips "
          "(word and `_silence_` clips interleaved, mask state never reset).", "",
          f"- frames marked informative on word clips: **{res['informative_on_word_clips']:.1%}**",
          f"- frames marked informative on `_silence_` clips: **{res['informative_on_silence_clips']:.1%}**",
          f"- word clips with no informative frame: {silent} of {res['word_clips']}", "",
          "| folder | informative frames |", "|---|---|"]
    md += [f"| {w} | {v:.1%} |" for w, v in per_word.items()]
    md += ["", "In training streams the mask is applied inside word clips only (gaps are known to be "
           "background), so the mask's errors on `_silence_` do not become labels."]
    write_text(RESULTS / "gsc_mask.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
