# Two entry points for a fresh machine: `make run` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test clean image image-test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Run time only: onnxruntime, constriction, Pillow, the HTTP service (no torch).
$(VENV)/.runtime: pyproject.toml | $(VENV)/bin/python
	$(PIP) -e .
	touch $@

# Tests also need torch (export, PyTorch-eager cross checks) and pytest.
$(VENV)/.test: pyproject.toml | $(VENV)/bin/python
	$(PIP) -e '.[train,bench,load,test]'
	touch $@ $(VENV)/.runtime

# The embedded default: CPU, in-process tile cache, no other service. Settings: LIC_* environment variables.
run: $(VENV)/.runtime
	$(VENV)/bin/lic roundtrip tests/data/kodim01.png --quality 2 6
	$(VENV)/bin/lic serve --port $${LIC_PORT:-8000}

# Tests start their own redis-server and prometheus on free ports, and drive the page and /docs in headless
# Chromium through chromedriver; Debian's packages are installed if missing. Each entry: binary[:package].
# (The deploy checks also use kubectl's built-in kustomize.)
SERVERS := redis-server prometheus chromium chromedriver:chromium-driver
test: $(VENV)/.test
	@missing=""; for b in $(SERVERS); do command -v $${b%%:*} >/dev/null || missing="$$missing $${b##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get install -y -qq $$missing || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; }; fi
	$(PY) -m pytest

# The CPU image (lic:cpu), built where containers reach Debian's mirror but no registry or package index:
# starts dockerd if `docker info` fails, makes a debootstrap base, fills deploy/wheelhouse on the host and
# installs from it, hash-checked against deploy/requirements.lock. See deploy/README.md.
image:
	deploy/build-image.sh cpu

# Runs lic:cpu as the CPU overlay's Deployment would, beside a Redis image built the same way; writes
# benchmarks/image_test.json (image size, peak memory, statuses, drain). Not part of `make test`: it needs
# the Docker engine and a few minutes.
image-test: image $(VENV)/.runtime
	deploy/build-image.sh redis
	$(PY) -c 'import yaml' 2>/dev/null || $(PIP) 'pyyaml>=6'
	$(PY) deploy/image_test.py

clean:
	rm -rf $(VENV) .pytest_cache
