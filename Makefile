# Every target installs what it needs: a virtual environment in .venv from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test fuzz lint typecheck pytest bench clean

$(STAMP): pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kmem demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/mypy
	sh tests/browser/ensure-chromium.sh
	$(BIN)/pytest
	KMEM_PURE=1 $(BIN)/pytest
	sh tools/fuzz.sh 20

# The compiled core's lockstep tests under AddressSanitizer and UBSan, at length.
fuzz: $(STAMP)
	sh tools/fuzz.sh 2000

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build .mypy_cache .pytest_cache .ruff_cache src/kmem/*.so
