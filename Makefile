# The two commands a person needs: `make run` and `make test`. Everything else is a step of them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PLUGINS := $(wildcard plugins/*/pyproject.toml)
STAMP  := $(VENV)/.installed
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# llama.cpp for the x86-64-v3 baseline (AVX2, FMA, F16C), not -march=native: the same wheel goes
# into the image, which must run on other boxes and under qemu's emulated CPU. GGML_RPC builds
# llama.cpp's RPC backend (`appliance rpc-worker`, the `rpc_workers` setting).
ifeq ($(shell uname -m),x86_64)
export CMAKE_ARGS ?= -DGGML_RPC=ON -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
else
export CMAKE_ARGS ?= -DGGML_RPC=ON
endif

TEST_MODELS := $(CURDIR)/.cache/models

.PHONY: run test test-clients lint format install sysdeps test-deps image-deps models test-models image image-test clean

# The image boot test (tests/test_image.py) runs when CI=true or APPLIANCE_IMAGE_TEST=1.
IMAGE_TEST := $(filter true 1,$(CI) $(APPLIANCE_IMAGE_TEST))

# The echo test plugin is installed for the tests; the box people use does not offer it.
run: install models
	APPLIANCE_DISABLE_PLUGINS=echo $(BIN)/appliance serve

test: install test-models test-deps $(if $(IMAGE_TEST),image-deps)
	$(BIN)/python -m pytest -q

# Real third-party clients against a live box: Open WebUI (installed offline from PyPI under
# .cache/clients/), openai-node and ollama-js. Not part of `make test` (Open WebUI is large).
test-clients: install test-models
	tests/clients/run

# The x86-64 image (build/image/): Debian bookworm, the project, the default models.
image: install test-models image-deps
	image/build

image-test: install test-models image-deps
	APPLIANCE_IMAGE_TEST=1 $(BIN)/python -m pytest -q -m image

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

$(STAMP): $(BIN)/python pyproject.toml $(PLUGINS) Makefile | sysdeps
	$(BIN)/pip install --quiet -e '.[test,lint]' $(foreach p,$(PLUGINS),-e $(dir $(p)))
	@# A llama-cpp-python built before GGML_RPC was set is rebuilt once (pip's cache would
	@# hand back the same build, hence --no-cache-dir).
	@if ! ls $(VENV)/lib/python*/site-packages/llama_cpp/lib/libggml-rpc.so* >/dev/null 2>&1; then \
	  echo "rebuilding llama-cpp-python with its RPC backend"; \
	  $(BIN)/pip install --quiet --no-cache-dir --force-reinstall --no-deps \
	    "llama-cpp-python==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')"; \
	fi
	touch $@

# System packages (only when root and apt-get exists; otherwise the tests that need them skip).
define apt_install
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi; \
	fi
endef

SYSTEM_PACKAGES := iproute2 mtools
sysdeps:
	$(call apt_install,$(SYSTEM_PACKAGES))

# Only the tests need a browser (the web page is driven in Debian's chromium); `make run` does not.
TEST_PACKAGES := chromium fonts-dejavu-core
test-deps:
	$(call apt_install,$(TEST_PACKAGES))

IMAGE_PACKAGES := mmdebstrap e2fsprogs qemu-system-x86 mtools
image-deps:
	$(call apt_install,$(IMAGE_PACKAGES))

# The default models (fetched once: a file already in the store with the right hash is kept).
models: install
	$(BIN)/appliance models fetch --default

test-models: install
	$(BIN)/appliance models fetch --default --models-dir $(TEST_MODELS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build/image
