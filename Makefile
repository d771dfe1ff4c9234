# Two commands on a fresh machine: `make demo` and `make test`.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint unit down

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: install
	$(BIN)/hub demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Installs, starts local Kafka and PostgreSQL (if not pointed elsewhere), lints, runs every test.
test: install lint
	$(BIN)/hub infra up
	$(BIN)/pytest -q -ra

unit: install
	$(BIN)/pytest -q tests/unit

down: install
	$(BIN)/hub infra down
