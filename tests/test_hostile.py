"""A device that runs for months: every hostile input is a clean refusal (exit 2, the file
named, nothing lost), a bad state never becomes permanent, artifacts prove themselves,
and a killed command leaves the previous complete set or none."""

import copy
import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from edgerf import checkpoint
from edgerf.runtime import manifest
from edgerf.cli import app
from edgerf.data import fashion
from edgerf.data.stream import concat_samples
from edgerf.runtime.errors import ArtifactError, CheckpointError, DataError
from edgerf.models import BUILTIN_DIR
from edgerf.runtime import FrameError, StateError, StepModel

ARTIFACTS = ("default-gru.onnx", "default-gru.int8.onnx", "default-gru.tflite", "default-gru.int8.tflite")
QUICK_EXPORT = ["--int8", "--parity-steps", "1000", "--calibration-steps", "3000", "--check-steps", "1000", "-q"]


@pytest.fixture()
def builtin(tmp_path):
    """A private copy of the shipped default model's export (checkpoint, artifacts, bundle, index)."""
    for f in BUILTIN_DIR.glob("default-gru.*"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def _cli(*args):
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code != 1 and "Traceback" not in r.output, r.output
    return r


# -- 1. a bad saved state never becomes permanent ------------------------------------------
@pytest.mark.parametrize("name", ARTIFACTS)
def test_absurd_or_broken_saved_states_are_refused_and_resume_recovers(builtin, name):
    m = StepModel.load(builtin / name)
    frames = np.random.default_rng(0).normal(size=(64, 28)).astype(np.float32)
    for f in frames:
        m.step(f)
    good = m.get_state()
    m.save_state(builtin / "s.npz")
    meta = json.loads(bytes(np.load(builtin / "s.npz")["__meta__"]).decode())
    for bad in (1e6, -1e6, np.nan, np.inf):
        with open(builtin / "bad.npz", "wb") as f:
            np.savez(f, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                     **{k: np.full_like(v, bad) for k, v in good.items()})
        with pytest.raises(StateError, match="refusing|outside|NaN"):
            m.load_state(builtin / "bad.npz")
        np.testing.assert_array_equal(m.get_state()["l0_h"], good["l0_h"])    # unchanged
    fresh = StepModel.load(builtin / name)
    assert fresh.resume(builtin / "bad.npz") is False
    assert fresh.health["refused_states"] == 1 and "outside" in fresh.health["last_refusal"] or \
        "NaN" in fresh.health["last_refusal"]
    assert fresh.resume(builtin / "s.npz") is True
    np.testing.assert_allclose(fresh.get_state()["l0_h"], good["l0_h"], atol=1e-6)
    assert fresh.resume(builtin / "never-saved.npz") is False and fresh.health["refused_states"] == 1


def test_an_unhealthy_live_state_is_never_saved(builtin):
    m = StepModel.load(builtin / "default-gru.onnx")
    for f in np.random.default_rng(1).normal(size=(40, 28)).astype(np.float32):
        m.step(f)
    snapshot = m._snapshot["l0_h"].copy()
    with pytest.raises(StateError, match="NaN"):               # never written from outside...
        m.set_state({"l0_h": np.full((1, 48), np.nan, np.float32)})
    m.backend.read_state()[0][:] = np.nan                      # ...but broken inside the interpreter
    m.save_state(builtin / "s.npz")
    assert m.health["unhealthy_saves"] == 1
    again = StepModel.load(builtin / "default-gru.onnx")
    again.load_state(builtin / "s.npz")                       # loads: the healthy snapshot was saved
    np.testing.assert_array_equal(again.get_state()["l0_h"], snapshot)


def test_state_files_that_claim_much_memory_are_refused_before_loading(builtin):
    m = StepModel.load(builtin / "default-gru.onnx")
    buf = io.BytesIO()
    np.savez_compressed(buf, __meta__=np.zeros(10, np.uint8), l0_h=np.zeros((1, 5_000_000), np.float32))
    (builtin / "bomb.npz").write_bytes(buf.getvalue())      # ~20 KB on disk, 20 MB unpacked
    with pytest.raises(StateError, match="unpacks to"):
        m.load_state(builtin / "bomb.npz")
    (builtin / "big.npz").write_bytes(os.urandom(1_200_000))
    with pytest.raises(StateError, match="more than a state of this model"):
        m.load_state(builtin / "big.npz")
    (builtin / "junk.npz").write_bytes(os.urandom(2000))
    with pytest.raises(StateError):
        m.load_state(builtin / "junk.npz")


# -- 2. artifacts prove themselves ----------------------------------------------------------
@pytest.mark.parametrize("name", ARTIFACTS)
def test_a_changed_artifact_is_refused_everywhere(builtin, name):
    art = builtin / name
    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0xFF                               # one weight byte
    art.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="changed after export"):
        StepModel.load(art)
    assert _cli("inspect", art).exit_code == 2
    assert _cli("bench", art, "--no-rss", "--seconds", "0.05", "-q").exit_code == 2
    assert _cli("stream", art, "-").exit_code == 2
    art.write_bytes(b"")                                        # a 0-byte model
    r = _cli("inspect", art)
    assert r.exit_code == 2 and "parity" not in r.output


