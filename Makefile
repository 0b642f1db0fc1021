PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup test demo bench clean

$(BIN)/dlvm:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'

setup: $(BIN)/dlvm

test: $(BIN)/dlvm
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: $(BIN)/dlvm
	$(BIN)/dlvm run all --quick --out runs/demo --overwrite

bench: $(BIN)/dlvm
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs build *.egg-info
