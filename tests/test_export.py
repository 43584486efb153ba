"""Export: step graph parity for every family, manifest contract, int8 plan, bad input."""

import errno
from dataclasses import replace
import json

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from conftest import run_graph
from edgerf import checkpoint
from edgerf.runtime import manifest
from edgerf.cells import FAMILIES, ModelConfig, RecurrentClassifier
from edgerf.checkpoint import Checkpoint
from edgerf.cli import app
from edgerf.runtime.errors import ArtifactError, ParityError
from edgerf.export import onnx as onnx_export
from edgerf.export.pipeline import ExportConfig, export_checkpoint

runner = CliRunner()
# Small but real: parity over a real test stream, int8 calibrated on real training rows.
QUICK = ExportConfig(parity_steps=2_000, calibration_steps=4_000, check_steps=2_000, bundle_steps=1_000)
INT8_MIN_AGREEMENT = 0.90    # int8 vs fp32 argmax on informative steps of a short real stream


def _ckpt(tmp_path, family, sfmnist, hidden=16, train=False, frontend=0, readout="linear"):
    path = tmp_path / f"{family}.pt"
    if train:
        from edgerf.train import TrainConfig, train as fit
        ck = fit(TrainConfig(model=family, hidden=hidden, epochs=1, batch=16, train_samples=1600,
                             val_samples=20, test_steps=500), progress=False, log=lambda s: None)
    else:
        model = RecurrentClassifier(ModelConfig(family=family, hidden=hidden, frontend=frontend,
                                                readout=readout)).eval()
        ck = Checkpoint(model=model, task=sfmnist.spec(), training={"command": "test"})
    checkpoint.save(path, ck)
    return path


@pytest.mark.parametrize("family", FAMILIES)
def test_export_and_parity_every_family(tmp_path, sfmnist, family):
    ck = _ckpt(tmp_path, family, sfmnist)
    rep = export_checkpoint(ck, tmp_path / "out", QUICK)
    assert [a.file for a in rep.artifacts] == [f"{family}.onnx", f"{family}.tflite"]
    for a in rep.artifacts:
        assert a.parity["passed"] and a.parity["steps"] >= 2_000
        assert a.parity["argmax_agreement"] >= 0.999
        assert a.parity["max_abs_logits"] < 1e-3
    tfl_ops = set(rep.artifacts[1].ops)
    assert tfl_ops <= {"FULLY_CONNECTED", "ADD", "SUB", "MUL", "LOGISTIC", "TANH", "GREATER_EQUAL", "CAST", "SOFTMAX"}
    assert rep.artifacts[1].ops["SOFTMAX"] == 1                                     # the probabilities output
    proto = onnx.load(str(tmp_path / "out" / f"{family}.onnx"))
    assert proto.opset_import[0].version >= 18
    assert not any(n.op_type in ("GRU", "RNN", "LSTM") for n in proto.graph.node)   # no fused ops
    assert not list((tmp_path / "out").glob("*.data"))                                # weights inside
    assert not list((tmp_path / "out").glob(".edgerf-export-*"))                      # staging cleaned


def test_a_frontend_and_a_gated_readout_export_and_say_so(tmp_path, sfmnist):
    """--frontend and --readout gated: ONNX Relu and TFLite's fused RELU, the gate's LOGISTIC
    and broadcast MUL pass the same parity gate, the int8 plan quantises them, and the
    checkpoint and manifest carry both."""
    path = _ckpt(tmp_path, "rnn", sfmnist, frontend=1, readout="gated")
    assert checkpoint.load(path).model.config.frontend == 1
    assert checkpoint.load(path).model.config.readout == "gated"
    rep = export_checkpoint(path, tmp_path / "out", replace(QUICK, int8=True))
    for a in rep.artifacts:
        assert a.parity["passed"] and a.parity["argmax_agreement"] >= 0.999, a.parity
        model = manifest.read(tmp_path / "out" / a.file)["model"]
        assert (model["frontend"], model["readout"]) == (1, "gated")
    proto = onnx.load(str(tmp_path / "out" / "rnn.onnx"))
    assert sum(n.op_type == "Relu" for n in proto.graph.node) == 1


