"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every artifact edgerf writes (checkpoints, graphs, manifests, state snapshots,
reports) goes through here, so a full disk or a crash mid-write leaves the previous
good file in place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from edgerf.runtime.errors import ArtifactError
from edgerf.runtime.files import special_kind


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True      # someone else's live process (or nonsense: leave it)
    return True


def temp_prefix(name: str) -> str:
    """Temporaries carry their writer's pid, so a later run can tell a dead writer's
    leftovers (removed) from a live writer's work in progress (left alone)."""
    return f".{name}.edgerf-{os.getpid()}-"


def clean_stale(folder: Path, name: str) -> int:
    """Remove temporaries for ``name`` in ``folder`` left by processes that no longer run
    (a kill or power loss mid-write). Returns how many were removed."""
    removed = 0
    for p in folder.glob(f".{name}.edgerf-*-*"):
        try:
            pid = int(p.name[len(f".{name}.edgerf-"):].split("-")[0])
        except ValueError:
            continue
        if not _pid_alive(pid):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed += 1
    return removed


def write_target(path: str | os.PathLike) -> Path:
    """``path``, checked as a place to write: a write renames a new file onto its name, so what
    is there (or what a symlink there points to) must be a regular file or nothing. A device,
    a FIFO, a socket or a directory is refused (ArtifactError), never replaced: as root,
    ``--state /dev/null`` once replaced /dev/null itself with a regular file."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path
    except OSError as e:
        raise ArtifactError(f"cannot write {path}: {e.strerror or e}.") from e
    if kind := special_kind(st.st_mode):
        raise ArtifactError(f"{path} is {kind}, not a file; edgerf writes regular files only. Give the path of a "
                            "file to write.")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temp file lives in the same directory so the final ``os.replace`` is atomic.
    On any exception the temp file is removed and ``path`` is untouched; a temp file
    left by a killed writer is removed by the next write of the same file. ``path`` is
    checked first (``write_target``).
    """
    path = write_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(path.parent, path.name)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise ArtifactError(f"cannot write to {path.parent}: {e.strerror}. "
                            "Choose a writable output directory.") from e
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)   # mkstemp makes 0600; artifacts are ordinary files
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:  # flush to disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise ArtifactError(f"could not write {path}: {e.strerror or e}. "
                            "Nothing was changed; free some space or pick another directory.") from e
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))
