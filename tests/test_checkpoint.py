import pytest
import torch

from edgerf import checkpoint
from edgerf.cells import ModelConfig, RecurrentClassifier
from edgerf.checkpoint import Checkpoint
from edgerf.runtime.errors import CheckpointError


@pytest.fixture
def saved(tmp_path, sfmnist):
    model = RecurrentClassifier(ModelConfig(family="ssm", hidden=16, classes=10)).eval()
    path = tmp_path / "m.pt"
    checkpoint.save(path, Checkpoint(model=model, task=sfmnist.spec(), training={"command": "edgerf train"}))
    return path, model


def test_round_trip(saved):
    path, model = saved
    ck = checkpoint.load(path)
    assert ck.model.config == model.config
    x = torch.randn(2, 9, 28)
    torch.testing.assert_close(ck.model(x)[0], model(x)[0], atol=0, rtol=0)
    assert ck.task["name"] == "sfmnist" and len(ck.sha256) == 64
    assert ck.versions["torch"] == torch.__version__.split("+")[0]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.pt")


def test_truncated_file(saved):
    path, _ = saved
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not an edgerf checkpoint"):
        checkpoint.load(path)


def test_foreign_torch_file(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, path)
    with pytest.raises(CheckpointError, match="not an edgerf checkpoint"):
        checkpoint.load(path)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "config": ModelConfig()}, path)  # a pickled class instance
    with pytest.raises(CheckpointError):
        checkpoint.load(path)


def test_tampered_weights(saved):
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["weights"]["readout.bias"] += 1.0
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="modified after training"):
        checkpoint.load(path)


def test_failed_save_keeps_the_old_file(saved, monkeypatch):
    path, model = saved
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(Exception, match="No space left"):
        checkpoint.save(path, Checkpoint(model=model, task={}, training={}))
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]   # no temp file left behind
