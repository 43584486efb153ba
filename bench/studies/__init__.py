"""The studies: scripts that produced the committed results under ``bench/results/``.

Each runs as ``python -m edgerf.bench.studies.NAME`` (``make grid``, ``make results``,
``make soak``, ``make scaling`` run them all); ``bench/results/README.md`` lists which file
each one wrote. They ship in the wheel so that ``make results`` also runs from an install,
but they are host side (they train and export): ``edgerf bench`` and the device never import
them, and nothing outside this folder does (tests aside), which ``tests/test_layout.py`` checks.
"""

from pathlib import Path

# Where every study writes: bench/results/, beside this folder.
RESULTS = Path(__file__).resolve().parents[1] / "results"
