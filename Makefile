# Two commands on a fresh machine: `make demo` and `make test`.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install web browser demo test lint unit faults down

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The dashboard (web/dist), rebuilt when its sources change; npm packages from the registry.
WEB_SOURCES := $(wildcard web/src/*) web/package.json web/package-lock.json web/build.mjs
web: web/dist/index.html

web/dist/index.html: $(WEB_SOURCES)
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build

# Headless Chromium and CJK fonts for the dashboard's browser test (Debian packages).
browser:
	@command -v chromium >/dev/null && fc-list | grep -qi "noto sans cjk" || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-noto-cjk)

demo: install web
	$(BIN)/hub demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Installs, starts local Kafka and PostgreSQL (if not pointed elsewhere), lints, runs every test.
test: install lint web browser
	cd web && npm test --silent
	$(BIN)/hub infra up
	$(BIN)/pytest -q -ra
	$(MAKE) --no-print-directory faults

# Faults under load (bench/faults.py): the worker killed with SIGKILL, Kafka, PostgreSQL, the API
# and the gateway restarted while reports flow; then nothing may be lost or doubled (exit 1).
faults: install
	$(BIN)/hub infra up
	$(BIN)/python -m bench.faults --reports 3000 --rate 60 --devices 500

unit: install
	$(BIN)/pytest -q tests/unit

down: install
	$(BIN)/hub infra down