def test_manifest_round_trip_and_binding_by_name(tmp_path, sfmnist):
    ck = _ckpt(tmp_path, "lif", sfmnist)
    export_checkpoint(ck, tmp_path, QUICK)
    art = tmp_path / "lif.onnx"
    side = manifest.read(art)
    assert side["format"] == manifest.FORMAT and side["model"]["family"] == "lif"
    assert [s["name"] for s in side["states"]] == ["l0_v", "l0_a"]
    assert side["source"]["checkpoint_sha256"] == checkpoint.load(ck).sha256
    assert side["artifact"]["sha256"] == manifest.file_sha256(art)
    # the embedded copy is the same contract (minus the file hash, computed after embedding)
    manifest.sidecar_path(art).unlink()
    embedded = manifest.read(art)
    assert embedded["states"] == side["states"] and embedded["frame"] == side["frame"]
    # graph inputs/outputs are exactly the names the manifest gives
    sess = onnx_export.session(art)
    assert {i.name for i in sess.get_inputs()} == {"x"} | {s["input"] for s in side["states"]}
    assert {o.name for o in sess.get_outputs()} == {"logits", "probs"} | {s["output"] for s in side["states"]}
    # binding by name: feed order does not matter, and swapping two states' values does
    model = checkpoint.load(ck).model
    x = np.random.randn(1, 28).astype(np.float32)
    v = np.random.randn(1, 16).astype(np.float32) * 2
    a = np.random.rand(1, 16).astype(np.float32)
    out1 = sess.run(None, {"l0_a_in": a, "x": x, "l0_v_in": v})
    ref, _ = model.step(torch.from_numpy(x), (torch.from_numpy(v), torch.from_numpy(a)))
    np.testing.assert_allclose(out1[0], ref.detach().numpy(), atol=1e-5)
    # the graph's probabilities output, last: the softmax of its logits
    np.testing.assert_allclose(out1[-1], torch.softmax(ref, -1).detach().numpy(), atol=1e-6)
    out2 = sess.run(None, {"x": x, "l0_v_in": a, "l0_a_in": v})
    assert not np.allclose(out1[0], out2[0])


def test_int8_export_on_a_trained_model(tmp_path):
    from edgerf.tasks import get_task
    ck = _ckpt(tmp_path, "gru", get_task("sfmnist"), hidden=32, train=True)
    rep = export_checkpoint(ck, tmp_path, ExportConfig(int8=True, parity_steps=2_000, calibration_steps=4_000,
                                                       check_steps=4_000, bundle_steps=1_000))
    fp32, int8, tfl32, tfl8 = rep.artifacts
    assert (int8.file, tfl8.file) == ("gru.int8.onnx", "gru.int8.tflite")
    assert [t["plan"] for t in rep.plan["onnx"]["tried"]][0] == "int8"
    m = manifest.read(tmp_path / "gru.int8.onnx")
    assert m["precision"]["plan"] == rep.plan["onnx"]["plan"] == int8.precision
    # each format climbs its own ladder from the cheapest rung, judging each rung on every
    # installed target (one of each bit-identical set, the format's default first), and keeps
    # the first within budget on all of them, or the first on the default with a fallback
    from edgerf.runtime import targets
    for fmt, suffix in (("onnx", ".onnx"), ("tflite", ".tflite")):
        plan = rep.plan[fmt]
        tried = plan["tried"]
        assert plan["judged_on"][0] == targets.choose(suffix).name
        assert sorted(plan["judged_on"]) == sorted(targets.representatives(suffix))
        assert tried[0]["plan"] == "int8"
        assert all(set(t["targets"]) == set(plan["judged_on"]) for t in tried if "targets" in t)
        kept = [t["plan"] for t in tried if t["within_budget"]]
        if "fallback" in plan:
            assert not kept and plan["plan"] == next(t["plan"] for t in tried
                                                     if t.get("targets", {}).get(plan["judged_on"][0], {}).get(
                                                         "within_budget"))
        else:
            assert kept == ([plan["plan"]] if plan["plan"] != "fp32" else []) and (
                plan["plan"] == "fp32" or tried[-1]["plan"] == plan["plan"])
        m8 = manifest.read(tmp_path / f"gru.int8{suffix}")
        for t in plan["judged_on"] if plan["plan"] != "fp32" else []:
            rec = m8["targets"][t]
            assert rec["plan"] == plan["plan"] and "summary" in rec
            assert rec["within_budget"] == (t not in plan.get("fallback", {}))
    assert tfl8.parity["argmax_agreement"] >= INT8_MIN_AGREEMENT
    assert m["states"][0]["range"][0] < 0 < m["states"][0]["range"][1]   # calibrated, tanh-bounded
    assert -1.0 - 1e-6 <= m["states"][0]["range"][0] and m["states"][0]["range"][1] <= 1.0 + 1e-6
    assert int8.parity["argmax_agreement"] >= INT8_MIN_AGREEMENT
    # --targets names what the plans are judged on
    rep2 = export_checkpoint(ck, tmp_path / "on-tflm", ExportConfig(
        int8=True, formats=("tflite",), targets=("tflm",), parity_steps=2_000, calibration_steps=4_000,
        check_steps=4_000, bundle_steps=1_000))
    assert rep2.plan["tflite"]["judged_on"] == ["tflm"]
    assert set(manifest.read(tmp_path / "on-tflm/gru.int8.tflite")["targets"]) <= {"tflm", "numpy"}
    # an int8 candidate really is quantized: QDQ nodes around int8 weights
    from edgerf.export import calibrate, quantize
    feeds = calibrate.calibration_feeds(checkpoint.load(ck).model, get_task("sfmnist"), 500)
    quantize.quantize(tmp_path / "gru.onnx", tmp_path / "q.onnx", feeds, "int8")
    ops = onnx_export.op_histogram(tmp_path / "q.onnx")
    assert ops.get("QuantizeLinear", 0) > 0 and ops.get("DequantizeLinear", 0) > 0
    q = onnx.load(str(tmp_path / "q.onnx"))
    assert any(i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 2 for i in q.graph.initializer)
    # the probabilities stay float: the Softmax reads dequantised logits, its output is no Q/DQ's input
    softmax = [n for n in q.graph.node if n.op_type == "Softmax"]
    assert len(softmax) == 1 and softmax[0].output[0] == "probs"
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == "probs" for n in q.graph.node)
    params = quantize.state_quant_params(tmp_path / "q.onnx", ["l0_h"])
    assert params["l0_h"]["qdtype"] == "int8" and 0 < params["l0_h"]["scale"] < 0.02


