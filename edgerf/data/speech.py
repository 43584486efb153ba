"""Speech Commands: the standard folder layout, 16 kHz mono WAV. Never downloads.

    <root>/<word>/<speaker>_nohash_<n>.wav
    <root>/_unknown_/<word>_<speaker>_nohash_<n>.wav[.wav]   (the 12-class test set's layout)
    <root>/_silence_/<n>.wav                                   (background noise, no speaker)

Any vocabulary: every word folder is a word (a user's own recordings in the same
layout: ``<root>/<word>/*.wav``); the task chooses which words are classes.

Splits are by speaker (SHA-1 of the speaker hash, so deterministic and
platform-independent): no speaker is in two splits. With fewer than
``MIN_SPEAKERS`` speakers a speaker split would leave a split empty, so clips are
split by the SHA-1 of their path instead (``split_mode``; the checkpoint records which).
``_silence_`` files carry no speaker and are split by their file name. Background can
also come from a folder of recordings (``load_background``): a file is cut in time, its
first 70% for train, the next 10% for val, the last 20% for test, except that in a folder of
``POOLED_CLIPS`` files or more a clip under ``LONG_BACKGROUND_S`` goes whole to one split by
the SHA-1 of its name (many short clips pool by total duration; no moment is in two splits).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgerf.runtime.audio import read_wav
from edgerf.runtime.errors import DataError

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
TITLE = "Speech Commands word folders (<word>/*.wav)"
_REPO = Path(__file__).resolve().parents[2]
# Default folders when neither --data nor $EDGERF_DATA is set (edgerf.data.source.locate):
# this repository's development layout, ../shared/data beside the checkout.
DEFAULT_DIRS = (Path.cwd() / "../shared/data", _REPO / "../shared/data")
# Folder names under which a given folder may hold the dataset (or it is the dataset).
LAYOUT_NAMES = ("speech_commands_v0.02_test", "speech_commands")
HOW_TO_GET = ("Put Speech Commands (v0.02, the standard <word>/<speaker>_nohash_<n>.wav layout) or your own "
              "recordings in that layout in a folder and pass it with --data or $EDGERF_DATA.")
SPLIT_PERCENT = {"train": (0, 70), "val": (70, 80), "test": (80, 100)}   # hash buckets and time shares
MIN_SPEAKERS = 10        # below this, split by file: 10 speakers give each split at least one on average
SPLIT_MODES = ("speaker", "file")
# In a folder of at least POOLED_CLIPS files, a file shorter than LONG_BACKGROUND_S goes whole
# to one split (its 10% val share of a 1 s clip would be 0.1 s: too short for a gap); every
# other file, and every file of a smaller folder, is cut in time over the splits.
LONG_BACKGROUND_S = 30.0
POOLED_CLIPS = 20


@dataclass(frozen=True)
class Clip:
    path: Path
    word: str          # folder: a keyword, _unknown_ or _silence_
    speaker: str       # speaker hash, or the file stem for _silence_


def _is_root(d: Path) -> bool:
    """A dataset root holds word folders of WAV files (any words: the vocabulary comes from the data)."""
    try:
        return d.is_dir() and any(p.is_dir() and any(p.glob("*.wav*")) for p in d.iterdir())
    except OSError:
        return False


def root_in(folder: Path) -> Path | None:
    """The dataset root at ``folder`` (one of its LAYOUT_NAMES subfolders, or itself), or None."""
    return next((d for d in (*(folder / n for n in LAYOUT_NAMES), folder) if _is_root(d)), None)


def label(root: Path) -> str:
    """What the data is, from the data: Speech Commands when every one of its keyword folders is
    there with its ``<speaker>_nohash_<n>.wav`` clips, else a user's own words."""
    from edgerf.configs import tail

    if all(any("_nohash_" in p.name for p in (root / w).glob("*.wav")) for w in WORDS):
        return "Speech Commands"
    return f"keywords from {tail(root)}"


def files(root: Path) -> list[Path]:
    """Every WAV file the reader may open under ``root`` (word folders and ``_silence_``)."""
    return [c.path for c in _all_clips(root)]


def background_files(folder: Path) -> list[Path]:
    """The long background recordings in ``folder`` (empty when there is none or no folder)."""
    return sorted(folder.glob("*.wav")) if folder.is_dir() else []


def speaker_of(path: Path, word: str) -> str:
    stem = path.name.split(".wav")[0]
    if word == SILENCE or "_nohash_" not in stem:
        return stem
    head = stem.split("_nohash_")[0]
    return head.split("_")[-1]          # _unknown_: "<word>_<speaker>"


def split_of(key: str) -> str:
    bucket = int(hashlib.sha1(key.encode()).hexdigest(), 16) % 100
    return next(s for s, (lo, hi) in SPLIT_PERCENT.items() if lo <= bucket < hi)


