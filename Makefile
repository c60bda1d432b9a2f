# Orchestra: `make run` brings the whole stack up; `make test` runs every test.
VENV ?= .venv
PYTHON ?= python3
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)

.PHONY: install services db console browser compose run test lint docs bench bench-quick bench-peers soak clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

install: $(VENV)/.installed

services:
	bash scripts/services.sh

# The browser console (console/): npm ci when the lock file changes, then a copy of the sources
# and vendored files into api/static/console/ when any of them changes.
CONSOLE_OUT := api/static/console
CONSOLE_SRC := $(shell find console/src -type f 2>/dev/null) console/build.mjs

console/node_modules/.ci-done: console/package.json console/package-lock.json
	cd console && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CONSOLE_OUT)/.built: console/node_modules/.ci-done $(CONSOLE_SRC)
	node console/build.mjs
	touch $@

console: $(CONSOLE_OUT)/.built

# Debian's Chromium for the browser tests (Playwright drives it; it downloads no browser).
browser:
	@sh scripts/browser.sh

# Debian's docker-compose, which validates docker-compose.yml for the tests (no engine needed).
compose:
	@sh scripts/compose.sh

db: install services
	$(BIN)/python -m scripts.createdb
	$(BIN)/alembic upgrade head

# Secrets are written readable by their owner only (umask 077 for the whole recipe line).
.demo-key: | db
	umask 077 && $(BIN)/flask --app api keys create --tenant demo > .demo-key.tmp && \
		tail -n 1 .demo-key.tmp > .demo-key && rm -f .demo-key.tmp

# Flower's password for `make run`: Flower refuses to start without one (outside
# ORCHESTRA_ENV=development), and none ships with the code. Made once, kept like .demo-key.
.flower-password:
	@umask 077 && $(PYTHON) -c "import secrets; print(secrets.token_urlsafe(18))" > $@

# The secret that encrypts chat providers' API keys (PROVIDER_KEY_SECRETS): a Fernet key of this
# machine's own, made once and kept like .demo-key (the stored keys cannot be read without it).
.provider-key-secret:
	@umask 077 && $(BIN)/python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())" > $@

run: db .demo-key .flower-password .provider-key-secret console
	@# A key from a database that has since been dropped is useless: make a new one.
	@$(BIN)/flask --app api keys verify "$$(cat .demo-key)" >/dev/null 2>&1 || \
		{ rm -f .demo-key && $(MAKE) --no-print-directory .demo-key; }
	@chmod 600 .demo-key .flower-password .provider-key-secret  # older files were world-readable
	@echo
	@echo "API key of tenant 'demo': $$(cat .demo-key)"
	@echo "Flower login: $${FLOWER_BASIC_AUTH:-admin:$$(cat .flower-password)}"
	@echo "Try:  curl -s -X POST http://127.0.0.1:$${API_PORT:-8000}/api/v1/jobs \\"
	@echo "        -H 'Authorization: Bearer $$(cat .demo-key)' -H 'Content-Type: application/json' \\"
	@echo "        -d '{\"kind\": \"sleep\", \"params\": {\"seconds\": 3}}'"
	@echo "Console: http://127.0.0.1:$${API_PORT:-8000}/  (sign in with the key above)"
	@echo "API :$${API_PORT:-8000}  relay :$${RELAY_PORT:-8001}  Flower :$${FLOWER_PORT:-5555}  (Ctrl-C stops all)"
	@echo
	@FLOWER_BASIC_AUTH="$${FLOWER_BASIC_AUTH:-admin:$$(cat .flower-password)}" \
		PROVIDER_KEY_SECRETS="$${PROVIDER_KEY_SECRETS:-$$(cat .provider-key-secret)}" \
		$(BIN)/honcho start -f Procfile

lint: install console/node_modules/.ci-done
	$(BIN)/ruff check .
	cd console && npm run --silent check

# docs/api.md, docs/events.md and docs/configuration.md, generated from the code
# (tests/unit/test_docs.py fails when a committed one differs).
docs: install
	$(BIN)/python -m scripts.docs

test: install services lint console browser compose
	$(BIN)/pytest

# The peers section's systems (bench/peers/): Procrastinate and PgQueuer in the project venv
# (their pins change none of ours); Oban, which needs Python >= 3.12, in a venv of its own.
# Without a Python 3.12 the section runs without Oban and says so.
PYTHON312 ?= $(firstword $(wildcard /root/.pyenv/versions/3.12*/bin/python) $(shell command -v python3.12))
BENCH312 := .venv-bench312

$(VENV)/.peers-installed: bench/requirements-peers.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r bench/requirements-peers.txt
	touch $@

$(BENCH312)/.installed: bench/requirements-peers312.txt
	@if [ -n "$(PYTHON312)" ]; then \
		$(PYTHON312) -m venv $(BENCH312) && \
		$(BENCH312)/bin/pip install --quiet --disable-pip-version-check \
			-r bench/requirements-peers312.txt && touch $@; \
	else echo "no Python >= 3.12 (PYTHON312=): the peers section runs without Oban"; fi

bench-peers: $(VENV)/.peers-installed $(BENCH312)/.installed

# bench/RESULTS.md and bench/throughput_latency.png; ARGS=--quick (or make bench-quick) in < 2 min.
bench: install services bench-peers
	$(BIN)/python -m bench.run $(ARGS)

bench-quick: install services bench-peers
	$(BIN)/python -m bench.run --quick $(ARGS)

soak: install services
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) $(BENCH312) .pytest_cache .ruff_cache console/node_modules $(CONSOLE_OUT) tests/artifacts