def test_a_plan_and_the_fp32_graph_are_timed_in_turn(monkeypatch):
    """Which of two graphs is faster (the name a built-in resolves to rests on it) must not
    flip when the machine's load changes while they are timed: the plan and fp32 take turns
    in blocks, so a load that falls half way, which timed one after the other made the slower
    graph look faster, falls on both alike."""
    import time
    from edgerf.export import pipeline
    clock, calls = [0], [0]

    class Graph:                          # a step that costs base * the machine's load, in ns
        def __init__(self, base):
            self.base = base

        def step(self, frame):
            calls[0] += 1
            load = 3 if calls[0] <= pipeline.SPEED_STEPS else 1
            clock[0] += self.base * load

    monkeypatch.setattr(time, "perf_counter_ns", lambda: clock[0])
    plan, fp32 = pipeline._us_per_step((Graph(10_000), Graph(12_000)), np.zeros((pipeline.SPEED_STEPS + 50, 4)))
    assert calls[0] == 2 * pipeline.SPEED_STEPS
    assert plan < fp32 and plan / fp32 == pytest.approx(10 / 12)


def test_parity_gate_names_the_diverging_tensor(tmp_path, sfmnist, monkeypatch):
    ck = _ckpt(tmp_path, "gru", sfmnist)
    real = onnx_export.to_onnx

    def wrong_graph(model):  # a graph whose readout bias is off: logits diverge at step 0
        proto = real(model)
        for init in proto.graph.initializer:
            if init.name.endswith("readout.bias"):
                arr = onnx.numpy_helper.to_array(init) + 0.5
                init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
        return proto

    monkeypatch.setattr(onnx_export, "to_onnx", wrong_graph)
    with pytest.raises(ParityError, match="logits first left tolerance at step 0"):
        export_checkpoint(ck, tmp_path / "out", QUICK)
    assert not any((tmp_path / "out").iterdir())


def test_bad_checkpoints_via_cli(tmp_path, sfmnist):
    out = tmp_path / "out"
    r = runner.invoke(app, ["export", str(tmp_path / "missing.pt"), "-o", str(out)])
    assert r.exit_code == 2 and "does not exist" in r.output
    bad = tmp_path / "trunc.pt"
    bad.write_bytes(_ckpt(tmp_path, "rnn", sfmnist).read_bytes()[:500])
    r = runner.invoke(app, ["export", str(bad), "-o", str(out)])
    assert r.exit_code == 2 and "truncated" in r.output
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": {}}, foreign)
    r = runner.invoke(app, ["export", str(foreign), "-o", str(out)])
    assert r.exit_code == 2 and "not an edgerf checkpoint" in r.output
    assert not out.exists() or not any(out.iterdir())


