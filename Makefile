# Set-up on a fresh machine: `make demo` and `make test` create the venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean

$(STAMP): pyproject.toml
	@command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,hiredis]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python docs/examples/demo.py

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check aiotaskq tests benchmarks docs/examples
	$(BIN)/ruff format --check aiotaskq tests benchmarks docs/examples
	$(BIN)/mypy
	$(BIN)/mypy --explicit-package-bases docs/examples

format: $(STAMP)
	$(BIN)/ruff check --fix aiotaskq tests benchmarks docs/examples
	$(BIN)/ruff format aiotaskq tests benchmarks docs/examples

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
