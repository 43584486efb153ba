"""Build the small real-data subsets committed under tests/data (run once, from the full data).

    python tests/data/make_subsets.py [--shared ../shared/data]

Fashion-MNIST: the first 4,000 training and first 1,000 test images and labels, as the
standard gzipped IDX files (byte-for-byte the same records). Speech Commands: original
WAV files, copied unchanged, chosen so each of the three speaker-hash splits holds every
keyword from several speakers: per keyword 6 train, 2 val, 3 test clips, each from a
different speaker; 12 ``_unknown_`` clips (7/2/3) and 12 ``_silence_`` (background)
clips (134 in all). The choice is deterministic (sorted file names), so rerunning gives the same files.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from edgerf.data import fashion, speech  # noqa: E402

FASHION_COUNTS = {"train": 4000, "test": 1000}
PER_SPLIT = {"keyword": {"train": 6, "val": 2, "test": 3}, speech.UNKNOWN: {"train": 7, "val": 2, "test": 3},
             speech.SILENCE: {"train": 7, "val": 2, "test": 3}}


def write_idx(path: Path, raw: bytes, ndim: int, count: int) -> None:
    """The first ``count`` records of an IDX file with its header rewritten for ``count``."""
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    record = 1
    for d in dims[1:]:
        record *= d
    header = raw[:4] + count.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims[1:])
    body = raw[4 + 4 * ndim: 4 + 4 * ndim + count * record]
    path.write_bytes(gzip.compress(header + body, compresslevel=9, mtime=0))


def fashion_subset(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in fashion.FILES.items():
        for name, ndim in ((images, 3), (labels, 1)):
            p = next(src / (name + e) for e in ("", ".gz") if (src / (name + e)).exists())
            raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
            write_idx(dst / (name + ".gz"), raw, ndim, FASHION_COUNTS[split])


def speech_subset(src: Path, dst: Path) -> int:
    if dst.exists():
        shutil.rmtree(dst)
    copied = 0
    for folder in sorted(p for p in src.iterdir() if p.is_dir()):
        want = dict(PER_SPLIT.get(folder.name, PER_SPLIT["keyword"]))
        seen: set[str] = set()
        for f in sorted(folder.glob("*.wav*")):
            spk = speech.speaker_of(f, folder.name)
            split = speech.split_of(spk)
            if want.get(split, 0) == 0 or spk in seen:
                continue
            (dst / folder.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst / folder.name / f.name)
            want[split] -= 1
            seen.add(spk)
            copied += 1
        if any(want.values()):
            raise SystemExit(f"{folder}: not enough speakers for {want}")
    return copied


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=HERE.parents[1] / ".." / "shared" / "data")
    a = p.parse_args()
    fashion_subset(a.shared / "fashion-mnist", HERE / "fashion-mnist")
    n = speech_subset(a.shared / "speech_commands_v0.02_test", HERE / "speech_commands")
    print(f"wrote Fashion-MNIST {FASHION_COUNTS} and {n} Speech Commands clips under {HERE}")


if __name__ == "__main__":
    main()
