"""One authority for what an artifact is: the contract sealed into the artifact.

A sidecar that disagrees with it is refused, both values named; an artifact changed after
export is refused with or without its sidecar; an artifact with no sealed manifest runs only
when the caller opts in, and then every report says so; a name that claims another
precision is refused; ranges that cannot hold a trajectory are refused, and a watchdog that
would restore forever raises an alarm instead. A checkpoint's digest covers its task too.
"""

import io
import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgerf import checkpoint
from edgerf.cli import app
from edgerf.models import BUILTIN_DIR
from edgerf.runtime import StepModel, manifest
from edgerf.runtime.errors import ArtifactError, CheckpointError

ARTIFACTS = ("default-gru.onnx", "default-gru.int8.onnx", "default-gru.tflite", "default-gru.int8.tflite")


@pytest.fixture()
def builtin(tmp_path):
    for f in BUILTIN_DIR.glob("default-gru.*"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def _edit_sidecar(path, edit):
    side = manifest.sidecar_path(path)
    m = json.loads(side.read_text())
    edit(m)
    side.write_text(json.dumps(m))


@pytest.mark.parametrize("name", ARTIFACTS)
@pytest.mark.parametrize("edit, field", [
    (lambda m: m["decision"].update(threshold=0.01), "decision.threshold"),
    (lambda m: m["frame"].update(mean=100.0), "frame.mean"),
    (lambda m: m["model"].update(classes=[f"c{k}" for k in range(10)])
     or m["decision"].update(keywords=[f"c{k}" for k in range(10)]), "model.classes[0]"),
    (lambda m: m["states"][0].update(range=[-1e6, 1e6]), "states[0].range[0]"),
    (lambda m: m["artifact"].update(precision="fp16"), "artifact.precision"),
])
def test_a_sidecar_that_disagrees_with_the_sealed_contract_is_refused(builtin, name, edit, field):
    _edit_sidecar(builtin / name, edit)
    with pytest.raises(ArtifactError, match="disagrees") as e:
        StepModel.load(builtin / name)
    assert field in str(e.value) and "in the sidecar but" in str(e.value)
    r = CliRunner().invoke(app, ["stream", str(builtin / name), str(builtin / "x.npy")])
    assert r.exit_code == 2 and "disagrees" in r.output


def test_a_report_field_of_the_sidecar_may_change_and_never_computes(builtin):
    path = builtin / "default-gru.int8.tflite"
    _edit_sidecar(path, lambda m: m["precision"].update(why="edited by hand"))
    m = StepModel.load(path)
    assert m.manifest["precision"]["why"] == "edited by hand" and m.threshold == 0.9


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


@pytest.mark.parametrize("name", ARTIFACTS)
@pytest.mark.parametrize("sidecar", [True, False])
def test_an_artifact_changed_after_export_is_refused_with_or_without_its_sidecar(builtin, name, sidecar):
    path = builtin / name
    data = path.read_bytes()
    i = data.find(b'{"format": "edgerf-step/1')
    j = i + json.JSONDecoder().raw_decode(data[i:].decode("ascii", "replace"))[1]
    weight = (j + len(data)) // 2 if len(data) - j > i else i // 2      # a byte of the graph, not of the text
    if not sidecar:
        manifest.sidecar_path(path).unlink()
        (builtin / "default-gru.export.json").unlink()
    for changed in (_flip(data, weight),
                    data.replace(b'"threshold": 0.9', b'"threshold": 0.1')):          # the embedded contract
        assert changed != data
        path.write_bytes(changed)
        with pytest.raises(ArtifactError, match="changed after export|does not match|not the file"):
            StepModel.load(path)
        assert CliRunner().invoke(app, ["inspect", str(path)]).exit_code == 2
    path.write_bytes(data)
    assert StepModel.load(path).integrity.startswith("embedded manifest verified")


def test_zeroed_weights_without_sidecar_or_index_are_refused_by_bench(builtin):
    import onnx
    path = builtin / "default-gru.onnx"
    proto = onnx.load(str(path))
    for init in proto.graph.initializer:
        arr = onnx.numpy_helper.to_array(init)
        init.CopyFrom(onnx.numpy_helper.from_array(np.zeros_like(arr), init.name))
    onnx.save(proto, str(path))
    manifest.sidecar_path(path).unlink()
    (builtin / "default-gru.export.json").unlink()
    r = CliRunner().invoke(app, ["bench", str(path), "--no-rss", "--seconds", "0.05", "--windows", "1", "-q"])
    assert r.exit_code == 2 and "changed after export" in r.output, r.output


def _unsealed(path):
    """The artifact as an older edgerf wrote it: manifest embedded without a digest."""
    data = path.read_bytes()
    i = data.find(b'{"format": "edgerf-step/1')
    obj, n = json.JSONDecoder().raw_decode(data[i:].decode("ascii", "replace"))
    tail = b', "digest": "' + obj["digest"].encode() + b'"'
    k = data.index(tail, i)
    path.write_bytes(data[:k] + b" " * len(tail) + data[k + len(tail):])   # same length, digest gone


def test_no_verifiable_manifest_is_refused_unless_the_caller_opts_in(builtin):
    path = builtin / "default-gru.int8.tflite"
    _unsealed(path)
    manifest.sidecar_path(path).unlink()
    (builtin / "default-gru.export.json").unlink()
    with pytest.raises(ArtifactError, match="no verifiable manifest"):
        StepModel.load(path)
    m = StepModel.load(path, allow_unverified=True)
    assert m.integrity.startswith("UNVERIFIED") and m.step(np.zeros(28, np.float32)).shape == (10,)
    np.save(builtin / "x.npy", np.zeros((30, 28), np.float32))
    r = CliRunner().invoke(app, ["stream", str(path), str(builtin / "x.npy")])
    assert r.exit_code == 2 and "--allow-unverified" in r.output
    r = CliRunner().invoke(app, ["stream", str(path), str(builtin / "x.npy"), "--allow-unverified"])
    assert r.exit_code == 0 and "UNVERIFIED" in r.stderr
    r = CliRunner().invoke(app, ["bench", str(path), "--no-rss", "--seconds", "0.05", "--windows", "1", "-q"])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["bench", str(path), "--no-rss", "--seconds", "0.05", "--windows", "1", "-q",
                                 "--allow-unverified", "--report", str(builtin / "rep")])
    assert r.exit_code == 0 and "UNVERIFIED" in r.output, r.output
    assert "UNVERIFIED" in (builtin / "rep" / "bench.md").read_text()


