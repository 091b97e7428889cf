# Probo: `make run` serves the exchange, `make test` runs the suite. Both set up
# ./.venv first; with no PROBO_DATABASE_URL / PROBO_REDIS_URL, embedded servers
# start under ./.probo/.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROBO := $(VENV)/bin/probo
STAMP := $(VENV)/.installed

.PHONY: install run test bench lint audit migrate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PROBO) serve

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench.startup
	$(PY) -m bench.ledger

lint: $(STAMP)
	$(VENV)/bin/ruff check probo tests bench

audit: $(STAMP)
	$(PROBO) audit

migrate: $(STAMP)
	$(PROBO) migrate

clean:
	rm -rf $(VENV) .probo .pytest_cache .hypothesis
