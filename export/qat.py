"""Quantization-aware fine-tuning for the full-int8 plan.

The twin is the step graph the TFLite exporter writes (``tflite.step_ops``: the same
lowering, op for op), built over torch values by a builder that fake-quantises every
tensor where and as the full-int8 graph quantises it (``tflite.int8_quantisation``):

    frame          QUANTIZE at its calibrated (scale, zero point)
    FULLY_CONNECTED  weights per output row, symmetric int8 (``tflite.fc_weight_scale``);
                   bias int32 at input scale x weight scale; output at its calibrated params
    ADD, SUB, MUL  output at its calibrated params; a constant operand at the params the
                   emitter gives it
    LOGISTIC, TANH output at LiteRT's fixed params (1/256, -128) and (1/128, 0)
    state          int8 at the params shared by the state input and output, fed back as is

The arithmetic is TFLite Micro's (what a microcontroller computes; the numpy backend,
``edgerf.runtime.tflite_numpy``, implements it bit for bit): forward, every op yields the
value TFLite Micro's kernel gives for the same int8 inputs (FULLY_CONNECTED's int32
accumulation and fixed-point requantisation, ADD/SUB/MUL and LOGISTIC/TANH through their
integer tables, the frame's QUANTIZE with ties away from zero); backward, the gradient of
the fake-quantised float op passes straight through, zero where a value is clamped. So
fine-tuning fixes what TFLite Micro computes; LiteRT's kernels (XNNPACK, builtin,
reference) round some elements their own way (edgerf.runtime.targets). With no
calibration (``QuantTwin.quant is None``) the twin is the float step itself, so fine-tuning
never changes what the unquantised path computes for given weights.

``fine_tune`` trains a copy of the model through the twin with the model's own training
loss on unreset streams (a reset-free model stays reset-free), re-calibrating the scales
at the start of every epoch; only the int8 artifact is built from the tuned copy.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgerf.configs import TrainConfig
from edgerf.export import tflite
from edgerf.export.calibrate import calibration_feeds
from edgerf.runtime import tflite_numpy as tflm
from edgerf.tasks import CALIBRATION_SEED

QAT_SEED = 2024        # lane order and gaps of the fine-tuning epochs


def _fq(x: torch.Tensor, q: tuple) -> torch.Tensor:
    scale, zp = q
    return torch.fake_quantize_per_tensor_affine(x, float(scale), int(zp), -128, 127)


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _f32(scale) -> float:
    """A scale as the .tflite file stores it (float32): what TFLite Micro computes with."""
    return float(np.float32(scale))


def _codes(x: torch.Tensor, q: tuple) -> torch.Tensor:
    """The int8 codes of a value on the grid of params ``q`` (an op's output fed on)."""
    scale, zp = q
    return torch.clamp(torch.round(x.detach().double() / _f32(scale)) + zp, -128, 127).long()


def _values(codes: torch.Tensor, q: tuple) -> torch.Tensor:
    """int8 codes back to values, as DEQUANTIZE does (double product, then float32)."""
    scale, zp = q
    return ((codes - zp).double() * _f32(scale)).float()


def _exactly(ste: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """TFLite Micro's value forward, the fake-quantised path's gradient backward."""
    return ste + (exact - ste).detach()


def _tensor(q: tuple) -> dict:
    """An int8 tensor's quantisation in the form ``edgerf.runtime.tflite_numpy`` reads."""
    return {"type": tflm.INT8, "scale": np.array([_f32(q[0])], np.float32), "zero_point": np.array([int(q[1])])}


def quantize_frame(x: torch.Tensor, q: tuple) -> torch.Tensor:
    """The frame's QUANTIZE as TFLite Micro's AffineQuantize: float32 division, ties away from
    zero; the gradient of the fake quantisation."""
    v = x.detach().float() / torch.tensor(np.float32(q[0]))
    codes = torch.clamp(torch.trunc(v + torch.copysign(torch.tensor(0.5), v)) + q[1], -128, 127).long()
    return _exactly(_fq(x, q), _values(codes, q))


def _fc_constants(w: np.ndarray, b: np.ndarray, spec: "tflite.OpQuant", relu: bool) -> dict:
    """An int8 FULLY_CONNECTED as the exporter writes it (weight and bias codes) and as TFLite
    Micro prepares it (per-channel multipliers from the stored float32 scales)."""
    s_in, z_in = spec.inputs[0]
    s_out, z_out = spec.output
    w_scale = tflite.fc_weight_scale(w, b, s_in)
    wq = np.clip(np.round(w / w_scale[:, None]), -127, 127)
    bq = np.round(b / (s_in * w_scale)).astype(np.int32).astype(np.float64)
    mult, shift = zip(*(tflm.quantize_multiplier(_f32(s_in) * float(np.float32(ws)) / _f32(s_out)) for ws in w_scale))
    return {"w": torch.from_numpy(wq.T.astype(np.float64)), "b": torch.from_numpy(bq), "z_in": int(z_in),
            "mult": np.array(mult, np.int64), "shift": np.array(shift, np.int64),
            "lo": max(-128, int(z_out)) if relu else -128}


def _fc_exact(x: torch.Tensor, c: dict, spec: "tflite.OpQuant") -> torch.Tensor:
    """TFLite Micro's int8 FULLY_CONNECTED: exact integer accumulation (float64 holds it), then
    MultiplyByQuantizedMultiplier per channel, the output zero point and the clamp."""
    acc = ((_codes(x, spec.inputs[0]).double() - c["z_in"]) @ c["w"] + c["b"]).long().numpy()
    v = tflm.multiply_by_quantized_multiplier(acc, c["mult"], c["shift"]) + spec.output[1]
    return _values(torch.from_numpy(np.clip(v, c["lo"], 127)), spec.output)


class _Const:
    """A constant operand (decay, leak, threshold): quantised by its op's params."""

    def __init__(self, value):
        self.value = torch.as_tensor(value, dtype=torch.float32)


class TwinBuilder:
    """The builder interface of ``tflite.Graph`` over torch values: each op as the full-int8
    graph computes it (``ops``), or in float when ``ops`` is None."""

    def __init__(self, ops: list[tflite.OpQuant] | None, weights: dict | None = None, training: bool = False,
                 slope: float = 5.0, tables: dict | None = None):
        self._ops, self._i = ops, 0
        self.training, self.slope = training, slope     # a spike's surrogate gradient (edgerf.cells.lif)
        # quantised (weight, bias, TFLite Micro's constants) by op index: the weights do not
        # change within one forward pass, so a sequence quantises them once, not once per step
        self._weights = {} if weights is None else weights
        # TFLite Micro's integer tables by op index: they depend on the calibration alone
        self._tables = {} if tables is None else tables

    def _table(self, spec: tflite.OpQuant, make) -> torch.Tensor:
        if self._i not in self._tables:
            self._tables[self._i] = torch.from_numpy(make().astype(np.int64))
        return self._tables[self._i]

    def _spec(self, kind: str) -> tflite.OpQuant | None:
        if self._ops is None:
            return None
        if self._i >= len(self._ops) or self._ops[self._i].kind != kind:
            raise RuntimeError(f"the twin left the int8 graph at op {self._i} ({kind}): calibrate it again")
        self._i += 1
        return self._ops[self._i - 1]

    def const(self, value, name=None) -> _Const:
        return _Const(value)

    def fc(self, x, linear, name=None, relu: bool = False):
        w, b = tflite.weight_bias(linear)
        spec = self._spec("FULLY_CONNECTED")
        act = F.relu if relu else (lambda y: y)              # the FULLY_CONNECTED's fused RELU
        if spec is None:
            return act(F.linear(x, w, b))
        if self._i not in self._weights:
            s_in = spec.inputs[0][0]
            w_np, b_np = w.detach().cpu().numpy(), b.detach().cpu().numpy()
            scale = torch.from_numpy(tflite.fc_weight_scale(w_np, b_np, s_in)).float()
            wq = torch.fake_quantize_per_channel_affine(w, scale, torch.zeros(len(scale), dtype=torch.int32), 0,
                                                        -127, 127)
            self._weights[self._i] = (wq, _round_ste(b / (s_in * scale)) * (s_in * scale),
                                      _fc_constants(w_np, b_np, spec, relu))
        wq, bq, exact = self._weights[self._i]
        return _exactly(_fq(act(F.linear(x, wq, bq)), spec.output), _fc_exact(x, exact, spec))

    def _binary(self, kind: str, a, b, fn):
        spec = self._spec(kind)
        vals = [(t.value if spec is None else _fq(t.value, spec.inputs[k])) if isinstance(t, _Const) else t
                for k, t in enumerate((a, b))]
        out = fn(*vals)
        if spec is None:
            return out
        table = self._table(spec, lambda: tflm.int8_binary_table(kind, *map(_tensor, spec.inputs), _tensor(spec.output),
                                                                 "NONE"))
        codes = [torch.as_tensor(np.clip(np.round(t.value.detach().cpu().numpy() / q[0]) + q[1], -128, 127)).long()  # as emitted
                 if isinstance(t, _Const) else _codes(t, q) for t, q in zip((a, b), spec.inputs)]
        return _exactly(_fq(out, spec.output), _values(table[codes[0] + 128, codes[1] + 128], spec.output))

    def add(self, a, b, name=None):
        return self._binary("ADD", a, b, torch.add)

    def sub(self, a, b, name=None):
        return self._binary("SUB", a, b, torch.sub)

    def mul(self, a, b, name=None):
        return self._binary("MUL", a, b, torch.mul)

    def _activation(self, kind: str, a, fn):
        spec = self._spec(kind)
        if spec is None:
            return fn(a)
        make = tflm.int8_logistic_table if kind == "LOGISTIC" else tflm.int8_tanh_table
        table = self._table(spec, lambda: make(_f32(spec.inputs[0][0]), int(spec.inputs[0][1])))
        return _exactly(_fq(fn(a), spec.output), _values(table[_codes(a, spec.inputs[0]) + 128], spec.output))

    def sigmoid(self, a, name=None):
        return self._activation("LOGISTIC", a, torch.sigmoid)

    def tanh(self, a, name=None):
        return self._activation("TANH", a, torch.tanh)

    def step_fn(self, v, threshold, name=None):
        """GREATER_EQUAL of the int8 membrane and the threshold at the membrane's params, then
        CAST to 0/1 (exact at scale 1); the backward pass is the cell's surrogate gradient."""
        from edgerf.cells.lif import spike
        cmp = self._spec("GREATER_EQUAL")
        self._spec("CAST")
        theta = torch.tensor(float(threshold))
        if cmp is not None:
            theta = _fq(theta, cmp.inputs[1])
        return spike(v, theta, self.slope, self.training)


class QuantTwin(nn.Module):
    """The full-int8 TFLite step graph of ``model`` in torch, trainable: ``step`` and ``forward``
    have the signatures of ``RecurrentClassifier``'s."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.quant: tuple[list, list[tflite.OpQuant]] | None = None
        self.tables: dict = {}                                  # TFLite Micro's, for this calibration
        self.slope = getattr(model.cells[0], "slope", 5.0)     # a spiking cell's surrogate gradient

    def calibrate(self, task, steps: int, seed: int = CALIBRATION_SEED, progress=None) -> dict:
        """Scales from the model's closed-loop run over an unreset training stream, as the export
        calibrates; returns the calibration feeds."""
        feeds = calibration_feeds(self.model, task, steps, seed, progress)
        self.quant = tflite.int8_quantisation(tflite.lower(self.model, feeds), self.model.config.family)
        self.tables = {}
        return feeds

    def init_state(self, batch: int = 1):
        return self.model.init_state(batch)

    def step(self, x_t: torch.Tensor, state, weights: dict | None = None):
        if self.quant is None:
            g = TwinBuilder(None, training=self.training, slope=self.slope)
            logits, new = tflite.step_ops(g, self.model, x_t, list(state))
            return logits, tuple(new)
        inputs, ops = self.quant
        x_t = quantize_frame(x_t, inputs[0])
        state = [_fq(s, q) for s, q in zip(state, inputs[1:])]      # on the int8 grid (a no-op once fed back)
        g = TwinBuilder(ops, weights, training=self.training, slope=self.slope, tables=self.tables)
        logits, new = tflite.step_ops(g, self.model, x_t, state)
        return logits, tuple(new)

    def forward(self, x: torch.Tensor, state=None, resets: torch.Tensor | None = None):
        """x [B, T, D] -> logits [B, T, C] and the last state, one step at a time."""
        if state is None:
            state = self.init_state(x.shape[0])
        out, weights = [], {}
        for t in range(x.shape[1]):
            if resets is not None:
                keep = (~resets[:, t]).to(x.dtype)[:, None]
                state = tuple(s * keep for s in state)
            logits, state = self.step(x[:, t], state, weights)
            out.append(logits)
        return torch.stack(out, 1), state


def fine_tune(model, task, train_config: dict, epochs: int, lr: float, samples: int | None,
              calibration_steps: int, val_samples: int = 500, progress: bool = False, log=lambda s: None):
    """A copy of ``model`` fine-tuned for ``epochs`` through its int8 twin; returns (tuned model,
    its calibration feeds, history). ``train_config`` is the checkpoint's training config (loss,
    batch, bptt, clip)."""
    from edgerf.runtime.progress import bar
    from edgerf.loss import TRAINING_MODES
    from edgerf.train import _batch, _epoch, _epoch_lanes, _slices, cosine_schedule, evaluate

    recipe = {k: v for k, v in train_config.items()            # the folders were bound to ``task`` already
              if k in TrainConfig.__dataclass_fields__ and k not in ("data", "background")}
    cfg = replace(TrainConfig(**recipe), epochs=epochs, lr=lr)
    mode = TRAINING_MODES[cfg.loss]
    tuned = copy.deepcopy(model).float()
    twin = QuantTwin(tuned)
    arrays = task.split_arrays("train")
    if samples is not None:
        arrays = tuple(a[:samples] for a in arrays)
    batch = min(cfg.batch, len(arrays[0]))
    cfg = replace(cfg, batch=batch)
    rng = np.random.default_rng(QAT_SEED)
    val = task.stream("val", val_samples, seed=QAT_SEED + 1)
    opt = torch.optim.Adam(tuned.parameters(), lr=lr)
    per_epoch = max(1, int(len(arrays[0]) // batch * task.steps_per_sample) // cfg.bptt)
    sched = cosine_schedule(opt, per_epoch * epochs)
    state, history = twin.init_state(batch), []
    feeds = twin.calibrate(task, calibration_steps)
    for epoch in range(epochs):
        twin.train()            # evaluate() left it in eval mode: spikes would lose their surrogate gradient
        lanes = _epoch_lanes(task, arrays, batch, list(range(batch)), rng)
        L = min(len(s) for s in lanes)
        # the recipe's own loss: its --grace steps and their --end-weight too
        b, n_chunks = _batch(lanes, mode.oracle_reset, L, "cpu", cfg.grace), L // cfg.bptt
        with bar(f"int8 fine-tuning {epoch + 1}/{epochs}", n_chunks * cfg.bptt * batch, progress,
                 fields="loss {task.fields[loss]:.3f} acc_f {task.fields[acc]:.3f} "
                        "{task.fields[rate]:,.0f} steps/s", loss=float("nan"), acc=0.0, rate=0.0) as pb:
            state, loss_sum, _, _ = _epoch(twin, tuned, opt, sched, _slices(b, cfg.bptt), n_chunks, state, mode, cfg,
                                           pb)
        feeds = twin.calibrate(task, calibration_steps)     # for val, the next epoch and the export
        vm = evaluate(twin, val, task.threshold)
        history.append({"epoch": epoch + 1, "loss": loss_sum / max(n_chunks, 1), "val_acc_p_int8": vm["acc_p"],
                        "val_false_alarm_int8": vm["false_alarm"]})
        log(f"int8 fine-tuning {epoch + 1}/{epochs}: loss {history[-1]['loss']:.4f}, int8 twin on val: "
            f"acc_p {vm['acc_p']:.4f}, false alarms {vm['false_alarm']:.4%}")
    tuned.eval()
    return tuned, feeds, history
