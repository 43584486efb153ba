"""edgerf.bench: the harness behind ``edgerf bench``.

``run`` (discover artifacts, time and score them), ``latency``, ``machine``, ``rss``,
``report`` and ``render`` (tables, JSON, plots) and ``arm64`` (the same run under qemu-user).
They import with numpy and one interpreter, like the runtime. The scripts behind the
committed results are apart, in ``edgerf.bench.studies`` (``bench/studies/``).
"""
