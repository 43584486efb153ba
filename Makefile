# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv and install edgerf with its host extras on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test grid clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e ".[host,dev]"
	touch $(STAMP)

setup: $(STAMP)

## Main job on the built-in default: train a small reset-free GRU on Sequential
## Fashion-MNIST and score it on an unreset test stream.
demo: $(STAMP)
	mkdir -p runs/demo
	$(BIN)/edgerf train --model gru --hidden 64 --epochs 1 --train-samples 8000 \
		--test-steps 20000 -o runs/demo/gru-reset-free.pt --force

## The test suite (what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest -q

## The 4 x 3 training grid behind bench/results/sfmnist_train.md (about an hour, 2 cores).
grid: $(STAMP)
	$(BIN)/python -m edgerf.bench.train_grid --jobs 2

clean:
	rm -rf $(VENV) runs build *.egg-info
