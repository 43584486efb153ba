"""Audio a device reads: 16-bit PCM WAV files, checked before their samples are used."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from edgerf.runtime.errors import DataError


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
