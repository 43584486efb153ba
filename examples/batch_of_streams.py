"""Many independent streams through one model: one state row per stream, one call per step.

    python examples/batch_of_streams.py [ARTIFACT] [--streams 8]

A gateway serving several sensors loads the model once with ``batch=B`` and steps a
[B, D] frame block; each row keeps its own never-reset state. Here the B streams are
B different offsets into the artifact's evaluation stream, and each row's logits are
checked against running that stream alone.
"""

import argparse
import sys
import time

import numpy as np

from edgerf.runtime.bundle import bundle_path, read as read_bundle
from edgerf.models import model_path
from edgerf.runtime import StepModel
from edgerf.runtime.errors import EdgerfError

MAX_STREAMS = 256      # each is also run alone to check it: 10^5 streams ran for minutes, then out of memory


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", nargs="?", default="default-gru", help="an exported model (bundle beside it), "
                   "or a built-in name")
    p.add_argument("--streams", type=int, default=8, help=f"1 to {MAX_STREAMS}")
    p.add_argument("--steps", type=int, default=1000)
    a = p.parse_args(argv)
    artifact = model_path(a.artifact)
    x = read_bundle(bundle_path(artifact)).stream.x
    if not 1 <= a.streams <= MAX_STREAMS or not 1 <= a.steps <= len(x):
        p.error(f"--streams is 1 to {MAX_STREAMS} and --steps 1 to {len(x):,} (the bundle's stream)")
    offsets = np.linspace(0, len(x) - a.steps, a.streams).astype(int)
    block = np.stack([x[o:o + a.steps] for o in offsets], axis=1)        # [T, B, D]

    model = StepModel.load(artifact, batch=a.streams)
    t0 = time.perf_counter()
    together = np.stack([model.step(frames) for frames in block])       # [T, B, C]
    us = (time.perf_counter() - t0) / a.steps * 1e6
    alone = [StepModel.load(artifact).run(block[:, b]) for b in range(a.streams)]
    worst = max(float(np.abs(together[:, b] - alone[b]).max()) for b in range(a.streams))
    agree = float(np.mean([np.mean(together[:, b].argmax(-1) == alone[b].argmax(-1)) for b in range(a.streams)]))
    print(f"{a.streams} streams x {a.steps} steps: {us:.1f} us per batched step ({us / a.streams:.1f} per stream); "
          f"vs each stream alone: argmax agreement {agree:.4f}, max |d logits| {worst:.2e}")
    return 0 if agree >= 0.999 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EdgerfError as e:        # a bad model, recording or state file: say what, as edgerf's commands do
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
