"""The fake-quant twin (edgerf.export.qat) against the full-int8 TFLite artifact it mirrors,
and int8 fine-tuning leaving the float path alone."""

import hashlib

import numpy as np
import pytest
import torch

from edgerf.cells import ModelConfig, RecurrentClassifier
from edgerf.checkpoint import load as load_checkpoint
from edgerf.export import qat, tflite
from edgerf.runtime.manifest import INPUT, OUTPUT, state_io_names
from edgerf.models import builtin_checkpoint

# Measured on the built-in GRU-48 over 3,000 test steps: the twin's state equals the artifact's
# on 99.999% of elements after one step from the same state; rare 1-LSB differences come from
# LiteRT's fixed-point rescaling (ties, multiplier rounding), never more than 2.
MIN_STATE_EXACT = 0.999


def _step_for_step(model, twin, data: bytes, x: np.ndarray):
    """Run the artifact closed loop; before each step, run the twin one step from the artifact's
    own state. Returns (state differences in LSB, artifact logits, twin logits)."""
    it = tflite.interpreter(data)
    ins = {d["name"]: d for d in it.get_input_details()}
    outs = {d["name"]: d for d in it.get_output_details()}
    names = list(model.state_names)
    state = {n: np.zeros((1, s), ins[state_io_names(n)[0]]["dtype"]) for n, s in zip(names, model.state_sizes())}
    lsb, art_logits, twin_logits = [], [], []
    for t in range(len(x)):
        with torch.no_grad():
            deq = []
            for n in names:
                scale, zp = ins[state_io_names(n)[0]]["quantization"]
                deq.append(torch.from_numpy((state[n].astype(np.float32) - zp) * scale))
            logits, twin_state = twin.step(torch.from_numpy(x[t:t + 1]), tuple(deq))
        it.set_tensor(ins[INPUT]["index"], x[t:t + 1])
        for n in names:
            it.set_tensor(ins[state_io_names(n)[0]]["index"], state[n])
        it.invoke()
        art_logits.append(it.get_tensor(outs[OUTPUT]["index"])[0].copy())
        twin_logits.append(logits[0].numpy())
        for k, n in enumerate(names):
            out = outs[state_io_names(n)[1]]
            scale, zp = out["quantization"]
            new = it.get_tensor(out["index"]).copy()
            lsb.append(np.abs(np.round(twin_state[k].numpy() / scale + zp) - new.astype(np.float64)).ravel())
            state[n] = new
    return np.concatenate(lsb), np.array(art_logits), np.array(twin_logits)


def test_twin_and_int8_artifact_agree_step_for_step_on_a_trained_gru(sfmnist, test_stream):
    model = load_checkpoint(builtin_checkpoint("default-gru")).model
    twin = qat.QuantTwin(model)
    feeds = twin.calibrate(sfmnist, 4000)
    data, _ = tflite.emit(tflite.lower(model, feeds), "int8", "gru")
    lsb, art, tw = _step_for_step(model, twin, data, test_stream.x)
    assert (lsb == 0).mean() >= MIN_STATE_EXACT, f"state equal on {(lsb == 0).mean():.5%} of elements"
    assert lsb.max() <= 2
    assert (art.argmax(-1) == tw.argmax(-1)).mean() >= 0.999
    # and closed loop, each on its own state, the decisions stay together
    with torch.no_grad():
        closed, _ = twin(torch.from_numpy(test_stream.x)[None])
    agree = (closed[0].numpy().argmax(-1) == art.argmax(-1))[test_stream.mask].mean()
    assert agree >= 0.99


@pytest.mark.parametrize("family,frontend,readout", [("rnn", 0, "linear"), ("ssm", 0, "linear"),
                                                     ("ssm-sel", 0, "linear"), ("lif", 0, "linear"),
                                                     ("rnn", 1, "linear"), ("gru", 0, "gated")])
def test_twin_mirrors_every_full_int8_family(family, frontend, readout, sfmnist, test_stream):
    """Including the spiking cell: LiteRT's integer GREATER_EQUAL on the int8 membrane gives
    the spikes the twin computes, so full-int8 LIF is a plan the budget can judge (and QAT
    can train for), not a graph that computes something else; the frontend's fused RELU; the
    gated readout's broadcast MUL."""
    model = RecurrentClassifier(ModelConfig(family=family, hidden=16, frontend=frontend, readout=readout)).eval()
    twin = qat.QuantTwin(model)
    data, _ = tflite.emit(tflite.lower(model, twin.calibrate(sfmnist, 1000)), "int8", family)
    lsb, art, tw = _step_for_step(model, twin, data, test_stream.x[:500])
    assert (lsb == 0).mean() >= 0.99 and lsb.max() <= 2
    assert (art.argmax(-1) == tw.argmax(-1)).mean() >= 0.99


def test_uncalibrated_twin_is_the_float_step(test_stream):
    model = RecurrentClassifier(ModelConfig(family="gru", hidden=16)).eval()
    twin = qat.QuantTwin(model)
    x = torch.from_numpy(test_stream.x[:200])
    s_model = s_twin = model.init_state(1)
    with torch.no_grad():
        for t in range(len(x)):
            a, s_model = model.step(x[t:t + 1], s_model)
            b, s_twin = twin.step(x[t:t + 1], s_twin)
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_fine_tuning_moves_a_copy_and_only_the_int8_artifacts(tmp_path, sfmnist):
    """--qat-epochs changes the int8 artifacts only: the checkpoint file, the model in memory
    and the fp32 graphs are the same as an export without it."""
    from edgerf.configs import ExportConfig
    from edgerf.export.pipeline import export_checkpoint

    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(builtin_checkpoint("default-gru").read_bytes())
    before = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    small = dict(formats=("tflite",), int8=True, parity_steps=1500, calibration_steps=2000, check_steps=3000)
    plain = export_checkpoint(ckpt, tmp_path / "plain", ExportConfig(**small))
    tuned = export_checkpoint(ckpt, tmp_path / "qat", ExportConfig(**small, qat_epochs=1, qat_samples=64))
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == before
    assert (tmp_path / "plain/m.tflite").read_bytes() == (tmp_path / "qat/m.tflite").read_bytes()
    q = tuned.plan["tflite"]["qat"]
    assert q["epochs"] == 1 and len(q["history"]) == 1 and np.isfinite(q["history"][0]["loss"])
    assert "qat" not in plain.plan["tflite"]
    assert tuned.plan["tflite"]["plan"] in ("int8", "int8-gemm")   # an integer plan either way (one epoch on 64 ...
    assert (tmp_path / "plain/m.int8.tflite").read_bytes() != (tmp_path / "qat/m.int8.tflite").read_bytes()
    # ... samples moves the weights little), built from the tuned copy, judged against the original fp32 model
    assert tuned.plan["tflite"]["tried"][0]["acc_p_fp32"] == plain.plan["tflite"]["tried"][0]["acc_p_fp32"]


def test_qat_options_are_checked():
    from edgerf.configs import ExportConfig
    with pytest.raises(ValueError, match="--int8"):
        ExportConfig(qat_epochs=1)
    with pytest.raises(ValueError, match="--qat-lr"):
        ExportConfig(int8=True, qat_epochs=1, qat_lr=0)
