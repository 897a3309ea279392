//! Exporters: deliver batches to one backend each (fan-out is the dispatcher giving every
//! batch to every exporter), over OTLP/gRPC, OTLP/HTTP protobuf or OTLP/HTTP JSON, with
//! optional gzip, secret headers, TLS (rustls) and a per-attempt timeout.
//!
//! ```text
//!  dispatcher ──slot (max_in_flight)──► deliver(batch)
//!                                          │ attempt ──► classify (retry.rs, pure)
//!                                          │   Success ─► exported (+ partial_success dropped)
//!                                          │   NonRetryable ─► dropped{rejected}
//!                                          │   Retryable ─► backoff+jitter ≥ Retry-After/RetryInfo,
//!                                          │                until max_attempts / max_elapsed ─► dropped{retries_exhausted}
//!                                          │ shutdown deadline ─► retained in the spool, or dropped{shutdown}
//! ```
//!
//! Every span handed to an exporter ends in exactly one of `exported`, `dropped{reason}` or
//! `spool_retained`, and leaves `export_pending_spans` then (see [`crate::metrics`]). Drops are
//! logged at `warn` the first time and at most once per [`DROP_LOG_INTERVAL`] after that.
//! Every line about a batch names its trace ids ([`crate::trace_ids`]): a successful delivery
//! and a failed attempt at `debug`, a drop at `warn` (the first few) or `debug`.

pub mod grpc;
pub mod http;
pub mod retry;
pub mod tls;

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Level, debug, warn};

use crate::config::{Compression, Env, ExportConfig, Protocol};
use crate::metrics::{Metrics, dropped, outcome};
use crate::pipeline::Ticket;
use crate::pipeline::batch::Batch;
use crate::trace_ids::{DEBUG_TRACE_IDS, TraceIds, WARN_TRACE_IDS};
use retry::{Classification, RetryPolicy};

/// At most one `warn` per this interval for dropped spans after the first.
pub const DROP_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Largest backend response body read (the OTLP 4 MiB response limit).
pub const MAX_RESPONSE_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Largest error body read to describe a failure (the Collector reads 64 KiB too).
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// Characters of a backend error message kept in logs.
const MAX_LOGGED_DETAIL_CHARS: usize = 256;

/// Errors building an exporter (the config was validated; these come from files and env).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A header value could not be resolved (the value is never shown).
    #[error("exporters[{exporter}].headers: {message}")]
    Header {
        /// Exporter name.
        exporter: String,
        /// What went wrong.
        message: String,
    },
    /// TLS set-up failed (CA file unreadable or invalid).
    #[error("exporters[{exporter}].tls: {message}")]
    Tls {
        /// Exporter name.
        exporter: String,
        /// What went wrong.
        message: String,
    },
    /// The client could not be created.
    #[error("exporters[{exporter}]: {message}")]
    Client {
        /// Exporter name.
        exporter: String,
        /// What went wrong.
        message: String,
    },
}

/// A batch ready to send, shared by every exporter; each body encoding is built once.
#[derive(Debug)]
pub struct ReadyBatch {
    /// The merged spans.
    pub request: ExportTraceServiceRequest,
    /// Number of spans.
    pub spans: u64,
    tickets: Vec<Arc<Ticket>>,
    bodies: [OnceLock<Bytes>; 4],
}

/// The result of one attempt, for the retry loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// What to do next.
    pub classification: Classification,
    /// For logs: status and backend message (never secrets).
    pub detail: String,
    /// Spans the backend rejected in a partial success (success only).
    pub rejected: u64,
}

/// The transport of one exporter.
#[derive(Debug)]
enum Transport {
    Http(http::HttpTransport),
    Grpc(grpc::GrpcTransport),
}

/// One backend: transport, retry policy, in-flight bound, metrics.
#[derive(Debug)]
pub struct Exporter {
    name: String,
    transport: Transport,
    policy: RetryPolicy,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    spool_enabled: bool,
    drop_log: Mutex<DropLog>,
}

