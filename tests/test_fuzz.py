"""Property-based fuzzing of every reader: mutated real files (bit flips, truncations,
splices, random bytes) give a value or the reader's own refusal, never another exception.

The CI run is short (``EDGERF_FUZZ_EXAMPLES``, default 40 per reader, well under 2 minutes
in all); the long run is ``make fuzz`` (2,000 per reader). A crash the long run finds is
saved under ``tests/fuzz_corpus/<reader>/`` and replayed by every run from then on.
"""

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgerf import checkpoint
from edgerf.data import fashion
from edgerf.models import BUILTIN_DIR, DEMO_RECORDING
from edgerf.runtime import StepModel, bundle, manifest
from edgerf.runtime.audio import read_wav
from edgerf.runtime.errors import EdgerfError
from edgerf.runtime.files import read_npy

EXAMPLES = int(os.environ.get("EDGERF_FUZZ_EXAMPLES", "40"))
CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"
SUBSET = Path(__file__).resolve().parent / "data"
ART = "default-gru.int8.tflite"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    for f in BUILTIN_DIR.glob("default-gru.*"):
        shutil.copy(f, d / f.name)
    m = StepModel.load(d / ART)
    m.save_state(d / "seed-state.npz")
    np.save(d / "seed.npy", np.zeros((20, 28), np.float32))
    return d


def _seed(work: Path, reader: str) -> bytes:
    return {"manifest": lambda: manifest.sidecar_path(work / ART).read_bytes(),
            "index": lambda: (work / "default-gru.export.json").read_bytes(),
            "state": lambda: (work / "seed-state.npz").read_bytes(),
            "bundle": lambda: (work / "default-gru.bundle.npz").read_bytes(),
            "wav": lambda: DEMO_RECORDING.read_bytes()[:8000],
            "npy": lambda: (work / "seed.npy").read_bytes(),
            "idx": lambda: (SUBSET / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes(),
            "checkpoint": lambda: (BUILTIN_DIR / "default-gru.pt").read_bytes(),
            "artifact": lambda: (BUILTIN_DIR / ART).read_bytes()}[reader]()


def _read(work: Path, reader: str, data: bytes) -> None:
    """Feed ``data`` to one reader as a user would; only its own refusal may escape."""
    if reader == "manifest":
        manifest.sidecar_path(work / ART).write_bytes(data)
        manifest.read_verified(work / ART)
    elif reader == "index":
        (work / "default-gru.export.json").write_bytes(data)
        manifest.verify_export(work / ART)
    elif reader == "state":
        (work / "s.npz").write_bytes(data)
        m = StepModel.load(BUILTIN_DIR / ART)
        m.resume(work / "s.npz")                 # never raises, whatever the file
        m.step(np.zeros(28, np.float32))
    elif reader == "bundle":
        (work / "b.bundle.npz").write_bytes(data)
        bundle.read(work / "b.bundle.npz")
    elif reader == "wav":
        (work / "w.wav").write_bytes(data)
        read_wav(work / "w.wav")
    elif reader == "npy":
        (work / "f.npy").write_bytes(data)
        read_npy(work / "f.npy", 1 << 24, "a frames file")
    elif reader == "idx":
        d = work / "idx"
        d.mkdir(exist_ok=True)
        (d / "t10k-labels-idx1-ubyte.gz").write_bytes(data)
        fashion.read_idx(d / "t10k-labels-idx1-ubyte")
    elif reader == "checkpoint":
        (work / "c.pt").write_bytes(data)
        checkpoint.load(work / "c.pt")
    elif reader == "artifact":
        (work / "a.tflite").write_bytes(data)
        StepModel.load(work / "a.tflite").step(np.zeros(28, np.float32))


def _mutate(seed: bytes, flips, cut, splice) -> bytes:
    data = bytearray(seed)
    for pos, byte in flips:
        if data:
            data[pos % len(data)] = byte
    if cut is not None and data:
        data = data[: cut % (len(data) + 1)]
    if splice:
        at, chunk = splice
        data[at % (len(data) + 1): at % (len(data) + 1)] = chunk
    return bytes(data)


def _check(work: Path, reader: str, data: bytes) -> None:
    try:
        _read(work, reader, data)
    except (EdgerfError, FileNotFoundError):
        pass
    except Exception:
        if os.environ.get("EDGERF_FUZZ_SAVE"):
            keep = CORPUS / reader / (hashlib.sha256(data).hexdigest()[:16] + ".bin")
            keep.parent.mkdir(parents=True, exist_ok=True)
            keep.write_bytes(data)
        raise


READERS = ("manifest", "index", "state", "bundle", "wav", "npy", "idx", "checkpoint", "artifact")
mutations = st.tuples(st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), max_size=6),
                      st.none() | st.integers(0, 1 << 30),
                      st.none() | st.tuples(st.integers(0, 1 << 30), st.binary(max_size=64)))


@pytest.mark.parametrize("reader", READERS)
def test_mutated_files_are_read_or_refused(work, reader):
    seed = _seed(work, reader)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(mutations)
    def run(m):
        _check(work, reader, _mutate(seed, *m))
    run()


@pytest.mark.parametrize("reader", READERS)
def test_random_bytes_are_refused(work, reader):
    @settings(max_examples=max(EXAMPLES // 4, 5), deadline=None, database=None)
    @given(st.binary(max_size=512))
    def run(data):
        _check(work, reader, data)
    run()


CASES = sorted(CORPUS.glob("*/*.bin"))


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.name}" for c in CASES])
def test_every_crash_ever_found_stays_fixed(work, case):
    _check(work, case.parent.name, case.read_bytes())
