"""Targets: each interpreter and kernel configuration is its own arithmetic. The table in
edgerf.runtime.targets claims an equivalence only where this test measures one, and every
shipped TFLite artifact runs in TFLite Micro."""

import itertools

import numpy as np
import pytest
from typer.testing import CliRunner

from edgerf.cli import app
from edgerf.models import BUILTIN_DIR, BUILTINS
from edgerf.runtime import StepModel
from edgerf.runtime.backends import tflm_figures
from edgerf.runtime.bundle import read as read_bundle
from edgerf.runtime.errors import ArtifactError
from edgerf.runtime.targets import SAME_AS, TARGETS, choose, installed

STEPS = 400


def _next_states(path, target, states, frames):
    """From each given state, one step on ``target``: the next state and the logits."""
    m = StepModel.load(path, target=target)
    nxt, logits = [], []
    for s, x in zip(states, frames):
        m.set_state(s)
        logits.append(np.array(m.step(x)))
        nxt.append(m.get_state())
    return nxt, np.stack(logits)


@pytest.mark.parametrize("name", sorted(BUILTINS))
@pytest.mark.parametrize("suffix", [".int8.tflite", ".tflite", ".int8.onnx", ".onnx"])
def test_which_targets_compute_the_same_next_state(name, suffix):
    """From the same states (along one closed-loop run), each pair of installed targets gives
    bit-identical next states exactly where SAME_AS says so."""
    path = BUILTIN_DIR / f"{name}{suffix}"
    fmt = path.suffix
    here = installed(fmt)
    assert len(here) >= 2, f"needs two {fmt} targets installed (host extra): {here}"
    frames = read_bundle(BUILTIN_DIR / f"{name}.bundle.npz").stream.x[:STEPS]
    ref = StepModel.load(path, target=here[0])
    states = []
    for x in frames:
        states.append(ref.get_state())
        ref.step(x)
    runs = {t: _next_states(path, t, states, frames) for t in here}
    for a, b in itertools.combinations(here, 2):
        same = all(np.array_equal(sa[k], sb[k]) for sa, sb in zip(runs[a][0], runs[b][0]) for k in sa)
        claimed = frozenset((a, b)) in SAME_AS
        if ".int8" in suffix:       # integer arithmetic: equal or not, and the table must say which
            assert same == claimed, f"{path.name}: {a} vs {b} bit-identical={same}, table says {claimed}"
        # every target agrees with every other on what a user reads: the class wherever one is
        # confident (on noise a reset-free model is near uniform, where argmax means nothing)
        pa = np.exp(runs[a][1] - runs[a][1].max(1, keepdims=True))
        confident = (pa / pa.sum(1, keepdims=True)).max(1) > 0.5
        agree = np.mean(runs[a][1][confident].argmax(1) == runs[b][1][confident].argmax(1))
        assert confident.sum() >= 20 and agree >= 0.97, f"{path.name}: {a} vs {b} agreement {agree:.3f}"


@pytest.mark.parametrize("name", sorted(BUILTINS))
@pytest.mark.parametrize("suffix", [".int8.tflite", ".tflite"])
def test_every_shipped_tflite_runs_in_tflite_micro(name, suffix):
    path = BUILTIN_DIR / f"{name}{suffix}"
    fig = tflm_figures(path)
    assert fig["runs"] is True, fig
    assert 0 < fig["arena_bytes"] < 16 * 1024 and fig["flash_bytes"] == path.stat().st_size
    m = StepModel.load(path, target="tflm")
    logits = m.run(read_bundle(BUILTIN_DIR / f"{name}.bundle.npz").stream.x[:200])
    assert np.isfinite(logits).all() and m.target == "tflm"


def test_choosing_a_target():
    assert choose(".tflite").name == "litert" and choose(".onnx").name == "ort"
    with pytest.raises(ArtifactError, match="unknown target"):
        choose(".tflite", "xnnpack")
    with pytest.raises(ArtifactError, match="runs .onnx artifacts"):
        choose(".tflite", "ort")
    assert set(TARGETS) >= {"litert", "litert-nodelegate", "litert-ref", "tflm", "ort", "onnx-ref"}


