# Two entry points: `make quickstart` (fine-tune on bundled data) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: test test-fast venv clean quickstart

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -ra tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m "not slow" tests

clean:
	rm -rf $(VENV) build *.egg-info

quickstart: $(STAMP)
	@echo "Training is not implemented yet (issue 3). Meanwhile, zero-shot evaluation of the bundled model:" >&2
	$(BIN)/jaxretrieval eval --model ../shared/models/all-MiniLM-L6-v2 --data ../shared/data/scifact
