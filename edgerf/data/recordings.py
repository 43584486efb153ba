"""Test recordings for keyword spotting: words of speakers a model never heard, over a real
background bed at a stated SNR, with the truth beside them (host side, numpy only).

    python -m edgerf.data.recordings -o rec.wav --minutes 2 --snr 12 --seed 0

writes ``rec.wav`` (16 kHz mono 16-bit) and ``rec.json`` (every word: its class, start and
end in seconds, source file). How one is made, all drawn from ``seed``:

- the bed: the split's background clips (``_silence_``, or a ``--background`` folder's
  test share), each brought to ``bed_dbfs`` RMS (their recorded levels span -61 to -13
  dBFS, 10th to 90th percentile), in a random order, joined and repeated to the length;
  ``truth["background"]`` says how many distinct seconds it holds, since a long bed repeats;
- words: the split's clips (test by default: speakers outside the training split; ``--split
  val`` for choices made on validation data), ``keyword_share`` of them
  keywords and the rest ``_unknown_`` words, each scaled so its active RMS (over its 10 ms
  frames within 30 dB of its loudest) stands ``snr_db`` over the bed, and added to the bed
  after a gap drawn from U(``gap_min_s``, ``gap_max_s``). With the default bed level a word
  at 12 dB SNR sits at -21 dBFS, the median level of the dataset's own words.

``score`` scores a model's events against the truth, as the field does: a keyword is found
when an event of its class overlaps it (its end extended by ``tolerance_s``); every other
event is a false accept (another class, an ``_unknown_`` word, the bed, a second event
for one word).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgerf.data import speech
from edgerf.runtime.features import SAMPLE_RATE, active_rms

FORMAT = "edgerf-recording/1"


BED_DBFS = -33.0       # the dataset's median word level (-21 dBFS) less 12 dB


def generate(root: Path, seconds: float, snr_db: float, seed: int = 0, keyword_share: float = 0.7,
             gap_min_s: float = 1.0, gap_max_s: float = 2.5, background: Path | None = None,
             keywords: tuple[str, ...] = speech.WORDS, bed_dbfs: float = BED_DBFS,
             split: str = "test") -> tuple[np.ndarray, dict]:
    """A recording of about ``seconds`` (float PCM in [-1, 1]) and its truth. ``split``: whose
    words and background (``test``: speakers outside training; ``val``: for choices made on
    validation data, such as an operating point)."""
    mode = speech.split_mode(root)
    clips = speech.list_clips(root, split, mode)
    bed_clips = speech.load_background(split, root, background, mode)
    words = {True: [c for c in clips if c.word in keywords],
             False: [c for c in clips if c.word != speech.SILENCE and c.word not in keywords]}
    if not words[True]:
        raise ValueError(f"the {split} split of {root} holds none of the keywords {', '.join(keywords)}")
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    order = rng.permutation(len(bed_clips))
    bed_level = 10 ** (bed_dbfs / 20)
    levelled = [b * (bed_level / r) for b in (bed_clips[k] for k in order)
                if (r := float(np.sqrt(np.mean(np.asarray(b, np.float64) ** 2)))) > 1e-6]
    distinct = np.concatenate(levelled).astype(np.float32)
    bed = np.resize(distinct, n)
    out = bed.copy()
    placed, t = [], int(rng.uniform(gap_min_s, gap_max_s) * SAMPLE_RATE)
    while True:
        is_keyword = not words[False] or rng.random() < keyword_share
        pool = words[is_keyword]
        clip = pool[rng.integers(len(pool))]
        pcm = speech.read_wav(clip.path)
        if t + len(pcm) > n:
            break
        level = active_rms(pcm)
        if level > 0:
            gain = 10 ** (snr_db / 20) * bed_level / level
            out[t:t + len(pcm)] += pcm * gain
            placed.append({"word": clip.word if is_keyword else speech.UNKNOWN, "keyword": bool(is_keyword),
                           "start_s": round(t / SAMPLE_RATE, 3), "end_s": round((t + len(pcm)) / SAMPLE_RATE, 3),
                           "gain_db": round(20 * np.log10(gain), 2), "file": f"{clip.word}/{clip.path.name}"})
        t += len(pcm) + int(rng.uniform(gap_min_s, gap_max_s) * SAMPLE_RATE)
    peak = float(np.abs(out).max())
    if peak > 1.0:                          # never clip: the whole recording down, SNR unchanged
        out /= peak
    truth = {"format": FORMAT, "seconds": round(n / SAMPLE_RATE, 2), "sample_rate": SAMPLE_RATE,
             "snr_db": snr_db, "bed_dbfs": bed_dbfs, "seed": seed, "keyword_share": keyword_share,
             "source": f"{speech.label(root)}, {split} split ({mode} split): speakers outside the training split",
             "background": {"clips": len(bed_clips), "distinct_s": round(len(distinct) / SAMPLE_RATE, 1)},
             "made_by": (f"python -m edgerf.data.recordings --minutes {seconds / 60:g} --snr {snr_db:g} "
                         f"--seed {seed}" + (f" --split {split}" if split != "test" else "")),
             "keywords": sum(w["keyword"] for w in placed), "words": placed}
    return out, truth


def score(events: list[dict], truth: dict, tolerance_s: float = 0.5) -> dict:
    """Events (``edgerf stream``'s JSON lines: name, start_s, end_s) against a recording's truth."""
    keywords = [w for w in truth["words"] if w["keyword"]]
    used, found, missed = set(), 0, []
    for w in keywords:
        k = next((k for k, e in enumerate(events) if k not in used and e["name"] == w["word"]
                  and e["start_s"] <= w["end_s"] + tolerance_s and e["end_s"] >= w["start_s"]), None)
        if k is None:
            missed.append(w)
        else:
            used.add(k)
            found += 1
    false = [e for k, e in enumerate(events) if k not in used]
    hours = truth["seconds"] / 3600
    return {"keywords": len(keywords), "found": found, "found_rate": found / len(keywords) if keywords else float("nan"),
            "misses": len(missed), "false_accepts": len(false),
            "false_accepts_per_30_keywords": 30 * len(false) / len(keywords) if keywords else float("nan"),
            "false_accepts_per_hour": len(false) / hours, "false": false}


def write(out: Path, pcm: np.ndarray, truth: dict) -> None:
    """The recording and its truth beside it (``.json``), each written atomically."""
    from edgerf.runtime import atomic
    from edgerf.runtime.audio import write_wav
    write_wav(out, pcm)
    atomic.write_text(out.with_suffix(".json"), json.dumps({**truth, "recording": out.name}, indent=1) + "\n")


def main(argv=None) -> None:
    from edgerf.data.source import locate
    p = argparse.ArgumentParser(prog="python -m edgerf.data.recordings", description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output", type=Path, required=True, help="the .wav to write (its .json beside it)")
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--snr", type=float, default=12.0, help="word level over the bed, dB")
    p.add_argument("--bed-dbfs", type=float, default=BED_DBFS, help="the background bed's RMS level, dBFS")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keyword-share", type=float, default=0.7)
    p.add_argument("--split", default="test", choices=("test", "val"),
                   help="whose words and background: test (the default) or val (for choices made on validation data)")
    p.add_argument("--data", default=None, help="dataset folder (default: as edgerf train finds it)")
    p.add_argument("--background", type=Path, default=None, help="background recordings (default: _silence_)")
    a = p.parse_args(argv)
    if a.output.suffix != ".wav" or not 0 < a.minutes <= 600 or not 0 <= a.keyword_share <= 1:
        p.error("give -o NAME.wav, 0 < --minutes <= 600 and 0 <= --keyword-share <= 1")
    root = locate("speech-commands", a.data, a.background).root
    pcm, truth = generate(root, a.minutes * 60, a.snr, a.seed, a.keyword_share, background=a.background,
                          bed_dbfs=a.bed_dbfs, split=a.split)
    write(a.output, pcm, truth)
    print(f"wrote {a.output} ({truth['seconds']:.0f} s, {len(truth['words'])} words, {truth['keywords']} keywords, "
          f"{a.snr:g} dB SNR over {truth['background']['distinct_s']:.0f} s of distinct background)")


if __name__ == "__main__":
    main()
