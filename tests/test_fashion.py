import gzip
import shutil

import numpy as np
import pytest

from conftest import FASHION_TEST_IMAGES
from edgerf.data import fashion
from edgerf.data.source import locate
from edgerf.runtime.errors import DataError


def _write_idx(path, arr, magic_type=0x08):
    dims = b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(bytes([0, 0, magic_type, arr.ndim]) + dims + arr.astype(np.uint8).tobytes())


def test_read_idx_plain_and_gz(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a-idx3-ubyte", arr)
    np.testing.assert_array_equal(fashion.read_idx(tmp_path / "a-idx3-ubyte"), arr)
    (tmp_path / "b-idx3-ubyte.gz").write_bytes(gzip.compress((tmp_path / "a-idx3-ubyte").read_bytes()))
    np.testing.assert_array_equal(fashion.read_idx(tmp_path / "b-idx3-ubyte"), arr)


@pytest.mark.parametrize("damage", ["truncate", "magic", "gzip", "empty"])
def test_corrupt_idx_is_a_clear_error(tmp_path, damage):
    arr = np.arange(60, dtype=np.uint8).reshape(3, 20)
    p = tmp_path / "x-idx2-ubyte"
    _write_idx(p, arr)
    if damage == "truncate":
        p.write_bytes(p.read_bytes()[:-7])
    elif damage == "magic":
        _write_idx(p, arr, magic_type=0x0D)
    elif damage == "empty":
        p.write_bytes(b"")
    else:
        gz = tmp_path / "y-idx2-ubyte.gz"
        gz.write_bytes(gzip.compress(p.read_bytes())[:-10])
        p = tmp_path / "y-idx2-ubyte"
    with pytest.raises(DataError, match="corrupt|truncated|not an IDX"):
        fashion.read_idx(p)


def test_real_files_load():
    images, labels = fashion.load("test", locate("fashion-mnist").root)
    assert images.shape == (FASHION_TEST_IMAGES, 28, 28) and labels.shape == (FASHION_TEST_IMAGES,)
    assert set(np.unique(labels)) == set(range(10))


def test_missing_data_names_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGERF_DATA", raising=False)
    with pytest.raises(DataError, match="--data or \\$EDGERF_DATA"):
        locate("fashion-mnist", tmp_path)


def test_env_var_and_missing_single_file(tmp_path, monkeypatch):
    src = locate("fashion-mnist").root
    for name in fashion.FILES["test"]:
        shutil.copy(src / (name + ".gz"), tmp_path / (name + ".gz"))
    monkeypatch.setenv("EDGERF_DATA", str(tmp_path))
    assert locate("fashion-mnist").root == tmp_path.resolve()
    images, _ = fashion.load("test", locate("fashion-mnist").root)
    assert len(images) == FASHION_TEST_IMAGES
    with pytest.raises(DataError, match="missing .*train-images"):
        fashion.load("train", locate("fashion-mnist").root)
