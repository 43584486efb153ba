"""torch -> ONNX single-step graph.

The graph is ``model.step`` traced by the dynamo exporter: the same function the
sequence forward loops over in training, so what is exported is what was tested.
Opset 21 (17 left an invalid Split behind for GRU-like graphs, measured; 21 is the
first with int16 QuantizeLinear/DequantizeLinear in the standard domain),
weights inside the file, batch dimension dynamic so one graph serves a single
stream, a batch of streams, and batched calibration.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import torch

from edgerf.runtime.atomic import atomic_path
from edgerf.cells import RecurrentClassifier
from edgerf.runtime.manifest import INPUT, METADATA_KEY, OUTPUT, PROBS, embedded_json, state_io_names
from edgerf.runtime.progress import quiet

OPSET = 21   # 21: int16 QuantizeLinear/DequantizeLinear in the standard domain (portable a16w8)


class StepGraph(torch.nn.Module):
    """``(x, *states) -> (logits, *states', probs)`` around ``RecurrentClassifier.step``;
    ``probs`` is softmax(logits), computed by the graph so a device reads probabilities
    without a numpy softmax per step (kept float by the int8 quantisation)."""

    def __init__(self, model: RecurrentClassifier):
        super().__init__()
        self.model = model

    def forward(self, x, *state):
        logits, new = self.model.step(x, tuple(state))
        return (logits, *new, torch.softmax(logits, -1))


def io_names(model: RecurrentClassifier) -> tuple[list[str], list[str]]:
    ins = [INPUT] + [state_io_names(n)[0] for n in model.state_names]
    outs = [OUTPUT] + [state_io_names(n)[1] for n in model.state_names] + [PROBS]
    return ins, outs


def to_onnx(model: RecurrentClassifier) -> onnx.ModelProto:
    """The step graph of ``model`` as an in-memory ONNX model."""
    model = model.eval()
    ins, outs = io_names(model)
    args = (torch.zeros(1, model.config.input_size), *model.init_state(1))
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    dynamic = {"x": {0: batch}, "state": tuple({0: batch} for _ in model.state_names)}
    with quiet("torch.onnx"), torch.no_grad():
        program = torch.onnx.export(StepGraph(model), args, dynamo=True, external_data=False,
                                    opset_version=OPSET, input_names=ins, output_names=outs,
                                    dynamic_shapes=dynamic, verbose=False)
    proto = program.model_proto
    # the exporter annotates every node and value with its Python stack trace and FX
    # provenance (source paths and line numbers of this machine): a shipped artifact carries
    # none of that, and its bytes then depend only on the model
    for item in (*proto.graph.node, *proto.graph.value_info, *proto.graph.input, *proto.graph.output,
                 *proto.graph.initializer):
        del item.metadata_props[:]
    onnx.checker.check_model(proto)
    return proto


def set_manifest(proto: onnx.ModelProto, manifest: dict) -> None:
    """Embed the manifest as ONNX metadata (replacing an older copy)."""
    keep = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    proto.metadata_props.add(key=METADATA_KEY, value=embedded_json(manifest))


def save(proto: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Write atomically, weights inside the file."""
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)


def op_histogram(path_or_proto) -> dict[str, int]:
    proto = onnx.load(str(path_or_proto)) if isinstance(path_or_proto, (str, Path)) else path_or_proto
    hist: dict[str, int] = {}
    for n in proto.graph.node:
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
        hist[key] = hist.get(key, 0) + 1
    return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))


def session(path_or_bytes, threads: int = 1):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and no spinning."""
    from edgerf.runtime.backends import ort_session
    return ort_session(path_or_bytes, threads)