def test_existing_artifacts_need_force_and_failed_writes_keep_them(tmp_path, sfmnist, monkeypatch):
    ck = _ckpt(tmp_path, "rnn", sfmnist)
    export_checkpoint(ck, tmp_path, QUICK)
    before = (tmp_path / "rnn.onnx").read_bytes()
    with pytest.raises(ArtifactError, match="--force"):
        export_checkpoint(ck, tmp_path, QUICK)

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", full_disk)
    with pytest.raises(ArtifactError, match="No space left"):
        export_checkpoint(ck, tmp_path, ExportConfig(**{**QUICK.__dict__, "force": True}))
    assert (tmp_path / "rnn.onnx").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rnn.bundle.npz", "rnn.export.json", "rnn.onnx",
                                                          "rnn.onnx.json", "rnn.pt", "rnn.tflite", "rnn.tflite.json"]


def test_unwritable_output_dir(tmp_path, sfmnist):
    ck = _ckpt(tmp_path, "rnn", sfmnist)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ArtifactError, match="cannot write"):
        export_checkpoint(ck, blocker / "sub", QUICK)


def test_cli_export_and_inspect(tmp_path, sfmnist):
    ck = _ckpt(tmp_path, "ssm", sfmnist)
    r = runner.invoke(app, ["export", str(ck), "-o", str(tmp_path / "o"), "--parity-steps", "2000",
                            "-q", "--report", str(tmp_path / "rep.json")])
    assert r.exit_code == 0, r.output
    assert "ssm.onnx" in r.stdout and "fp32" in r.stdout
    assert json.loads((tmp_path / "rep.json").read_text())["artifacts"][0]["parity"]["passed"]
    r = runner.invoke(app, ["inspect", str(tmp_path / "o" / "ssm.onnx")])
    assert r.exit_code == 0, r.output
    for text in ("l0_h_in -> l0_h_out", "Gemm", "precision plan: fp32", "image-row", "Ankle boot"):
        assert text in r.stdout
    r = runner.invoke(app, ["inspect", str(tmp_path / "nothing.onnx")])
    assert r.exit_code == 2 and "does not exist" in r.output


@pytest.mark.parametrize("plan", ["fp32", "int8", "a16w8"])
def test_every_onnx_plan_runs_in_a_second_runtime(tmp_path, sfmnist, test_stream, plan):
    """Standard-domain ops only (opset 21 has int16 Q/DQ): onnx.reference, a runtime that
    shares no kernels with ONNX Runtime, runs the exported step graph closed loop."""
    from onnx.reference import ReferenceEvaluator
    from edgerf.export import calibrate, quantize

    ck = checkpoint.load(_ckpt(tmp_path, "gru", sfmnist))
    onnx_export.save(onnx_export.to_onnx(ck.model), tmp_path / "m.onnx")
    path = tmp_path / "m.onnx"
    if plan != "fp32":
        quantize.quantize(path, tmp_path / "q.onnx", calibrate.calibration_feeds(ck.model, sfmnist, 2000), plan)
        path = tmp_path / "q.onnx"
    proto = onnx.load(str(path))
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}
    ref = ReferenceEvaluator(proto)
    x = test_stream.x[:150]
    h, out = np.zeros((1, 16), np.float32), []
    for t in range(len(x)):
        logits, h = ref.run(["logits", "l0_h_out"], {"x": x[t:t + 1], "l0_h_in": h})      # by name
        out.append(logits[0])
    ort_logits, _ = run_graph(path, ck.model, x)
    # fp32: the same arithmetic; quantised: rounding ties may differ by one step, no more
    tol = 1e-4 if plan == "fp32" else 0.05 * (np.abs(ort_logits).max() + 1)
    assert np.abs(np.stack(out) - ort_logits).max() <= tol


def _plain_sessions(path):
    """The graph as every ONNX Runtime user opens it, ``InferenceSession(path)`` with default
    options, at each optimisation level (each enables other rewrites of a quantised graph)."""
    import onnxruntime as ort

    yield ort.InferenceSession(str(path))
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        yield ort.InferenceSession(str(path), so)


