"""Rebuild the shipped built-in files (host side: torch and the full datasets).

    python -m edgerf.models.build [--kws-checkpoint runs/kws/kws-gru.pt] [--default-checkpoint runs/sf/x.pt]
                                  [--data DIR]

Exports every built-in checkpoint (fp32 + int8, ONNX + TFLite, manifests, evaluation
bundle) into this package folder, and cuts the demo recording ``kws-demo.wav`` from the
Speech Commands *test* split (speakers the keyword model never heard): one clip of each
keyword in a seeded order, with 0.8-1.0 s of the split's real recorded background
before each, and 1 s after the last. ``kws-demo.json`` records which word starts where
and which files it came from; ATTRIBUTION.md carries the licence.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from edgerf.models import BUILTIN_DIR, BUILTINS, DEMO_RECORDING, DEMO_TRUTH

DEMO_SEED = 7
SAMPLE_RATE = 16_000


def build_demo_recording(data: str | None = None, out: Path = DEMO_RECORDING, truth: Path = DEMO_TRUTH) -> dict:
    from edgerf.runtime import atomic
    from edgerf.runtime.audio import write_wav
    from edgerf.data import speech
    from edgerf.data.source import locate

    root = locate("speech-commands", data).root
    clips = speech.list_clips(root, "test")
    rng = np.random.default_rng(DEMO_SEED)
    background = [c for c in clips if c.word == speech.SILENCE]
    words = list(speech.WORDS)
    rng.shuffle(words)
    pieces, placed, t = [], [], 0
    for word in words:
        options = [c for c in clips if c.word == word]
        clip = options[rng.integers(len(options))]
        bg = background[rng.integers(len(background))]
        gap = speech.read_wav(bg.path)[: int(rng.uniform(0.8, 1.0) * SAMPLE_RATE)]
        pcm = speech.read_wav(clip.path)
        placed.append({"word": word, "start_s": round((t + len(gap)) / SAMPLE_RATE, 3),
                       "end_s": round((t + len(gap) + len(pcm)) / SAMPLE_RATE, 3),
                       "file": f"{word}/{clip.path.name}", "background": f"{speech.SILENCE}/{bg.path.name}"})
        pieces += [gap, pcm]
        t += len(gap) + len(pcm)
    tail = background[rng.integers(len(background))]
    pieces.append(speech.read_wav(tail.path)[:SAMPLE_RATE])
    pcm = np.concatenate(pieces)
    write_wav(out, pcm)
    meta = {"recording": out.name, "seconds": round(len(pcm) / SAMPLE_RATE, 2), "sample_rate": SAMPLE_RATE,
            "source": "Speech Commands v0.02 test set, test speaker split (CC BY 4.0)",
            "made_by": "python -m edgerf.models.build", "words": placed,
            "tail_background": f"{speech.SILENCE}/{tail.path.name}"}
    atomic.write_text(truth, json.dumps(meta, indent=1) + "\n")
    atomic.write_text(truth.with_name("ATTRIBUTION.md"), attribution(meta))
    return meta


def attribution(meta: dict) -> str:
    files = "\n".join(f"- `{w['file']}` at {w['start_s']:.2f} s, after background `{w['background']}`"
                      for w in meta["words"])
    return f"""# Attribution of the built-in demo recording

`{meta['recording']}` ({meta['seconds']} s, 16 kHz mono) is cut from the **Speech Commands
dataset v0.02** by Pete Warden (Google), "Speech Commands: A Dataset for Limited-Vocabulary
Speech Recognition", arXiv:1804.03209, 2018, released under the **Creative Commons
Attribution 4.0 International licence (CC BY 4.0)**, https://creativecommons.org/licenses/by/4.0/.

Changes: whole clips are concatenated unchanged (16-bit PCM, as released), each after a
0.8-1.0 s piece of a recorded `_silence_` background clip of the same release, with 1 s of
`{meta['tail_background']}` at the end. Made by `{meta['made_by']}`; `{DEMO_TRUTH.name}` lists
where each word is. Clips used:

{files}

The keyword model `kws-gru` was trained on other speakers of the same release (the
speaker-hash train split); these clips come from its test split.
"""


# The int8 budget of each built-in where it is not the default, and why. kws-gru: on its 602
# val samples (6 contexts) full int8 is within 1 pt on every target (measured +0.37 pt on
# XNNPACK, +0.40 on TFLite Micro) but over the default's 0.5 on the reference kernels (+0.56;
# the model before it: +0.66 on TFLite Micro). Full int8 is what a microcontroller and the
# numpy backend run bit for bit (int8-gemm keeps the recurrence in
# float: TFLite Micro's float kernels, an 18.9 KB arena, and not bit-exact in numpy), so it
# ships under a 1 pt / 0.1 pt budget, recorded in its manifest.
BUDGETS = {"kws-gru": {"max_acc_p_drop": 0.01, "max_false_alarm_rise": 0.001}}
# Fine-tuning through the int8 twin where not the default (none). default-gru: without it,
# full int8 passed its export budget on 3,282 val samples (+0.06..+0.40 pt) yet lost
# +0.51..+0.61 pt over the whole test split on every TFLite target; one epoch of its 16,000
# training samples (~8 min here) brought the val drop to -0.27..-0.12 pt on those targets
# (the built-in trained with --end-weight since: +0.00..+0.27 on every target).
QAT = {"default-gru": {"qat_epochs": 1, "qat_samples": 16_000}}
# Steps of the evaluation bundle shipped beside each built-in where not the default: a
# keyword step is 160 float16 features (4 stacked frames), so 10,000 steps made 3.2 MB.
BUNDLE_STEPS = {"kws-gru": 5_000}


def main(argv=None) -> int:
    from edgerf.configs import Budget
    from edgerf.export.pipeline import ExportConfig, export_checkpoint

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kws-checkpoint", type=Path, help="a newly trained keyword checkpoint to ship as kws-gru.pt")
    p.add_argument("--default-checkpoint", type=Path, help="a newly trained Fashion-MNIST checkpoint to ship as "
                                                           "default-gru.pt")
    p.add_argument("--data", help="dataset folder (else $EDGERF_DATA, Debian's, ../shared/data)")
    p.add_argument("--only", choices=sorted(BUILTINS), action="append", help="rebuild only these built-ins")
    a = p.parse_args(argv)
    for name, new in (("kws-gru", a.kws_checkpoint), ("default-gru", a.default_checkpoint)):
        if new:
            shutil.copyfile(new, BUILTIN_DIR / f"{name}.pt")
    for name in a.only or BUILTINS:
        print(f"exporting {name} ...", flush=True)
        cfg = ExportConfig(int8=True, force=True, data=a.data, budget=Budget(**BUDGETS.get(name, {})),
                           bundle_steps=BUNDLE_STEPS.get(name, ExportConfig.bundle_steps),
                           **QAT.get(name, {}))
        export_checkpoint(BUILTIN_DIR / f"{name}.pt", BUILTIN_DIR, cfg, log=print)
    if not a.only or "kws-gru" in a.only:
        meta = build_demo_recording(a.data)
        print(f"wrote {DEMO_RECORDING.name}: {meta['seconds']} s, words {[w['word'] for w in meta['words']]}")
    total = sum(f.stat().st_size for f in BUILTIN_DIR.iterdir() if f.is_file() and f.suffix != ".py")
    print(f"built-in files: {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
