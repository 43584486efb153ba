"""TFLite lowering: float parity for every family, full-int8 state feedback, shared ranges."""

import numpy as np
import onnx
import pytest

from conftest import run_graph
from edgerf.cells import FAMILIES
from edgerf.export import calibrate, quantize, tflite
from edgerf.export import onnx as onnx_export
from edgerf.export.parity import compare, torch_trajectory


@pytest.fixture(scope="module")
def trained_gru(sfmnist):
    from edgerf.train import TrainConfig, train
    ck = train(TrainConfig(model="gru", hidden=32, epochs=1, batch=16, train_samples=1600, val_samples=20,
                           test_steps=500), progress=False, log=lambda s: None)
    return ck.model, calibrate.calibration_feeds(ck.model, sfmnist, 4000)


def test_every_family_has_a_lowering():
    assert set(tflite.LOWERINGS) == set(FAMILIES)


@pytest.mark.parametrize("family,readout", [(f, "linear") for f in FAMILIES] + [("gru", "gated")])
def test_float_lowering_matches_torch(family, readout, sfmnist, test_stream):
    from edgerf.cells import ModelConfig, RecurrentClassifier
    model = RecurrentClassifier(ModelConfig(family=family, hidden=16, layers=2, frontend=1, readout=readout)).eval()
    feeds = calibrate.calibration_feeds(model, sfmnist, 500)
    g = tflite.lower(model, feeds)
    assert sum(o.relu for o in g.ops) == 1           # the frontend: a fused RELU, no op of its own
    data, io = tflite.emit(g, "fp32", family)
    logits, states = run_graph(data, model, test_stream.x)
    ref, ref_states = torch_trajectory(model, test_stream.x)
    p = compare(ref, ref_states, logits, states, list(model.state_names), 1e-3, 0.999, test_stream.mask)
    assert p.passed, p.summary()
    assert all(q["dtype"] == "float32" for q in io.values())


def test_full_int8_gru_keeps_the_state_int8(trained_gru, test_stream):
    model, feeds = trained_gru
    data, io = tflite.emit(tflite.lower(model, feeds), "int8", "gru")
    it = tflite.interpreter(data)
    ins = {d["name"]: d for d in it.get_input_details()}
    outs = {d["name"]: d for d in it.get_output_details()}
    # frame and logits cross the boundary as float: LiteRT quantises them inside the graph
    assert ins["x"]["dtype"] == np.float32 and outs["logits"]["dtype"] == np.float32
    assert it._get_ops_details()[0]["op_name"] == "QUANTIZE"     # (XNNPACK may fuse what follows)
    assert {t["dtype"] for t in it.get_tensor_details() if t["name"] in ("x_q", "logits_q")} == {np.int8}
    # tanh's fixed output scale: the state leaves and re-enters the graph with identical params
    assert ins["l0_h_in"]["dtype"] == outs["l0_h_out"]["dtype"] == np.int8
    assert ins["l0_h_in"]["quantization"] == outs["l0_h_out"]["quantization"] == (1 / 128, 0)
    sig = [t for t in it.get_tensor_details() if t["name"].startswith(("r_", "z_"))]
    assert sig and all(t["quantization"] == (1 / 256, -128) for t in sig)
    # closed loop over a real stream: the raw int8 state is fed back every step
    logits, states = run_graph(data, model, test_stream.x)
    ref, ref_states = torch_trajectory(model, test_stream.x)
    p = compare(ref, ref_states, logits, states, ["l0_h"], np.inf, 0.0, test_stream.mask)
    assert p.argmax_agreement >= 0.95, p.summary()
    assert p.max_abs_state["l0_h"] < 0.5      # bounded error, no runaway through the loop
    # int8 weights: a quarter of the float bytes; graph structure is the same size
    assert len(data) < 0.6 * len(tflite.emit(tflite.lower(model, feeds), "fp32", "gru")[0])


def test_onnx_and_tflite_int8_share_calibrated_ranges(trained_gru, tmp_path, test_stream):
    model, feeds = trained_gru
    onnx_export.save(onnx_export.to_onnx(model), tmp_path / "m.onnx")
    quantize.quantize(tmp_path / "m.onnx", tmp_path / "q.onnx", feeds, "int8")
    proto = onnx.load(str(tmp_path / "q.onnx"))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    qx = next(n for n in proto.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
    onnx_scale, onnx_zp = float(inits[qx.input[1]]), int(inits[qx.input[2]])
    data, _ = tflite.emit(tflite.lower(model, feeds), "int8", "gru")
    x_q = next(t for t in tflite.interpreter(data).get_tensor_details() if t["name"] == "x_q")
    assert x_q["quantization"][0] == pytest.approx(onnx_scale, rel=1e-6)     # quantised inside the graph
    assert abs(x_q["quantization"][1] - onnx_zp) <= 1
    # and the two int8 trajectories can be compared step by step
    a, _ = run_graph(tmp_path / "q.onnx", model, test_stream.x)
    b, _ = run_graph(data, model, test_stream.x)
    agree = (a.argmax(-1) == b.argmax(-1))[test_stream.mask].mean()
    assert agree >= 0.95


@pytest.mark.parametrize("family", FAMILIES)
def test_integer_plans_run_for_every_family(family, sfmnist, test_stream):
    """Each family's full-int8 plan loads in LiteRT and runs closed loop (float frame and logits
    at the boundary, int8 state fed back), every other plan too."""
    from edgerf.cells import ModelConfig, RecurrentClassifier
    model = RecurrentClassifier(ModelConfig(family=family, hidden=16)).eval()
    feeds = calibrate.calibration_feeds(model, sfmnist, 1000)
    g = tflite.lower(model, feeds)
    ref, _ = torch_trajectory(model, test_stream.x)
    for plan in quantize.PLANS:
        data, io = tflite.emit(g, plan, family)
        logits, states = run_graph(data, model, test_stream.x)
        assert np.isfinite(logits).all() and logits.shape == ref.shape
        assert np.abs(logits - ref).max() < 0.5 * (np.abs(ref).max() + 1), plan   # quantised, not broken
    data, io = tflite.emit(g, "int8", family)
    assert io["x"]["dtype"] == "float32" and io["logits"]["dtype"] == "float32"
    assert all(io[f"{n}_in"]["dtype"] == "int8" for n in model.state_names)


def test_a_saturated_logistic_traces_without_warnings():
    """A gate driven far negative during calibration (exp(-x) overflows to inf) traces to 0
    quietly: an export prints no RuntimeWarning from the graph's own float trace."""
    import warnings
    g = tflite.Graph()
    x = g.input("x", np.array([[-1000.0, -20.0, 0.0, 20.0, 1000.0]], np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = g.sigmoid(x)
    np.testing.assert_allclose(y.value, [[0.0, 2.06e-9, 0.5, 1.0, 1.0]], rtol=1e-2, atol=0)