/// How one delivery ended.
#[derive(Debug)]
enum Delivery {
    Exported {
        rejected: u64,
        detail: String,
    },
    Dropped {
        reason: &'static str,
        detail: String,
    },
    Interrupted,
}

// === impl ReadyBatch ===

impl ReadyBatch {
    /// Wraps a batch from the batcher.
    pub fn new(batch: Batch) -> Self {
        Self {
            request: batch.request,
            spans: batch.spans,
            tickets: batch.tickets,
            bodies: Default::default(),
        }
    }

    /// The HTTP body in `protocol`'s format, compressed as asked (built once, then shared).
    pub fn body(&self, protocol: Protocol, compression: Compression) -> Bytes {
        let json = protocol == Protocol::HttpJson;
        let gzip = compression == Compression::Gzip;
        let slot = usize::from(json) * 2 + usize::from(gzip);
        let Some(cell) = self.bodies.get(slot) else {
            return Bytes::new();
        };
        cell.get_or_init(|| {
            let plain = if json {
                // Serializing generated types to a Vec cannot fail.
                serde_json::to_vec(&self.request).unwrap_or_default()
            } else {
                self.request.encode_to_vec()
            };
            if gzip { gzip_bytes(&plain) } else { plain }.into()
        })
        .clone()
    }

    fn mark_dispatched(&self) {
        self.tickets.iter().for_each(|t| t.mark_dispatched());
    }

    fn mark_unsettled(&self) {
        self.tickets.iter().for_each(|t| t.mark_unsettled());
    }

    /// The batch's trace ids, the first `limit` of them shown (for log lines).
    pub fn trace_ids(&self, limit: usize) -> TraceIds {
        TraceIds::of(&self.request.resource_spans, limit)
    }
}

/// gzip at level 6 (the default of gzip(1) and of the Collector's exporters).
pub fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::default(),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

// === impl Exporter ===

