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
	$(BIN)/ruff check sceneparse tests benchmarks

clean:
	rm -rf $(VENV) quickstart_out
