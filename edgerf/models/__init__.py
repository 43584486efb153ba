"""The built-in default model, so ``edgerf bench`` works out of the box.

``default-gru.pt`` is a small reset-free GRU trained by this project's own
``edgerf train`` (the exact command, seed, data and accuracy are inside it: see
``edgerf inspect`` on its exports, or ``training`` in the checkpoint). Its exported
artifacts and evaluation bundle are made on first use into the cache folder
(``$EDGERF_CACHE``, default ``~/.cache/edgerf``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).with_name("default-gru.pt")


def cache_dir() -> Path:
    return Path(os.environ.get("EDGERF_CACHE", Path.home() / ".cache" / "edgerf"))


def default_checkpoint(log=lambda s: None) -> Path:
    """The default checkpoint in the cache, exported (fp32 + int8 + bundle) on first use."""
    d = cache_dir() / "default-gru"
    ckpt = d / DEFAULT_CHECKPOINT.name
    if not ckpt.exists() or ckpt.read_bytes() != DEFAULT_CHECKPOINT.read_bytes():
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEFAULT_CHECKPOINT, ckpt)
    if not (d / "default-gru.int8.onnx").exists() or not (d / "default-gru.bundle.npz").exists():
        from edgerf.export.pipeline import ExportConfig, export_checkpoint
        log(f"first use: exporting the built-in model into {d} (once) ...")
        export_checkpoint(ckpt, d, ExportConfig(int8=True, force=True), log=log)
    return ckpt
