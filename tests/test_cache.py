"""The decoded-audio cache: built once for everyone who needs it, never used for other content."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgerf.data import cache, speech
from edgerf.data.source import locate

BUILD = """
import sys
from pathlib import Path
from edgerf.data import cache
paths = [Path(p) for p in sys.argv[1:]]
c = cache.split_waves(paths, "test", log=lambda s: print("BUILT", flush=True))
print("KEY", c.key, len(c.clips))
"""


def _clips(tmp_path, n=40) -> list[Path]:
    src = locate("speech-commands").root
    out = tmp_path / "clips"
    out.mkdir()
    for f in sorted((src / "yes").glob("*.wav"))[:n]:
        shutil.copy(f, out / f.name)
    return sorted(out.glob("*.wav"))


def test_two_processes_build_the_cache_once_and_read_the_same_audio(tmp_path):
    paths = _clips(tmp_path)
    env = {**os.environ, "EDGERF_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", BUILD, *map(str, paths)], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum(o.count("BUILT") for o in outs) == 1, outs           # one builder, the other waited
    keys = {line for o in outs for line in o.splitlines() if line.startswith("KEY")}
    assert len(keys) == 1
    os.environ["EDGERF_CACHE"] = str(tmp_path / "cache")
    try:
        c = cache.split_waves(paths, "test")
        for p, clip in zip(paths, c.clips):                         # the files' own samples, bit for bit
            assert clip.dtype == np.int16
            np.testing.assert_array_equal(cache.as_float(clip), speech.read_wav(p))
    finally:
        del os.environ["EDGERF_CACHE"]


def test_a_file_changed_in_content_but_not_in_name_or_size_gets_a_new_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGERF_CACHE", str(tmp_path / "cache"))
    paths = _clips(tmp_path, 10)
    first = cache.split_waves(paths, "test")
    raw = bytearray(paths[3].read_bytes())
    raw[-200:] = bytes(200)                          # other samples, same size, same name
    stat = paths[3].stat()
    paths[3].write_bytes(bytes(raw))
    os.utime(paths[3], ns=(stat.st_atime_ns, stat.st_mtime_ns))   # even the time stamp as before
    built = []
    second = cache.split_waves(paths, "test", log=built.append)
    assert built and second.key != first.key and second.folder != first.folder
    np.testing.assert_array_equal(cache.as_float(second.clips[3]), speech.read_wav(paths[3]))
    assert not np.array_equal(first.clips[3], second.clips[3])


def test_every_unreadable_file_of_the_data_is_named_at_once_and_nothing_is_cached(tmp_path, monkeypatch):
    """A dataset with several bad files: one refusal lists them all (the build stopped at the
    first, so a user fixed them one run at a time), a FIFO among them included, and no
    cache is left behind for the data as it was."""
    import pytest

    from edgerf.runtime.errors import DataError

    monkeypatch.setenv("EDGERF_CACHE", str(tmp_path / "cache"))
    paths = _clips(tmp_path, 6)
    paths[1].write_bytes(b"")
    paths[4].write_text("not audio")
    fifo = paths[0].with_name("pipe.wav")
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"1 file\(s\)") as e:
        cache.split_waves([*paths, fifo], "test")
    assert "pipe.wav is a FIFO" in str(e.value)
    with pytest.raises(DataError, match=r"2 file\(s\)") as e:
        cache.split_waves(paths, "test")
    assert paths[1].name in str(e.value) and paths[4].name in str(e.value) and "sox" in str(e.value)
    assert not [p for p in (tmp_path / "cache" / "waves").iterdir() if not p.name.endswith(".lock")]


def test_a_cache_folder_that_cannot_be_written_is_a_refusal_not_a_traceback(tmp_path, monkeypatch):
    """$EDGERF_CACHE naming a file (or a folder that cannot be made) ended in NotADirectoryError."""
    import pytest

    from edgerf.runtime.errors import DataError

    paths = _clips(tmp_path, 3)
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("EDGERF_CACHE", str(tmp_path / "a-file"))
    with pytest.raises(DataError, match=r"cannot write the audio cache .*EDGERF_CACHE"):
        cache.split_waves(paths, "test")
