"""Replay recorded frames through step models and save what they produced.

    python -m edgerf.runtime.replay FRAMES.npz OUT.npz ARTIFACT [ARTIFACT ...]

Device side (numpy + an interpreter only). ``edgerf bench --device arm64`` runs it
under qemu to check that aarch64 kernels give the same trajectories as x86; on a real
board it records what the board's interpreter computes, for the same comparison.
FRAMES.npz holds ``x`` [T, D]; OUT.npz gets ``logits_<k>`` [T, C] and ``step_ns_<k>``
(per-step wall time, which under emulation measures the emulator, not a device).
"""

from __future__ import annotations

import io
import json
import platform
import sys
import time

import numpy as np


def main(argv=None) -> int:
    import argparse

    from edgerf.runtime.atomic import write_bytes
    from edgerf.runtime import StepModel

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("frames")
    p.add_argument("out")
    p.add_argument("artifacts", nargs="+")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--target", default=None, help="what runs each artifact (edgerf.runtime.targets)")
    a = p.parse_args(argv)
    from edgerf.runtime.files import read_npz
    x = read_npz(a.frames, 1 << 28, "a frames file")["x"].astype(np.float32)
    out = {}
    for k, art in enumerate(a.artifacts):
        m = StepModel.load(art, threads=a.threads, target=a.target)
        logits = np.empty((len(x), len(m.classes)), np.float32)
        ns = np.empty(len(x), np.int64)
        clock = time.perf_counter_ns
        for t in range(len(x)):
            t0 = clock()
            logits[t] = m.step(x[t])
            ns[t] = clock() - t0
        out[f"logits_{k}"], out[f"step_ns_{k}"] = logits, ns
        print(f"{art}: {len(x):,} steps", file=sys.stderr)
    meta = {"machine": platform.machine(), "python": platform.python_version(), "numpy": np.__version__,
            "target": m.target}
    try:
        import onnxruntime
        meta["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    buf = io.BytesIO()
    np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **out)
    write_bytes(a.out, buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
