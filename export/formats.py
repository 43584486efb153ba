"""The export formats, one class each, behind one interface the pipeline drives.

    suffix, runtime         file suffix and manifest runtime name
    prepare(model, feeds)   once per export (TFLite lowers and evaluates the graph here)
    build(plan, path)       write an unembedded artifact at ``path`` for a precision plan
    embed(path, manifest)   rewrite the artifact with the manifest inside
    ops(path)               op histogram
    io_quant(plan, path, names)  quantisation of x, logits and states (manifest entries)
"""

from __future__ import annotations

from pathlib import Path



from edgerf.runtime.atomic import write_bytes
from edgerf.runtime.manifest import METADATA_KEY, embedded_json, state_io_names


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
