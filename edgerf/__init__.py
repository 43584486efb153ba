"""edgerf: recurrent classifiers that run forever on small machines, with no state reset.

The pipeline is ``train (torch) -> export step graph -> int8 -> bench -> embed``.
This top-level package stays torch-free so that ``import edgerf`` and
``import edgerf.runtime`` work on a device with only numpy and one interpreter;
the torch parts live in submodules (``edgerf.cells``, ``edgerf.train``, ...) that
are imported only where they are used.
"""

__version__ = "0.1.0"

# The host side: the modules that need torch (training) or onnx (export). Every other
# module of edgerf (edgerf.runtime above all, and edgerf.bench's runner) is the device
# side: it imports with numpy and one interpreter only, which a test checks by importing
# each of them with torch and onnx blocked.
HOST_SIDE = ("edgerf.cells", "edgerf.loss", "edgerf.train", "edgerf.checkpoint", "edgerf.distributed",
             "edgerf.sweep", "edgerf.export")

__all__ = ["__version__", "HOST_SIDE"]
