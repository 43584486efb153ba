"""arm64 under qemu: a clear error before set-up; step-for-step agreement after it."""

import pytest

from edgerf.bench import arm64
from edgerf.bench.run import BenchConfig, run_bench
from edgerf.runtime.errors import EdgerfError


def test_without_setup_the_error_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGERF_CACHE", str(tmp_path))
    assert not arm64.ready()
    with pytest.raises(EdgerfError, match="--device arm64 --setup"):
        run_bench([tmp_path / "x.onnx"], cfg=BenchConfig(device="arm64"), progress=False)


@pytest.mark.skipif(not arm64.ready(), reason="arm64 emulation not set up (make arm64)")
def test_emulated_trajectories_match_x86(tmp_path, sfmnist):
    from edgerf import checkpoint
    from edgerf.cells import ModelConfig, RecurrentClassifier
    from edgerf.checkpoint import Checkpoint
    from edgerf.export.pipeline import ExportConfig, export_checkpoint

    model = RecurrentClassifier(ModelConfig(family="gru", hidden=16)).eval()
    checkpoint.save(tmp_path / "m.pt", Checkpoint(model=model, task=sfmnist.spec(), training={}))
    export_checkpoint(tmp_path / "m.pt", tmp_path, ExportConfig(int8=True, parity_steps=1000, calibration_steps=2000,
                                                                 check_steps=1000, bundle_steps=500))
    rep = run_bench([], tmp_path / "m.pt", BenchConfig(device="arm64", seconds=0.05, windows=5, steps=400,
                                                       rss=False), progress=False).report
    assert rep["emulated"] is True and rep["machine"]["arch"] == "aarch64"
    assert [t["target"] for t in rep["targets"]] == ["onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"]
    for t in rep["targets"]:
        assert "EMULATED" in t["latency_is"]
        assert t["vs_x86"]["argmax_agreement_all"] >= 0.99
        assert t["vs_x86"]["max_abs_logits_diff"] < 1e-2
    from edgerf.bench import render
    assert "EMULATED" in render.table(rep)


def test_the_cost_worker_marks_its_loop_and_reports_per_step(tmp_path):
    """Natively: the worker runs a built-in model between its two markers and reports a time."""
    import json
    import subprocess
    import sys

    import numpy as np

    from edgerf.models import BUILTIN_DIR
    with np.load(BUILTIN_DIR / "default-gru.bundle.npz") as z:
        np.savez(tmp_path / "f.npz", x=z["x"][:120])
    for art in ("default-gru.int8.tflite", "default-gru.onnx"):
        for mode in ("stepmodel", "bare"):
            r = subprocess.run([sys.executable, "-m", "edgerf.bench.studies.arm_cost", "--worker",
                                str(BUILTIN_DIR / art), str(tmp_path / "f.npz"), mode],
                               capture_output=True, text=True, check=True)
            out = json.loads(r.stdout.strip().splitlines()[-1])
            assert out["steps"] == 70 and out["median_ns"] > 0


@pytest.mark.skipif(not (arm64.ready() and __import__("shutil").which("qemu-aarch64")),
                    reason="arm64 emulation with Debian's qemu-user not set up (make arm64)")
def test_emulated_instruction_counts_are_repeatable_and_int8_executes_fewer(tmp_path):
    import numpy as np

    from edgerf.bench.studies import arm_cost
    from edgerf.models import BUILTIN_DIR
    with np.load(BUILTIN_DIR / "default-gru.bundle.npz") as z:
        np.savez(tmp_path / "f.npz", x=z["x"][:350])
    f = tmp_path / "f.npz"
    a = arm_cost._emulated(BUILTIN_DIR / "default-gru.int8.tflite", f, "bare")["insns_per_step"]
    b = arm_cost._emulated(BUILTIN_DIR / "default-gru.int8.tflite", f, "bare")["insns_per_step"]
    fp32 = arm_cost._emulated(BUILTIN_DIR / "default-gru.tflite", f, "bare")["insns_per_step"]
    assert abs(a - b) <= 1e-3 * a            # the same instructions every run
    assert 1_000 < a < fp32
