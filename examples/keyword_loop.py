"""A device loop: audio arrives in chunks, keywords come out. numpy + one interpreter.

    python examples/keyword_loop.py [ARTIFACT] [RECORDING.wav] [--chunk-ms 20] [--target numpy]

ARTIFACT defaults to the built-in keyword model (int8 TFLite), RECORDING to its 20 s demo
recording, read in chunks of --chunk-ms as a microphone driver would deliver them. The
model's own front end (log-mel, normalisation from its manifest) turns each chunk into
frames; the state carries over between chunks and is never reset; ``Spotter`` does the
whole path per chunk (front end, steps, probabilities, event detection) and returns the
keyword events, printed as JSON lines. ``--target`` picks what
runs the model (default: the first installed of LiteRT, TFLite Micro, numpy alone).
"""

import argparse
import json
import sys
from pathlib import Path

from edgerf.runtime.audio import read_wav
from edgerf.models import DEMO_RECORDING, model_path
from edgerf.runtime import Spotter, StepModel
from edgerf.runtime.errors import EdgerfError


def chunks(pcm, size: int):
    """A microphone stand-in: fixed-size blocks of samples, the last one short."""
    for k in range(0, len(pcm), size):
        yield pcm[k:k + size]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", nargs="?", default="kws-gru", help="an exported keyword model, or a built-in name")
    p.add_argument("recording", nargs="?", type=Path, default=DEMO_RECORDING, help="16 kHz mono WAV")
    p.add_argument("--chunk-ms", type=float, default=20.0, help="audio per chunk, as a driver delivers it")
    p.add_argument("--target", default=None, help="litert, tflm, numpy... (edgerf.runtime.targets)")
    a = p.parse_args(argv)
    if not 0 < a.chunk_ms <= 60_000:
        p.error(f"--chunk-ms {a.chunk_ms}: audio per chunk is more than 0 and at most 60,000 ms")
    model = StepModel.load(model_path(a.artifact, a.target), target=a.target)
    if model.manifest["frame"].get("frame_kind") != "log-mel":
        raise EdgerfError(f"{a.artifact} takes {model.manifest['frame'].get('frame_kind')} frames, not audio: "
                          "give a keyword model (or leave ARTIFACT out for the built-in one).")
    spotter = Spotter(model)             # the manifest's operating point; _unknown_ fires nothing
    period = model.manifest["frame"]["period_s"]
    rate = model.manifest["frame"]["sample_rate"]
    for chunk in chunks(read_wav(a.recording), int(rate * a.chunk_ms / 1000)):
        for event in spotter.feed(chunk):
            print(json.dumps({"word": event.name, "start_s": round(event.start * period, 2),
                              "confidence": round(event.confidence, 3)}), flush=True)
    for event in spotter.flush():                       # the microphone stops: the last word waits no longer
        print(json.dumps({"word": event.name, "start_s": round(event.start * period, 2),
                          "confidence": round(event.confidence, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EdgerfError as e:        # a bad model, recording or state file: say what, as edgerf's commands do
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
