"""Reading files a user hands us: regular files only, sizes bounded before anything is read.

Every reader of edgerf goes through here. ``open_regular`` opens without blocking (a FIFO
named as a state file must not hang the open), refuses what is not a regular file (a
directory, a FIFO, a device such as /dev/zero, a socket; a symlink counts as what it points
to), and refuses a file larger than the format can hold; reads are bounded by that size, so
a file that grows while read cannot make us allocate more. JSON is parsed with a nesting
limit. Standard input is the one stream edgerf reads, in bounded chunks, elsewhere.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from edgerf.runtime.errors import EdgerfError

MAX_JSON_DEPTH = 64    # far deeper than any file edgerf writes (manifests nest 5 levels)


class FileRefused(EdgerfError):
    """A path that is not a readable regular file of a plausible size."""


def zip_errors() -> tuple[type[Exception], ...]:
    """What reading a damaged or foreign zip (an .npz, a torch checkpoint) raises: beyond
    BadZipFile, a header naming a zip version the standard library does not implement raises
    NotImplementedError, an encrypted member RuntimeError, a damaged deflate stream
    zlib.error, a directory naming a member that is not there KeyError. (zipfile is imported
    when a zip is read: the runtime's import stays light.)"""
    import zipfile
    import zlib
    return (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError, NotImplementedError, RuntimeError)


def special_kind(mode: int) -> str | None:
    """What a file of ``st_mode`` ``mode`` is when it is not a regular file ("a directory", "a
    FIFO", "a device", "a socket"); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")


def open_regular(path: str | os.PathLike, max_bytes: int, what: str):
    """A binary file object for ``path``: a regular file of at most ``max_bytes``."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as e:
        raise FileRefused(f"{path}: cannot open {what} ({e.strerror or e}).") from e
    try:
        st = os.fstat(fd)
        if kind := special_kind(st.st_mode):
            raise FileRefused(f"{path} is {kind}, not a file; {what} must be a regular file.")
        if st.st_size > max_bytes:
            raise FileRefused(f"{path} is {st.st_size:,} bytes, more than {what} can be ({max_bytes:,}); "
                              "it is not one, or it is damaged.")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, max_bytes: int, what: str) -> bytes:
    """The whole content of a regular file of at most ``max_bytes``."""
    with open_regular(path, max_bytes, what) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileRefused(f"{path} grew beyond {max_bytes:,} bytes while it was read; {what} must not change.")
    return data


def json_depth(value) -> int:
    """The deepest nesting of arrays and objects in a parsed JSON value (iterative: a deep
    value cannot exhaust the stack here)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        v, d = todo.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is not None:
            deepest = max(deepest, d)
            todo.extend((c, d + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def loads(text: str, where: str, max_depth: int = MAX_JSON_DEPTH):
    """JSON with a nesting limit; anything unreadable is a FileRefused naming ``where``. The
    parser is the C one (linear in the text; nesting past the interpreter's recursion limit
    raises RecursionError in C); the limit is then checked on the parsed value, which costs
    a walk over its containers, not a Python loop over every character."""
    too_deep = f"{where} nests deeper than {max_depth} levels; no edgerf file does. Not one of ours."
    try:
        value = json.loads(text)
    except RecursionError as e:
        raise FileRefused(too_deep) from e
    except ValueError as e:
        raise FileRefused(f"{where} is not valid JSON ({str(e)[:120]}).") from e
    if json_depth(value) > max_depth:
        raise FileRefused(too_deep)
    return value


def read_json(path: str | os.PathLike, max_bytes: int, what: str):
    data = read_bytes(path, max_bytes, what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileRefused(f"{path} is not UTF-8 text, so not {what}.") from e
    return loads(text, str(path))


def _npy_nbytes(fp, where: str) -> int:
    """What an .npy stream's header says its array takes (dtype with objects refused)."""
    import numpy as np
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(fp)
        shape, _, dtype = (npy.read_array_header_1_0(fp) if version == (1, 0) else npy.read_array_header_2_0(fp))
    except Exception as e:       # numpy parses the header with ast: ValueError, SyntaxError, TokenError...
        raise FileRefused(f"{where} is not a numpy array file ({type(e).__name__}: {str(e)[:100]}).") from e
    if dtype.hasobject:
        raise FileRefused(f"{where} holds Python objects, which edgerf never unpickles.")
    return int(np.prod(shape, dtype=np.float64) * dtype.itemsize)


def read_npy(path: str | os.PathLike, max_bytes: int, what: str):
    """An .npy array whose header is checked against the file's size before it is allocated."""
    import numpy as np

    with open_regular(path, max_bytes, what) as f:
        size = os.fstat(f.fileno()).st_size
        claimed = _npy_nbytes(f, str(path))
        if claimed > size - f.tell():
            raise FileRefused(f"{path}: its header claims {claimed:,} bytes of data; the file holds "
                              f"{size - f.tell():,}. Not a complete array.")
        f.seek(0)
        try:
            return np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise FileRefused(f"{path} is not a readable numpy array ({str(e)[:100]}).") from e


def read_npz(path: str | os.PathLike, max_bytes: int, what: str) -> dict:
    """Every array of an .npz: the zip's unpacked size and each member's header are checked
    against ``max_bytes`` and the member's size before anything is unpacked."""
    import zipfile

    import numpy as np

    with open_regular(path, max_bytes, what) as f:
        try:
            with zipfile.ZipFile(f) as z:
                infos = z.infolist()
                if sum(i.file_size for i in infos) > max_bytes:
                    raise FileRefused(f"{path} unpacks to {sum(i.file_size for i in infos):,} bytes, more than "
                                      f"{what} can hold ({max_bytes:,}).")
                for i in infos:
                    with z.open(i) as member:
                        if _npy_nbytes(member, f"{path}:{i.filename}") > i.file_size:
                            raise FileRefused(f"{path}: member {i.filename} claims more data than it holds.")
            f.seek(0)
            with np.load(f, allow_pickle=False) as arrays:
                return {k: arrays[k] for k in arrays.files}
        except FileRefused:
            raise
        except zip_errors() as e:
            raise FileRefused(f"{path} is not a readable .npz ({str(e)[:100]}).") from e
