# One command installs and trains on the built-in data; one installs and runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install quickstart quickstart-depth test test-slow

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/python -m pip install -q -r requirements.txt

quickstart: install
	$(BIN)/python train.py --config configs/synthetic/quickstart_seg.yaml

quickstart-depth: install
	$(BIN)/python train.py --config configs/synthetic/quickstart_depth.yaml

# The slowest tests are listed at the end: the suite is kept to about 15 minutes on 2 cores.
test: install
	$(BIN)/python -m pytest -q --durations=25

test-slow: install
	$(BIN)/python -m pytest -q -m slow
