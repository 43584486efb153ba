"""Seeds, tolerances and shared fixtures for the whole suite (one place to change them)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

SEED = 1234
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
    """)
    return subprocess.run([sys.executable, "-c", prologue + textwrap.dedent(code)], capture_output=True, text=True)
