"""Every reader opens only regular files and bounds what it reads before reading it.

Each hostile file runs through the real command in a subprocess with a timeout, so a hang
fails the test instead of hanging the suite, and the peak RSS of every such process
(its VmHWM) stays under 1 GB.
"""

import json
import os
import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest

from edgerf.models import BUILTIN_DIR, DEMO_RECORDING
from edgerf.runtime import StepModel, manifest
from edgerf.runtime.files import FileRefused, loads, read_json

TIMEOUT_S = 30
MEMORY_LIMIT = 1 << 30        # the bound: 1 GB for any input under 10 MB


@pytest.fixture()
def builtin(tmp_path):
    for f in BUILTIN_DIR.glob("default-gru.*"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def _edgerf(*args, cwd=None) -> subprocess.CompletedProcess:
    """The CLI in a fresh process, with a timeout (a hang is a failure) and its peak RSS checked."""
    # VmHWM of the process's own memory map: ru_maxrss would carry over the forking parent's
    # peak (Linux keeps it across exec), here a test runner of about 1 GB
    code = ("import atexit, sys\n"
            "def _peak():\n"
            "    kib = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
            "    print('peak_rss_kib', kib[0] if kib else 0, file=sys.stderr)\n"
            "atexit.register(_peak)\n"
            "from edgerf.__main__ import main; sys.argv = ['edgerf'] + sys.argv[1:]; main()")
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                       timeout=TIMEOUT_S, cwd=cwd)
    assert r.returncode != 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    peak = int(r.stderr.rsplit("peak_rss_kib", 1)[1].split()[0]) * 1024
    assert peak < MEMORY_LIMIT, f"{args[0]} peaked at {peak / 2**20:.0f} MiB"
    return r


def _fifo(path):
    os.mkfifo(path)
    return path


def test_a_fifo_a_device_or_a_directory_as_a_state_file_is_a_fresh_start(builtin):
    art = builtin / "default-gru.int8.tflite"
    np.save(builtin / "x.npy", np.zeros((40, 28), np.float32))
    (builtin / "dir.npz").mkdir()
    os.symlink("/dev/zero", builtin / "zero.npz")
    for bad in (_fifo(builtin / "fifo.npz"), builtin / "zero.npz", builtin / "dir.npz"):
        m = StepModel.load(art)
        assert m.resume(bad) is False and m.health["refused_states"] == 1, bad
        r = _edgerf("stream", art, builtin / "x.npy", "--state", builtin / "fifo.npz")
        assert r.returncode in (0, 2), r.stderr


def test_a_refused_state_file_is_kept_aside_not_saved_over(builtin):
    """`--state` naming another model's state (or a damaged file) starts fresh, as a device must,
    but the file is kept as NAME.refused before the new state is saved: it was overwritten,
    so a wrong path destroyed the other model's state."""
    kws = BUILTIN_DIR / "kws-gru.int8.tflite"
    other = builtin / "kws.npz"
    assert _edgerf("stream", kws, DEMO_RECORDING, "--state", other).returncode == 0
    saved = other.read_bytes()
    np.save(builtin / "x.npy", np.zeros((40, 28), np.uint8))
    r = _edgerf("stream", builtin / "default-gru.int8.tflite", builtin / "x.npy", "--state", other)
    assert r.returncode == 0 and "another model" in r.stderr and "kws.npz.refused" in r.stderr, r.stderr
    assert (builtin / "kws.npz.refused").read_bytes() == saved
    assert StepModel.load(builtin / "default-gru.int8.tflite").resume(other)       # its own state now
    (builtin / "junk.npz").write_bytes(b"not a state")
    m = StepModel.load(builtin / "default-gru.int8.tflite")
    assert m.resume(builtin / "junk.npz") is False and "junk.npz.refused" in m.health["last_refusal"]
    assert (builtin / "junk.npz.refused").read_bytes() == b"not a state" and not (builtin / "junk.npz").exists()


def test_resume_survives_state_metadata_of_any_type(builtin):
    m = StepModel.load(builtin / "default-gru.int8.tflite")
    m.save_state(builtin / "s.npz")
    with np.load(builtin / "s.npz") as z:
        arrays = {k: z[k] for k in z.files}
    for meta in ([1, 2, 3], "text", 7, None, {"format": ["edgerf-state/1"]}, [[[[]]]]):
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        np.savez(builtin / "bad.npz", **arrays)
        fresh = StepModel.load(builtin / "default-gru.int8.tflite")
        assert fresh.resume(builtin / "bad.npz") is False and fresh.health["refused_states"] == 1


@pytest.mark.parametrize("what", ["sidecar", "index", "artifact"])
def test_a_fifo_or_dev_zero_in_place_of_a_manifest_an_index_or_an_artifact_is_refused(builtin, what):
    art = builtin / "default-gru.int8.tflite"
    target = {"sidecar": manifest.sidecar_path(art), "index": builtin / "default-gru.export.json",
              "artifact": art}[what]
    for kind in ("fifo", "zero"):
        target.unlink()
        _fifo(target) if kind == "fifo" else os.symlink("/dev/zero", target)
        for cmd in (("inspect", art), ("bench", art, "--no-rss", "--seconds", "0.05", "--windows", "1", "-q")):
            r = _edgerf(*cmd)
            assert r.returncode == 2 and ("FIFO" in r.stderr or "device" in r.stderr), r.stderr


