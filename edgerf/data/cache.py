"""The decoded-audio cache: every clip of a split decoded once into one memory-mapped file,
shared by epochs, DDP ranks and sweep trials on a machine.

A split's clips are read from their WAV files once and written, as int16 (the files' own
samples, so nothing is lost; float32 when a file has several channels to average), into
``$EDGERF_CACHE/waves/<key>/`` (``audio.npy`` and ``index.json``), written into a temporary
folder and renamed into place, so a reader sees a whole cache or none. ``key`` is a SHA-256
of the content of every file read (not its name or size: every 1 s clip has the same
size), the split rule and this format; other data or a changed file is another key, so a
stale cache is never used and the run says it builds anew. The first process to need a
cache builds it under a lock; the others wait and then map the same file, so its pages are
shared page cache, not memory of each process.

Measured on Speech Commands (16 kHz int16): 115 MB per hour of audio.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgerf.data.speech import refuse_unreadable
from edgerf.runtime.audio import open_wav_file, pcm16_to_float, read_wav
from edgerf.runtime.errors import DataError

FORMAT = "edgerf-wavecache/1"


def cache_root() -> Path:
    from edgerf.models import cache_dir
    return cache_dir() / "waves"


def content_key(paths: list[Path], extra: str) -> str:
    """SHA-256 over every file's bytes (in the given order) and ``extra`` (split rule, format).
    Each is opened as the WAV reader opens it: a regular file of bounded size, never a FIFO
    or device that would block or never end."""
    h, refused = hashlib.sha256(f"{FORMAT}\n{extra}\n".encode()), []
    for p in paths:
        try:
            with open_wav_file(p) as f:
                h.update(hashlib.file_digest(f, "sha256").digest())
        except DataError as e:
            refused.append(str(e))
    refuse_unreadable(refused)
    return h.hexdigest()


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class WaveCache:
    """The clips of one split as views into one mapped array (``clips[i]``: int16 or float32)."""

    def __init__(self, folder: Path):
        meta = json.loads((folder / "index.json").read_text())
        if meta.get("format") != FORMAT:
            raise DataError(f"{folder}: not an edgerf audio cache ({meta.get('format')!r}); delete it.")
        self.folder, self.meta, self.key = folder, meta, meta["key"]
        offsets = np.asarray(meta["offsets"], np.int64)
        self.audio = np.memmap(folder / "audio.bin", dtype=meta["dtype"], mode="r", shape=(int(offsets[-1]),)) \
            if offsets[-1] else np.zeros(0, meta["dtype"])
        self.clips = [self.audio[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def split_waves(paths: list[Path], extra: str, log=None) -> WaveCache:
    """The cache of these files (built once, under a lock, if it does not exist yet)."""
    key = content_key(paths, extra)
    root = cache_root()
    folder = root / key[:32]
    try:
        with _locked(root / f"{key[:32]}.lock"):
            if not (folder / "index.json").exists():
                if log:
                    log(f"decoding {len(paths):,} clips into the audio cache {folder} (once for this data)")
                _build(paths, folder, key)
    except OSError as e:            # an unwritable or full cache folder: the user's to fix, not a traceback
        raise DataError(f"cannot write the audio cache in {root} ({e.strerror or e}); free some space there or "
                        "point $EDGERF_CACHE at a writable folder.") from e
    return WaveCache(folder)


def _build(paths: list[Path], folder: Path, key: str) -> None:
    """One file at a time (memory: one clip), int16 while every file decodes to exact 16-bit
    samples (mono 16-bit PCM), else again as float32."""
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    os.chmod(tmp, 0o755)                  # mkdtemp makes it private; a cache is for every process
    try:
        for dtype in (np.int16, np.float32):
            offsets, exact, refused = [0], True, []
            with open(tmp / "audio.bin", "wb") as f:
                for p in paths:
                    try:
                        w = read_wav(p)
                    except DataError as e:                   # names the file; every bad one is listed
                        refused.append(str(e))
                        continue
                    if refused:
                        continue
                    if dtype is np.int16:
                        ints = np.round(w * 32768.0)
                        if not np.array_equal(ints, w * 32768.0):
                            exact = False
                            break
                        w = ints.astype(np.int16)
                    f.write(np.ascontiguousarray(w, dtype).tobytes())
                    offsets.append(offsets[-1] + len(w))
            refuse_unreadable(refused)
            if exact:
                break
        (tmp / "index.json").write_text(json.dumps({"format": FORMAT, "key": key, "dtype": np.dtype(dtype).name,
                                                    "files": [p.name for p in paths], "offsets": offsets}))
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def as_float(clip: np.ndarray) -> np.ndarray:
    """A cached clip as the float32 PCM ``read_wav`` returns (bit-identical for int16)."""
    if clip.dtype == np.int16:
        return pcm16_to_float(clip)
    return np.asarray(clip, np.float32)
