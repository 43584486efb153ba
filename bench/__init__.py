"""edgerf.bench: benchmarks and the scripts that produce the committed results.

- ``python -m edgerf.bench.train_grid``: 4 families x 3 training modes on
  Sequential Fashion-MNIST, results in ``bench/results/sfmnist_train.{jsonl,md}``.
"""
