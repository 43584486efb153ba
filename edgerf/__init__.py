"""edgerf: recurrent classifiers that run forever on small machines, with no state reset.

The pipeline is ``train (torch) -> export step graph -> int8 -> bench -> embed``.
This top-level package stays torch-free so that ``import edgerf`` and
``import edgerf.runtime`` work on a device with only numpy and one interpreter;
the torch parts live in submodules (``edgerf.cells``, ``edgerf.train``, ...) that
are imported only where they are used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
