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
    code = "import sys, edgerf, edgerf.runtime.metrics, edgerf.tasks; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_recorded_command_reproduces_the_config(tmp_path, monkeypatch):
    """`edgerf train`'s options are built from TrainConfig: a config with every field away
    from its default, written as its command line, parses back to the same config."""
    import dataclasses
    import shlex

    from edgerf import train as train_module
    from edgerf.configs import TrainConfig

    cfg = TrainConfig(task="gsc", model="lif", loss="ce", hidden=7, layers=2, epochs=3, batch=5, bptt=9, lr=0.01,
                      clip=0.5, seed=4, train_samples=11, val_samples=12, test_steps=13, threads=2,
                      data="my/words", device="cpu", words="a,b", background="my/noise", background_hours=0.5,
                      gap_kind="silence,gaussian", gap_min=0.1, gap_max=0.2, frame_stack=3, frontend=2,
                      grace=2, end_weight=3.0, readout="gated", gain_min_db=-20.0, gain_max_db=10.0,
                      mix_snr_min_db=0.0, mix_snr_max_db=20.0, bed_snr_min_db=5.0, bed_snr_max_db=30.0,
                      speed_min=0.9, speed_max=1.1, warp_min=0.9,
                      warp_max=1.1, freq_mask=8, clean_mask=True, lane_piece=32, workers=1, save_every=5.0)
    assert all(getattr(cfg, f.name) != f.default for f in dataclasses.fields(cfg))
    seen = []

    def capture(c, progress=True, **_):
        seen.append(c)
        raise SystemExit(0)

    monkeypatch.setattr(train_module, "train", capture)
    args = shlex.split(cfg.command())[1:] + ["--device", cfg.device, "-o", str(tmp_path / "x.pt")]
    runner.invoke(app, args)
    assert seen == [cfg]


def test_a_checkpoint_is_written_only_under_a_pt_name(tmp_path):
    """`train -o m.onnx` wrote a torch checkpoint named as an exported graph, which stream and
    inspect then read as one ("carries no verifiable manifest"): refused before any work."""
    for name in ("m.onnx", "m", "m.tflite"):
        r = CliRunner().invoke(app, ["train", "-o", str(tmp_path / name), "--epochs", "1", "--hidden", "8"])
        assert r.exit_code == 2 and "a checkpoint is a .pt file" in r.output and "epoch" not in r.output, r.output
    assert not list(tmp_path.iterdir())