def test_a_fifo_wav_in_a_word_folder_and_a_sparse_wav_are_refused(tmp_path):
    from conftest import user_dataset
    root, bg = user_dataset(tmp_path)
    _fifo(root / "music" / "zz_nohash_0.wav")
    r = _edgerf("train", "--task", "gsc", "--data", root, "--background", bg, "--epochs", "1", "--hidden", "8",
                "-o", tmp_path / "m.pt")
    assert r.returncode == 2 and "FIFO" in r.stderr
    sparse = tmp_path / "sparse.wav"
    with wave.open(str(sparse), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 100)
    with open(sparse, "r+b") as f:          # a 3 GB hole: 4 KB on disk
        f.truncate(3 << 30)
    r = _edgerf("stream", "kws-gru", sparse)
    assert r.returncode == 2 and "more than a WAV recording can be" in r.stderr


def test_an_npy_whose_header_claims_more_than_it_holds_is_refused(tmp_path):
    from numpy.lib import format as npy
    path = tmp_path / "big.npy"
    with open(path, "wb") as f:
        npy.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 9, 28)})
        f.write(b"\0" * 1024)
    r = _edgerf("stream", "default-gru", path)
    assert r.returncode == 2 and "header claims" in r.stderr


def test_json_nested_deeper_than_the_limit_is_refused_everywhere(builtin):
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(FileRefused, match="nests deeper"):
        loads(deep, "x.json")
    manifest.sidecar_path(builtin / "default-gru.onnx").write_text(deep)
    for cmd in (("inspect", builtin / "default-gru.onnx"), ("stream", builtin / "default-gru.onnx", DEMO_RECORDING)):
        r = _edgerf(*cmd)
        assert r.returncode == 2 and "deeper" in r.stderr


def test_strings_with_brackets_do_not_count_as_nesting(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"s": "[[[[{{{{" * 100, "t": "\\\"[["}))
    assert read_json(tmp_path / "a.json", 1 << 20, "a test file")["s"].startswith("[[[[")


def test_a_redeflated_checkpoint_is_refused_before_torch_loads_it(tmp_path):
    import zipfile
    src = BUILTIN_DIR / "default-gru.pt"
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(tmp_path / "bomb.pt", "w", zipfile.ZIP_DEFLATED) as out:
        for i in z.infolist():
            out.writestr(i.filename, z.read(i))
        out.writestr("default-gru/data/999", bytes(64 << 20))      # 64 MB of zeros, deflated to ~64 KB
    assert (tmp_path / "bomb.pt").stat().st_size < 2 << 20
    r = _edgerf("inspect", tmp_path / "bomb.pt")
    assert r.returncode == 2 and "unpacks to" in r.stderr


def _zip_version_raised(data: bytes) -> bytes:
    """The zip with every central-directory entry claiming it needs zip version 6.4 to extract,
    which the standard library's zipfile does not implement (it raises NotImplementedError)."""
    out = bytearray(data)
    at = out.find(b"PK\x01\x02")
    assert at >= 0
    while at >= 0:
        out[at + 6:at + 8] = (64).to_bytes(2, "little")
        at = out.find(b"PK\x01\x02", at + 4)
    return bytes(out)


def test_zips_that_zipfile_cannot_read_are_refused_with_a_message(tmp_path):
    """A checkpoint or an .npz whose zip the standard library cannot read (a zip version it
    does not implement, a damaged deflate stream) is refused as not ours, not a traceback."""
    import zipfile

    from edgerf import checkpoint
    from edgerf.runtime.errors import CheckpointError
    from edgerf.runtime.files import read_npz

    (tmp_path / "v64.pt").write_bytes(_zip_version_raised((BUILTIN_DIR / "default-gru.pt").read_bytes()))
    with pytest.raises(CheckpointError, match="not an edgerf checkpoint"):
        checkpoint.load(tmp_path / "v64.pt")
    r = _edgerf("inspect", tmp_path / "v64.pt")
    assert r.returncode == 2 and "not an edgerf checkpoint" in r.stderr and "Traceback" not in r.stderr

    (tmp_path / "v64.npz").write_bytes(_zip_version_raised((BUILTIN_DIR / "default-gru.bundle.npz").read_bytes()))
    with pytest.raises(FileRefused, match="not a readable .npz"):
        read_npz(tmp_path / "v64.npz", 1 << 26, "a test file")

    np.savez_compressed(tmp_path / "z.npz", a=np.arange(400_000, dtype=np.float32))
    with zipfile.ZipFile(tmp_path / "z.npz") as z:
        info = z.infolist()[0]
    raw = bytearray((tmp_path / "z.npz").read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    middle = start + info.compress_size // 2                   # past the array's header: read by np.load
    raw[middle:middle + 40] = b"\xff" * 40                       # zlib: "invalid block type"
    (tmp_path / "z.npz").write_bytes(bytes(raw))
    with pytest.raises(FileRefused, match="not a readable .npz"):
        read_npz(tmp_path / "z.npz", 1 << 26, "a test file")