impl Exporter {
    /// Builds the transport (header secrets resolved from `env` or files, TLS roots loaded).
    /// Connections are made lazily, so a backend that is down does not stop the shim starting.
    pub fn new(
        config: &ExportConfig,
        env: &impl Env,
        metrics: Arc<Metrics>,
        spool_enabled: bool,
    ) -> Result<Self, ExportError> {
        let mut headers = Vec::with_capacity(config.headers.len());
        for header in &config.headers {
            let value = header.resolve(env).map_err(|message| ExportError::Header {
                exporter: config.name.clone(),
                message,
            })?;
            headers.push((header.name.to_ascii_lowercase(), value));
        }
        let transport = match config.protocol {
            Protocol::Grpc => Transport::Grpc(grpc::GrpcTransport::new(config, &headers)?),
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                Transport::Http(http::HttpTransport::new(config, &headers)?)
            }
        };
        Ok(Self {
            name: config.name.clone(),
            transport,
            policy: RetryPolicy::from(&config.retry),
            slots: Arc::new(Semaphore::new(config.max_in_flight)),
            metrics,
            spool_enabled,
            drop_log: Mutex::new(DropLog::new(DROP_LOG_INTERVAL)),
        })
    }

    /// The exporter's name (`exporter` label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for a free in-flight slot (`None` only if the semaphore was closed).
    pub async fn acquire_slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slots).acquire_owned().await.ok()
    }

    /// Delivers one batch with retries, holding `permit` until done, and records the outcome.
    pub async fn deliver(
        self: Arc<Self>,
        batch: Arc<ReadyBatch>,
        permit: OwnedSemaphorePermit,
        hard_stop: CancellationToken,
    ) {
        let delivery = tokio::select! {
            biased;
            () = hard_stop.cancelled() => Delivery::Interrupted,
            delivery = self.send_with_retries(&batch) => delivery,
        };
        drop(permit);
        self.record(&batch, delivery);
    }

    /// Gives up on a batch that was never sent (shutdown deadline).
    pub fn abandon(&self, batch: &ReadyBatch) {
        self.record(batch, Delivery::Interrupted);
    }

    async fn send_with_retries(&self, batch: &ReadyBatch) -> Delivery {
        batch.mark_dispatched();
        let attempt = |number: u32| async move {
            self.metrics.add_in_flight(&self.name, 1);
            let started = Instant::now();
            let attempt = match &self.transport {
                Transport::Http(http) => http.attempt(batch).await,
                Transport::Grpc(grpc) => grpc.attempt(batch).await,
            };
            self.metrics.add_in_flight(&self.name, -1);
            let outcome = match attempt.classification {
                Classification::Success => outcome::SUCCESS,
                Classification::Retryable { .. } => outcome::RETRYABLE_ERROR,
                Classification::NonRetryable => outcome::PERMANENT_ERROR,
            };
            self.metrics.record_attempt(
                &self.name,
                outcome,
                started.elapsed().as_secs_f64(),
                number > 1,
            );
            if let Classification::Retryable { .. } = attempt.classification
                && tracing::enabled!(Level::DEBUG)
            {
                let ids = batch.trace_ids(DEBUG_TRACE_IDS);
                debug!(
                    exporter = %self.name,
                    attempt = number,
                    detail = %attempt.detail,
                    spans = batch.spans,
                    traces = ids.total(),
                    trace_ids = %ids,
                    "export attempt failed"
                );
            }
            attempt
        };
        let delivery = with_retries(&self.policy, rand::random::<f64>, attempt).await;
        match delivery {
            Delivery::Exported { rejected, detail } => Delivery::Exported {
                rejected: rejected.min(batch.spans),
                detail,
            },
            other => other,
        }
    }

    fn record(&self, batch: &ReadyBatch, delivery: Delivery) {
        let spans = batch.spans;
        match delivery {
            Delivery::Exported { rejected, detail } => {
                self.metrics.record_exported(&self.name, spans - rejected);
                if tracing::enabled!(Level::DEBUG) {
                    let ids = batch.trace_ids(DEBUG_TRACE_IDS);
                    debug!(exporter = %self.name, spans, traces = ids.total(), trace_ids = %ids, "exported spans");
                }
                if rejected > 0 {
                    // partial_success: counted, never retried (OTLP spec). The backend does
                    // not say which spans it rejected: the line names the batch's traces.
                    self.metrics
                        .record_dropped(&self.name, dropped::PARTIAL_SUCCESS, rejected);
                    self.log_drop(batch, dropped::PARTIAL_SUCCESS, rejected, &detail);
                }
            }
            Delivery::Dropped { reason, detail } => {
                self.metrics.record_dropped(&self.name, reason, spans);
                self.log_drop(batch, reason, spans, &detail);
            }
            Delivery::Interrupted if self.spool_enabled => {
                batch.mark_unsettled();
                self.metrics.record_retained(&self.name, spans);
            }
            Delivery::Interrupted => {
                self.metrics
                    .record_dropped(&self.name, dropped::SHUTDOWN, spans);
                self.log_drop(
                    batch,
                    dropped::SHUTDOWN,
                    spans,
                    "shutdown deadline passed before delivery",
                );
            }
        }
        self.metrics.add_pending(&self.name, -(spans as i64));
    }

    fn log_drop(&self, batch: &ReadyBatch, reason: &'static str, spans: u64, detail: &str) {
        let action = self
            .drop_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .on_drop(std::time::Instant::now(), spans);
        match action {
            DropLogAction::Warn {
                suppressed_drops,
                suppressed_spans,
            } => {
                let ids = batch.trace_ids(WARN_TRACE_IDS);
                warn!(
                    exporter = %self.name,
                    reason,
                    spans,
                    detail,
                    traces = ids.total(),
                    trace_ids = %ids,
                    suppressed_drops,
                    suppressed_spans,
                    "dropped spans that could not be exported (further drops are logged at most \
                     once a minute; see meshtrace_shim_dropped_spans_total)"
                );
            }
            DropLogAction::Suppress if tracing::enabled!(Level::DEBUG) => {
                let ids = batch.trace_ids(DEBUG_TRACE_IDS);
                debug!(
                    exporter = %self.name,
                    reason,
                    spans,
                    detail,
                    traces = ids.total(),
                    trace_ids = %ids,
                    "dropped spans that could not be exported"
                );
            }
            DropLogAction::Suppress => {}
        }
    }
}