def _closed_loop(session, x: np.ndarray) -> np.ndarray:
    names = [i.name for i in session.get_inputs()]
    state = {i.name: np.zeros([1] + list(i.shape[1:]), np.float32) for i in session.get_inputs()[1:]}
    out = []
    for t in range(len(x)):
        res = session.run(None, {names[0]: x[t:t + 1], **state})
        out.append(res[0][0])
        state = dict(zip(state, res[1:]))
    return np.stack(out)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_onnx_plan_opens_in_a_plain_inference_session(tmp_path, sfmnist, test_stream, family):
    """No option of ours is needed to load what we ship: every precision plan of every family
    opens with default options at every optimisation level and computes the same steps."""
    from edgerf.export import calibrate, quantize

    ck = checkpoint.load(_ckpt(tmp_path, family, sfmnist))
    onnx_export.save(onnx_export.to_onnx(ck.model), tmp_path / "m.onnx")
    feeds = calibrate.calibration_feeds(ck.model, sfmnist, 1000)
    x = test_stream.x[:60]
    for plan in ("fp32",) + tuple(quantize.PLANS):
        path = tmp_path / "m.onnx" if plan == "fp32" else tmp_path / f"{plan}.onnx"
        if plan != "fp32":
            quantize.quantize(tmp_path / "m.onnx", path, feeds, plan)
        runs = [_closed_loop(s, x) for s in _plain_sessions(path)]
        # levels may fuse differently: a quantised graph may round one step apart, no more
        tol = 1e-4 if plan == "fp32" else 0.05 * (np.abs(runs[0]).max() + 1)
        for r in runs[1:]:
            assert np.abs(r - runs[0]).max() <= tol, (family, plan)


def test_every_shipped_onnx_opens_in_a_plain_inference_session():
    from edgerf.models import BUILTIN_DIR

    shipped = sorted(BUILTIN_DIR.glob("*.onnx"))
    assert len(shipped) >= 4
    for path in shipped:
        for s in _plain_sessions(path):
            assert [o.name for o in s.get_outputs()][0] == "logits", path


def test_exported_graphs_carry_no_path_of_this_machine(tmp_path, sfmnist):
    """torch's exporter annotates nodes with stack traces (source paths, line numbers); an
    artifact ships none of them, so its bytes depend on the model alone."""
    from pathlib import Path

    import edgerf
    ck = _ckpt(tmp_path, "gru", sfmnist)
    export_checkpoint(ck, tmp_path, ExportConfig(int8=True, parity_steps=500, calibration_steps=1000,
                                                 check_steps=500, bundle_steps=300))
    here = str(Path(edgerf.__file__).resolve().parents[1]).encode()
    for f in ("gru.onnx", "gru.int8.onnx", "gru.tflite", "gru.int8.tflite"):
        data = (tmp_path / f).read_bytes()
        assert here not in data and b"stack_trace" not in data and str(tmp_path).encode() not in data, f


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_a_graph_whose_probabilities_miss_its_logits_softmax_writes_nothing(tmp_path, sfmnist, monkeypatch, fmt):
    """Each artifact's probs output is checked against the softmax of its own logits; here the
    allowed error is made negative, so every graph misses it: exit 3, nothing written."""
    from edgerf.export import pipeline
    ck = _ckpt(tmp_path, "gru", sfmnist)
    out = tmp_path / "out"
    monkeypatch.setattr(pipeline, "PROBS_ATOL", -1.0)
    with pytest.raises(ParityError, match="probabilities output is not the softmax"):
        export_checkpoint(ck, out, replace(QUICK, formats=(fmt,)))
    assert not out.exists() or not any(out.iterdir())
    monkeypatch.setattr(pipeline, "PROBS_ATOL", 1e-5)
    rep = export_checkpoint(ck, out, replace(QUICK, formats=(fmt,)))
    assert manifest.read(out / rep.artifacts[0].file)["probs_check"]["max_abs_diff"] <= 1e-5


def test_ctrl_c_during_an_export_writes_nothing_and_says_so(tmp_path):
    """Ctrl-C mid-export exited 130 without a word; the folder was left as it was (the staging
    folder goes), which it now says, as every command says it was interrupted."""
    import signal
    import subprocess
    import sys

    from edgerf.models import BUILTIN_DIR

    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    p = subprocess.Popen([sys.executable, "-m", "edgerf", "export", str(BUILTIN_DIR / "kws-gru.pt"), "-o", str(out),
                          "--int8"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:                         # well inside the work: the int8 calibration has started
        if "calibrat" in line:
            break
    p.send_signal(signal.SIGINT)
    err = p.stderr.read()
    p.wait(timeout=60)
    assert p.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert f"nothing was written to {out}" in err
    assert [f.name for f in out.iterdir()] == ["mine.txt"]
