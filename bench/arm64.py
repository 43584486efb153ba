"""``edgerf bench --device arm64``: the same runtime and stream on aarch64 under qemu."""

from __future__ import annotations

from edgerf.errors import EdgerfError


def setup_sysroot(log=lambda s: None):
    raise EdgerfError("arm64 emulation is not set up in this version; run `edgerf bench --device cpu` on the "
                      "ARM board itself (pip install 'edgerf[runtime]').")


def run_arm64(artifacts, ckpt, cfg, progress, log):
    setup_sysroot(log)
