//! Harness for meshtrace's end-to-end tests: real Envoy 1.40 (from the project's virtualenv)
//! running the built filter `.wasm`, the collector shim and the demo upstream, all on
//! `127.0.0.1` with ephemeral ports so that test runs never collide.
//!
//! Prerequisites are built by `make test` (`make wasm envoy`); a test that lacks one fails with
//! the command that provides it, it never skips.

pub mod browser;
pub mod conformance;
pub mod envoy;
pub mod injected;
pub mod shim_e2e;
pub mod stack;
pub mod w3c;

use std::path::PathBuf;
use std::time::Duration;

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The release build of the filter, as `make wasm` leaves it.
pub fn filter_wasm() -> PathBuf {
    let path = repo_root().join("target/wasm32-wasip1/release/meshtrace_filter.wasm");
    assert!(
        path.is_file(),
        "{} is missing: run `make wasm` (cargo build -p meshtrace-filter --release --target wasm32-wasip1)",
        path.display()
    );
    path
}

/// Polls `probe` every 50 ms until it yields a value or `limit` passes.
pub async fn eventually<T, F, Fut>(limit: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
