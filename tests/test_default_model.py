"""The built-in model: reproducible from its recorded command, and benchmarked with no arguments."""

import shlex

import pytest
from typer.testing import CliRunner

from conftest import needs_full_data
from edgerf import checkpoint
from edgerf.cli import app
from edgerf.models import BUILTIN_DIR, DEFAULT_CHECKPOINT

ACC_P_BAND = 0.03   # a retrain on another machine may round differently; this much is noise


def test_default_checkpoint_records_how_it_was_made():
    ck = checkpoint.load(DEFAULT_CHECKPOINT)
    assert ck.training["command"].startswith("edgerf train --task sfmnist --model gru --loss reset-free")
    assert ck.training["config"]["seed"] == 0
    (rec,) = ck.results["test"]
    assert rec["eval"] == "no-reset" and rec["steps"] >= 10_000 and rec["acc_p"] > 0.75


@needs_full_data
@pytest.mark.slow
def test_retraining_with_the_recorded_command_lands_in_the_recorded_band(tmp_path):
    ck = checkpoint.load(DEFAULT_CHECKPOINT)
    args = shlex.split(ck.training["command"])[1:] + ["-o", str(tmp_path / "again.pt"), "-q"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    again = checkpoint.load(tmp_path / "again.pt").results["test"][0]
    recorded = ck.results["test"][0]
    assert abs(again["acc_p"] - recorded["acc_p"]) <= ACC_P_BAND, (again["acc_p"], recorded["acc_p"])
    assert again["false_alarm"] < 0.01


@pytest.mark.slow
def test_bench_with_no_arguments_uses_the_shipped_built_in_model(tmp_path, monkeypatch):
    """No dataset, no export step, nothing written beside the package."""
    monkeypatch.setenv("EDGERF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGERF_DATA", str(tmp_path / "no-data-here"))
    before = sorted(p.name for p in BUILTIN_DIR.iterdir())
    r = CliRunner().invoke(app, ["bench", "--seconds", "0.05", "--steps", "2000", "--no-rss", "-q"])
    assert r.exit_code == 0, r.output
    for target in ("torch", "onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"):
        assert target in r.stdout
    assert "evaluation bundle default-gru.bundle.npz" in r.stdout
    assert sorted(p.name for p in BUILTIN_DIR.iterdir()) == before
    assert not (tmp_path / "cache").exists()