/// The retry loop, apart from any transport: calls `attempt(n)` for n = 1, 2, … and sleeps
/// between retryable failures for [`retry::next_retry_delay`] (backoff with `jitter()`, at least
/// the server's delay), until success, a permanent error, or the attempt/time budget is spent.
async fn with_retries<F, Fut>(
    policy: &RetryPolicy,
    mut jitter: impl FnMut() -> f64,
    mut attempt: F,
) -> Delivery
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Attempt>,
{
    let started = Instant::now();
    let mut attempts_made = 0u32;
    loop {
        attempts_made += 1;
        let result = attempt(attempts_made).await;
        match result.classification {
            Classification::Success => {
                return Delivery::Exported {
                    rejected: result.rejected,
                    detail: result.detail,
                };
            }
            Classification::NonRetryable => {
                return Delivery::Dropped {
                    reason: dropped::REJECTED,
                    detail: result.detail,
                };
            }
            Classification::Retryable { retry_after } => {
                let delay = retry::next_retry_delay(
                    policy,
                    attempts_made,
                    retry_after,
                    started.elapsed(),
                    jitter(),
                );
                let Some(delay) = delay else {
                    return Delivery::Dropped {
                        reason: dropped::RETRIES_EXHAUSTED,
                        detail: format!("after {attempts_made} attempts: {}", result.detail),
                    };
                };
                tokio::time::sleep(delay).await;
            }
        }
    }
}

// === DropLog ===

/// Rate limiter for drop warnings (pure: the caller passes `now`).
#[derive(Clone, Debug)]
pub struct DropLog {
    interval: Duration,
    last_warn: Option<std::time::Instant>,
    suppressed_drops: u64,
    suppressed_spans: u64,
}

/// What [`DropLog::on_drop`] says to do with one drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropLogAction {
    /// Log at warn, with the drops suppressed since the previous warning.
    Warn {
        /// Drops logged only at debug since the last warning.
        suppressed_drops: u64,
        /// Spans in those drops.
        suppressed_spans: u64,
    },
    /// Log at debug only.
    Suppress,
}

impl DropLog {
    /// A limiter that lets one warning through per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_warn: None,
            suppressed_drops: 0,
            suppressed_spans: 0,
        }
    }

    /// Records one drop at `now`: the first warns, later ones warn once `interval` has passed
    /// since the last warning, reporting what was suppressed in between.
    pub fn on_drop(&mut self, now: std::time::Instant, spans: u64) -> DropLogAction {
        let due = self
            .last_warn
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if due {
            self.last_warn = Some(now);
            let action = DropLogAction::Warn {
                suppressed_drops: self.suppressed_drops,
                suppressed_spans: self.suppressed_spans,
            };
            self.suppressed_drops = 0;
            self.suppressed_spans = 0;
            action
        } else {
            self.suppressed_drops += 1;
            self.suppressed_spans += spans;
            DropLogAction::Suppress
        }
    }
}

