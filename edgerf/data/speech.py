"""Speech Commands: the standard folder layout, 16 kHz mono WAV. Never downloads.

    <root>/<word>/<speaker>_nohash_<n>.wav
    <root>/_unknown_/<word>_<speaker>_nohash_<n>.wav[.wav]   (the 12-class test set's layout)
    <root>/_silence_/<n>.wav                                   (background noise, no speaker)

Splits are by speaker (SHA-1 of the speaker hash, so deterministic and
platform-independent): no speaker is in two splits. ``_silence_`` files carry no
speaker and are split by their file name.
"""

from __future__ import annotations

import hashlib
import os
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgerf.errors import DataError

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
_REPO = Path(__file__).resolve().parents[2]
DEV_DIRS = (Path.cwd() / "../shared/data/speech_commands_v0.02_test",
            _REPO / "../shared/data/speech_commands_v0.02_test")
# Folder names under which --data/$EDGERF_DATA may hold the dataset (or it is the dataset).
LAYOUT_NAMES = ("speech_commands_v0.02_test", "speech_commands")
HOW_TO_GET = ("Put Speech Commands (v0.02, the standard <word>/<speaker>_nohash_<n>.wav layout) in a folder "
              "and pass it with --data or $EDGERF_DATA.")
SPLIT_PERCENT = {"train": (0, 70), "val": (70, 80), "test": (80, 100)}   # speaker-hash buckets


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


def find_dir(data: str | os.PathLike | None = None) -> Path:
    for given in (data, os.environ.get("EDGERF_DATA")):
        if given:
            for d in (*(Path(given) / n for n in LAYOUT_NAMES), Path(given)):
                if _is_root(d):
                    return d
            raise DataError(f"no Speech Commands word folders (<word>/*.wav) in {given}. {HOW_TO_GET}")
    for d in DEV_DIRS:
        if _is_root(d):
            return d.resolve()
    raise DataError(f"Speech Commands not found. {HOW_TO_GET}")


def speaker_of(path: Path, word: str) -> str:
    stem = path.name.split(".wav")[0]
    if word == SILENCE or "_nohash_" not in stem:
        return stem
    head = stem.split("_nohash_")[0]
    return head.split("_")[-1]          # _unknown_: "<word>_<speaker>"


def split_of(speaker: str) -> str:
    bucket = int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % 100
    return next(s for s, (lo, hi) in SPLIT_PERCENT.items() if lo <= bucket < hi)


def list_clips(root: Path, split: str | None = None) -> list[Clip]:
    clips = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(d.glob("*.wav*")):
            c = Clip(f, d.name, speaker_of(f, d.name))
            if split is None or split_of(c.speaker) == split:
                clips.append(c)
    if not clips:
        raise DataError(f"no WAV files under {root}. {HOW_TO_GET}")
    return clips


def read_wav(path: Path, rate: int = 16_000) -> np.ndarray:
    """Mono 16-bit PCM at ``rate`` -> float32 in [-1, 1]; anything else is a DataError naming the file."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getframerate() != rate:
                raise DataError(f"{path}: sample rate {w.getframerate()} Hz, expected {rate} Hz.")
            if w.getsampwidth() != 2:
                raise DataError(f"{path}: {8 * w.getsampwidth()}-bit samples, expected 16-bit PCM.")
            n, ch = w.getnframes(), w.getnchannels()
            raw = w.readframes(n)
    except DataError:
        raise
    except (wave.Error, EOFError, OSError) as e:
        raise DataError(f"{path}: not a readable WAV file ({e}).") from e
    if n == 0 or not raw:
        raise DataError(f"{path}: empty WAV file.")
    if len(raw) != n * ch * 2:
        raise DataError(f"{path}: truncated WAV ({len(raw)} bytes of audio, header says {n * ch * 2}).")
    x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    return x.reshape(-1, ch).mean(axis=1) if ch > 1 else x


def load_split(split: str, data=None, skip_bad: bool = False) -> tuple[list[np.ndarray], list[str], int]:
    """Waveforms and folder names of a split; with ``skip_bad`` bad files are counted, not fatal."""
    root = find_dir(data)
    waves, words, bad = [], [], 0
    for c in list_clips(root, split):
        try:
            waves.append(read_wav(c.path))
            words.append(c.word)
        except DataError:
            if not skip_bad:
                raise
            bad += 1
    return waves, words, bad
