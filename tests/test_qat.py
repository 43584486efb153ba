"""The fake-quant twin (edgerf.export.qat) against the full-int8 TFLite artifact it mirrors,
and int8 fine-tuning leaving the float path alone."""

import hashlib

import numpy as np
import pytest
import torch

from edgerf.cells import ModelConfig, RecurrentClassifier
from edgerf.checkpoint import load as load_checkpoint
from edgerf.export import qat, tflite
from edgerf.runtime import tflite_numpy
from edgerf.runtime.manifest import INPUT, OUTPUT, state_io_names
from edgerf.models import builtin_checkpoint

# LiteRT's kernels are not the twin's arithmetic (TFLite Micro's): measured on the built-in
# GRU-48 over 1,890 test steps, each from the same state, its XNNPACK next state equals the
# twin's on 99.35% of elements and at most 10 LSB apart (its gates' fixed-point rounding).
MIN_STATE_EXACT_LITERT, MAX_LSB_LITERT = 0.99, 16


class _Graph:
    """An int8 .tflite graph stepped from a given int8 state: by TFLite Micro's arithmetic
    (edgerf's numpy executor, bit-exact with it) or by LiteRT (its default kernels)."""

    def __init__(self, data: bytes, state_names: list[str], by: str):
        self.names, self.by = state_names, by
        if by == "litert":
            self.it = tflite.interpreter(data)
            details = self.it.get_input_details() + self.it.get_output_details()
            self.q = {d["name"]: d["quantization"] for d in details}
            self.index = {d["name"]: d["index"] for d in details}
            return
        model = tflite_numpy.read_model(data)
        tensors = model["tensors"]
        self.bufs, self.steps = tflite_numpy.compile_graph(model)
        self.index = {tensors[i]["name"]: i for i in model["inputs"] + model["outputs"]}
        self.q = {n: (float(tensors[i]["scale"][0]), int(tensors[i]["zero_point"][0])) if len(tensors[i]["scale"])
                  else (0.0, 0) for n, i in self.index.items()}

    def step(self, x: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
        """Logits (float) and the next state (int8 codes) from frame ``x`` [1, D] and ``state``."""
        if self.by == "litert":
            self.it.set_tensor(self.index[INPUT], x)
            for n in self.names:
                self.it.set_tensor(self.index[state_io_names(n)[0]], state[n])
            self.it.invoke()
            get = self.it.get_tensor
        else:
            self.bufs[self.index[INPUT]][...] = x
            for n in self.names:
                self.bufs[self.index[state_io_names(n)[0]]][...] = state[n]
            for run in self.steps:
                run()
            get = self.bufs.__getitem__
        y = get(self.index[OUTPUT]).copy()
        if y.dtype != np.float32:
            scale, zp = self.q[OUTPUT]
            y = ((y.astype(np.float64) - zp) * scale).astype(np.float32)
        return y[0], {n: get(self.index[state_io_names(n)[1]]).copy() for n in self.names}


def _step_for_step(model, twin, data: bytes, x: np.ndarray, by: str = "tflm"):
    """Run the artifact closed loop; before each step, run the twin one step from the artifact's
    own state. Returns (state differences in LSB, artifact logits, twin logits)."""
    g = _Graph(data, list(model.state_names), by)
    names = list(model.state_names)
    state = {n: np.zeros((1, s), np.int8) for n, s in zip(names, model.state_sizes())}
    lsb, art_logits, twin_logits = [], [], []
    for t in range(len(x)):
        with torch.no_grad():
            deq = []
            for n in names:
                scale, zp = g.q[state_io_names(n)[0]]
                deq.append(torch.from_numpy(((state[n].astype(np.float64) - zp) * scale).astype(np.float32)))
            logits, twin_state = twin.step(torch.from_numpy(x[t:t + 1]), tuple(deq))
        y, new = g.step(x[t:t + 1], state)
        art_logits.append(y)
        twin_logits.append(logits[0].numpy())
        for k, n in enumerate(names):
            scale, zp = g.q[state_io_names(n)[1]]
            lsb.append(np.abs(np.round(twin_state[k].numpy() / scale + zp) - new[n].astype(np.float64)).ravel())
        state = new
    return np.concatenate(lsb), np.array(art_logits), np.array(twin_logits)


def test_twin_computes_what_tflite_micro_computes_on_a_trained_gru(sfmnist, test_stream):
    model = load_checkpoint(builtin_checkpoint("default-gru")).model
    twin = qat.QuantTwin(model)
    feeds = twin.calibrate(sfmnist, 4000)
    data, _ = tflite.emit(tflite.lower(model, feeds), "int8", "gru")
    lsb, art, tw = _step_for_step(model, twin, data, test_stream.x)
    assert lsb.max() == 0, f"state equal on {(lsb == 0).mean():.5%} of elements"
    np.testing.assert_array_equal(art, tw)
    # and closed loop, each on its own state, the same trajectory
    with torch.no_grad():
        closed, _ = twin(torch.from_numpy(test_stream.x)[None])
    np.testing.assert_array_equal(closed[0].numpy(), art)
    # LiteRT (XNNPACK) rounds some elements its own way: how far it is from the twin
    lsb, art, tw = _step_for_step(model, twin, data, test_stream.x, by="litert")
    assert (lsb == 0).mean() >= MIN_STATE_EXACT_LITERT and lsb.max() <= MAX_LSB_LITERT
    assert (art.argmax(-1) == tw.argmax(-1)).mean() >= 0.99


@pytest.mark.parametrize("family,frontend,readout", [("rnn", 0, "linear"), ("ssm", 0, "linear"),
                                                     ("ssm-sel", 0, "linear"), ("lif", 0, "linear"),
                                                     ("rnn", 1, "linear"), ("gru", 0, "gated")])
def test_twin_mirrors_every_full_int8_family(family, frontend, readout, sfmnist, test_stream):
    """Bit for bit with TFLite Micro's arithmetic, including the spiking cell (its integer
    GREATER_EQUAL on the int8 membrane gives the spikes the twin computes, so full-int8 LIF is
    a plan the budget can judge and QAT can train for), the frontend's fused RELU and the
    gated readout's broadcast MUL."""
    model = RecurrentClassifier(ModelConfig(family=family, hidden=16, frontend=frontend, readout=readout)).eval()
    twin = qat.QuantTwin(model)
    data, _ = tflite.emit(tflite.lower(model, twin.calibrate(sfmnist, 1000)), "int8", family)
    lsb, art, tw = _step_for_step(model, twin, data, test_stream.x[:500])
    assert lsb.max() == 0
    np.testing.assert_array_equal(art, tw)


@pytest.mark.parametrize("family", ["rnn", "gru", "ssm", "ssm-sel", "lif"])
def test_every_family_trains_through_its_twin(family, sfmnist, test_stream):
    """--qat-epochs on any family: a gradient step through the calibrated twin in training
    mode (a learned constant such as the SSM's decay enters the graph as a tensor that
    requires grad) runs, and its gradients reach the weights finite and not all zero."""
    torch.manual_seed(0)
    model = RecurrentClassifier(ModelConfig(family=family, hidden=16, readout="gated")).float()
    twin = qat.QuantTwin(model)
    twin.calibrate(sfmnist, 500)
    twin.train()
    x = torch.from_numpy(test_stream.x[:40][None])
    y = torch.from_numpy(np.clip(test_stream.labels[:40], 0, None)[None])
    logits, _ = twin(x)
    loss = torch.nn.functional.cross_entropy(logits[0], y[0])
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


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


def test_fine_tuning_trains_with_the_recipes_own_loss(sfmnist, monkeypatch):
    """The int8 fine-tuning goes on with the checkpoint's loss: its --grace steps are marked
    for --end-weight (the shipped default-gru weights them twice), not dropped."""
    from edgerf import train as train_module
    from edgerf.checkpoint import load as load_ckpt
    from edgerf.tasks import get_task

    ck = load_ckpt(builtin_checkpoint("default-gru"))
    recipe = ck.training["config"]
    assert recipe["grace"] == 3 and recipe["end_weight"] == 2.0
    seen = []

    def first_chunk(net, model, opt, sched, chunk, n_chunks, state, mode, cfg, pb, *a, **k):
        seen.append((cfg.grace, cfg.end_weight, chunk(0)))
        return state, 0.0, 0, 1
    monkeypatch.setattr(train_module, "_epoch", first_chunk)
    qat.fine_tune(ck.model, get_task(ck.task), recipe, epochs=1, lr=1e-4, samples=64,
                  calibration_steps=500, val_samples=20)
    grace, weight, b = seen[0]
    assert (grace, weight) == (3, 2.0) and "grace" in b
    marked = b["grace"].numpy()
    assert marked.any() and not (marked & b["mask"].numpy()).any()      # gap steps only
