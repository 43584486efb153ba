"""The numpy backend (edgerf.runtime.tflite_numpy) computes what TFLite Micro computes.

int8 and 16x8 (int16 activations, int8 weights): bit for bit, per operator on randomly drawn
shapes, scales and zero points (one-op graphs written by the exporter and run by TFLite
Micro), every int16 input of the int16 LOGISTIC and TANH, and closed loop: over 10^4 steps on
every family's full-int8 export and on both built-ins, over 2,000 on every family's 16x8
graph that TFLite Micro runs. fp32: the same argmax and logits
within a few float32 ulps of LiteRT, per step from the same state. Anything it does not
implement is refused at load, by name; and it imports nothing but numpy.
"""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_blocked
from edgerf.models import BUILTIN_DIR, BUILTINS
from edgerf.runtime import StepModel
from edgerf.runtime import tflite_numpy as tn
from edgerf.runtime.bundle import read as read_bundle
from edgerf.runtime.errors import ArtifactError
from edgerf.runtime.manifest import PROBS

tflm = pytest.importorskip("tflite_micro.python.tflite_micro.runtime", reason="tflite-micro (host extra, x86_64)")
CLOSED_LOOP_STEPS = 10_000


def _run_tflm(data: bytes, feeds: list[np.ndarray]) -> list[np.ndarray]:
    it = tflm.Interpreter.from_bytes(data, arena_size=1 << 20)
    for k, v in enumerate(feeds):
        it.set_input(v, k)
    it.invoke()
    return [it.get_output(0)]


def _run_numpy(data: bytes, feeds: list[np.ndarray]) -> list[np.ndarray]:
    model = tn.read_model(data)
    bufs, steps = tn.compile_graph(model)
    for i, v in zip(model["inputs"], feeds):
        bufs[i][...] = v
    for s in steps:
        s()
    return [bufs[model["outputs"][0]].copy()]


def _one_op_graph(kind: str, n: int, m: int, ranges, seed: int, plan: str = "int8") -> bytes:
    """A graph of one operator, quantised by the exporter from random calibration data: input
    a float (QUANTIZE in the graph), input b int8 (int16 in 16x8), output float (DEQUANTIZE
    in the graph)."""
    from edgerf.export.tflite import Graph, emit

    rng = np.random.default_rng(seed)
    (alo, ahi), (blo, bhi) = ranges
    g = Graph()
    a = g.input("x", rng.uniform(alo, ahi, (512, n)))
    if kind in ("add", "sub", "mul"):
        b = g.input("b", rng.uniform(blo, bhi, (512, n)))
        y = getattr(g, kind)(a, b)
    elif kind in ("fc", "fc_relu"):
        w = rng.normal(0, rng.uniform(0.05, 2.0), (m, n)).astype(np.float32)
        bias = rng.normal(0, rng.uniform(0.01, 3.0), m).astype(np.float32)
        y = g.fc(a, (torch.from_numpy(w), torch.from_numpy(bias)), relu=kind == "fc_relu")
    elif kind == "sigmoid":
        y = g.sigmoid(a)
    elif kind == "tanh":
        y = g.tanh(a)
    else:
        raise ValueError(kind)
    y.name = "logits"
    g.outputs = [y]
    return emit(g, plan, "ssm")[0]


ranges = st.tuples(st.floats(-40, -0.01), st.floats(0.01, 40))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["add", "sub", "mul", "fc", "fc_relu", "sigmoid", "tanh"]),
       n=st.integers(1, 48), m=st.integers(1, 48), a=ranges, b=ranges, seed=st.integers(0, 2 ** 16),
       plan=st.sampled_from(["int8", "a16w8"]))
def test_every_integer_operator_is_bit_exact_with_tflite_micro(kind, n, m, a, b, seed, plan):
    data = _one_op_graph(kind, n, m, (a, b), seed, plan)
    rng = np.random.default_rng(seed + 1)
    model = tn.read_model(data)
    b_type = np.int8 if plan == "int8" else np.int16
    for _ in range(8):
        # frames beyond the calibrated range too (saturation), and any integer for b
        feeds = [rng.uniform(a[0] * 1.5, a[1] * 1.5, (1, n)).astype(np.float32)]
        if len(model["inputs"]) > 1:
            info = np.iinfo(b_type)
            feeds.append(rng.integers(info.min, info.max + 1, (1, n)).astype(b_type))
        want, got = _run_tflm(data, feeds), _run_numpy(data, feeds)
        np.testing.assert_array_equal(got[0], want[0], err_msg=f"{plan} {kind} n={n} m={m} {a} {b}")