def test_a_bundle_from_another_checkpoint_is_refused(builtin, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EDGERF_DATA", str(tmp_path_factory.mktemp("no-data")))   # no dataset: the bundle
    shutil.copy(BUILTIN_DIR / "kws-gru.bundle.npz", builtin / "default-gru.bundle.npz")
    (builtin / "default-gru.export.json").unlink()              # as a hand copy without the index
    r = _cli("bench", builtin / "default-gru.onnx", "--no-rss", "--seconds", "0.05", "-q")
    assert r.exit_code == 2 and "another checkpoint" in r.output


def test_a_mixed_export_is_refused_by_its_index(builtin):
    shutil.copy(BUILTIN_DIR / "kws-gru.bundle.npz", builtin / "default-gru.bundle.npz")
    r = _cli("bench", builtin / "default-gru.onnx", "--no-rss", "--seconds", "0.05", "-q")
    assert r.exit_code == 2 and "export index" in r.output


def test_an_interrupted_export_is_refused_and_cleaned_by_the_next(builtin):
    (builtin / "default-gru.export.json").unlink()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = builtin / f".edgerf-export.edgerf-{dead}-abc"
    stale.mkdir()
    (stale / "default-gru.onnx").write_bytes(b"half")
    r = _cli("bench", builtin / "default-gru.onnx", "--no-rss", "--seconds", "0.05", "-q")
    assert r.exit_code == 2 and "interrupted" in r.output
    r = _cli("export", builtin / "default-gru.pt", "--force", *QUICK_EXPORT)
    assert r.exit_code == 0, r.output
    assert not stale.exists() and (builtin / "default-gru.export.json").exists()


# -- 3. manifests -----------------------------------------------------------------------------
GOOD = manifest.read(BUILTIN_DIR / "default-gru.int8.tflite")
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                         max_size=3), max_leaves=6)


def _paths(d, prefix=()):
    for k, v in (d.items() if isinstance(d, dict) else enumerate(d)):
        yield prefix + (k,)
        if isinstance(v, (dict, list)):
            yield from _paths(v, prefix + (k,))


PATHS = list(_paths(GOOD))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), json_values)
def test_manifest_validator_refuses_or_accepts_never_crashes(path, value):
    m = copy.deepcopy(GOOD)
    node = m
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    try:
        manifest.validate(m, "m.json")
    except ArtifactError as e:
        assert "m.json" in str(e)


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["states"][0].update(range=[0.5, -0.5]), "range"),
    (lambda m: m["states"][0].update(range=[0.1, 0.1]), "range"),
    (lambda m: m["states"][0].update(shape=[None, "48"]), "shape"),
    (lambda m: m["states"][0].update(shape=[None, 10 ** 9]), "shape"),
    (lambda m: m["inputs"]["x"].update(shape="28"), "shape"),
    (lambda m: m["model"].update(classes=["a"]), "classes"),
    (lambda m: m["outputs"]["logits"].update(shape=[None, 3]), "logit per class"),
    (lambda m: m["outputs"].update(scores={"name": "scores"}), "outputs"),
    (lambda m: m["outputs"].update(probs={"name": "probs", "shape": [None, 3], "dtype": "float32"}), "probability per class"),
    (lambda m: m["outputs"].update(probs={"name": "probs", "shape": [None, 10], "dtype": "int8"}), "probs"),
    (lambda m: m["decision"].update(threshold=1.5), "threshold"),
    (lambda m: m.update(states={}), "states"),
    (lambda m: m["states"][0].update(output="x"), "twice"),
])
def test_manifest_field_errors_are_named(builtin, edit, match):
    side = manifest.sidecar_path(builtin / "default-gru.onnx")
    m = json.loads(side.read_text())
    edit(m)
    side.write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match=match):
        StepModel.load(builtin / "default-gru.onnx")
    assert _cli("inspect", builtin / "default-gru.onnx").exit_code == 2


