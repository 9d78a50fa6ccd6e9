# Set-up and everyday commands. `make demo` and `make test` install on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# sam2 builds from source; its optional CUDA extension is not needed.
export SAM2_BUILD_CUDA := 0

.PHONY: install test demo demo-hmnet gpu-check app

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q "torch>=2.5.1" "torchvision>=0.20"
	$(PY) -m pip install -q --no-build-isolation "sam2==1.1.0"
	$(PY) -m pip install -q -e ".[dev,app]"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q -n 2 tests

demo: install
	$(PY) scripts/demo.py

demo-hmnet: install
	$(PY) scripts/demo_hmnet.py

# the web app on http://127.0.0.1:7860 with make demo's checkpoint (APP_ARGS: more flags)
app: install
	$(PY) -m fssam.app $(APP_ARGS)

gpu-check: install
	$(PY) scripts/gpu_check.py