@pytest.mark.parametrize("kind", ["sigmoid", "tanh"])
@pytest.mark.parametrize("scale", [2.0 ** -12, 2.0 ** -11, 1 / 4096 / 3, 3.7e-4, 1.3e-3, 9.1e-5])
def test_int16_logistic_and_tanh_match_tflite_micro_on_every_input(kind, scale):
    """Every int16 input, at power-of-two scales (the kernels' own path) and others."""
    from edgerf.export.tflite import Graph, emit
    g = Graph()
    a = g.input("x", np.repeat([[-scale * 32767], [scale * 32767]], 4096, axis=1))
    a.fixed = {"int16": (scale, 0)}
    y = getattr(g, kind)(a)
    y.name = "logits"
    g.outputs = [y]
    data = emit(g, "a16w8", "ssm")[0]
    model = tn.read_model(data)
    kinds = [op["op"] for op in model["ops"]]
    assert kinds == ["QUANTIZE", kind.replace("sigmoid", "logistic").upper(), "DEQUANTIZE"], kinds
    assert model["tensors"][model["ops"][1]["inputs"][0]]["scale"][0] == np.float32(scale)
    # float inputs that quantise to every int16 (QUANTIZE is exact on them)
    x = (np.arange(-32768, 32768, dtype=np.float64) * np.float32(scale)).astype(np.float32).reshape(16, 1, 4096)
    for frame in x:
        np.testing.assert_array_equal(_run_numpy(data, [frame])[0], _run_tflm(data, [frame])[0])


@given(x=st.integers(-(2 ** 31) + 1, 2 ** 31 - 1), mult=st.integers(2 ** 30, 2 ** 31 - 1), e=st.integers(0, 31))
def test_the_fused_requantisation_is_the_general_one(x, mult, e):
    """FULLY_CONNECTED's fast path folds SaturatingRoundingDoublingHighMul and RoundingDivideByPOT
    into shifts: equal to the general functions for every sign."""
    general = tn.rounding_divide_by_pot(tn.srdhm(np.int64(x), mult), e)
    v = (np.int64(x) * mult + (1 << 30)) >> 31
    fast = (v + ((np.int64(1) << e) >> 1) - ((v < 0) & (e > 0))) >> e
    assert int(general) == int(fast)


