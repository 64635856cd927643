# make test: build .venv from python3.10 when missing, install (with the ONNX export and TensorBoard extras, and
# TensorBoard, whose reader the tests use), run the test
# suite (quick fault cases included) on TEST_WORKERS processes (nnabla's CPU backend uses one core each).
# make faults: the whole fault-injection suite of tests/faults (kills, full disk, divergence, bad data...).
# make demo: the whole pipeline on the CPU in a few minutes: a short search, the derived cells
#   retrained briefly, and the pictures (DATA=path for a local archive; DEMO_DIR=output folder).
PYTHON ?= python3.10
VENV := .venv
PY := $(VENV)/bin/python
DATA ?=
TEST_WORKERS ?= 2
DEMO_DIR ?= demo.monitor
DATASET := $(if $(DATA),--dataset-path $(DATA),)

.PHONY: venv test faults demo clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-export.txt requirements-tensorboard.txt Makefile
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; nnabla 1.39 has wheels only for Python 3.8-3.10 (install 3.10, e.g. with pyenv)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt pytest==9.2.0 pytest-xdist==3.8.0
	$(PY) -m pip install --quiet --no-deps -r requirements-export.txt
	$(PY) -m pip install --quiet -r requirements-tensorboard.txt tensorboard==2.20.0
	@touch $@

test: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m "not slow" tests

faults: venv
	$(PY) -m pytest -q tests/faults

demo: venv
	rm -rf $(DEMO_DIR)
	$(PY) darts_search.py -c cpu --num-cells 5 --output-filter 8 -b 32 -e 1 --train-images 1280 \
		-m $(DEMO_DIR)/search --model-arch-name $(DEMO_DIR)/search/arch.json $(DATASET)
	$(PY) darts_train.py -c cpu --model-arch-name $(DEMO_DIR)/search/arch.json --num-cells 5 --output-filter 8 -f 0 \
		-b 64 -e 2 --cutout True --train-images 3000 --test-images 1000 -m $(DEMO_DIR)/train $(DATASET)
	@echo "pictures:"; ls $(DEMO_DIR)/search/*.png $(DEMO_DIR)/train/*.png

clean:
	rm -rf $(VENV) $(DEMO_DIR)