# -- 4. frames ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ARTIFACTS)
def test_frames_are_checked_as_the_graph_sees_them(builtin, name):
    m = StepModel.load(builtin / name)
    before = m.get_state()
    for bad in (np.full(28, 1e300), np.full(28, np.nan, np.float16), np.ones(27), "abc", [[1.0] * 28, [1.0]],
                np.ones(28, complex), None, np.ones((2, 28))):
        with pytest.raises(FrameError):
            m.step(bad)
    assert m.health["bad_frames"] == 8                       # each refusal counted once
    for bad in ("abc", None, [[1.0] * 28, [1.0]], np.ones((3, 27)), np.full((3, 28), np.nan), np.ones((2, 28, 1))):
        with pytest.raises(FrameError):
            m.step_many(bad)                                  # a chunk: refused as its first bad frame is
    np.testing.assert_array_equal(m.get_state()["l0_h"], before["l0_h"])
    assert m.steps == 0
    a = m.step(np.arange(28, dtype=np.int64) % 3)
    m.set_state(before)
    b = m.step((np.arange(28) % 3).astype(np.float64))
    np.testing.assert_array_equal(a, b)                       # every real dtype is the same frame
    skip = StepModel.load(builtin / name, on_bad_frame="skip")
    for bad in (np.full(28, 1e300), "abc", [[1.0] * 28, [1.0]], None, np.ones(5)):
        assert skip.step(bad) is None
    assert skip.health["bad_frames"] == 5 and skip.steps == 0
    logits, stepped = skip.step_many([[1.0] * 28, [1.0]])
    assert logits.shape == (0, 10) and len(stepped) == 0 and skip.steps == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=28, max_size=28))
def test_any_frame_gives_finite_logits_or_a_refusal(frame):
    m = _shared_model()
    try:
        logits = m.step(np.array(frame))
    except FrameError:
        return
    assert np.isfinite(logits).all()
    assert all(np.isfinite(v).all() for v in m.get_state().values())


