"""Piecewise training lanes: the same steps whoever builds a piece (this process, a worker,
or this process helping a worker that is behind)."""

from __future__ import annotations

import numpy as np

from edgerf.data.lanes import Lanes
from edgerf.tasks import get_task


def _takes(lanes: Lanes, n: int, steps: int) -> list[dict]:
    try:
        return [lanes.take(steps) for _ in range(n)]
    finally:
        lanes.close()


def test_pieces_built_by_a_worker_or_by_the_loop_give_the_same_steps():
    task = get_task("gsc")
    arrays = tuple(a[:96] for a in task.split_arrays("train"))
    # 4 lanes of 24 samples in pieces of 5: several pieces per lane, a data epoch boundary inside
    kw = dict(batch=4, mine=[0, 1, 2, 3], seed=7, piece=5)
    alone = _takes(Lanes(task, arrays, **kw), 14, 400)
    pooled = Lanes(task, arrays, workers=1, prefetch=3, **kw)
    with_worker = _takes(pooled, 14, 400)
    for a, b in zip(alone, with_worker):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert pooled.position[0][0] >= 1, "the takes should cross into the next data epoch"
    # the first take needed every lane's first piece: that wait is the start, counted apart
    assert 0 < pooled.start_wait_s <= pooled.waited_s