def test_a_name_that_claims_another_precision_is_refused_a_plain_rename_is_not(builtin):
    for ext in (".onnx", ".tflite"):
        shutil.copy(builtin / f"default-gru.int8{ext}", builtin / f"default-gru{ext}")
        shutil.copy(builtin / f"default-gru.int8{ext}.json", builtin / f"default-gru{ext}.json")
        with pytest.raises(ArtifactError, match="named as an fp32"):
            StepModel.load(builtin / f"default-gru{ext}")
        shutil.copy(builtin / f"default-gru.int8{ext}", builtin / f"model{ext}")
        assert StepModel.load(builtin / f"model{ext}").manifest["artifact"]["precision"] == "int8"
    shutil.copy(builtin / "default-gru.int8.tflite", builtin / "model.onnx")
    with pytest.raises(ArtifactError, match="holds a tflite graph"):
        StepModel.load(builtin / "model.onnx")


@pytest.mark.parametrize("rng", [[0.0, 1e-30], [-1e-9, 0.0], [-0.003, 0.003]])
def test_ranges_that_cannot_hold_a_trajectory_are_refused(rng):
    good = manifest.read(BUILTIN_DIR / "default-gru.int8.tflite")     # int8 state: step 1/128
    bad = json.loads(json.dumps(good))
    bad["states"][0]["range"] = rng
    with pytest.raises(ArtifactError, match="narrower than one quantisation step"):
        manifest.validate(bad, "m.json")


def test_a_watchdog_that_would_restore_forever_raises_an_alarm():
    m_good = manifest.read(BUILTIN_DIR / "default-gru.onnx")
    narrow = json.loads(json.dumps(m_good))
    narrow["states"][0]["range"] = [-0.001, 0.001]             # valid, but far narrower than the trajectory
    model = StepModel.for_export(BUILTIN_DIR / "default-gru.onnx", narrow)
    x = np.random.default_rng(0).normal(size=(32 * 40, 28)).astype(np.float32)
    for f in x:
        model.step(f)
    assert "alarm" in model.health and "range does not fit" in model.health["alarm"]
    restores = model.health["state_restores"]
    assert restores <= 16                     # it stopped restoring on range once the alarm was raised
    for f in x:
        model.step(f)
    assert model.health["state_restores"] == restores


def test_a_checkpoint_whose_task_was_edited_is_refused(tmp_path):
    payload = torch.load(BUILTIN_DIR / "default-gru.pt", map_location="cpu", weights_only=True)
    for edit in (lambda p: p["task"].update(mean=0.9), lambda p: p["task"].update(classes=list("abcdefghij")),
                 lambda p: p["config"].update(readout="linear", frontend=0) or p.pop("computes_sha256")):
        q = json.loads(json.dumps({k: v for k, v in payload.items() if k != "weights"}))
        edit(q)
        q["weights"] = payload["weights"]
        buf = io.BytesIO()
        torch.save(q, buf)
        (tmp_path / "c.pt").write_bytes(buf.getvalue())
        with pytest.raises(CheckpointError, match="task|digest"):
            checkpoint.load(tmp_path / "c.pt")
