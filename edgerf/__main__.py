"""The ``edgerf`` command and ``python -m edgerf``: the CLI, or, on an install without
the CLI's dependency (``pip install edgerf`` with no extra), what to install for it."""

import os
import sys

NEEDS_AN_EXTRA = ('error: the edgerf command needs one of the extras: pip install "edgerf[runtime]" (a device: '
                  'ONNX Runtime), "edgerf[runtime-litert]" (a device: LiteRT) or "edgerf[host]" (training and '
                  'export). The Python API (import edgerf.runtime) needs numpy and one interpreter only.\n')


def main() -> None:
    # numpy's OpenBLAS starts a thread per core when numpy is imported: 65 ms of CPU at every
    # start on a 2-core machine, for matrix products edgerf never makes big enough to share
    # (its numpy work is per frame; torch has its own threads). A user's setting stands.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        import typer  # noqa: F401  (the CLI's one dependency beyond numpy)
    except ImportError:
        sys.stderr.write(NEEDS_AN_EXTRA)
        raise SystemExit(2)
    from edgerf.cli import main as cli_main
    cli_main()


if __name__ == "__main__":
    main()
