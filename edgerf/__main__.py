"""The ``edgerf`` command and ``python -m edgerf``: the CLI, or, on an install without
the CLI's dependency (``pip install edgerf`` with no extra), what to install for it."""

import sys

NEEDS_AN_EXTRA = ('error: the edgerf command needs one of the extras: pip install "edgerf[runtime]" (a device: '
                  'ONNX Runtime), "edgerf[runtime-litert]" (a device: LiteRT) or "edgerf[host]" (training and '
                  'export). The Python API (import edgerf.runtime) needs numpy and one interpreter only.\n')


def main() -> None:
    try:
        import typer  # noqa: F401  (the CLI's one dependency beyond numpy)
    except ImportError:
        sys.stderr.write(NEEDS_AN_EXTRA)
        raise SystemExit(2)
    from edgerf.cli import main as cli_main
    cli_main()


if __name__ == "__main__":
    main()
