# Two commands on a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv and install edgerf with its host, dev and sweep extras on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test docs fuzz grid arm64 armhf results builtin soak scaling scale clean

GRU128 := $(addprefix runs/sfmnist/export/gru-reset-free,.onnx .int8.onnx .tflite .int8.tflite)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -e ".[host,dev,sweep]"
	touch $(STAMP)

setup: $(STAMP)

## Main job on the built-in models (shipped exported; no dataset needed): benchmark every
## artifact of the default model beside torch eager (latency, no-reset accuracy), then find
## the keywords in the built-in demo recording with the keyword model, and plot both.
demo: $(STAMP)
	$(BIN)/edgerf bench --device cpu --report runs/demo --force
	@echo "keywords found in the demo recording ($$($(BIN)/python -c 'from edgerf.models import DEMO_RECORDING as d; print(d)')):"
	$(BIN)/edgerf stream kws-gru --plot runs/demo/kws-demo.png --force

## The test suite (what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest -q

## The docs site (docs/, mkdocs.yml) into site/, strict: a broken link or page fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict -d site

## The long fuzzing run over every reader (2,000 mutated files each; a crash found is kept
## under tests/fuzz_corpus/ and replayed by every test run from then on).
fuzz: $(STAMP)
	EDGERF_FUZZ_EXAMPLES=2000 EDGERF_FUZZ_SAVE=1 $(BIN)/python -m pytest -q tests/test_fuzz.py

## The 4 x 3 training grids behind bench/results/{sfmnist,gsc}_train.md (about an hour each,
## 2 cores), run as `edgerf sweep` trials: on Ray Tune (installed by setup), else a process pool;
## then the speech recipe (40 ms steps, a ReLU frontend, 60 epochs: gsc_stack4_frontend1_train.md)
## and with the gated readout: its GRU over three seeds, the other families over one
## (gsc_stack4_frontend1_gated_train.md).
SPEECH := --task gsc --frame-stack 4 --frontend 1 --epochs 60
grid: $(STAMP)
	$(BIN)/python -m edgerf.bench.studies.train_grid --task sfmnist
	$(BIN)/python -m edgerf.bench.studies.train_grid --task gsc
	$(BIN)/python -m edgerf.bench.studies.train_grid $(SPEECH) --models gru --losses reset-free,periodic-reset,ce
	$(BIN)/python -m edgerf.bench.studies.train_grid $(SPEECH) --models rnn,ssm,ssm-sel,lif --losses reset-free
	$(BIN)/python -m edgerf.bench.studies.train_grid $(SPEECH) --readout gated --seeds 0,1,2 --models gru \
		--losses reset-free,periodic-reset
	$(BIN)/python -m edgerf.bench.studies.train_grid $(SPEECH) --readout gated --models rnn,ssm,ssm-sel,lif \
		--losses reset-free

## aarch64 emulation for `edgerf bench --device arm64` (once; needs apt and root).
arm64: $(STAMP)
	$(BIN)/edgerf bench --device arm64 --setup

## 32-bit ARM emulation (armv7: Debian's python3 and python3-numpy only) for tests/test_armhf.py
## and bench/results/armhf.md (once; needs apt and root).
armhf: $(STAMP)
	$(BIN)/python -m edgerf.bench.armhf --setup

## Everything under bench/results/ that stands on the grids' checkpoints.
INT8 := runs/sfmnist/export-int8/gru-reset-free
results: $(STAMP)
	$(BIN)/python -m edgerf.bench.studies.export_table
	$(BIN)/python -m edgerf.bench.studies.gsc_mask
	$(BIN)/python -m edgerf.bench.studies.int8_table --qat-epochs ssm=3,ssm-sel=3,lif=3
	$(BIN)/python -m edgerf.bench.studies.arm_cost
	$(BIN)/python -m edgerf.bench.studies.targets --grid runs/sfmnist \
		--targets litert,litert-nodelegate,litert-ref,tflm,numpy,ort
	$(BIN)/python -m edgerf.bench.studies.small_budget
	$(BIN)/python -m edgerf.bench.studies.ort_tail
	$(BIN)/python -m edgerf.bench.studies.runtime_overhead $(INT8).int8.tflite $(INT8).tflite $(INT8).int8.onnx $(INT8).onnx
	$(BIN)/edgerf bench $(GRU128) --ckpt runs/sfmnist/gru-reset-free.pt --report bench/results/bench-gru128-cpu --force
	$(BIN)/edgerf bench --device arm64 $(GRU128) --ckpt runs/sfmnist/gru-reset-free.pt \
		--report bench/results/bench-gru128-arm64 --force
	$(BIN)/python -m edgerf.bench.armhf
	$(BIN)/python -m edgerf.bench.studies.kws_levels kws-gru
	$(BIN)/python -m edgerf.bench.studies.gap_kinds edgerf/models/default-gru.pt
	$(BIN)/pip install -q -e ".[rival]" && $(BIN)/python -m edgerf.bench.studies.kws_pipeline --runs 5

## bench/results/data_scale.md: training memory at 1x, 4x and 16x the speech folder (about 30 min).
scale: $(STAMP)
	$(BIN)/python -m edgerf.bench.studies.data_scale

## bench/results/soak.md: 10^6 unreset steps per artifact, GRU reset-free beside ce (their
## checkpoints: the built-in recipe, trained and exported into runs/soak).
soak: $(STAMP)
	mkdir -p runs/soak
	cp edgerf/models/default-gru.pt runs/soak/gru48-reset-free.pt
	test -f runs/soak/gru48-ce.pt || $(BIN)/edgerf train --task sfmnist --model gru --loss ce --hidden 48 \
		--epochs 3 --batch 32 --train-samples 16000 --test-steps 20000 -q -o runs/soak/gru48-ce.pt
	$(BIN)/edgerf export runs/soak/gru48-ce.pt --int8 -q --force
	$(BIN)/edgerf export runs/soak/gru48-reset-free.pt --int8 -q --force
	$(BIN)/python -m edgerf.bench.studies.soak runs/soak/gru48-reset-free.pt runs/soak/gru48-ce.pt

## bench/results/scaling.md: DDP ranks and sweep engines on this machine.
scaling: $(STAMP)
	$(BIN)/python -m edgerf.bench.studies.scaling

## The shipped built-in models (exports, bundles, demo recording) from their checkpoints (full data).
builtin: $(STAMP)
	$(BIN)/python -m edgerf.models.build

clean:
	rm -rf $(VENV) runs build *.egg-info
