"""Where a run's data comes from: decided once per command, then carried by the task.

``locate`` is the only place that turns ``--data`` / ``$EDGERF_DATA`` / the documented
defaults (Debian's package, ``../shared/data`` beside a checkout) into a dataset folder.
Every command calls it once and binds the result to its task (``Task.bind``); streams,
background, augmentation, calibration, bundles and bench all read through the bound task,
so when ``--data`` is given nothing is read from anywhere else.

``DataSource.provenance`` says what was read without machine paths: the folder's last
two path components, how it was chosen, and a digest of the files the dataset reader
may open (relative path and size of each), so two machines can tell whether they trained
and exported on the same data.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from edgerf.configs import tail
from edgerf.data import fashion, speech
from edgerf.runtime.errors import DataError

# dataset name -> its reader module (root_in, files, label, DEFAULT_DIRS, TITLE, HOW_TO_GET)
DATASETS = {"fashion-mnist": fashion, "speech-commands": speech}


@dataclass(frozen=True)
class DataSource:
    dataset: str                   # a key of DATASETS
    root: Path                     # the dataset folder, absolute
    origin: str                    # "--data", "$EDGERF_DATA" or "default"
    background: Path | None = None  # audio: a folder of long background recordings, absolute

    def provenance(self) -> dict:
        """What this source reads, portable across machines (no absolute paths)."""
        files = DATASETS[self.dataset].files(self.root)
        out = {"dataset": self.dataset, "label": DATASETS[self.dataset].label(self.root),
               "folder": tail(self.root), "origin": self.origin, **listing(files, self.root)}
        if self.background is not None:
            out["background"] = {"folder": tail(self.background),
                                 **listing(speech.background_files(self.background), self.background)}
        return out


def locate(dataset: str, data: str | os.PathLike | None = None,
           background: str | os.PathLike | None = None) -> DataSource:
    """The dataset folder for this run: ``data`` if given, else $EDGERF_DATA, else the first
    default folder that holds the dataset. A folder that is given but holds no such dataset
    is an error (never a silent fall-back to another one)."""
    reader = DATASETS[dataset]
    env = os.environ.get("EDGERF_DATA")
    given, origin = (data, "--data") if data else (env, "$EDGERF_DATA") if env else (None, "default")
    if given:
        root = reader.root_in(Path(given))
        if root is None:
            raise DataError(f"no {reader.TITLE} in {given} ({origin}). {reader.HOW_TO_GET}")
    else:
        root = next((r for r in map(reader.root_in, reader.DEFAULT_DIRS) if r is not None), None)
        if root is None:
            looked = dict.fromkeys(str(d.resolve()) for d in reader.DEFAULT_DIRS)
            raise DataError(f"{reader.TITLE} not found (no --data, no $EDGERF_DATA, nothing in "
                            f"{', '.join(looked)}). {reader.HOW_TO_GET}")
    bg = None
    if background is not None:
        if dataset != "speech-commands":
            raise DataError("--background is for audio tasks (gsc); images have no recorded background.")
        bg = Path(background).resolve()
        if not speech.background_files(bg):
            raise DataError(f"no .wav files in --background {background}; put long background recordings "
                            "there (16 kHz mono 16-bit).")
    return DataSource(dataset, root.resolve(), origin, bg)


def listing(files: list[Path], root: Path) -> dict:
    """Count and digest of a file list (relative path and size of each, sorted)."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f"{f.relative_to(root).as_posix()}\t{f.stat().st_size}\n".encode())
    return {"files": len(files), "digest": h.hexdigest()[:16]}


def differs(trained: dict | None, now: dict) -> str | None:
    """A sentence when ``now`` (the data this run reads) is not the data a model was trained
    on, by digest; None when they match or the training record has no digest."""
    if not trained or "digest" not in trained:
        return None
    parts = []
    if trained["digest"] != now["digest"]:
        parts.append(f"trained on {trained.get('folder')} ({trained.get('files')} files, digest "
                     f"{trained['digest']}), this run reads {now['folder']} ({now['files']} files, digest "
                     f"{now['digest']})")
    tb, nb = trained.get("background"), now.get("background")
    if (tb or {}).get("digest") != (nb or {}).get("digest"):
        parts.append(f"background trained on {tb['folder'] if tb else 'the _silence_ clips'}, this run reads "
                     f"{nb['folder'] if nb else 'the _silence_ clips'}")
    return "; ".join(parts) or None


def describe(d: dict | None) -> str:
    """One line for ``edgerf inspect``: which data, how chosen, how much, by which split."""
    if not d:
        return "not recorded"
    if "bundle" in d:
        return f"evaluation bundle {d['bundle']}, cut from: {describe(d.get('made_from'))}"
    if "digest" not in d:      # written before data provenance existed
        return ", ".join(f"{k} {v}" for k, v in d.items() if k != "dir") or "not recorded"
    bg = d.get("background")
    counts = ", ".join(f"{k} {v:,}" for k, v in (d.get("counts") or {}).items())
    return (f"{d.get('label', d['dataset'])} from {d['folder']} ({d['origin']}; {d['files']:,} files, "
            f"digest {d['digest']})"
            + (f", background {bg['folder']} ({bg['files']} files, digest {bg['digest']})" if bg else "")
            + (f"; split {d['split']}" if d.get("split") else "") + (f"; {counts}" if counts else "")
            + (f"; differs from training: {d['differs_from_training']}" if d.get("differs_from_training") else ""))
