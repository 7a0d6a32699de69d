# Ratchet: the two commands a newcomer needs are `make demo` and `make test`.
# Every target installs what it needs first; stamps make a second run fast.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# node-gyp builds better-sqlite3 against the headers of the node that runs it; point it at them
# so it never tries to download headers (there is no network for that here).
NODE_PREFIX := $(shell dirname $$(dirname $$(command -v node)))
export npm_config_nodedir := $(NODE_PREFIX)
export npm_config_fund := false
export npm_config_audit := false
export npm_config_update_notifier := false

VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
NODE_STAMP := node_modules/.ratchet-installed
VENV_STAMP := $(VENV)/.ratchet-installed
BUILD_STAMP := node_modules/.ratchet-built
TS_SOURCES := $(shell find packages/*/src -name '*.ts' -not -name '*.test.ts' 2>/dev/null) $(wildcard packages/*/tsconfig.json)
WEB_STAMP := packages/web/dist/index.html
WEB_SOURCES := $(shell find packages/web/src -name '*.ts*' -not -name '*.test.ts' 2>/dev/null) $(wildcard packages/web/*.ts packages/web/*.json packages/web/index.html)
CHROMIUM := /usr/bin/chromium

.PHONY: help install demo serve test test-ts test-py bench lint format build clean

help:
	@echo "make demo   set up and run the demo (server on the embedded store with sample data)"
	@echo "make test   set up and run every test (TypeScript, Python, SQLite and PostgreSQL)"
	@echo "make bench  set up and run the benchmarks, writing bench/results"

# `npm install` with the committed lock rather than `npm ci`: npm 11 writes locks without the
# other platforms' optional packages (biome's binaries) and then refuses them in `npm ci`.
$(NODE_STAMP): package.json package-lock.json $(wildcard packages/*/package.json)
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

# One project venv for the Python SDK's tests and the model worker (PyTorch from PyPI brings its
# CUDA libraries; uv's cache makes a second install take seconds).
$(VENV_STAMP): requirements-dev.txt python-sdk/pyproject.toml worker/requirements.txt worker/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	test -x $(UV) || $(VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9
	$(UV) pip install --quiet --python $(PY) -r requirements-dev.txt -r worker/requirements.txt -e python-sdk -e worker
	@touch $@

install: $(NODE_STAMP) $(VENV_STAMP)

$(BUILD_STAMP): $(NODE_STAMP) $(TS_SOURCES)
	node_modules/.bin/tsc -b packages/cli packages/sdk packages/loop
	@touch $@

# The dashboard and the widget script, served by `ratchet serve` from packages/web/dist.
$(WEB_STAMP): $(NODE_STAMP) $(WEB_SOURCES)
	npm run build --silent -w packages/web

# The end-to-end tests drive Debian's chromium (never a downloaded browser build).
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium from Debian's packages" >&2; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) >&2; \
	else echo "chromium is missing and cannot be installed here (need root and apt-get)" >&2; exit 1; fi

build: $(BUILD_STAMP) $(WEB_STAMP)

# DEMO_ARGS passes options to `ratchet demo` (e.g. DEMO_ARGS="--seed 8 --exit --record demo.json").
demo: install build
	node packages/cli/bin/ratchet.js demo $(DEMO_ARGS)

serve: install build
	node packages/cli/bin/ratchet.js serve

test: install build $(CHROMIUM)
	@pg_url=$${RATCHET_TEST_POSTGRES_URL:-$$(scripts/postgres.sh || true)}; \
	if [ -z "$$pg_url" ]; then echo "warning: no PostgreSQL; PostgreSQL suites are skipped" >&2; fi; \
	export RATCHET_TEST_POSTGRES_URL=$$pg_url; \
	node_modules/.bin/biome check . --diagnostic-level=error && \
	scripts/labelstudio-venv.sh && \
	scripts/mlflow-venv.sh && \
	node_modules/.bin/vitest run && \
	$(PY) -m pytest -q python-sdk && \
	$(PY) -m pytest -q worker/tests

bench: install build
	node --max-old-space-size=12000 --conditions=source --import tsx bench/run.ts

lint:
	node_modules/.bin/biome check .

format:
	node_modules/.bin/biome check --write .

clean:
	rm -rf node_modules packages/*/dist packages/*/*.tsbuildinfo $(VENV)