def _all_clips(root: Path) -> list[Clip]:
    clips = [Clip(f, d.name, speaker_of(f, d.name))
             for d in sorted(p for p in root.iterdir() if p.is_dir()) for f in sorted(d.glob("*.wav*"))]
    if not clips:
        raise DataError(f"no WAV files under {root}. {HOW_TO_GET}")
    return clips


def split_mode(root: Path) -> str:
    """'speaker' when the word clips come from at least MIN_SPEAKERS speakers, else 'file'."""
    speakers = {c.speaker for c in _all_clips(root) if c.word != SILENCE}
    return "speaker" if len(speakers) >= MIN_SPEAKERS else "file"


def list_clips(root: Path, split: str | None = None, mode: str = "speaker") -> list[Clip]:
    if mode not in SPLIT_MODES:
        raise ValueError(f"split mode must be one of {SPLIT_MODES}, not {mode!r}")

    return [c for c in _all_clips(root) if split is None or clip_split(c, mode) == split]


def clip_split(c: Clip, mode: str = "speaker") -> str:
    """The split of a clip: by its speaker, or by its file with few speakers (``_silence_``
    clips, which have no speaker, always by file)."""
    return split_of(c.speaker if mode == "speaker" or c.word == SILENCE else f"{c.word}/{c.path.name}")


def word_folders(root: Path) -> list[str]:
    """The word folders of a dataset (everything but ``_silence_``), in file-system order."""
    return sorted(d.name for d in root.iterdir() if d.is_dir() and d.name != SILENCE and any(d.glob("*.wav*")))


def refuse_unreadable(errors: list[str]) -> None:
    """One DataError listing every file of the data that cannot be read (fixing them one run at
    a time, each run stopping at the next, took as many runs as bad files)."""
    if errors:
        shown = "\n  ".join(errors[:10]) + (f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else "")
        raise DataError(f"{len(errors)} file(s) of the data cannot be read:\n  {shown}\nConvert them to 16 kHz "
                        "mono 16-bit WAV (sox IN -r 16000 -c 1 -b 16 OUT) or remove them, then run again.")


def read_wavs(paths) -> list[np.ndarray]:
    """Every file read as ``read_wav`` reads one; the unreadable ones refused together."""
    waves, refused = [], []
    for p in paths:
        try:
            waves.append(read_wav(p))
        except DataError as e:
            refused.append(str(e))
    refuse_unreadable(refused)
    return waves


def load_background(split: str, root: Path, folder: Path | None = None,
                    mode: str = "speaker", min_seconds: float = 1.0) -> list[np.ndarray]:
    """Background recordings of a split: pieces of the long files in ``folder`` (each file
    cut in time by SPLIT_PERCENT, so no moment is in two splits), else the ``_silence_``
    clips of the dataset. A clear DataError when there is none."""
    if folder is not None:
        recordings = background_files(folder)
        if not recordings:
            raise DataError(f"no .wav files in --background {folder}; put background recordings there "
                            "(16 kHz mono 16-bit: long files, or many short clips).")
        lo, hi = SPLIT_PERCENT[split]
        pieces, seconds = [], 0.0
        pooled = len(recordings) >= POOLED_CLIPS
        for f, x in zip(recordings, read_wavs(recordings)):
            seconds += len(x) / 16_000
            if pooled and len(x) < LONG_BACKGROUND_S * 16_000:   # a short clip of many: whole, to its split
                if split_of(f.name) == split:
                    pieces.append(x)
                continue
            part = x[len(x) * lo // 100: len(x) * hi // 100]
            pieces += [part[k:k + 16_000] for k in range(0, max(1, len(part) - 16_000 + 1), 16_000)]
        out = [p for p in pieces if len(p) >= min_seconds * 16_000 / 4]
        if not out:
            raise DataError(f"the {len(recordings)} recording(s) in {folder} ({seconds:.1f} s in all) leave no "
                            f"{split} background of {min_seconds / 4:g} s or more: files are cut 70/10/20 in "
                            f"time, except that in a folder of {POOLED_CLIPS} or more, clips under "
                            f"{LONG_BACKGROUND_S:g} s go whole to one split each; give at least 10 s in long "
                            "files, or more clips.")
        return out
    bg = read_wavs(c.path for c in list_clips(root, split, mode) if c.word == SILENCE)
    if not bg:
        raise DataError(f"no background for the {split} split: {root} has no {SILENCE}/ clips there. Add a "
                        f"{SILENCE}/ folder of background recordings or pass --background DIR of long ones.")
    return bg


def load_split(split: str, root: Path, mode: str = "speaker") -> tuple[list[np.ndarray], list[str]]:
    """Waveforms and folder names of a split of ``root``; unreadable files are refused together."""
    clips = list_clips(root, split, mode)
    return read_wavs(c.path for c in clips), [c.word for c in clips]
