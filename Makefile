# The two commands of the README: `make demo` and `make test`. Each sets up .venv from nothing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev

.PHONY: install demo test lint typecheck unit test-otel-lowest test-py310 bench clean

# constraints.txt pins the exact versions `make test` is known to pass with (a fresh resolve can
# pick, say, an older celery to satisfy a newer python-dateutil); users get pyproject's ranges.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## make demo: run the main example on the embedded default (console + local flow store).
demo: $(STAMP)
	@rm -f .dashfrog/flows.db .dashfrog/flows.db-wal .dashfrog/flows.db-shm
	env -u OTEL_EXPORTER_OTLP_ENDPOINT DASHFROG_STORE=.dashfrog/flows.db $(PY) examples/demo.py

## make test: lint, format check, strict typing, then every test.
test: lint typecheck unit

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict dashfrog_sdk

unit: $(STAMP) .cache/mermaid/.installed
	$(PY) -m pytest -q

## make test-otel-lowest: the core tests on the lowest OpenTelemetry pyproject admits (a second
## venv, .venv-otel-lowest; dashfrog_sdk/_otel lists what differs between versions).
OTEL_LOWEST := 1.43.0
LOWEST      := .venv-otel-lowest
$(LOWEST)/.installed-$(OTEL_LOWEST): $(STAMP) pyproject.toml
	rm -rf $(LOWEST)
	$(VENV)/bin/uv venv --quiet --python $(PY) $(LOWEST)
	$(VENV)/bin/uv pip install --quiet --python $(LOWEST)/bin/python -e . \
	    opentelemetry-api==$(OTEL_LOWEST) opentelemetry-sdk==$(OTEL_LOWEST) \
	    opentelemetry-exporter-otlp==$(OTEL_LOWEST) \
	    opentelemetry-propagator-jaeger==$(OTEL_LOWEST) opentelemetry-propagator-ot-trace \
	    'hypothesis>=6.100' \
	    $$(grep -E '^(pytest|pytest-asyncio|pytest-timeout|rotel|pyyaml)==' constraints.txt)
	@touch $@

test-otel-lowest: $(LOWEST)/.installed-$(OTEL_LOWEST)
	$(LOWEST)/bin/python -m pytest -q -p no:cacheprovider \
	    tests/flows tests/propagation tests/config/test_setup.py tests/internals

## make test-py310: `make test` again on Python 3.10, the oldest pyproject admits, in its own
## venv (.venv-py310). PY310 names the interpreter (found under pyenv, else on PATH; pyenv's
## shims answer with another version, so each candidate is asked).
PY310 ?= $(shell for p in $$HOME/.pyenv/versions/3.10*/bin/python $$(command -v python3.10); do \
    $$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && { echo $$p; break; }; done)
test-py310:
	@test -n "$(PY310)" || { echo "test-py310: no Python 3.10 found; set PY310=/path/to/python3.10"; exit 1; }
	$(MAKE) test PYTHON=$(PY310) VENV=.venv-py310

# Mermaid itself (from npm) parses every diagram the CLI draws, when node/npm are there;
# tests/store/test_render.py skips that one check otherwise.
.cache/mermaid/.installed:
	@mkdir -p .cache/mermaid
	-@command -v npm >/dev/null && npm install --silent --no-audit --no-fund \
	    --prefix .cache/mermaid mermaid@11 jsdom >/dev/null 2>&1 && touch $@ \
	    || echo "mermaid from npm not installed: its parser check will be skipped"

bench: $(STAMP)
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/store.py
	$(PY) benchmarks/http_overhead.py
	$(PY) benchmarks/export.py
	$(PY) benchmarks/progress.py

clean:
	rm -rf $(VENV) $(LOWEST) .venv-py310 .dashfrog .pytest_cache .mypy_cache .ruff_cache
