# Two commands matter on a fresh machine: `make run` and `make test`. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test soak bench lint docs proto clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

run: venv
	$(BIN)/openstrom-bridge demo

test: venv
	$(BIN)/python -m pytest -q

soak: venv
	$(BIN)/python -m pytest -q -m soak tests/soak
	$(BIN)/python bench/ingest.py --boards 100 --seconds 1800 --rss-every 30 --max-growth-mb 20 --record-as soak

bench: venv
	$(BIN)/python bench/accuracy.py
	$(BIN)/python bench/core.py
	$(BIN)/python bench/codec.py
	$(BIN)/python bench/opcua.py
	$(BIN)/python bench/opcua_build.py
	$(BIN)/python bench/service.py
	$(BIN)/python bench/service.py --tls
	$(BIN)/python bench/modbus.py
	$(BIN)/python bench/commits.py
	$(BIN)/python bench/startup.py --devices 1 --devices 10 --devices 100
	$(BIN)/python bench/ingest.py --boards 100
	$(BIN)/python bench/ingest.py --boards 100 --no-opcua --no-mqtt
	$(BIN)/python bench/tls.py
	$(BIN)/python bench/hostile.py

lint: venv
	$(BIN)/ruff check bridge device tests bench
	$(BIN)/ruff format --check bridge device tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

docs: venv
	$(BIN)/python -m bridge.docs_gen

proto: venv
	$(BIN)/python -m grpc_tools.protoc -I bridge/fronts/mqtt --python_out=bridge/fronts/mqtt \
		--pyi_out=bridge/fronts/mqtt bridge/fronts/mqtt/sparkplug_b.proto

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