def _closed_loop(path, target, x):
    m = StepModel.load(path, target=target)
    logits = m.run(x, states=True)
    return logits


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtins_are_bit_exact_with_tflite_micro_over_10k_closed_loop_steps(name):
    x = read_bundle(BUILTIN_DIR / f"{name}.bundle.npz").stream.x
    x = np.concatenate([x] * (CLOSED_LOOP_STEPS // len(x) + 1))[:CLOSED_LOOP_STEPS]
    path = BUILTIN_DIR / f"{name}.int8.tflite"
    (la, sa), (lb, sb) = _closed_loop(path, "tflm", x), _closed_loop(path, "numpy", x)
    np.testing.assert_array_equal(la, lb)
    for a, b in zip(sa, sb, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def family_exports(tmp_path_factory, sfmnist):
    from edgerf import checkpoint
    from edgerf.cells import FAMILIES, ModelConfig, RecurrentClassifier
    from edgerf.checkpoint import Checkpoint
    from edgerf.export.pipeline import ExportConfig, export_checkpoint

    out = {}
    d = tmp_path_factory.mktemp("families")
    for family in FAMILIES:
        torch.manual_seed(0)
        model = RecurrentClassifier(ModelConfig(family=family, hidden=24)).eval()
        checkpoint.save(d / f"{family}.pt", Checkpoint(model=model, task=sfmnist.spec(), training={"command": "test"}))
        # the full-int8 artifact is what is compared, whatever plan the budget would pick
        export_checkpoint(d / f"{family}.pt", d, ExportConfig(formats=("tflite",), int8=True, parity_steps=500,
                                                                 calibration_steps=2000, check_steps=500,
                                                                 budget=_everything_passes()))
        out[family] = d
    return out


def _everything_passes():
    from edgerf.configs import Budget
    return Budget(max_acc_p_drop=1.0, max_acc_p_drop_upper=1.0, max_false_alarm_rise=1.0)


@pytest.mark.parametrize("family", ["rnn", "gru", "ssm", "ssm-sel", "lif"])
def test_every_family_full_int8_is_bit_exact_with_tflite_micro(family_exports, family, test_stream):
    path = family_exports[family] / f"{family}.int8.tflite"
    from edgerf.runtime import manifest
    checked = manifest.read(path)["targets"]["numpy"]          # the export ran it on the numpy backend too
    assert checked["runs"] and checked["bit_identical"] and checked["compared_with"] == "tflm", checked
    x = np.concatenate([test_stream.x] * (CLOSED_LOOP_STEPS // len(test_stream.x) + 1))[:CLOSED_LOOP_STEPS]
    (la, sa), (lb, sb) = _closed_loop(path, "tflm", x), _closed_loop(path, "numpy", x)
    np.testing.assert_array_equal(la, lb)
    for a, b in zip(sa, sb, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("family", ["rnn", "gru", "ssm", "ssm-sel"])
def test_every_family_16x8_graph_is_bit_exact_with_tflite_micro_closed_loop(family, sfmnist, test_stream):
    """The a16w8 plan (int16 activations and states) of every family TFLite Micro runs in 16x8
    (LIF's GREATER_EQUAL has no int16 kernel there), state fed back, every output compared."""
    from edgerf.cells import ModelConfig, RecurrentClassifier
    from edgerf.export import calibrate
    from edgerf.export.tflite import emit, lower

    torch.manual_seed(0)
    model = RecurrentClassifier(ModelConfig(family=family, hidden=24)).eval()
    data = emit(lower(model, calibrate.calibration_feeds(model, sfmnist, 2000)), "a16w8", family)[0]
    graph = tn.read_model(data)
    bufs, steps = tn.compile_graph(graph)
    micro = tflm.Interpreter.from_bytes(data, arena_size=1 << 20)
    states = [np.zeros_like(bufs[i]) for i in graph["inputs"][1:]]
    assert {s.dtype for s in states} == {np.dtype(np.int16)}
    for t, frame in enumerate(test_stream.x[:2000]):
        feeds = [frame[None].astype(np.float32), *states]
        for k, v in enumerate(feeds):
            micro.set_input(v, k)
            bufs[graph["inputs"][k]][...] = v
        micro.invoke()
        for s in steps:
            s()
        want = [micro.get_output(k) for k in range(len(graph["outputs"]))]
        for k, i in enumerate(graph["outputs"]):
            if graph["tensors"][i]["name"] == PROBS:
                # the float SOFTMAX: exp is the host libm's there (glibc's expf here, another libm on a
                # board), so the probabilities agree to float rounding, not bit for bit
                np.testing.assert_allclose(bufs[i], want[k], rtol=1e-6, atol=1e-7, err_msg=f"{family} step {t}")
                continue
            np.testing.assert_array_equal(bufs[i], want[k], err_msg=f"{family} step {t} output {k}")
        states = want[1:1 + len(states)]             # then the probabilities, last


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_fp32_is_argmax_identical_and_within_ulps_of_litert_per_step(name):
    path = BUILTIN_DIR / f"{name}.tflite"
    x = read_bundle(BUILTIN_DIR / f"{name}.bundle.npz").stream.x[:1500]
    ref, mine = StepModel.load(path, target="litert-ref"), StepModel.load(path, target="numpy")
    for frame in x:
        mine.set_state(ref.get_state())                     # the same state on both, every step
        a, b = np.array(ref.step(frame)), np.array(mine.step(frame))
        assert a.argmax() == b.argmax()
        # relative: float32 ulps; the matmuls sum in another order, so a logit near zero after
        # cancellation is off by ulps of the terms it cancels (measured up to 3.8e-7 on the GRU-48,
        # 1.9e-5 on the keyword GRU-128, whose 160 inputs and frontend sum more terms)
        np.testing.assert_allclose(b, a, rtol=4e-5, atol=1e-5)


def test_what_it_does_not_implement_is_refused_by_name(tmp_path):
    from edgerf.export.tflite import Graph, emit
    g = Graph()
    a = g.input("x", np.random.default_rng(0).uniform(-1, 1, (64, 4)))
    y = g.step_fn(a, 0.5)                     # LIF's spike: GREATER_EQUAL, which TFLite Micro lacks in int16
    y.name = "logits"
    g.outputs = [y]
    model = tn.read_model(emit(g, "a16w8", "lif")[0])
    with pytest.raises(ArtifactError, match="GREATER_EQUAL.*int16"):
        tn.compile_graph(model)
    g = Graph()
    a = g.input("x", np.random.default_rng(0).uniform(-1, 1, (64, 4)))
    y = g.tanh(a)
    y.name = "logits"
    g.outputs = [y]
    model = tn.read_model(emit(g, "int8", "ssm")[0])
    for bad in (np.nan, np.inf, 0.0, -1e-3):            # a hostile file's scale: refused, never a traceback
        broken = tn.read_model(emit(g, "int8", "ssm")[0])
        broken["tensors"][broken["ops"][1]["inputs"][0]]["scale"] = np.array([bad], np.float32)
        with pytest.raises(ArtifactError, match="finite positive scales"):
            tn.compile_graph(broken)
    model["ops"][1]["op"] = "builtin operator 99"          # as read_model names an unknown code
    with pytest.raises(ArtifactError, match="builtin operator 99"):
        tn.compile_graph(model)
    with pytest.raises(ArtifactError, match="not a readable .tflite"):
        tn.read_model(b"\x00" * 64)


def test_the_numpy_backend_needs_numpy_alone():
    code = f"""
        import sys
        import numpy as np
        from edgerf.runtime import StepModel
        m = StepModel.load({str(BUILTIN_DIR / 'kws-gru.int8.tflite')!r})
        assert m.target == "numpy", m.target
        m.step(np.zeros(m.features, np.float32))
        heavy = [k for k, v in sys.modules.items() if v is not None and k.split('.')[0] in
                 ('torch', 'onnx', 'onnxruntime', 'ai_edge_litert', 'tflite_runtime', 'tflite_micro', 'typer',
                  'flatbuffers')]
        assert not heavy, heavy
        print('ok')
    """
    r = run_blocked(code, ("torch", "onnx", "onnxruntime", "ai_edge_litert", "tflite_runtime", "tflite_micro",
                           "typer", "flatbuffers", "onnxscript", "matplotlib"))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
