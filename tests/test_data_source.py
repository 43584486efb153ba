"""--data governs every file a command reads, and every result records which data it read.

The commands run in a fresh interpreter under a Python audit hook that logs every file
opened and every folder listed; $EDGERF_DATA points at another valid dataset (a decoy),
so a module that looked for data on its own would read it and be caught.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import SUBSET, user_dataset
from edgerf.cli import app
from edgerf.data import fashion, speech
from edgerf.data.source import listing, locate
from edgerf.runtime.errors import DataError

# Runs `edgerf ARGS` and appends each opened file / listed folder to $AUDIT_LOG.
AUDITED = """
import os, runpy, sys
log = open(os.environ["AUDIT_LOG"], "a")
def hook(event, args):
    if event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
        log.write(os.path.abspath(os.fsdecode(args[0])) + "\\n")
sys.addaudithook(hook)
sys.argv = ["edgerf", *sys.argv[1:]]
runpy.run_module("edgerf", run_name="__main__")
"""


def _audited(args: list, log: Path, decoy: Path) -> tuple[subprocess.CompletedProcess, set[Path]]:
    env = dict(os.environ, AUDIT_LOG=str(log), EDGERF_DATA=str(decoy))
    r = subprocess.run([sys.executable, "-c", AUDITED, *map(str, args)], env=env, capture_output=True, text=True)
    read = {Path(p).resolve() for p in log.read_text().split("\n") if p} if log.exists() else set()
    log.unlink(missing_ok=True)
    return r, read


def _outside(read: set[Path], allowed: list[Path]) -> list[Path]:
    """Data files (audio, IDX) read from anywhere but the allowed folders."""
    data = [p for p in read if p.suffix in (".wav", ".gz") or "ubyte" in p.name or p.name.endswith(".wav.wav")]
    return sorted(p for p in data if not any(p.is_relative_to(a.resolve()) for a in allowed))


def test_train_export_bench_read_only_the_given_folders(tmp_path):
    root, bg = user_dataset(tmp_path)
    log, decoy = tmp_path / "audit.log", SUBSET           # the committed subset: a valid dataset with _silence_
    allowed = [root, bg]
    r, read = _audited(["train", "--task", "gsc", "--data", root, "--background", bg, "--hidden", "8",
                        "--epochs", "1", "--batch", "4", "--val-samples", "4", "--test-steps", "400",
                        "--background-hours", "0.01", "-q", "-o", tmp_path / "m.pt"], log, decoy)
    assert r.returncode == 0, r.stderr
    assert not _outside(read, allowed)
    assert any(p.is_relative_to(bg.resolve()) for p in read)              # the background came from --background
    assert not any(p.is_relative_to(decoy) for p in read)

    r, read = _audited(["export", tmp_path / "m.pt", "--int8", "--format", "tflite", "-q", "--data", root,
                        "--background", bg, "--parity-steps", "400", "--calibration-steps", "600",
                        "--check-steps", "400"], log, decoy)
    assert r.returncode == 0, r.stderr
    assert not _outside(read, allowed) and any(p.is_relative_to(bg.resolve()) for p in read)

    r, read = _audited(["bench", "--ckpt", tmp_path / "m.pt", "--data", root, "--background", bg, "--steps", "300",
                        "--seconds", "0.05", "--windows", "2", "--no-rss", "-q", "--report", tmp_path / "bench"],
                       log, decoy)
    assert r.returncode == 0, r.stderr
    assert not _outside(read, allowed) and any(p.is_relative_to(root.resolve()) for p in read)

    # what was read is recorded, by content digest, in the checkpoint, the manifest and the report
    want = {**listing(speech.files(root), root), "folder": f"{tmp_path.name}/mywords", "origin": "--data"}
    want_bg = {**listing(speech.background_files(bg), bg), "folder": f"{tmp_path.name}/background"}
    from edgerf import checkpoint
    recorded = [checkpoint.load(tmp_path / "m.pt").training["data"],
                json.loads((tmp_path / "m.int8.tflite.json").read_text())["source"]["export_data"],
                json.loads((tmp_path / "bench" / "bench.json").read_text())["data"]]
    for d in recorded:
        assert {k: d[k] for k in want} == want and {k: d["background"][k] for k in want_bg} == want_bg
        assert d["split"].startswith("by file hash") and d["counts"]["train"] > 0
        assert str(tmp_path) not in json.dumps(d)                          # no machine paths
    ck = checkpoint.load(tmp_path / "m.pt")
    assert str(tmp_path) not in json.dumps(ck.training["config"]) + ck.training["command"]

    # edgerf inspect shows it, for the checkpoint and for the artifact
    for target in ("m.pt", "m.int8.tflite"):
        out = CliRunner().invoke(app, ["inspect", str(tmp_path / target)])
        assert out.exit_code == 0, out.output
        line = next(x for x in out.stdout.splitlines() if x.startswith("trained on:"))
        assert f"{tmp_path.name}/mywords (--data; 30 files, digest {want['digest']})" in line
        assert f"background {tmp_path.name}/background (2 files, digest {want_bg['digest']})" in line


def test_images_read_only_the_given_folder(tmp_path):
    mine = tmp_path / "fmnist"
    mine.mkdir()
    for f in fashion.files(locate("fashion-mnist").root):
        shutil.copy(f, mine / f.name)
    r, read = _audited(["train", "--data", mine, "--hidden", "8", "--epochs", "1", "--batch", "4",
                        "--train-samples", "64", "--val-samples", "8", "--test-steps", "400", "-q",
                        "-o", tmp_path / "m.pt"], tmp_path / "audit.log", SUBSET)
    assert r.returncode == 0, r.stderr
    assert not _outside(read, [mine]) and any(p.is_relative_to(mine.resolve()) for p in read)


def test_a_given_folder_without_the_data_is_an_error_never_a_fallback(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=f"no Fashion-MNIST in {empty}"):
        locate("fashion-mnist", empty)
    # bench with --data never falls back to the evaluation bundle
    r = CliRunner().invoke(app, ["bench", "--data", str(empty), "--no-rss", "--seconds", "0.05", "--windows", "2"])
    assert r.exit_code == 2 and str(empty) in r.output
    with pytest.raises(DataError, match="audio tasks"):
        locate("fashion-mnist", background=empty)
    with pytest.raises(DataError, match="no .wav files in --background"):
        locate("speech-commands", background=empty)


def test_other_data_than_training_is_said_and_recorded(tmp_path):
    from edgerf.data.source import differs
    from edgerf.tasks import get_task

    a = get_task("sfmnist").bind().provenance()
    mine = tmp_path / "fmnist"
    mine.mkdir()
    for f in fashion.files(locate("fashion-mnist").root):
        shutil.copy(f, mine / f.name)
    assert differs(a, get_task("sfmnist").bind(mine).provenance()) is None      # same files: same digest
    (mine / fashion.FILES["test"][1]).with_suffix(".extra").write_bytes(b"not read")
    assert differs(a, get_task("sfmnist").bind(mine).provenance()) is None      # files it never reads: ignored
    shutil.copy(mine / "t10k-labels-idx1-ubyte.gz", mine / "t10k-labels-idx1-ubyte")
    note = differs(a, get_task("sfmnist").bind(mine).provenance())
    assert note and "digest" in note
