"""The export formats, one class each, behind one interface the pipeline drives.

    suffix, runtime         file suffix and manifest runtime name
    prepare(model, feeds)   once per export (TFLite lowers and evaluates the graph here)
    build(plan, path)       write an unembedded artifact at ``path`` for a precision plan
    run(path, x, names)     closed-loop logits [T, C] and float states [T, S_k], batch 1
    embed(path, manifest)   rewrite the artifact with the manifest inside
    ops(path)               op histogram
    io_quant(plan, path, names)  quantisation of x, logits and states (manifest entries)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


from edgerf.atomic import write_bytes
from edgerf.manifest import METADATA_KEY, embedded_json, state_io_names


class OnnxFormat:
    suffix, runtime = ".onnx", "onnx"

    def prepare(self, model, feeds, stage: Path):
        from edgerf.export import onnx as onnx_export
        self.model, self.feeds = model, feeds
        self.fp32 = stage / "fp32.candidate.onnx"
        onnx_export.save(onnx_export.to_onnx(model), self.fp32)

    def build(self, plan: str, path: Path) -> None:
        import shutil
        from edgerf.export import quantize
        if plan == "fp32":
            shutil.copyfile(self.fp32, path)
        else:
            quantize.quantize(self.fp32, path, self.feeds, plan)

    def run(self, path, x, names, progress=None):
        from edgerf.export import onnx as onnx_export
        return onnx_export.run_stream(onnx_export.session(path), x, names, progress)

    def us_per_step(self, path, x, names) -> float:
        """Median time of one closed-loop ``session.run`` step (state fed back), this machine."""
        import time
        from edgerf.export import onnx as onnx_export
        from edgerf.manifest import INPUT, OUTPUT, state_io_names
        sess = onnx_export.session(path)
        ins = [state_io_names(n)[0] for n in names]
        outs = [OUTPUT] + [state_io_names(n)[1] for n in names]
        shapes = {i.name: i.shape for i in sess.get_inputs()}
        state = [np.zeros((1, shapes[n][1]), np.float32) for n in ins]
        times = []
        for t in range(len(x)):
            t0 = time.perf_counter_ns()
            state = sess.run(outs, {INPUT: x[t:t + 1], **dict(zip(ins, state))})[1:]
            times.append(time.perf_counter_ns() - t0)
        return float(np.median(times)) / 1e3

    def embed(self, path: Path, manifest: dict) -> None:
        import onnx
        from edgerf.export import onnx as onnx_export
        proto = onnx.load(str(path))
        onnx_export.set_manifest(proto, manifest)
        onnx_export.save(proto, path)

    def ops(self, path):
        from edgerf.export import onnx as onnx_export
        return onnx_export.op_histogram(path)

    def io_quant(self, plan, path, names) -> dict:
        # QDQ graphs keep float I/O: the state crosses the graph boundary as float
        from edgerf.export import quantize
        return {"states": quantize.state_quant_params(path, names), "io": {}}


class TFLiteFormat:
    suffix, runtime = ".tflite", "tflite"

    def prepare(self, model, feeds, stage: Path):
        from edgerf.export import tflite
        self.family = model.config.family
        self.graph = tflite.lower(model, feeds)
        self._io: dict[str, dict] = {}

    def build(self, plan: str, path: Path, metadata: dict | None = None) -> None:
        from edgerf.export import tflite
        data, self._io[plan] = tflite.emit(self.graph, plan, self.family, metadata)
        write_bytes(path, data)

    def run(self, path, x, names, progress=None):
        from edgerf.export import tflite
        return tflite.run_stream(tflite.interpreter(path), x, names, progress)

    def us_per_step(self, path, x, names) -> float:
        """Median time of one closed-loop step: frame in, invoke, state fed back, logits out."""
        import time
        from edgerf.export import tflite
        from edgerf.manifest import INPUT, OUTPUT, state_io_names
        from edgerf.runtime.backends import quantize_tensor
        it = tflite.interpreter(path)
        ins = {d["name"]: d for d in it.get_input_details()}
        outs = {d["name"]: d for d in it.get_output_details()}
        xq = quantize_tensor(ins[INPUT], x[:, None, :].astype(np.float32))
        links = [(ins[state_io_names(n)[0]]["index"], outs[state_io_names(n)[1]]["index"]) for n in names]
        xi, oi = ins[INPUT]["index"], outs[OUTPUT]["index"]
        times = []
        for t in range(len(x)):
            t0 = time.perf_counter_ns()
            it.set_tensor(xi, xq[t])
            it.invoke()
            for a, o in links:
                it.set_tensor(a, it.get_tensor(o))
            it.get_tensor(oi)
            times.append(time.perf_counter_ns() - t0)
        return float(np.median(times)) / 1e3

    def embed(self, path: Path, manifest: dict) -> None:
        self.build(manifest["precision"]["plan"], path, {METADATA_KEY: embedded_json(manifest).encode()})

    def ops(self, path):
        from ai_edge_litert.tools import flatbuffer_utils
        m = flatbuffer_utils.read_model(str(path))
        hist: dict[str, int] = {}
        for sg in m.subgraphs:
            for o in sg.operators:
                name = flatbuffer_utils.opcode_to_name(m, o.opcodeIndex)
                hist[name] = hist.get(name, 0) + 1
        return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))

    def io_quant(self, plan, path, names) -> dict:
        io = self._io[plan]
        states = {}
        for n in names:
            q = io[state_io_names(n)[0]]
            if q["dtype"] != "float32":
                states[n] = {"scale": q["scale"], "zero_point": q["zero_point"], "qdtype": q["dtype"],
                             "fed_back_as": q["dtype"]}
        return {"states": states, "io": {k: v for k, v in io.items() if v["dtype"] != "float32"}}


FORMATS = {"onnx": OnnxFormat, "tflite": TFLiteFormat}
