"""Training lanes made piece by piece: memory set by a setting, not by the dataset.

``batch`` lanes, each one unreset stream that runs on across epochs. Lane ``k`` of data
epoch ``e`` takes its share of a seeded permutation of the training samples (as the
whole-epoch path deals them), cut into pieces of ``piece`` samples; piece ``j`` is built
(gaps, augmentation, features) from the seed ``(seed, e, k, j)`` alone. So a piece is the
same whoever builds it (this process, a worker, another rank, a resumed run), a lane's
position is three counters and an offset, and what is held at once is one piece per lane
plus the pieces workers have built ahead (``prefetch``): bounded by ``piece``, ``batch``
and ``prefetch``, whatever the size of the data.

Workers (``workers`` > 0) are processes that build pieces ahead into a bounded queue (the
audio itself comes from the shared decoded-audio cache). When the loop would wait, it
builds pieces no worker has started yet itself, soonest needed first (it would be idle
otherwise; at the start every lane needs its first piece at once). ``waited_s`` is how long
the training loop waited for data (building included), ``start_wait_s`` the part of it spent
filling the lanes for the first ``take``: a one-off cost per run that a short benchmark
epoch would otherwise mistake for the steady state.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import time
from collections import deque

import numpy as np

_WORKER_TASK = None      # the task and training arrays, per worker process


def _init_worker(task, arrays) -> None:
    global _WORKER_TASK
    _WORKER_TASK = (task, arrays)
    _die_with_parent()


def _die_with_parent() -> None:
    """A worker whose training process is killed (SIGKILL leaves it no time to stop its pool)
    must not live on: on Linux the kernel sends it SIGKILL too (PR_SET_PDEATHSIG)."""
    import ctypes
    import signal
    import sys
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))   # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _piece_in_worker(key) -> dict:
    task, arrays = _WORKER_TASK
    return build_piece(task, arrays, *key)


def lane_samples(n: int, batch: int, seed: int, epoch: int, lane: int) -> np.ndarray:
    """The sample indices lane ``lane`` takes in data epoch ``epoch`` (its share of a permutation)."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    per_lane = n // batch
    return order[lane * per_lane:(lane + 1) * per_lane]


def build_piece(task, arrays, seed: int, batch: int, piece: int, grace: int, epoch: int, lane: int, j: int) -> dict:
    """Piece ``j`` of lane ``lane`` in data epoch ``epoch``: per-step arrays (x, labels, mask,
    resets: a sample starts here, ends: a sample's last informative step, grace: the
    ``grace`` noise steps after one)."""
    idx = lane_samples(len(arrays[0]), batch, seed, epoch, lane)[j * piece:(j + 1) * piece]
    s = task.stream("train", None, seed=int(np.random.default_rng([seed, epoch, lane, j]).integers(2 ** 31)),
                    arrays=(arrays[0][idx], arrays[1][idx]), augment=True)
    ends = np.zeros(len(s), bool)
    ends[s.ends] = True
    out = {"x": s.x, "labels": s.labels, "mask": s.mask, "resets": s.resets(), "ends": ends}
    if grace:
        out["grace"] = s.after_ends(grace)
    return out


