"""``python -m edgerf``: the same command as ``edgerf``."""

from edgerf.cli import main

main()
