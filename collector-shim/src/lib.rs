//! meshtrace collector shim: receives OTLP over HTTP (protobuf, JSON) and gRPC from the meshtrace
//! wasm filter, Envoy's OpenTelemetry tracer or any OpenTelemetry SDK; batches across sources;
//! forwards OTLP to one or several backends with retries, one memory budget, an optional disk
//! spool and no silent loss; keeps recent traces in an embedded SQLite store for the query API
//! and the web viewer.
//!
//! ```text
//!  OTLP/HTTP :4318 ─┐                                                  ┌─► exporter A (gRPC)
//!                   ├─► decode ─► Pipeline::admit ─► queue ─► batcher ─┤
//!  OTLP/gRPC :4317 ─┘   (limits)   (budget, spool)                     └─► exporter B (HTTP)
//!                          └──► SpanStore (SQLite; bounded by spans, bytes, age)
//!                                   ▲
//!  operators ── admin :9464: / (viewer), /api/…, /healthz, /readyz, /metrics
//! ```
//!
//! Library entry points: [`Shim::start`] runs everything; [`otlp_http_app`], [`admin_app`] and
//! [`receiver::grpc::trace_service`] build the services alone (for `oneshot` tests). Protocol
//! rules follow the OTLP specification (<https://opentelemetry.io/docs/specs/otlp/>); each module
//! names the parts it implements.

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
pub mod metrics;
pub mod otlp;
pub mod pipeline;
pub mod query;
pub mod receiver;
pub mod rpc;
pub mod spool;
pub mod state;
pub mod store;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod trace_ids;
pub mod viewer;

use std::future::IntoFuture;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use admin::admin_app;
pub use config::{ConfigError, ConfigErrors, ExportConfig, RetryConfig, ShimConfig, StoreConfig};
pub use metrics::Metrics;
pub use receiver::http::otlp_http_app;
pub use state::AppState;

use config::{Env, ProcessEnv};
use export::Exporter;
use pipeline::Pipeline;
use pipeline::batch::BatchLimits;
use spool::{Pending, Spool};

