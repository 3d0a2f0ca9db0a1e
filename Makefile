# `make test` is what CI runs (.ci/run) and what README tells you to run: it does its own set-up.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export DCX_TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export DCX_TEST_NODE_CACHE ?= $(CURDIR)/.cache/nodetools
export DCX_REQUIRE_DB ?= 1

.PHONY: install demo test test-fast lint db node-tools browser peers bench clean

$(BIN)/dcx-runbook: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/dcx-runbook

# The wallet fix end to end on a throwaway PostgreSQL: nothing else to set up. Its Prisma and
# TypeScript steps use the tools `node-tools` prepares where npm is here; without them (no npm, no
# registry) the demo skips those steps and says so. The package itself installs nothing from npm.
NODE_TOOLS_DIR = $(or $(DCX_NODE_TOOLS_DIR),$(DCX_TEST_NODE_CACHE))
demo: install
	-@$(MAKE) --no-print-directory node-tools DCX_TEST_NODE_CACHE="$(NODE_TOOLS_DIR)"
	DCX_NODE_TOOLS_DIR="$(NODE_TOOLS_DIR)" $(BIN)/dcx-runbook demo
	DCX_NODE_TOOLS_DIR="$(NODE_TOOLS_DIR)" $(BIN)/dcx-runbook demo --fleet

db:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  command -v pg_ctlcluster >/dev/null && \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | sort -n | tail -1) main start; }
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; \
	  echo "PostgreSQL on 127.0.0.1:5432 did not come up" >&2; exit 1

# Debian's Chromium, for the incident report's tests in a real headless browser.
browser:
	@command -v chromium >/dev/null || { \
	  command -v apt-get >/dev/null && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }; } || \
	  echo "chromium missing: the incident report's browser tests will be skipped"

# The engine benchmark's peers (benchmarks/peers.py): Sqitch and its PostgreSQL driver from
# Debian's packages, Liquibase (the npm package, pinned there: the whole distribution and the
# PostgreSQL JDBC driver, run on the installed JDK) into .cache/peers. It never fails: a peer that
# can't be installed is reported by the benchmark, and by its smoke test, with the reason.
export DCX_BENCH_PEERS_DIR ?= $(CURDIR)/.cache/peers
peers: install
	@$(BIN)/python benchmarks/peers.py install

node-tools: install
	@if command -v npm >/dev/null; then \
	  $(BIN)/python -c 'import os, pathlib; from tests.support.nodetools import ensure_node_tools as e; \
	  print("node tools:", e(pathlib.Path(os.environ["DCX_TEST_NODE_CACHE"])).bin_dir)'; \
	else echo "node/npm missing: the Prisma and TypeScript tests will be skipped"; fi

lint: install
	$(BIN)/ruff format --check src tests
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

test: install db node-tools browser peers lint
	$(BIN)/pytest -q $(PYTEST_ARGS)

# The quick loop while editing: no node tools, and neither the `slow` tests (fault matrices, lock
# stalls, the wheel install, a second server) nor the `node` ones (Prisma CLI, TypeScript).
test-fast: install db lint
	$(BIN)/pytest -q -m "not slow and not node" $(PYTEST_ARGS)

# BENCH_ARGS: e.g. `--only engine --sizes 10,100 --peers none` (benchmarks/run.py --help).
bench: install db peers
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
