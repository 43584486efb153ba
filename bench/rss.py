"""Peak resident memory of one backend, measured in a fresh process of its own so
backends do not inherit each other's (or torch's) memory.

    python -m edgerf.bench.rss {runtime|torch} PATH [--steps N]   -> prints peak RSS in MiB
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import numpy as np


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process descended from it (Linux /proc; a process that ends while
    this walks is skipped)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def _peak_mib() -> float:
    # VmHWM is this process's own high-water mark. ru_maxrss is not: Linux carries it
    # across exec, so a probe started by a big parent would report the parent's size.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(kind: str, path: str, steps: int = 2000, allow_unverified: bool = False,
            target: str | None = None) -> float:
    """Peak RSS (MiB) of a process that loads ``path`` and runs ``steps`` steps."""
    r = subprocess.run([sys.executable, "-m", "edgerf.bench.rss", kind, str(path), "--steps", str(steps)]
                       + (["--allow-unverified"] if allow_unverified else [])
                       + (["--target", target] if target else []),
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"peak-RSS probe failed for {path}: {r.stderr.strip()[-300:]}")
    return float(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["runtime", "torch"])
    p.add_argument("path")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--allow-unverified", action="store_true")
    p.add_argument("--target")
    a = p.parse_args(argv)
    if a.kind == "runtime":
        from edgerf.runtime import StepModel
        m = StepModel.load(a.path, allow_unverified=a.allow_unverified, target=a.target)
        x = np.zeros(m.features, np.float32)
        for _ in range(a.steps):
            m.step(x)
    else:
        import torch
        from edgerf import checkpoint
        torch.set_num_threads(1)
        model = checkpoint.load(a.path).model
        state = model.init_state(1)
        x = torch.zeros(1, model.config.input_size)
        with torch.no_grad():
            for _ in range(a.steps):
                _, state = model.step(x, state)
    print(f"{_peak_mib():.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