/// A running shim: listeners bound and serving, dispatcher and exporters running.
#[derive(Debug)]
pub struct Shim {
    otlp_http_addr: SocketAddr,
    otlp_grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
    stop_receivers: watch::Sender<bool>,
    stop_admin: watch::Sender<bool>,
    receivers: Vec<JoinHandle<io::Result<()>>>,
    admin: JoinHandle<io::Result<()>>,
    pipeline: Arc<Pipeline>,
    metrics: Arc<Metrics>,
    store: store::SpanStore,
    dispatcher: Option<JoinHandle<()>>,
    replay: Option<JoinHandle<()>>,
    hard_stop: CancellationToken,
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
        /// `otlp_http_addr`, `otlp_grpc_addr` or `admin_addr`.
        field: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An exporter could not be created.
    #[error(transparent)]
    Export(#[from] export::ExportError),
    /// The spool could not be opened.
    #[error("spool: {0}")]
    Spool(#[from] spool::SpoolError),
    /// The trace store could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

// === impl Shim ===

impl Shim {
    /// Validates `config`, opens the spool and the trace store, builds the exporters (header
    /// secrets from the process environment), binds every listener (port 0 allowed) and starts
    /// serving in the current tokio runtime. Fails before serving anything if any part cannot
    /// start.
    pub async fn start(config: ShimConfig) -> Result<Shim, StartError> {
        Self::start_with_env(config, &ProcessEnv).await
    }

    /// [`Shim::start`] with header secrets read from `env`.
    pub async fn start_with_env(config: ShimConfig, env: &impl Env) -> Result<Shim, StartError> {
        config.validate()?;
        let names: Vec<String> = config.exporters.iter().map(|e| e.name.clone()).collect();
        let metrics = Arc::new(Metrics::new(&names));
        let (spool, pending) = match &config.spool {
            Some(spool_config) => {
                let (spool, pending) = Spool::open(spool_config, Arc::clone(&metrics))?;
                (Some(Arc::new(spool)), pending)
            }
            None => (None, Vec::new()),
        };
        let exporters = config
            .exporters
            .iter()
            .map(|e| Exporter::new(e, env, Arc::clone(&metrics), spool.is_some()).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let http_listener = bind("otlp_http_addr", config.otlp_http_addr).await?;
        let grpc_listener = bind("otlp_grpc_addr", config.otlp_grpc_addr).await?;
        let admin_listener = bind("admin_addr", config.admin_addr).await?;
        let otlp_http_addr = local_addr("otlp_http_addr", &http_listener, config.otlp_http_addr)?;
        let otlp_grpc_addr = local_addr("otlp_grpc_addr", &grpc_listener, config.otlp_grpc_addr)?;
        let admin_addr = local_addr("admin_addr", &admin_listener, config.admin_addr)?;

        let pipeline = Arc::new(Pipeline::new(
            &config.queue,
            spool.clone(),
            Arc::clone(&metrics),
            names,
        ));
        // Opened before any task starts, so a store that cannot open leaves nothing running.
        let state = AppState::new(&config, Arc::clone(&metrics), Arc::clone(&pipeline))?;
        let store = state.store().clone();
        let hard_stop = CancellationToken::new();
        let dispatcher = (!exporters.is_empty()).then(|| {
            let limits = BatchLimits {
                max_spans: config.batch.max_spans,
                max_bytes: config.batch.max_bytes,
                timeout: Duration::from_millis(config.batch.timeout_ms),
            };
            tokio::spawn(Arc::clone(&pipeline).run_dispatcher(exporters, limits, hard_stop.clone()))
        });
        let replay = match spool {
            Some(spool) if !pending.is_empty() => {
                info!(records = pending.len(), "replaying spans left in the spool");
                Some(tokio::spawn(replay(spool, Arc::clone(&pipeline), pending)))
            }
            _ => None,
        };

        let (stop_receivers, receivers_stopped) = watch::channel(false);
        let (stop_admin, admin_stopped) = watch::channel(false);
        let receivers = vec![
            serve_http(
                http_listener,
                otlp_http_app(state.clone()),
                receivers_stopped.clone(),
            ),
            serve_grpc(grpc_listener, state.clone(), receivers_stopped),
        ];
        let admin = serve_http(admin_listener, admin_app(state), admin_stopped);
        Ok(Shim {
            otlp_http_addr,
            otlp_grpc_addr,
            admin_addr,
            stop_receivers,
            stop_admin,
            receivers,
            admin,
            pipeline,
            metrics,
            store,
            dispatcher,
            replay,
            hard_stop,
            shutdown_timeout: Duration::from_millis(config.shutdown_timeout_ms),
        })
    }

    /// The bound OTLP/HTTP address.
    pub fn otlp_http_addr(&self) -> SocketAddr {
        self.otlp_http_addr
    }

    /// The bound OTLP/gRPC address.
    pub fn otlp_grpc_addr(&self) -> SocketAddr {
        self.otlp_grpc_addr
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The shim's metrics (still readable after [`Shim::shutdown`]).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Graceful shutdown: stop accepting (receivers close their listeners and finish in-flight
    /// requests, at most `shutdown_timeout_ms`), stop admitting, then drain: the dispatcher
    /// flushes every queued span to the exporters and waits for them, at most
    /// `shutdown_timeout_ms` again. What is still undelivered then stays in the spool (counted
    /// `spool_retained`) or, without a spool, is counted `dropped{reason="shutdown"}`. Then the
    /// trace store writes what it has queued and closes (at most `shutdown_timeout_ms`). The
    /// admin listener (metrics, `/readyz` answering 503) stays up until the end.
    pub async fn shutdown(self) {
        let _ = self.stop_receivers.send(true);
        for server in self.receivers {
            finish(server, self.shutdown_timeout, "receiver").await;
        }
        self.pipeline.close();
        if let Some(replay) = self.replay {
            replay.abort();
        }
        if let Some(mut dispatcher) = self.dispatcher
            && tokio::time::timeout(self.shutdown_timeout, &mut dispatcher)
                .await
                .is_err()
        {
            warn!("shutdown deadline passed with spans undelivered; stopping the exporters");
            self.hard_stop.cancel();
            if let Err(error) = dispatcher.await {
                warn!(%error, "dispatcher ended abnormally");
            }
        }
        self.store.close(self.shutdown_timeout).await;
        let _ = self.stop_admin.send(true);
        finish(self.admin, self.shutdown_timeout, "admin").await;
    }
}

async fn finish(server: JoinHandle<io::Result<()>>, timeout: Duration, what: &str) {
    let abort = server.abort_handle();
    match tokio::time::timeout(timeout, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => warn!(%error, what, "listener ended with an error"),
        Ok(Err(error)) => warn!(%error, what, "listener task ended abnormally"),
        Err(_) => {
            warn!(
                what,
                "in-flight requests did not finish in time; closing them"
            );
            abort.abort();
        }
    }
}

/// Feeds spool records left by a previous run into the pipeline, oldest first, waiting for room.
async fn replay(spool: Arc<Spool>, pipeline: Arc<Pipeline>, pending: Vec<Pending>) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    for record in pending {
        let request = spool
            .read(&record)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                ExportTraceServiceRequest::decode(bytes.as_slice()).map_err(|e| e.to_string())
            });
        match request {
            Ok(request) => {
                if !pipeline
                    .admit_replayed(request, record.id, record.dispatched)
                    .await
                {
                    return;
                }
            }
            Err(error) => {
                // CRC-checked, so this is a bug or disk corruption: do not retry it forever.
                warn!(id = record.id, %error, "spool record cannot be decoded; discarding it");
                spool.ack(record.id);
            }
        }
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

fn serve_http(
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

fn serve_grpc(
    listener: TcpListener,
    state: AppState,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<io::Result<()>> {
    let max_streams = u32::try_from(state.max_concurrent_requests()).unwrap_or(u32::MAX);
    let counted = state.clone();
    let server = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(max_streams))
        .layer(tower::util::MapResponseLayer::new(move |response| {
            receiver::grpc::otlp_status_codes(response, counted.metrics())
        }))
        .add_service(receiver::grpc::trace_service(state))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            },
        );
    tokio::spawn(async move { server.await.map_err(io::Error::other) })
}
