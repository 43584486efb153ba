"""edgerf: recurrent classifiers that run forever on small machines, with no state reset.

The pipeline is ``train (torch) -> export step graph -> int8 -> bench -> embed``.

Two sides, one boundary:

- ``edgerf.runtime`` is the device side: the step model and its backends, featurizers,
  manifest reading and validation, metrics, events, bundles, atomic writes and errors. It
  needs numpy and one interpreter and imports nothing from edgerf outside itself. A device
  install is numpy, one interpreter (``edgerf[runtime]`` or ``edgerf[runtime-litert]``) and
  this package; its commands are ``edgerf stream``, ``edgerf bench`` and ``edgerf inspect``.
- Everything else is the host side (cells, loss, data and stream building, tasks, training,
  sweeps, checkpoints, ``edgerf.export``, the CLI); it imports from the runtime, never the
  reverse. ``tests/test_layout.py`` enforces both.

This top-level module stays torch-free so that ``import edgerf`` works on a device.
"""

__version__ = "0.1.0"

# The host modules that need torch (training) or onnx (export). Every other module (the
# runtime above all, the CLI and edgerf.bench's runner) imports with numpy and one
# interpreter only, which a test checks by importing each of them with torch and onnx blocked.
HOST_SIDE = ("edgerf.cells", "edgerf.loss", "edgerf.train", "edgerf.checkpoint", "edgerf.distributed",
             "edgerf.sweep", "edgerf.torch_step", "edgerf.export", "edgerf.bench.studies")

__all__ = ["__version__", "HOST_SIDE"]
