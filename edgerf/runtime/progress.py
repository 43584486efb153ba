"""What long work shows on the console: progress bars (training, calibration, parity,
bench), and silence from libraries that print for their own developers (``quiet``).

Uses rich (a typer dependency) when present and writes to stderr so stdout stays
machine-readable; silent when disabled or when rich is missing (device side).
"""

from __future__ import annotations

import contextlib
from typing import Iterator


class _Null:
    def advance(self, n: int = 1, **fields) -> None:
        pass


class _Bar:
    def __init__(self, progress, task):
        self._p, self._t = progress, task

    def advance(self, n: int = 1, **fields) -> None:
        self._p.update(self._t, advance=n, **fields)


def ticks(n: int, advance=None, every: int = 500) -> Iterator[int]:
    """``range(n)`` that advances a progress bar by ``every`` steps at a time (a bar
    update per step would cost as much as a step of a small model)."""
    for t in range(n):
        if advance is not None and t % every == every - 1:
            advance(every)
        yield t
    if advance is not None and n % every:
        advance(n % every)


@contextlib.contextmanager
def bar(description: str, total: int, enabled: bool = True,
        fields: str = "", **initial) -> Iterator[_Bar | _Null]:
    """A progress bar; ``fields`` is a rich format string over extra fields
    (e.g. ``"loss {task.fields[loss]:.3f}"``) whose starting values are ``initial``
    and which ``advance(**fields)`` updates."""
    if not enabled:
        yield _Null()
        return
    try:
        from rich.console import Console
        from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
    except ImportError:
        yield _Null()
        return
    cols = [TextColumn("{task.description}"), BarColumn(bar_width=24), TaskProgressColumn(),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    if fields:
        cols.append(TextColumn(fields))
    with Progress(*cols, console=Console(stderr=True), transient=False) as p:
        yield _Bar(p, p.add_task(description, total=total, **initial))


@contextlib.contextmanager
def quiet(*loggers: str) -> Iterator[None]:
    """Silence a library call: its stdout, its warnings, and the named loggers (the root
    logger when none) below ERROR. The exporters and the quantizer print progress and
    warnings meant for their developers, not for edgerf's users."""
    import io
    import logging
    import warnings

    targets = [logging.getLogger(n) for n in loggers or ("",)]
    levels = [lg.level for lg in targets]
    for lg in targets:
        lg.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            for lg, level in zip(targets, levels):
                lg.setLevel(level)