/// An error and its sources, `: `-separated.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(crate) fn truncate(text: &str) -> String {
    text.chars().take(MAX_LOGGED_DETAIL_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_log_warns_first_then_once_per_interval_with_suppressed_counts() {
        let start = std::time::Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut log = DropLog::new(Duration::from_secs(60));
        let warn = |drops, spans| DropLogAction::Warn {
            suppressed_drops: drops,
            suppressed_spans: spans,
        };
        assert_eq!(log.on_drop(at(0), 5), warn(0, 0));
        assert_eq!(log.on_drop(at(1), 2), DropLogAction::Suppress);
        assert_eq!(log.on_drop(at(59), 3), DropLogAction::Suppress);
        assert_eq!(log.on_drop(at(60), 1), warn(2, 5));
        assert_eq!(log.on_drop(at(61), 1), DropLogAction::Suppress);
        assert_eq!(log.on_drop(at(200), 1), warn(1, 1));
    }

    fn scripted(script: Vec<Classification>) -> impl FnMut(u32) -> std::future::Ready<Attempt> {
        let mut script = script.into_iter();
        move |_| {
            std::future::ready(Attempt {
                classification: script.next().unwrap_or(Classification::Success),
                detail: "scripted".to_owned(),
                rejected: 0,
            })
        }
    }

    fn policy(max_attempts: u32, max_elapsed_secs: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(8),
            max_elapsed: Duration::from_secs(max_elapsed_secs),
        }
    }

    /// Attempts are timestamped on tokio's paused clock: the delays are exact, no wall clock.
    async fn run(policy: RetryPolicy, script: Vec<Classification>) -> (Delivery, Vec<Duration>) {
        let start = Instant::now();
        let mut times = Vec::new();
        let mut next = scripted(script);
        let delivery = with_retries(
            &policy,
            || 1.0,
            |n| {
                times.push(start.elapsed());
                next(n)
            },
        )
        .await;
        (delivery, times)
    }

    fn secs(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    const RETRY: Classification = Classification::Retryable { retry_after: None };

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_exponentially_then_succeed() {
        let (delivery, times) = run(policy(10, 300), vec![RETRY, RETRY, RETRY]).await;
        assert!(
            matches!(delivery, Delivery::Exported { .. }),
            "{delivery:?}"
        );
        assert_eq!(times, secs(&[0, 1, 3, 7]));
    }

    #[tokio::test(start_paused = true)]
    async fn server_delay_wins_over_a_shorter_backoff() {
        let throttled = Classification::Retryable {
            retry_after: Some(Duration::from_secs(5)),
        };
        let (_, times) = run(policy(10, 300), vec![throttled, RETRY]).await;
        assert_eq!(times, secs(&[0, 5, 7]));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_max_attempts_and_max_elapsed() {
        let (delivery, times) = run(policy(3, 300), vec![RETRY; 10]).await;
        assert!(matches!(
            delivery,
            Delivery::Dropped {
                reason: dropped::RETRIES_EXHAUSTED,
                ..
            }
        ));
        assert_eq!(times, secs(&[0, 1, 3]));
        // Time budget: 0, 1, 3, 7 fit in 10 s; the next retry (at 15) would not.
        let (delivery, times) = run(policy(100, 10), vec![RETRY; 10]).await;
        assert!(matches!(
            delivery,
            Delivery::Dropped {
                reason: dropped::RETRIES_EXHAUSTED,
                ..
            }
        ));
        assert_eq!(times, secs(&[0, 1, 3, 7]));
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let (delivery, times) = run(policy(10, 300), vec![Classification::NonRetryable]).await;
        assert!(matches!(
            delivery,
            Delivery::Dropped {
                reason: dropped::REJECTED,
                ..
            }
        ));
        assert_eq!(times, secs(&[0]));
    }

    #[test]
    fn bodies_are_built_once_per_encoding() {
        use crate::pipeline::batch::Batch;
        let batch = ReadyBatch::new(Batch {
            request: ExportTraceServiceRequest::default(),
            spans: 0,
            bytes: 0,
            tickets: Vec::new(),
        });
        let proto = batch.body(Protocol::HttpProtobuf, Compression::None);
        assert!(proto.is_empty());
        let json = batch.body(Protocol::HttpJson, Compression::None);
        assert_eq!(&json[..], b"{\"resourceSpans\":[]}");
        let gz = batch.body(Protocol::HttpJson, Compression::Gzip);
        assert_eq!(
            crate::otlp::decompress(&gz, crate::otlp::Encoding::Gzip, 100).unwrap(),
            json.to_vec()
        );
        assert_eq!(
            batch.body(Protocol::HttpJson, Compression::Gzip).as_ptr(),
            gz.as_ptr(),
            "cached"
        );
    }
}
