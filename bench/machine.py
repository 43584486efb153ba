"""What machine a benchmark ran on: CPU model, cores, ISA flags, library versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata

# ISA features that decide which int8/fp32 kernels an interpreter can use
INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8",
                     "asimd", "asimddp", "i8mm", "sve", "sve2", "bf16")


def machine_info() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "cpu model") and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "features"):
                flags.update(value.split())
    except OSError:
        pass
    versions = {}
    for pkg in ("edgerf", "numpy", "onnxruntime", "ai-edge-litert", "tflite-runtime", "torch", "onnx"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": model, "arch": platform.machine(), "cores": os.cpu_count(),
            "isa_flags": sorted(f for f in INTERESTING_FLAGS if f in flags),
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "versions": versions}
