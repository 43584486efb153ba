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

## Main job on the built-in default model: export it (fp32 + int8, first use only) and
## benchmark every artifact beside torch eager: latency and no-reset accuracy.
demo: $(STAMP)
	$(BIN)/edgerf bench --device cpu --report runs/demo

## The test suite (what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest -q

## The 4 x 3 training grid behind bench/results/sfmnist_train.md (about an hour, 2 cores).
grid: $(STAMP)
	$(BIN)/python -m edgerf.bench.train_grid --jobs 2

clean:
	rm -rf $(VENV) runs build *.egg-info
