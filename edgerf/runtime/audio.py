"""Audio a device reads: 16-bit PCM WAV files, checked before their samples are used."""

from __future__ import annotations

import struct
import wave
from dataclasses import dataclass
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


WAV_STREAM_TAGS = (b"RIFF", b"RF64")     # how a little-endian WAV opens (RF64: over 4 GB)
UNKNOWN_SIZE = 0xFFFFFFFF                # a data chunk's size when its writer did not know it (a stream)
_PCM, _EXTENSIBLE = 1, 0xFFFE
_FORMAT_NAMES = {1: "PCM", 2: "ADPCM", 3: "float", 6: "A-law", 7: "mu-law", 0x11: "IMA ADPCM", 0x55: "MP3"}


@dataclass(frozen=True)
class WavLayout:
    """Where a WAV's samples are, once its format is known to be 16-bit PCM at the rate asked."""
    data_at: int        # offset of the first sample
    data_bytes: int     # what the data chunk's header says (UNKNOWN_SIZE from a writer that streamed)
    channels: int


def wav_layout(head: bytes, rate: int, where: str, hint: str | None = None, mono: bool = False,
               limit: int | None = None) -> WavLayout | None:
    """The layout of the WAV that opens with ``head`` (RIFF or RF64, little-endian), walking its
    chunks to the ``data`` chunk: plain, extensible (what sox and ffmpeg write for some formats)
    and LIST-carrying headers alike, the same for a file and a stream. None while ``head`` ends
    before the data chunk's header (a pipe delivers it piecewise); ``limit``: bytes after which
    a header with no data chunk is refused. Any format but 16-bit PCM at ``rate`` (``mono``: one
    channel) is a DataError naming ``where``, what the WAV holds and ``hint`` (how to make one)."""
    wanted = f"16-bit{' mono' if mono else ''} PCM at {rate} Hz" + (f" ({hint})" if hint else "")
    if head[:4] == b"RIFX":
        raise DataError(f"{where}: a big-endian WAV (RIFX); expected little-endian {wanted}.")
    at, channels = 12, None
    while len(head) >= at + 8:
        kind, size = head[at:at + 4], struct.unpack_from("<I", head, at + 4)[0]
        if kind == b"data":
            if channels is None:
                raise DataError(f"{where}: a WAV whose data comes before its format chunk.")
            return WavLayout(at + 8, size, channels)
        if kind == b"fmt ":
            if size < 16:
                raise DataError(f"{where}: a WAV whose format chunk is {size} bytes (at least 16).")
            extensible = size >= 40 and head[at + 8:at + 10] == _EXTENSIBLE.to_bytes(2, "little")
            if len(head) < at + 8 + (26 if extensible else 16):
                return None
            code, got_channels, got_rate, _, _, bits = struct.unpack_from("<HHIIHH", head, at + 8)
            if extensible:                      # WAVE_FORMAT_EXTENSIBLE: the format is its subformat's
                code = struct.unpack_from("<H", head, at + 8 + 24)[0]
            if (code, bits, got_rate) != (_PCM, 16, rate) or got_channels < 1 or (mono and got_channels != 1):
                name = _FORMAT_NAMES.get(code, f"format {code}")
                raise DataError(f"{where}: a WAV of {bits}-bit {name}, {got_channels} channel(s) at {got_rate} Hz; "
                                f"expected {wanted}.")
            channels = got_channels
        at += 8 + size + (size & 1)
        if limit is not None and at > limit:
            break
    if limit is not None and len(head) > limit:
        raise DataError(f"{where}: a WAV header with no data chunk in its first {limit:,} bytes.")
    return None


def read_wav(path: Path, rate: int = 16_000, max_bytes: int = MAX_WAV_BYTES) -> np.ndarray:
    """16-bit PCM at ``rate`` -> float32 in [-1, 1] (several channels: their mean); anything else
    is a DataError naming the file and what it holds. Only a regular file of at most
    ``max_bytes`` is read; the header is checked against what the file holds. A data chunk
    whose size its writer left unknown (a recording saved from a pipe) runs to the end."""
    with open_wav_file(path, max_bytes) as f:
        raw = f.read(max_bytes + 1)
    if not raw:
        raise DataError(f"{path}: empty WAV file.")
    if not (raw[:4] in WAV_STREAM_TAGS + (b"RIFX",) and raw[8:12] == b"WAVE"):
        raise DataError(f"{path}: not a readable WAV file (it does not open with a RIFF/WAVE header).")
    layout = wav_layout(raw, rate, str(path))
    if layout is None:
        raise DataError(f"{path}: truncated WAV: its header ends before its data chunk.")
    held = len(raw) - layout.data_at
    size = held if layout.data_bytes == UNKNOWN_SIZE else layout.data_bytes
    if size > held:
        raise DataError(f"{path}: its header claims {size:,} bytes of audio; the file holds "
                        f"{held:,}. Truncated or not a WAV file.")
    n = size // (2 * layout.channels)               # whole frames (a stray partial one is dropped)
    if n == 0:
        raise DataError(f"{path}: empty WAV file.")
    x = pcm16_to_float(memoryview(raw)[layout.data_at:layout.data_at + 2 * n * layout.channels])
    return x.reshape(-1, layout.channels).mean(axis=1) if layout.channels > 1 else x


# A WAV header on stdin (``arecord`` writes one unless told ``-t raw``) is at most this long
# before its data chunk; a stream that is still "header" beyond it is not one.
MAX_STREAM_HEADER_BYTES = 1 << 16


def stream_wav_header(head: bytes, rate: int) -> int | None:
    """Where the samples start in a stream that opens with ``head``: 0 for raw PCM (no RIFF
    header), the offset past the ``data`` chunk's header for a WAV stream (RIFF or RF64) whose
    format is 16-bit mono PCM at ``rate``, None while ``head`` is too short to tell (a pipe may
    deliver the header a byte at a time). A WAV stream of another format is a DataError saying
    what it holds. A streamed WAV's sizes are placeholders (its writer does not know the
    length), so they are not checked."""
    is_wav = any(head.startswith(tag[:len(head)]) for tag in WAV_STREAM_TAGS + (b"RIFX",))
    if not is_wav or (len(head) >= 12 and head[8:12] != b"WAVE"):
        return 0
    layout = wav_layout(head, rate, "stdin", f"arecord -f S16_LE -r {rate} -c 1", mono=True,
                        limit=MAX_STREAM_HEADER_BYTES)
    return None if layout is None else layout.data_at


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
