"""Audio a device reads: 16-bit PCM WAV files, checked before their samples are used."""

from __future__ import annotations

import os
import struct
import wave
from pathlib import Path

import numpy as np

from edgerf.runtime.errors import DataError
from edgerf.runtime.files import FileRefused, open_regular


# 128 MB of 16-bit audio: 70 minutes of 16 kHz mono, 512 MB as float32. Longer recordings
# stream through stdin in bounded chunks (edgerf stream MODEL -).
MAX_WAV_BYTES = 1 << 27
_PCM16_SCALE = np.float32(1 / 32768)     # a power of two: the product is the quotient, bit for bit


def pcm16_to_float(pcm16) -> np.ndarray:
    """16-bit PCM (little-endian bytes or an int16 array) -> float32 samples in [-1, 1): the
    one conversion every reader uses (WAV files, stdin, the speech cache), so training and
    the device read the same numbers."""
    if isinstance(pcm16, (bytes, bytearray, memoryview)):
        pcm16 = np.frombuffer(pcm16, "<i2")
    return np.multiply(pcm16, _PCM16_SCALE, dtype=np.float32)


def open_wav_file(path: Path, max_bytes: int = MAX_WAV_BYTES):
    """``path`` opened for reading as a recording is: a regular file of at most ``max_bytes``
    (never a FIFO or device that would block or never end), else a DataError naming it."""
    try:
        return open_regular(path, max_bytes, "a WAV recording")
    except FileNotFoundError as e:
        raise DataError(f"{path}: no such file.") from e
    except FileRefused as e:
        raise DataError(str(e)) from e


def read_wav(path: Path, rate: int = 16_000, max_bytes: int = MAX_WAV_BYTES) -> np.ndarray:
    """16-bit PCM at ``rate`` -> float32 in [-1, 1] (several channels: their mean); anything else
    is a DataError naming the file. Only a regular file of at most ``max_bytes`` is opened, and its header is checked
    against its size before the samples are read."""
    with open_wav_file(path, max_bytes) as f:
        size = os.fstat(f.fileno()).st_size
        try:
            with wave.open(f, "rb") as w:
                if w.getframerate() != rate:
                    raise DataError(f"{path}: sample rate {w.getframerate()} Hz, expected {rate} Hz.")
                if w.getsampwidth() != 2:
                    raise DataError(f"{path}: {8 * w.getsampwidth()}-bit samples, expected 16-bit PCM.")
                n, ch = w.getnframes(), w.getnchannels()
                if n * ch * 2 > size:
                    raise DataError(f"{path}: its header claims {n * ch * 2:,} bytes of audio; the file holds "
                                    f"{size:,}. Truncated or not a WAV file.")
                raw = w.readframes(n)
        except DataError:
            raise
        except (wave.Error, EOFError, OSError, ValueError, RuntimeError, struct.error) as e:
            # the wave module signals a malformed chunk with any of these
            raise DataError(f"{path}: not a readable WAV file ({type(e).__name__}: {e}).") from e
    if n == 0 or not raw:
        raise DataError(f"{path}: empty WAV file.")
    if len(raw) != n * ch * 2:
        raise DataError(f"{path}: truncated WAV ({len(raw)} bytes of audio, header says {n * ch * 2}).")
    x = pcm16_to_float(raw)
    return x.reshape(-1, ch).mean(axis=1) if ch > 1 else x


# A WAV header on stdin (``arecord`` writes one unless told ``-t raw``) is at most this long
# before its data chunk; a stream that is still "header" beyond it is not one.
MAX_STREAM_HEADER_BYTES = 1 << 16


WAV_STREAM_TAGS = (b"RIFF", b"RF64")     # how a little-endian WAV stream opens (RF64: over 4 GB)


def stream_wav_header(head: bytes, rate: int) -> int | None:
    """Where the samples start in a stream that opens with ``head``: 0 for raw PCM (no RIFF
    header), the offset past the ``data`` chunk's header for a WAV stream (RIFF or RF64) whose
    format is 16-bit mono PCM at ``rate``, None while ``head`` is too short to tell (a pipe may
    deliver the header a byte at a time). A WAV stream of another format is a DataError saying
    what it holds. A streamed WAV's sizes are placeholders (its writer does not know the
    length), so they are not checked."""
    if len(head) >= 4 and head[:4] == b"RIFX":
        raise DataError("stdin: a big-endian WAV stream (RIFX); this model takes little-endian 16-bit PCM "
                        f"(arecord -f S16_LE -r {rate} -c 1).")
    if not any(head.startswith(tag[:len(head)]) for tag in WAV_STREAM_TAGS) or (len(head) >= 12 and head[8:12] != b"WAVE"):
        return 0
    at, fmt = 12, None
    while len(head) >= at + 8:
        kind, size = head[at:at + 4], struct.unpack_from("<I", head, at + 4)[0]
        if kind == b"data":
            if fmt is None:
                raise DataError("stdin: a WAV stream whose data comes before its format chunk.")
            return at + 8
        if kind == b"fmt ":
            if size < 16:
                raise DataError(f"stdin: a WAV stream whose format chunk is {size} bytes (at least 16).")
            extensible = size >= 40 and head[at + 8:at + 10] == b"\xfe\xff"
            if len(head) < at + 8 + (26 if extensible else 16):
                return None
            code, channels, got_rate, _, _, bits = struct.unpack_from("<HHIIHH", head, at + 8)
            if extensible:                      # WAVE_FORMAT_EXTENSIBLE: the format is its subformat's
                code = struct.unpack_from("<H", head, at + 8 + 24)[0]
            if (code, channels, got_rate, bits) != (1, 1, rate, 16):
                kind_ = {1: "PCM", 3: "float"}.get(code, f"format {code}")
                raise DataError(f"stdin: a WAV stream of {bits}-bit {kind_}, {channels} channel(s) at {got_rate} "
                                f"Hz; this model takes 16-bit mono PCM at {rate} Hz "
                                f"(arecord -f S16_LE -r {rate} -c 1).")
            fmt = True
        at += 8 + size + (size & 1)
        if at > MAX_STREAM_HEADER_BYTES:
            break
    if len(head) > MAX_STREAM_HEADER_BYTES:
        raise DataError(f"stdin: a WAV header with no data chunk in its first {MAX_STREAM_HEADER_BYTES:,} bytes.")
    return None


def write_wav(path: Path, pcm: np.ndarray, rate: int = 16_000) -> None:
    """Float PCM in [-1, 1] -> a mono 16-bit WAV, written atomically (rounded, clipped)."""
    from edgerf.runtime.atomic import atomic_path
    pcm16 = np.clip(np.round(np.asarray(pcm, np.float64) * 32768.0), -32768, 32767).astype("<i2")
    with atomic_path(Path(path)) as tmp:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm16.tobytes())
