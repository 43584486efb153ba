"""32-bit ARM with numpy alone: Debian's armhf python3 and python3-numpy under qemu-arm run the
built-ins on the numpy backend, step for step identical (int8) to x86. Set up by `make armhf`
(apt and root; .ci/run does it where it can); without it these tests skip and say so."""

import subprocess
import sys

import numpy as np
import pytest

from edgerf.bench import armhf
from edgerf.models import BUILTIN_DIR
from edgerf.runtime.bundle import read as read_bundle

pytestmark = pytest.mark.skipif(not armhf.ready(), reason="armhf emulation not set up (make armhf)")


@pytest.mark.parametrize("name", ["default-gru", "kws-gru"])
def test_the_builtins_on_armv7_are_bit_identical_to_x86_tflite_micro(name):
    art = BUILTIN_DIR / f"{name}.int8.tflite"
    x = read_bundle(BUILTIN_DIR / f"{name}.bundle.npz").stream.x[:1000]
    arm, _, meta = armhf.replay(art, x, None, armhf=True)
    assert meta["machine"] == "armv7l" and meta["target"] == "numpy" and "onnxruntime" not in meta
    ref, _, _ = armhf.replay(art, x, "tflm", armhf=False)
    np.testing.assert_array_equal(arm, ref)


def test_the_keyword_example_finds_the_same_words_on_armv7():
    cmd, env = armhf.guest(["examples/keyword_loop.py"])
    guest = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=armhf.ROOT, timeout=900)
    host = subprocess.run([sys.executable, "examples/keyword_loop.py", "--target", "numpy"], capture_output=True,
                          text=True, cwd=armhf.ROOT, timeout=300)
    assert guest.returncode == 0, guest.stderr[-1500:]
    assert guest.stdout == host.stdout and len(guest.stdout.splitlines()) >= 5
