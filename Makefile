# The two commands a person needs: `make run` and `make test`. Everything else is a step of them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PLUGINS := $(wildcard plugins/*/pyproject.toml)
STAMP  := $(VENV)/.installed
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK := 1

TEST_MODELS := $(CURDIR)/.cache/models

.PHONY: run test lint format install sysdeps models test-models clean

# The echo test plugin is installed for the tests; the box people use does not offer it.
run: install models
	APPLIANCE_DISABLE_PLUGINS=echo $(BIN)/appliance serve

test: install test-models
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy appliance

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml $(PLUGINS) | sysdeps
	$(BIN)/pip install --quiet -e '.[test,lint]' $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $@

# System packages (only when root and apt-get exists; otherwise the tests that need them skip).
SYSTEM_PACKAGES := iproute2 mtools
sysdeps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi; \
	fi

# The default models (fetched once: a file already in the store with the right hash is kept).
models: install
	$(BIN)/appliance models fetch --default

test-models: install
	$(BIN)/appliance models fetch --default --models-dir $(TEST_MODELS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
