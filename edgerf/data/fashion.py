"""Fashion-MNIST from the four standard IDX files (gzipped or not). Never downloads."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from edgerf.runtime.errors import DataError
from edgerf.runtime.files import FileRefused, open_regular

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
TITLE = "Fashion-MNIST"
# Default folders, in order (edgerf.data.source.locate searches them when neither --data
# nor $EDGERF_DATA is set): Debian's package, then this repository's development layout
# (../shared/data beside the checkout).
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_REPO = Path(__file__).resolve().parents[2]
DEFAULT_DIRS = (DEBIAN_DIR, Path.cwd() / "../shared/data/fashion-mnist", _REPO / "../shared/data/fashion-mnist")

HOW_TO_GET = ("Put the four IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
              "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) in a folder and pass it "
              "with --data or $EDGERF_DATA, or `apt install dataset-fashion-mnist` "
              f"(files land in {DEBIAN_DIR}).")


def _has_files(d: Path) -> bool:
    return any((d / (n + ext)).exists() for n in FILES["test"][:1] for ext in ("", ".gz"))


def root_in(folder: Path) -> Path | None:
    """The Fashion-MNIST folder at ``folder`` (it, or its ``fashion-mnist/``), or None."""
    return next((d for d in (folder, folder / "fashion-mnist") if _has_files(d)), None)


def label(root: Path) -> str:
    """What the data is (the IDX layout is Fashion-MNIST's; its contents are checked when read)."""
    return TITLE


def files(root: Path) -> list[Path]:
    """The IDX files the reader may open in ``root`` (gzipped or not)."""
    return [root / (n + ext) for pair in FILES.values() for n in pair for ext in ("", ".gz")
            if (root / (n + ext)).is_file()]


# Above Fashion-MNIST (47 MB of training images), far below what would exhaust a host: an
# IDX header is checked against this before its payload is read or unpacked.
MAX_IDX_BYTES = 1 << 26


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (uint8 payload), checking the header against the payload size.
    Gzipped files are unpacked as a stream and never past what the header promises, so a
    small file that unpacks to gigabytes costs nothing."""
    for p in (path, path.with_name(path.name + ".gz")):
        if p.exists():
            path = p
            break
    else:
        raise DataError(f"missing {path}[.gz]. {HOW_TO_GET}")
    try:
        raw = open_regular(path, MAX_IDX_BYTES, "an IDX file")
    except FileRefused as e:
        raise DataError(str(e)) from e
    try:
        with raw, (gzip.open(raw, "rb") if path.suffix == ".gz" else raw) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
                raise DataError(f"{path} is not an IDX uint8 file (bad magic). Replace it with a fresh copy.")
            ndim = head[3]
            if not 1 <= ndim <= 4:
                raise DataError(f"{path}: an IDX file with {ndim} dimensions is not Fashion-MNIST. Replace it.")
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise DataError(f"{path} is truncated (header cut short). Replace it with a fresh copy.")
            dims = tuple(int.from_bytes(raw_dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
            expected = 1
            for d in dims:
                expected *= d
            if expected == 0:
                raise DataError(f"{path} holds no records (header says {dims}). Replace it with a fresh copy.")
            if expected > MAX_IDX_BYTES:
                raise DataError(f"{path}: header claims {dims} = {expected:,} bytes, beyond any Fashion-MNIST file; "
                                "the file is corrupt. Replace it.")
            payload = f.read(expected + 1)
    except DataError:
        raise
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path} is corrupt or truncated ({e}). Replace it with a fresh copy.") from e
    if len(payload) != expected:
        raise DataError(f"{path} holds {'more than ' if len(payload) > expected else ''}{min(len(payload), expected)} "
                        f"bytes of data but its header says {dims} = {expected}: the file is corrupt or truncated. "
                        "Replace it.")
    return np.frombuffer(payload, np.uint8).reshape(dims)


def load(split: str, d: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 28, 28] uint8 and labels [N] int64 of ``split`` ('train' or 'test') in ``d``."""
    img_name, lab_name = FILES[split]
    images, labels = read_idx(d / img_name), read_idx(d / lab_name)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{d}: images {images.shape} and labels {labels.shape} do not pair up.")
    if labels.max() >= len(CLASSES):
        raise DataError(f"{d / lab_name}: label {labels.max()} out of range; not Fashion-MNIST?")
    return images, labels.astype(np.int64)
