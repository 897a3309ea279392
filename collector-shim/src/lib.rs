//! meshtrace collector shim: receives OTLP/HTTP spans (from the meshtrace wasm filter, Envoy's
//! OpenTelemetry tracer or any OpenTelemetry SDK), keeps recent traces in an embedded SQLite
//! store for the query API and the web viewer, and forwards every accepted request to an
//! optional OTLP/HTTP backend.
//!
//! ```text
//!                       OTLP/HTTP listener (default 127.0.0.1:4318)
//!  senders ──POST /v1/traces──► ingest ──► export queue (bounded) ──► Forwarder ──► backend
//!                                 │                                    (retries, drops counted)
//!                                 └──► SpanStore (SQLite, bounded by spans, bytes and age)
//!                                          ▲
//!  operators ──GET /, /api/…, /healthz, /metrics── admin listener (default 127.0.0.1:9464)
//! ```
//!
//! Library entry points: [`Shim::start`] runs both listeners and the forwarder;
//! [`otlp_http_app`] and [`admin_app`] build the routers alone (for `oneshot` tests).
//! Protocol rules follow the OTLP specification
//! (<https://opentelemetry.io/docs/specs/otlp/>); see each module for the parts it implements.

// Request data must never panic the shim; tests may unwrap.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod admin;
pub mod config;
pub mod export;
pub mod ingest;
pub mod metrics;
pub mod query;
pub mod rpc;
pub mod state;
pub mod store;
pub mod viewer;

use std::future::IntoFuture;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

pub use admin::admin_app;
pub use config::{ConfigError, ConfigErrors, ExportConfig, RetryConfig, ShimConfig, StoreConfig};
pub use ingest::otlp_http_app;
pub use metrics::Metrics;
pub use state::AppState;

/// A running shim: both listeners bound and serving, the forwarder running when a backend is
/// configured. Dropping it without [`Shim::shutdown`] also stops the listeners and lets the
/// forwarder drain, but in the background, without a deadline, and nothing waits for it.
#[derive(Debug)]
pub struct Shim {
    otlp_http_addr: SocketAddr,
    admin_addr: SocketAddr,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<io::Result<()>>>,
    forwarder: Option<export::ForwarderHandle>,
    store: store::SpanStore,
    shutdown_timeout: Duration,
}

/// Why [`Shim::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid (every bad field is listed).
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// A listener could not be bound.
    #[error("{field}: cannot listen on {addr}: {source}")]
    Bind {
        /// `otlp_http_addr` or `admin_addr`.
        field: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The forwarder could not be created.
    #[error(transparent)]
    Export(#[from] export::ExportError),
    /// The trace store could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

// === impl Shim ===

impl Shim {
    /// Validates `config`, binds both listeners (port 0 allowed) and starts serving in the
    /// current tokio runtime. Fails before serving anything if any part cannot start.
    pub async fn start(config: ShimConfig) -> Result<Shim, StartError> {
        config.validate()?;
        let metrics = Arc::new(Metrics::new());
        let forwarder = match &config.export {
            Some(export_config) => {
                let forwarder = export::Forwarder::new(export_config, Arc::clone(&metrics))?;
                Some((forwarder, export::queue(export_config.queue_capacity)))
            }
            None => None,
        };
        let otlp_listener = bind("otlp_http_addr", config.otlp_http_addr).await?;
        let admin_listener = bind("admin_addr", config.admin_addr).await?;
        let otlp_http_addr = local_addr("otlp_http_addr", &otlp_listener, config.otlp_http_addr)?;
        let admin_addr = local_addr("admin_addr", &admin_listener, config.admin_addr)?;

        let (queue, forwarder) = match forwarder {
            Some((forwarder, (queue, receiver))) => (Some(queue), Some(forwarder.spawn(receiver))),
            None => (None, None),
        };
        let state = AppState::new(&config, metrics, queue)?;
        let store = state.store().clone();
        let (stop, stopped) = watch::channel(false);
        let servers = vec![
            serve(otlp_listener, otlp_http_app(state.clone()), stopped.clone()),
            serve(admin_listener, admin_app(state), stopped),
        ];
        Ok(Shim {
            otlp_http_addr,
            admin_addr,
            stop,
            servers,
            forwarder,
            store,
            shutdown_timeout: Duration::from_millis(config.shutdown_timeout_ms),
        })
    }

    /// The bound OTLP/HTTP address (the real port when 0 was asked for).
    pub fn otlp_http_addr(&self) -> SocketAddr {
        self.otlp_http_addr
    }

    /// The bound admin address (the real port when 0 was asked for).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Graceful: stops accepting connections, lets in-flight requests finish (at most
    /// `shutdown_timeout_ms`), then lets the forwarder drain its queue (at most
    /// `shutdown_timeout_ms` again; what is left is counted as dropped), then writes what the
    /// trace store has queued and closes it (at most `shutdown_timeout_ms`), and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for server in self.servers {
            let abort = server.abort_handle();
            match tokio::time::timeout(self.shutdown_timeout, server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => warn!(%error, "listener ended with an error"),
                Ok(Err(error)) => warn!(%error, "listener task ended abnormally"),
                Err(_) => {
                    warn!("in-flight requests did not finish in time; closing them");
                    abort.abort();
                }
            }
        }
        if let Some(forwarder) = self.forwarder {
            forwarder.drain(self.shutdown_timeout).await;
        }
        self.store.close(self.shutdown_timeout).await;
    }
}

async fn bind(field: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            field,
            addr,
            source,
        })
}

fn local_addr(
    field: &'static str,
    listener: &TcpListener,
    addr: SocketAddr,
) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Bind {
        field,
        addr,
        source,
    })
}

fn serve(
    listener: TcpListener,
    app: axum::Router,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<io::Result<()>> {
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        // Also stops if the Shim (and so the sender) is dropped.
        let _ = stopped.wait_for(|stop| *stop).await;
    });
    tokio::spawn(server.into_future())
}
