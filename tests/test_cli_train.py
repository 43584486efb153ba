import json
import subprocess
import sys

from typer.testing import CliRunner

from edgerf import checkpoint
from edgerf.cli import app

runner = CliRunner()


def test_help_lists_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "train" in r.output
    r = runner.invoke(app, ["train", "--help"])
    assert r.exit_code == 0 and "--loss" in r.output


def test_tiny_training_run_end_to_end(tmp_path):
    out = tmp_path / "tiny.pt"
    args = ["train", "-o", str(out), "--model", "gru", "--hidden", "16", "--epochs", "1", "--batch", "8",
            "--bptt", "64", "--train-samples", "400", "--val-samples", "20", "--test-steps", "2000", "-q",
            "--loss", "periodic-reset"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    records = json.loads(r.stdout.strip().splitlines()[-1])
    assert [x["eval"] for x in records] == ["no-reset", "oracle-reset"]
    for rec in records:
        assert rec["steps"] >= 2000 and 0.0 <= rec["acc_p"] <= 1.0 and 0.0 <= rec["false_alarm"] <= 1.0
    ck = checkpoint.load(out)
    assert ck.model.config.hidden == 16 and ck.training["config"]["loss"] == "periodic-reset"
    assert ck.training["command"].startswith("edgerf train --task sfmnist --model gru --loss periodic-reset")
    # the stream-excerpt figure from that checkpoint
    r = runner.invoke(app, ["plot", str(out), "-o", str(tmp_path / "fig.png"), "--steps", "200"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # refuses to overwrite without --force, and the old file survives
    before = out.read_bytes()
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "--force" in r.output and out.read_bytes() == before


def test_bad_choice_is_rejected(tmp_path):
    r = runner.invoke(app, ["train", "-o", str(tmp_path / "x.pt"), "--model", "lstm"])
    assert r.exit_code == 2 and "lstm" in r.output


def test_missing_data_is_a_clear_error(tmp_path):
    r = runner.invoke(app, ["train", "-o", str(tmp_path / "x.pt"), "--data", str(tmp_path), "-q"])
    assert r.exit_code == 2 and "Fashion-MNIST" in r.output
    assert not (tmp_path / "x.pt").exists()


def test_import_edgerf_does_not_import_torch():
    code = "import sys, edgerf, edgerf.metrics, edgerf.tasks; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
