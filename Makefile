# make run  — set up everything and serve on :3000 with SQLite and demo data
# make test — the whole test suite (WebSocket end-to-end tests under both worker classes)
# make bench — the load benchmark's preset against a server it starts (BENCH_ARGS to vary)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000

.PHONY: run test bench install migrate seed clean

$(BIN)/activate: requirements.txt tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r tests/requirements.txt
	touch $(BIN)/activate

install: $(BIN)/activate

migrate: install
	$(BIN)/flask --app wsgi db upgrade

seed: migrate
	$(BIN)/flask --app wsgi seed-demo

run: seed
	PORT=$(PORT) $(BIN)/gunicorn --config gunicorn.conf.py wsgi:app

# The whole suite on the default worker class (gthread), then the WebSocket
# end-to-end tests again under gevent, the other class gunicorn.conf.py offers.
GEVENT_TESTS := tests/test_realtime.py tests/test_framing.py tests/test_hostile_input.py \
	tests/test_newest_wins.py

test: install
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)
	VMS_WORKER_CLASS=gevent $(BIN)/python -m pytest -n 2 $(PYTEST_ARGS) $(GEVENT_TESTS)

bench: install
	$(BIN)/python -m tools.bench --start-server $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache
