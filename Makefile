# Two entry points for a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -c constraints.txt

.PHONY: venv quickstart test lint clean peers

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/activate pyproject.toml constraints.txt
	$(PIP) -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

quickstart: $(VENV)/.installed
	$(BIN)/python -m sceneparse quickstart --out quickstart_out

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check sceneparse tests benchmarks tools

clean:
	rm -rf $(VENV) quickstart_out

# The peers of benchmarks/peers.py live in their own virtual environment, never in the package's:
# mmsegmentation 1.2.2 on mmcv-lite (pure Python, no compiled ops; the script stands in for
# `mmcv.ops`, with mmcv's own PSA mask kernel compiled from the C++ sources mmcv-lite ships by
# benchmarks/mmcv_psamask.py) and mmengine, with the same torch pin, plus sceneparse itself (editable, with its
# dependencies). sssegmentation 1.7.0 is installed where it installs (`|| true`); it imports
# torchvision, whose PyPI wheel for this torch is a CUDA build, so on a CPU-only machine it does not
# import and the script leaves it out.
PEERS_VENV := .venv-peers
PEERS_PIP := $(PEERS_VENV)/bin/pip install -c constraints.txt

$(PEERS_VENV)/.installed: constraints.txt pyproject.toml benchmarks/mmcv_psamask.py
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q --upgrade pip setuptools wheel
	$(PEERS_PIP) -q torch numpy
	$(PEERS_PIP) -q mmengine==0.10.7 ftfy regex
	MMCV_WITH_OPS=0 $(PEERS_PIP) -q --no-build-isolation mmcv-lite==2.1.0
	$(PEERS_PIP) -q mmsegmentation==1.2.2
	$(PEERS_PIP) -q --no-deps sssegmentation==1.7.0 dill || true
	$(PEERS_PIP) -q -e .
	$(PEERS_VENV)/bin/python benchmarks/mmcv_psamask.py
	touch $@

peers: $(PEERS_VENV)/.installed
	$(PEERS_VENV)/bin/python benchmarks/peers.py $(PEERS_ARGS)
