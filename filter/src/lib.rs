//! meshtrace filter: a proxy-wasm HTTP filter that gives every request a span.
//!
//! On each request it extracts the incoming trace context, starts a SERVER span, writes the
//! span's context on the upstream request, and when the stream ends exports the span as OTLP to
//! the collector shim. The domain logic lives in plain modules tested natively; only `glue`
//! touches the proxy-wasm host, and it is compiled for wasm32 only.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod attributes;
pub mod config;
pub mod content;
pub mod correlation;
pub mod export;
pub mod host;
pub mod ids;
pub mod log_throttle;
pub mod metrics;
pub mod propagation;
pub mod request;
pub mod resource;
pub mod route;
pub mod sampling;
pub mod semconv;
pub mod span;
pub mod tags;
pub mod trace;

// The host boundary is never part of a unit-test build (natively it could not link; under
// wasm-bindgen-test it would import `env.proxy_*` that Node.js does not have).
#[cfg(all(target_arch = "wasm32", not(test)))]
mod glue;
