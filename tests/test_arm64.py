"""arm64 under qemu: a clear error before set-up; step-for-step agreement after it."""

import pytest

from edgerf.bench import arm64
from edgerf.bench.run import BenchConfig, run_bench
from edgerf.errors import EdgerfError


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
