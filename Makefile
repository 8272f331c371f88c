# Two entry points for a fresh machine: `make run` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: run test clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Run time only: onnxruntime, constriction, Pillow (no torch).
$(VENV)/.runtime: pyproject.toml | $(VENV)/bin/python
	$(PIP) -e .
	touch $@

# Tests also need torch (export, PyTorch-eager cross checks) and pytest.
$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(PIP) -e '.[train,bench,test]'
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(VENV)/bin/lic models
	$(VENV)/bin/lic roundtrip tests/data/kodim01.png --quality 1 2 4 6 8

test: $(VENV)/.test
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