def test_stream_and_bench_run_on_a_named_target(tmp_path):
    r = CliRunner().invoke(app, ["stream", "kws-gru", "--target", "tflm"])
    assert r.exit_code == 0 and "on tflm" in r.stderr, r.output
    assert len(r.stdout.splitlines()) >= 5
    # a built-in name on another format's target runs the built-in's graph of that format
    r = CliRunner().invoke(app, ["stream", "default-gru", "-", "--target", "onnx-ref"], input=b"")
    assert r.exit_code == 0 and "on onnx-ref" in r.stderr, r.output
    # every target is offered in the options' help (a list written out by hand lost one)
    for command in ("stream", "bench", "export"):
        shown = " ".join(CliRunner().invoke(app, [command, "--help"], terminal_width=400).output.split())
        assert all(name in shown for name in TARGETS), (command, shown)
    r = CliRunner().invoke(app, ["bench", "--target", "tflm,litert-ref", "--seconds", "0.05", "--windows", "1",
                                 "--no-rss", "--steps", "500", "-q", "--report", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert "tflite-int8@tflm" in r.output and "host-emulated" in (tmp_path / "rep" / "bench.md").read_text()
    r = CliRunner().invoke(app, ["bench", "--target", "onnx-ref", str(BUILTIN_DIR / "default-gru.tflite")])
    assert r.exit_code == 2 and "none of --target" in r.output
    r = CliRunner().invoke(app, ["bench", "--target", "litert,xnnpack"])       # a KeyError traceback before
    assert r.exit_code == 2 and "'xnnpack' is not a target" in r.output, r.output


def test_a_tensor_type_no_edgerf_graph_uses_is_refused_by_name_on_tflite_micro():
    """A graph from elsewhere (microWakeWord's models have uint8 outputs) under an edgerf manifest
    and --allow-unverified: TFLite Micro's loader read its tensor types before its names and
    failed with a bare KeyError traceback; now refused as every target refuses it."""
    from edgerf.runtime.backends import tensor_detail
    with pytest.raises(ArtifactError, match="'out' has type uint8"):
        tensor_detail({"name": "out", "type": 3, "scale": np.zeros(0), "zero_point": np.zeros(0)})
    assert tensor_detail({"name": "x", "type": 9, "scale": np.ones(1), "zero_point": np.zeros(1)})["dtype"] == np.int8


@pytest.mark.parametrize("target", ["ort", "onnx-ref"])
def test_a_graph_whose_tensors_are_not_an_edgerf_graph_s_types_is_refused(tmp_path, target):
    """The names of kws-gru's manifest on a graph from elsewhere whose logits are uint8: ONNX
    Runtime failed inside its binding (a RuntimeError traceback) and onnx.reference ran it,
    its uint8 logits read as scores. Every target checks the bound tensors' types."""
    import shutil

    import onnx
    from onnx import TensorProto, helper

    io = [helper.make_tensor_value_info(n, t, [1, d]) for n, t, d in
          (("x", TensorProto.FLOAT, 160), ("l0_h_in", TensorProto.FLOAT, 128), ("logits", TensorProto.UINT8, 11),
           ("l0_h_out", TensorProto.FLOAT, 128), ("probs", TensorProto.FLOAT, 11))]
    w = helper.make_tensor("w", TensorProto.FLOAT, [160, 11], np.zeros(160 * 11, np.float32))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]),
             helper.make_node("Cast", ["m"], ["logits"], to=TensorProto.UINT8),
             helper.make_node("Identity", ["l0_h_in"], ["l0_h_out"]), helper.make_node("Softmax", ["m"], ["probs"])]
    graph = helper.make_graph(nodes, "foreign", io[:2], io[2:], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "f.onnx")
    shutil.copy(BUILTIN_DIR / "kws-gru.onnx.json", tmp_path / "f.onnx.json")
    with pytest.raises(ArtifactError, match="'logits' holds .*uint8.*float32"):
        StepModel.load(tmp_path / "f.onnx", allow_unverified=True, target=target)
    graph.output[0].type.tensor_type.elem_type = 0                  # undefined: named, not a KeyError
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "f.onnx")
    if target == "onnx-ref":                    # ONNX Runtime refuses to load such a graph at all
        with pytest.raises(ArtifactError, match="'logits' holds ONNX element type 0"):
            StepModel.load(tmp_path / "f.onnx", allow_unverified=True, target=target)