class Lanes:
    """This rank's lanes (``mine``, indices of ``batch``), stepped ``steps`` at a time."""

    def __init__(self, task, arrays, batch: int, mine, seed: int, piece: int = 64, workers: int = 0,
                 prefetch: int = 2, position: list | None = None, grace: int = 0):
        self.task, self.arrays, self.batch, self.mine, self.seed = task, arrays, batch, list(mine), seed
        self.grace = grace
        self.KEYS = ("x", "labels", "mask", "resets", "ends") + (("grace",) if grace else ())
        self.n = len(arrays[0])
        self.piece = max(1, min(piece, self.n // batch))
        self.pieces_per_epoch = -(-(self.n // batch) // self.piece)
        # per lane: [data epoch, next piece, steps of the current piece already used]
        self.position = [list(p) for p in position] if position else [[0, 0, 0] for _ in self.mine]
        self._held: list[dict | None] = [None] * len(self.mine)
        self.waited_s = 0.0
        self.start_wait_s = 0.0
        self._started = False
        self._pool = None
        self._ahead: list[deque] = [deque() for _ in self.mine]      # per lane: (key, future) of pieces ahead
        if workers > 0:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            self._pool = cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                                initargs=(task, arrays))
        self.prefetch = max(1, prefetch)
        for k, pos in enumerate(self.position):                          # resume inside a piece
            if pos[2]:
                epoch, j = self._back(pos[0], pos[1])
                self._held[k] = self._trim(self._build((epoch, self.mine[k], j)), pos[2])

    # -- which piece comes next ---------------------------------------------------------
    def _key_after(self, pos) -> tuple[int, int, int]:
        """(epoch, lane index, piece) the lane at ``pos`` builds next."""
        epoch, j, _ = pos
        if j >= self.pieces_per_epoch:
            epoch, j = epoch + 1, 0
        return epoch, j

    def _back(self, epoch: int, j: int) -> tuple[int, int]:
        """The piece before (epoch, j): the one being used."""
        return (epoch, j - 1) if j > 0 else (epoch - 1, self.pieces_per_epoch - 1)

    def _build(self, key) -> dict:
        epoch, lane, j = key
        return build_piece(self.task, self.arrays, self.seed, self.batch, self.piece, self.grace, epoch, lane, j)

    def _fetch(self, k: int) -> dict:
        """Lane k's next piece: from its own queue of pieces submitted ahead, else built now."""
        epoch, j = self._key_after(self.position[k])
        key = (epoch, self.mine[k], j)
        self.position[k] = [epoch, j + 1, 0]
        if self._pool is None:
            return self._build(key)
        queue = self._ahead[k]
        if not queue or queue[0][0] != key:              # nothing ahead for this piece (the start)
            for _, fut in queue:
                fut.cancel()
            queue.clear()
            queue.append((key, self._submit(key)))
            self._top_up()                               # the other lanes' first pieces go in right behind
        _, fut = queue.popleft()
        t = time.perf_counter()
        if not fut.done() and fut.cancel():          # no worker has started it: build it here
            out = self._build(key)
        else:
            while not fut.done() and self._help(k):   # while a worker builds it, build what comes next
                pass
            out = fut.result()
        self.waited_s += time.perf_counter() - t
        return out

    def _help(self, k: int) -> bool:
        """Build here the piece no worker has started that the loop needs soonest after lane k's
        (lanes are fetched in order, round by round); False when there is none."""
        order = list(range(k + 1, len(self._ahead))) + list(range(k + 1))
        for depth in range(self.prefetch):
            for i in order:
                if len(self._ahead[i]) > depth:
                    key, fut = self._ahead[i][depth]
                    if not fut.done() and fut.cancel():       # cancel succeeds only before a worker starts it
                        built = cf.Future()
                        built.set_result(self._build(key))
                        self._ahead[i][depth] = (key, built)
                        return True
        return False

    def _submit(self, key):
        return self._pool.submit(_piece_in_worker, (self.seed, self.batch, self.piece, self.grace, *key))

    def _top_up(self) -> None:
        """Each lane's queue holds its next ``prefetch`` pieces. A queue per lane: lanes use up
        their pieces in no fixed order (pieces differ in steps), and one shared queue in a
        guessed order was wrong at most fetches, throwing away the pieces built ahead."""
        if self._pool is None:
            return
        for depth in range(1, self.prefetch + 1):       # round by round: every lane's next piece first
            for k, queue in enumerate(self._ahead):
                if len(queue) >= depth:
                    continue
                # the position after the last piece queued (or the lane's own, whose piece is in use)
                pos = [queue[-1][0][0], queue[-1][0][2] + 1, 0] if queue else self.position[k]
                epoch, j = self._key_after(pos)
                key = (epoch, self.mine[k], j)
                queue.append((key, self._submit(key)))

    @staticmethod
    def _trim(piece: dict, used: int) -> dict:
        return {key: v[used:] for key, v in piece.items()}

    # -- stepping -------------------------------------------------------------------------
    def take(self, steps: int) -> dict[str, np.ndarray]:
        """The next ``steps`` steps of every lane, stacked [lanes, steps, ...]."""
        out = {key: [] for key in self.KEYS}
        waited = self.waited_s
        for k in range(len(self.mine)):
            parts, need = {key: [] for key in self.KEYS}, steps
            while need:
                if self._held[k] is None or not len(self._held[k]["x"]):
                    self._held[k] = self._fetch(k)
                    continue
                h = self._held[k]
                n = min(need, len(h["x"]))
                for key in self.KEYS:
                    parts[key].append(h[key][:n])
                self._held[k] = self._trim(h, n)
                self.position[k][2] += n
                need -= n
            for key in self.KEYS:
                out[key].append(np.concatenate(parts[key]))
        if not self._started:
            self._started, self.start_wait_s = True, self.waited_s - waited
        self._top_up()
        return {key: np.stack(v) for key, v in out.items()}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