def test_a_huge_frame_is_refused_without_a_numpy_warning():
    """The refusal is the message; numpy's overflow warning from the check would be noise
    on a device's log (the filter is installed by the model, so it holds inside a caller's
    catch_warnings block too)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        m = StepModel.load(BUILTIN_DIR / "default-gru.int8.tflite")
        with pytest.raises(FrameError, match="beyond 1e19"):
            m.step(np.full(28, 1e30, np.float32))
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]


_MODEL = []


def _shared_model():
    if not _MODEL:
        _MODEL.append(StepModel.load(BUILTIN_DIR / "default-gru.int8.tflite"))
    return _MODEL[0]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 9), st.integers(0, 5)), min_size=0, max_size=8))
def test_stream_builder_keeps_its_invariants(spec):
    rng = np.random.default_rng(0)
    samples = [rng.normal(size=(n, 3)).astype(np.float32) for n, _, _ in spec]
    gaps = [rng.normal(size=(g, 3)).astype(np.float32) for _, _, g in spec]
    if not spec:
        with pytest.raises(DataError):
            concat_samples(samples, [], gaps)
        return
    s = concat_samples(samples, [y for _, y, _ in spec], gaps)
    assert s.problems() is None
    assert len(s) == sum(n + g for n, _, g in spec) and len(s.ends) == len(spec)
    assert s.mask.sum() == sum(n for n, _, _ in spec)


# -- 5. small files, big memory ------------------------------------------------------------------
def test_a_checkpoint_whose_config_claims_a_huge_model_is_refused_first(tmp_path):
    payload = torch.load(BUILTIN_DIR / "default-gru.pt", weights_only=True)
    payload["config"]["hidden"] = 9000
    torch.save(payload, tmp_path / "big.pt")
    with pytest.raises(CheckpointError, match="does not match the weights|digest"):
        checkpoint.load(tmp_path / "big.pt")
    payload["config"]["hidden"] = 48
    payload["task"] = {"name": "imagenet"}
    torch.save(payload, tmp_path / "task.pt")
    assert _cli("export", tmp_path / "task.pt").exit_code == 2
    (tmp_path / "empty.pt").write_bytes(b"")
    assert _cli("export", tmp_path / "empty.pt").exit_code == 2


def test_an_idx_bomb_or_a_lying_header_is_refused(tmp_path):
    header = bytes([0, 0, 8, 3]) + (50_000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(header)
        for _ in range(10):
            f.write(bytes(1 << 20))
    with pytest.raises(DataError, match="corrupt or truncated"):
        fashion.read_idx(tmp_path / "t10k-images-idx3-ubyte")
    huge = bytes([0, 0, 8, 3]) + (2 ** 31).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(huge))
    with pytest.raises(DataError, match="beyond any Fashion-MNIST"):
        fashion.read_idx(tmp_path / "t10k-images-idx3-ubyte")
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 0])))
    with pytest.raises(DataError, match="no records"):
        fashion.read_idx(tmp_path / "t10k-images-idx3-ubyte")


# -- 6. every refusal is exit 2 ------------------------------------------------------------------
def test_hostile_inputs_through_every_command_never_exit_1(builtin, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(4096))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    (tmp_path / "frames.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(tmp_path / "wrong.npy", np.ones((5, 3, 2)))
    wav = tmp_path / "bad.wav"
    wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    cases = [
        ["train", "-o", tmp_path / "x.pt", "--data", tmp_path, "--epochs", "1"],
        ["train", "-o", tmp_path / "x.pt", "--task", "gsc", "--data", tmp_path],
        ["train", "-o", tmp_path / "x.pt", "--batch", "0", "--train-samples", "10"],
        *[["export", f] for f in (junk, empty, text, tmp_path / "missing.pt")],
        ["export", builtin / "default-gru.pt", "--format", "coreml", "-o", tmp_path / "o"],
        *[["inspect", f] for f in (junk, empty, text, tmp_path / "missing.onnx", tmp_path / "frames.npy")],
        *[["bench", f, "--no-rss", "-q"] for f in (junk, empty, text, tmp_path / "missing.onnx")],
        ["bench", "--ckpt", junk, "--no-rss", "-q"],
        *[["stream", builtin / "default-gru.onnx", f] for f in (tmp_path / "frames.npy", tmp_path / "wrong.npy",
                                                                   tmp_path / "missing.npy", wav)],
        ["stream", "kws-gru", wav],
        ["stream", builtin / "default-gru.onnx", "-", "--state", junk],
        ["plot", junk, "-o", tmp_path / "p.png"],
        ["plot", builtin / "default-gru.pt", "-o", tmp_path / "p.png", "--data", tmp_path],
    ]
    for args in cases:
        r = _cli(*args)
        assert r.exit_code in (2, 0), (args, r.exit_code, r.output)


# -- interrupts: SIGKILL leaves the previous complete set or none -------------------------------
@pytest.mark.slow
def test_export_killed_at_any_point_leaves_the_previous_set_or_a_refused_one(builtin):
    before = {p.name: p.read_bytes() for p in builtin.iterdir()}
    cmd = [sys.executable, "-m", "edgerf", "export", str(builtin / "default-gru.pt"), "--force", *QUICK_EXPORT]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    full = time.perf_counter() - t0
    for k in range(1, 6):                     # kills spread over a whole export, the final moves included
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(full * k / 5.5)
        p.send_signal(signal.SIGKILL)
        p.wait()
        try:
            verdict = manifest.verify_export(builtin / "default-gru.onnx")
            for a in ARTIFACTS:
                StepModel.load(builtin / a)    # every artifact matches its manifest
            assert verdict == "export index verified"
        except ArtifactError as e:
            assert "interrupted" in str(e) or "export index" in str(e) or "manifest" in str(e)
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not list(builtin.glob(".*"))       # nothing left behind
    assert manifest.verify_export(builtin / "default-gru.onnx") == "export index verified"
    assert set(before) <= {p.name for p in builtin.iterdir()}


@pytest.mark.slow
def test_train_killed_leaves_no_checkpoint_or_the_old_one(tmp_path):
    out = tmp_path / "m.pt"
    out.write_bytes(b"previous")
    cmd = [sys.executable, "-m", "edgerf", "train", "-o", str(out), "--force", "--hidden", "8", "--epochs", "1",
           "--train-samples", "256", "--val-samples", "20", "--test-steps", "400", "-q"]
    for delay in (0.5, 3.0):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert out.read_bytes() == b"previous" or checkpoint.load(out)
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    checkpoint.load(out)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_a_write_never_replaces_a_device_a_fifo_or_a_directory(tmp_path):
    """Every write renames a new file onto its name: what is there must be a file or nothing.
    A FIFO, a directory, a symlink to a device are refused and left as they were (as root,
    `--state /dev/null` once replaced /dev/null with a regular file)."""
    import stat

    from edgerf.models import DEMO_RECORDING
    from edgerf.runtime.atomic import write_bytes

    fifo, folder, link = tmp_path / "kws.state.npz", tmp_path / "dir.npz", tmp_path / "null.npz"
    os.mkfifo(fifo)
    folder.mkdir()
    link.symlink_to(os.devnull)
    for p in (fifo, folder, link):
        with pytest.raises(ArtifactError, match="not a file"):
            write_bytes(p, b"x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and folder.is_dir() and stat.S_ISCHR(os.stat(link).st_mode)
    write_bytes(tmp_path / "new.bin", b"x")                      # a new file, or a file, is written as ever
    write_bytes(tmp_path / "new.bin", b"y")
    assert (tmp_path / "new.bin").read_bytes() == b"y"

    r = CliRunner().invoke(app, ["stream", "kws-gru", str(DEMO_RECORDING), "--state", str(fifo)])
    assert r.exit_code == 2 and "is a FIFO, not a file" in r.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)

    out = tmp_path / "export"
    out.mkdir()
    (out / "default-gru.onnx").mkdir()
    r = CliRunner().invoke(app, ["export", str(BUILTIN_DIR / "default-gru.pt"), "-o", str(out), "--force"])
    assert r.exit_code == 2 and "is a directory, not a file" in r.output
    assert "parity" not in r.output and sorted(p.name for p in out.iterdir()) == ["default-gru.onnx"]    # no work done


@pytest.mark.parametrize("args,says", [
    (["train", "-o", "{fifo}"], "is a FIFO, not a file"),
    (["train", "-o", "{folder}"], "is a directory, not a file"),
    (["plot", str(BUILTIN_DIR / "default-gru.pt"), "-o", "{fifo}", "--force"], "is a FIFO, not a file"),
    (["bench", "--report", "{fifo}"], "is a FIFO, not a folder"),
    (["bench", "--report", "{file}", "--force"], "is a file, not a folder"),
    (["sweep", "--out", "{fifo}"], "is a FIFO, not a folder"),
    (["sweep", "--out", "{folder}", "--results", "{tables}"], "is a FIFO, not a file"),
    (["sweep", "--seeds", "0,one"], "list of whole numbers"),
    (["sweep", "--cpus", "0"], "'--cpus'"),                                # was named --threads
    (["sweep", "-o", "{folder}2", "--address", "127.0.0.1:1"], "no Ray cluster answers"),    # Ray retried for minutes
    (["sweep", "-o", "{folder}2", "--address", "head-node"], "expected host:port"),
    (["plot", str(BUILTIN_DIR / "default-gru.pt"), "-o", "{file}.png", "--steps", "0"], "'--steps'"),  # "split empty"
])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, args, says):
    """Where a command writes, a FIFO, a device or the wrong kind of path is refused up front
    with exit 2 (`train -o FIFO` once ended in a NotADirectoryError traceback)."""
    paths = {"fifo": tmp_path / "out.fifo", "folder": tmp_path / "folder", "file": tmp_path / "file.txt",
             "tables": tmp_path / "grid"}
    os.mkfifo(paths["fifo"])
    os.mkfifo(tmp_path / "grid.md")                     # where `sweep --results grid` writes its table
    paths["folder"].mkdir()
    (paths["folder"] / "x").write_text("x")
    paths["file"].write_text("x")
    r = CliRunner().invoke(app, [a.format(**paths) for a in args])
    assert r.exit_code == 2 and says in r.output, r.output
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit)


@pytest.mark.parametrize("dtype", ["complex64", "bool", "U3"])
def test_frames_that_are_not_real_numbers_are_refused(tmp_path, dtype):
    """A .npy of complex, boolean or text values is not frames: a cast to float32 would drop
    the imaginary part or invent numbers, so `stream` refuses it and says what frames are."""
    np.save(tmp_path / "f.npy", np.zeros((10, 28), dtype))
    r = CliRunner().invoke(app, ["stream", "default-gru", str(tmp_path / "f.npy")])
    assert r.exit_code == 2 and "frames are real numbers" in r.output, r.output


def test_a_source_is_known_by_what_it_holds_and_options_that_would_be_ignored_are_refused(tmp_path):
    """A recorder's REC001.WAV is a recording (it was read as a .npy and refused); a renamed
    frames file is frames; a text file, a FIFO or a missing file is refused saying what SOURCE
    takes. Options that would be silently ignored are refused: --float-frames with a file,
    --target with a checkpoint (it ran in torch), and inspect on a file that is no artifact."""
    from edgerf.models import DEMO_RECORDING

    want = CliRunner().invoke(app, ["stream", "kws-gru", str(DEMO_RECORDING)]).stdout
    shutil.copy(DEMO_RECORDING, tmp_path / "REC001.WAV")
    r = CliRunner().invoke(app, ["stream", "kws-gru", str(tmp_path / "REC001.WAV")])
    assert r.exit_code == 0 and r.stdout == want and len(want.splitlines()) >= 5, r.output
    with open(tmp_path / "frames.bin", "wb") as f:
        np.save(f, np.zeros((7, 28), np.float32))
    r = CliRunner().invoke(app, ["stream", "default-gru", str(tmp_path / "frames.bin")])
    assert r.exit_code == 0 and "7 steps" in r.stderr, r.output
    (tmp_path / "notes.txt").write_text("hello")
    os.mkfifo(tmp_path / "pipe")
    for source, says in (("notes.txt", "neither a WAV recording nor a .npy"), ("pipe", "goes to stdin"),
                         ("gone.wav", "does not exist")):
        r = CliRunner().invoke(app, ["stream", "kws-gru", str(tmp_path / source)])
        assert r.exit_code == 2 and says in r.output, r.output
    for args, says in (([str(DEMO_RECORDING), "--float-frames"], "--float-frames says what stdin carries"),
                       ([str(DEMO_RECORDING), "--target", "numpy"], "is a checkpoint")):
        model = str(BUILTIN_DIR / "kws-gru.pt") if "--target" in args else "kws-gru"
        r = CliRunner().invoke(app, ["stream", model, *args])
        assert r.exit_code == 2 and says in r.output, r.output
    r = CliRunner().invoke(app, ["inspect", str(DEMO_RECORDING)])
    assert r.exit_code == 2 and "not something inspect describes" in r.output, r.output


@pytest.mark.parametrize("args,says", [
    (["--format", ""], "--format names no format"),
    (["--format", "onnx,bogus"], "'bogus' is not a format"),
    (["--int8", "--targets", "bogus"], "'bogus' is not a target"),      # a KeyError traceback after the reference
    (["--targets", "litert"], "add --int8"),                              # ignored before
    (["--format", "onnx", "--int8", "--targets", "litert"], "writes onnx only"),   # judged on ort before, silently
])
def test_export_formats_and_targets_are_checked_before_any_work(builtin, args, says):
    out = builtin / "out"
    r = CliRunner().invoke(app, ["export", str(builtin / "default-gru.pt"), "-o", str(out), *args])
    assert r.exit_code == 2 and says in r.output and not out.exists(), r.output


def test_a_format_named_twice_is_written_once_and_a_failed_commit_says_what_it_left(builtin, monkeypatch):
    """`--format onnx,onnx` moved its files in, failed on the second move of the same file and
    said "Nothing was changed" over a set it had changed, and removed its staging folder, so
    inspect and bench took the mixed set without an index as a set. Named twice is now once; a failure while the
    files move in says so and leaves the set refused (as a kill does) until the next export."""
    from edgerf.export import pipeline
    from edgerf.configs import ExportConfig

    assert ExportConfig(formats=("onnx", "onnx")).formats == ("onnx",)
    real, calls = os.replace, []
    from pathlib import Path

    def replace_fails_second(src, dst):                  # the second file moved into the output folder
        if Path(dst).parent == builtin:
            calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(pipeline.os, "replace", replace_fails_second)
    cfg = ExportConfig(formats=("onnx",), parity_steps=100, force=True)
    with pytest.raises(ArtifactError, match="has no index now"):
        pipeline.export_checkpoint(builtin / "default-gru.pt", builtin, cfg)
    for name in ("default-gru.onnx", "default-gru.tflite"):        # half new, half old: refused as a set
        with pytest.raises(ArtifactError, match="interrupted"):
            manifest.verify_export(builtin / name)
    monkeypatch.undo()
    pipeline.export_checkpoint(builtin / "default-gru.pt", builtin, cfg)       # the next export completes it
    assert manifest.verify_export(builtin / "default-gru.onnx") == "export index verified"


def test_a_stream_stopped_by_a_refused_frame_keeps_what_came_before(tmp_path):
    """`--on-bad-frame raise` stops a stream at a NaN frame with exit 2: the event still open
    is printed and --state holds the state of the frames before it (both were lost)."""
    from edgerf.runtime.bundle import read as read_bundle

    x = read_bundle(BUILTIN_DIR / "default-gru.bundle.npz").stream.x[:600].astype(np.float32)
    whole = CliRunner().invoke(app, ["stream", "default-gru", "-"], input=x.tobytes())
    bad = x.copy()
    bad[400] = np.nan
    r = CliRunner().invoke(app, ["stream", "default-gru", "-", "--state", str(tmp_path / "s.npz")],
                           input=bad.tobytes())
    assert r.exit_code == 2 and "NaN" in r.output and (tmp_path / "s.npz").exists(), r.output
    before = CliRunner().invoke(app, ["stream", "default-gru", "-"], input=x[:400].tobytes())
    assert r.stdout == before.stdout and len(before.stdout.splitlines()) >= 3 and whole.stdout.startswith(
        before.stdout.rsplit("\n", 2)[0])
    m = StepModel.load(BUILTIN_DIR / "default-gru.tflite")
    assert m.resume(tmp_path / "s.npz") and m.steps == 400


def test_a_stream_started_with_stdin_closed_is_refused():
    """`edgerf stream MODEL - <&-` (or a daemon without stdin) ended in an AttributeError traceback."""
    r = subprocess.run([sys.executable, "-m", "edgerf", "stream", "kws-gru", "-"], capture_output=True, text=True,
                       preexec_fn=lambda: os.close(0), timeout=120)
    assert r.returncode == 2 and "stdin is closed" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("flag, value", [("--window", "0"), ("--window", "-3"), ("--window", "100001"),
                                         ("--threshold", "0"), ("--threshold", "1"), ("--threshold", "1.5"),
                                         ("--threshold", "nan")])
def test_stream_refuses_an_operating_point_by_its_flag_before_any_work(flag, value):
    """The detector's own check named ``window``/``threshold``, after the model was loaded; the
    command line names its flag and the range, as for any other option."""
    r = _cli("stream", "kws-gru", flag, value)
    assert r.exit_code == 2 and f"'{flag}'" in r.output
