"""Seeds, tolerances and shared fixtures for the whole suite (one place to change them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import wave
from pathlib import Path

import numpy as np
import pytest

SEED = 1234
# The committed real-data subsets (tests/data/make_subsets.py says what they hold).
SUBSET = Path(__file__).resolve().parent / "data"


def _choose_data() -> dict[str, Path]:
    """Which data the data-dependent tests read: what edgerf itself locates ($EDGERF_DATA if
    set, else its default folders), else the committed subsets (then set as $EDGERF_DATA, so
    subprocesses and the CLI read the same). Returns dataset -> its folder."""
    from edgerf.data.source import locate
    from edgerf.runtime.errors import DataError

    names = {"Fashion-MNIST": "fashion-mnist", "Speech Commands": "speech-commands"}
    try:
        return {k: locate(d).root for k, d in names.items()}
    except DataError:
        if os.environ.get("EDGERF_DATA"):
            raise                                   # a folder was named and lacks a dataset: say so
        os.environ["EDGERF_DATA"] = str(SUBSET)
        return {k: locate(d).root for k, d in names.items()}


def _fashion_test_images(root: Path) -> int:
    from edgerf.data.fashion import load
    return len(load("test", root)[1])


def _speech_clips(root: Path) -> int:
    from edgerf.data.speech import files
    return len(files(root))


# What the data holds decides the expectations, never how it was chosen: the same folder
# reached through $EDGERF_DATA or a default folder gives the same run.
ROOTS = _choose_data()
FASHION_TEST_IMAGES = _fashion_test_images(ROOTS["Fashion-MNIST"])
SPEECH_CLIPS = _speech_clips(ROOTS["Speech Commands"])
# The full datasets: Fashion-MNIST's 10,000 test images, and Speech Commands' test set
# (4,890 clips) or more; the committed subsets hold 1,000 images and a few hundred clips.
FULL_DATA = FASHION_TEST_IMAGES == 10_000 and SPEECH_CLIPS >= 4_000
_KIND = "full data" if FULL_DATA else \
    "committed subset" if all(r.is_relative_to(SUBSET) for r in ROOTS.values()) else "partial data"
DATA = {"Fashion-MNIST": f"{_KIND} at {ROOTS['Fashion-MNIST']} ({FASHION_TEST_IMAGES:,} test images)",
        "Speech Commands": f"{_KIND} at {ROOTS['Speech Commands']} ({SPEECH_CLIPS:,} clips)"}
# Tests whose claim needs the full datasets (e.g. retraining the built-in model with its
# recorded command): on the subsets they skip, and -ra prints this reason.
needs_full_data = pytest.mark.skipif(not FULL_DATA, reason="needs the full datasets; this run uses "
                                     + "; ".join(f"{k}: {v}" for k, v in DATA.items()))


def pytest_report_header(config):
    return [f"data: {k} from {v}" for k, v in DATA.items()]


def pytest_terminal_summary(terminalreporter):
    for k, v in DATA.items():
        terminalreporter.write_line(f"data: {k} from {v}")
# fp32 step loop vs sequence forward: the same ops in the same order except that the
# input projection is one batched matmul instead of T small ones, so only matmul
# blocking differs: errors stay at a few ulp (fp32 eps 1.2e-7) relative to the values,
# accumulated over the 50 steps of the test. SSM states grow to O(10-100), hence rtol.
STEP_VS_SEQ_ATOL = 1e-5
STEP_VS_SEQ_RTOL = 1e-5
# Our GRU vs nn.GRUCell: different but equivalent formulas for h' (n + z(h - n)).
GRU_VS_TORCH_ATOL = 1e-5


@pytest.fixture(autouse=True)
def _seed():
    import random
    random.seed(SEED)
    np.random.seed(SEED)
    try:
        import torch
        torch.manual_seed(SEED)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def sfmnist():
    from edgerf.tasks import get_task
    return get_task("sfmnist")


@pytest.fixture(scope="session")
def test_stream(sfmnist):
    """A short real unreset test stream (about 2,000 steps)."""
    return sfmnist.stream("test", 40, seed=SEED)


def write_wav(path, x, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


def user_dataset(tmp_path):
    """A user's own data, made of real clips: other words as folder names, three speakers,
    background as two long recordings instead of a _silence_ folder."""
    from edgerf.data import speech
    from edgerf.data.source import locate

    src = locate("speech-commands").root
    root, bg = tmp_path / "mywords", tmp_path / "background"
    for word, new in (("on", "lights_on"), ("off", "lights_off"), ("go", "music")):
        (root / new).mkdir(parents=True)
        for k, f in enumerate(sorted((src / word).glob("*.wav"))[:10]):
            shutil.copy(f, root / new / f"spk{k % 3}_nohash_{k}.wav")
    bg.mkdir()
    noise = np.concatenate([speech.read_wav(f) for f in sorted((src / "_silence_").glob("*.wav"))])
    for k, part in enumerate(np.array_split(noise, 2)):
        write_wav(bg / f"kitchen{k}.wav", part)
    return root, bg


def run_graph(graph, model, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """A bare step graph (an .onnx/.tflite path, or TFLite bytes) run closed loop over frames
    ``x`` through the runtime, as the export's gate runs its candidates: StepModel with a
    manifest made for it. Returns logits [T, C] and the state trajectories."""
    import tempfile

    from edgerf.runtime import manifest
    from edgerf.runtime.model import StepModel
    from edgerf.tasks import get_task

    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(graph, (bytes, bytearray)):
            Path(tmp, "g.tflite").write_bytes(graph)
            graph = Path(tmp, "g.tflite")
        graph = Path(graph)
        c = model.config
        m = manifest.make(artifact=graph.name, runtime=graph.suffix[1:], precision="graph", plan={"plan": "graph"},
                          model={"family": c.family, "hidden": c.hidden, "layers": c.layers},
                          classes=[f"c{k}" for k in range(c.classes)], input_size=c.input_size,
                          state_names=list(model.state_names), state_sizes=list(model.state_sizes()),
                          frame=get_task("sfmnist").spec(), threshold=0.9, source={}, versions={})
        return StepModel.for_export(graph, m).run(x, states=True)


def run_blocked(code: str, blocked: tuple[str, ...]) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where importing any of ``blocked`` fails, as on
    a device that has only the runtime extra installed."""
    prologue = textwrap.dedent(f"""
        import builtins
        _real_import = builtins.__import__
        def _guarded(name, *a, **k):
            if name.split('.')[0] in {blocked!r}:
                raise ImportError('blocked ' + name)
            return _real_import(name, *a, **k)
        builtins.__import__ = _guarded
        import sys as _sys
        for _name in {blocked!r}:          # importlib.import_module does not pass __import__
            _sys.modules[_name] = None
    """)
    return subprocess.run([sys.executable, "-c", prologue + textwrap.dedent(code)], capture_output=True, text=True)
