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

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow
