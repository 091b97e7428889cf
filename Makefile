# Probo: `make run` serves the exchange, `make test` runs the suite. Both set up
# ./.venv first; with no PROBO_DATABASE_URL / PROBO_REDIS_URL, embedded servers
# start under ./.probo/.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROBO := $(VENV)/bin/probo
STAMP := $(VENV)/.installed

.PHONY: install run test bench bench-engine bench-load bench-writer bench-recovery bench-ws bench-markets bench-webapp lint audit migrate clean

# The matching core is compiled with mypyc (setup.py): reinstall when it changes. mypyc
# type-checks what the compiled modules import too (the rest of probo/orderbook), so a
# change there rebuilds as well: a type error then fails here, not first in CI.
ENGINE_SOURCES := setup.py $(wildcard probo/orderbook/*.py)

$(STAMP): pyproject.toml $(ENGINE_SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PROBO) serve

test: $(STAMP)
	$(PY) -m pytest -q

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: bench-engine bench-load bench-writer bench-recovery bench-ws
	$(PY) -m bench.startup
	$(PY) -m bench.ledger

# Order entry over HTTP (probo serve, 1,000 users, 10 markets) against a bare litestar floor.
bench-load: $(STAMP)
	$(PY) -m bench.load

# The ledger writer alone: ~200,000 trades of a real engine flow committed to Postgres.
bench-writer: $(STAMP)
	$(PY) -m bench.writer

# Start-up recovery of 200,000 open orders and 50,000 users, in process and to /readyz.
bench-recovery: $(STAMP)
	$(PY) -m bench.recovery

# 1,000 WebSocket subscribers of one market while orders flow at 2,000/s over HTTP.
bench-ws: $(STAMP)
	$(PY) -m bench.ws

# Market search (GET /api/v1/markets?q=) among 10,000 markets with trades, p50/p99.
bench-markets: $(STAMP)
	$(PY) -m bench.markets_search

# The market page in Chromium: its first load's bytes and how soon a committed trade shows.
bench-webapp: $(STAMP)
	$(PY) -m bench.webapp

# The matching core against lightmatchingengine and liquibook on one order flow.
bench-engine: $(BENCH_STAMP)
	$(PY) -m bench.engine

lint: $(STAMP)
	$(VENV)/bin/ruff check probo tests bench

audit: $(STAMP)
	$(PROBO) audit

migrate: $(STAMP)
	$(PROBO) migrate

clean:
	rm -rf $(VENV) .probo .pytest_cache .hypothesis build *.so probo/orderbook/*.so
