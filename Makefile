# Every target installs what it needs: a virtual environment in .venv from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test fuzz lint typecheck pytest bench mutants clean

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
	rm -rf build/coverage && mkdir -p build/coverage
	$(BIN)/pytest --cov --cov-report=
	KMEM_PURE=1 $(BIN)/pytest --cov --cov-append --cov-report=
	$(BIN)/python tools/coverage_layers.py --check 98
	sh tools/fuzz.sh 20

# The compiled core's lockstep tests under AddressSanitizer and UBSan, at length.
fuzz: $(STAMP)
	sh tools/fuzz.sh 2000

# Mutation testing of the core, module by module (long: hours for all of them on 2 CPUs):
#   make mutants                              every module of tools/mutants.py
#   make mutants MODULES="page/buddy slab/slub" JOBS=2
mutants: $(STAMP)
	$(BIN)/python tools/mutants.py --jobs=$(or $(JOBS),1) $(MODULES)

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build .mypy_cache .pytest_cache .ruff_cache src/kmem/*.so
