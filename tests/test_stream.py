import numpy as np
import pytest

from conftest import FULL_DATA
from edgerf.data import fashion
from edgerf.data.source import locate
from edgerf.data.stream import concat_samples
from edgerf.runtime.stream import NO_LABEL
from edgerf.runtime.metrics import stream_metrics


def test_concat_samples_marks_mask_labels_and_boundaries():
    a, b = np.ones((3, 2)), 2 * np.ones((2, 2))
    g0, g1 = np.zeros((1, 2)), np.zeros((4, 2))
    s = concat_samples([a, b], [7, 3], [g0, g1])
    assert len(s) == 10
    assert s.mask.tolist() == [0, 1, 1, 1, 0, 0, 0, 0, 1, 1]
    assert s.labels.tolist() == [NO_LABEL, 7, 7, 7] + [NO_LABEL] * 4 + [3, 3]
    assert s.starts.tolist() == [1, 8] and s.ends.tolist() == [3, 9]
    assert s.sample_labels.tolist() == [7, 3]
    assert s.resets().nonzero()[0].tolist() == [1, 8]
    np.testing.assert_array_equal(s.x[8], [2, 2])


def test_sfmnist_stream_structure(sfmnist):
    s = sfmnist.stream("test", 25, seed=3)
    assert s.x.shape[1] == 28 and s.x.dtype == np.float32
    assert len(s.starts) == len(s.ends) == 25
    assert ((s.ends - s.starts) == 27).all()                     # 28 rows per image
    gaps = np.diff(np.concatenate([[0], s.starts])) - np.concatenate([[0], np.full(24, 28)])
    assert gaps.min() >= sfmnist.gap_min and gaps.max() <= sfmnist.gap_max
    assert s.mask.sum() == 25 * 28 and (s.labels[~s.mask] == NO_LABEL).all()
    # image rows are normalised pixels: their range is the pixel range mapped through mean/std
    lo, hi = (0 - sfmnist.mean) / sfmnist.std, (1 - sfmnist.mean) / sfmnist.std
    assert s.x[s.mask].min() >= lo - 1e-6 and s.x[s.mask].max() <= hi + 1e-6


def test_sfmnist_streams_are_deterministic_and_splits_differ(sfmnist):
    a, b = sfmnist.stream("test", 10, seed=5), sfmnist.stream("test", 10, seed=5)
    np.testing.assert_array_equal(a.x, b.x)
    c = sfmnist.stream("test", 10, seed=6)
    assert not np.array_equal(a.x[: len(c)], c.x[: len(a)])
    train_imgs, _ = sfmnist.split_arrays("train")
    val_imgs, _ = sfmnist.split_arrays("val")
    test_imgs, _ = sfmnist.split_arrays("test")
    n_train = len(fashion.load("train", locate("fashion-mnist").root)[0])
    assert len(train_imgs) + len(val_imgs) == n_train and len(val_imgs) == round(n_train / 12)
    assert len(test_imgs) == len(fashion.load("test", locate("fashion-mnist").root)[0])
    if FULL_DATA:
        assert (len(train_imgs), len(val_imgs), len(test_imgs)) == (55_000, 5_000, 10_000)


def test_metrics_hand_computed():
    labels = np.array([-1, 0, 0, -1, 1, 1])
    mask = labels >= 0
    ends = np.array([2, 5])
    logits = np.array([
        [9.0, 0.0],    # noise, confident -> false alarm
        [0.0, 1.0],    # wrong
        [1.0, 0.0],    # right, end of sample 0
        [0.0, 0.0],    # noise, uniform
        [0.0, 1.0],    # right
        [1.0, 0.0],    # wrong, end of sample 1
    ])
    m = stream_metrics(logits, labels, mask, ends, threshold=0.9)
    assert m["acc_f"] == 0.5 and m["acc_p"] == 0.5 and m["false_alarm"] == 0.5
    assert m["noise_conf"] == np.mean([1 / (1 + np.exp(-9.0)), 0.5])





@pytest.mark.parametrize("task_name, kinds", [("sfmnist", ("gaussian", "uniform", "silence", "shuffled")),
                                              ("gsc", ("background", "gaussian", "uniform", "silence", "shuffled"))])
def test_every_gap_kind_builds_a_valid_stream(task_name, kinds):
    from edgerf.tasks import get_task
    task = get_task(task_name)
    for kind in (*kinds, ",".join(kinds[:2])):
        s = task.with_gaps(kind).stream("test", 6, seed=2)
        assert s.problems() is None and len(s.ends) > 0
        gaps = s.x[~s.mask]
        assert np.isfinite(gaps).all()
        if kind == "silence" and task_name == "sfmnist":
            assert np.ptp(gaps) == 0                       # blank rows
    with pytest.raises(ValueError, match="gap kind"):
        task.with_gaps("thunder")
    with pytest.raises(ValueError, match="gap length"):
        task.with_gaps(None, 5, 2)


def test_training_on_a_mix_of_gap_kinds_is_recorded(tmp_path):
    from typer.testing import CliRunner
    from edgerf import checkpoint
    from edgerf.cli import app
    r = CliRunner().invoke(app, ["train", "--hidden", "8", "--epochs", "1", "--batch", "4", "--train-samples", "64",
                                 "--val-samples", "10", "--test-steps", "500", "--gap-kind", "gaussian,shuffled",
                                 "--gap-min", "5", "--gap-max", "8", "-q", "-o", str(tmp_path / "m.pt")])
    assert r.exit_code == 0, r.output
    ck = checkpoint.load(tmp_path / "m.pt")
    assert (ck.task["gap_kind"], ck.task["gap_min"], ck.task["gap_max"]) == ("gaussian,shuffled", 5, 8)
    assert "--gap-kind gaussian,shuffled" in ck.training["command"]
