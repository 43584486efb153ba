"""State that survives a restart: save it, "reboot", resume, and carry on as if nothing happened.

    python examples/resume_after_restart.py [ARTIFACT] [--state state.npz]

Runs the first half of the artifact's evaluation stream, saves the state (atomically,
with a checksum and the model's identity), drops the model as a power cut would, loads a
new one, ``resume``s the state and runs the second half. The logits match an
uninterrupted run exactly. A damaged or foreign state file is refused by ``resume`` and
the model starts from its initial state instead (counted in ``health``), so a device
never stays down over a bad file.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgerf.runtime.bundle import bundle_path, read as read_bundle
from edgerf.models import model_path
from edgerf.runtime import StepModel
from edgerf.runtime.errors import EdgerfError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", nargs="?", default="default-gru", help="an exported model (bundle beside it), "
                   "or a built-in name")
    p.add_argument("--state", type=Path, default=None, help="where to keep the state (default: a temp folder)")
    a = p.parse_args(argv)
    artifact = model_path(a.artifact)
    frames = read_bundle(bundle_path(artifact)).stream.x[:4000]
    half = len(frames) // 2

    straight = StepModel.load(artifact).run(frames)          # the run with no restart

    with tempfile.TemporaryDirectory() as tmp:
        state = a.state or Path(tmp) / "state.npz"
        before = StepModel.load(artifact)
        first = np.stack([before.step(f) for f in frames[:half]])
        before.save_state(state)
        del before                                            # the power cut
        after = StepModel.load(artifact)
        resumed = after.resume(state)                         # True: the saved state is back
        second = np.stack([after.step(f) for f in frames[half:]])
        restarted = np.concatenate([first, second])
        (Path(tmp) / "bad.npz").write_bytes(b"not a state")
        refused = not StepModel.load(artifact).resume(Path(tmp) / "bad.npz")
    same = bool(np.array_equal(restarted, straight))
    print(f"resumed: {resumed}; {len(frames)} steps across a restart at step {half}; "
          f"logits identical to an uninterrupted run: {same}; a damaged state file refused: {refused}")
    return 0 if resumed and same and refused else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EdgerfError as e:        # a bad model, recording or state file: say what, as edgerf's commands do
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
