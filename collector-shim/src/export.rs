//! Forwarding accepted OTLP requests to the configured backend (OTLP/HTTP protobuf).
//!
//! ```text
//!  receiver ──try_push──> [ bounded queue ] ──recv──> Forwarder task ──POST──> backend
//!     │ full: 503 + Retry-After           (capacity:        │  429/502/503/504, no response:
//!     │ (nothing acknowledged)             queue_capacity)  │    retry, backoff + jitter,
//!     ▼                                                     │    Retry-After honoured
//!   200 only after the push succeeded                       │  other status: drop
//!                                                           ▼
//!                         exported_spans_total / export_failed_spans_total{reason}
//! ```
//!
//! Invariant: every span acknowledged by the receiver is eventually counted exactly once, as
//! exported or as failed (with a reason), including at shutdown. Requests are forwarded with the
//! body exactly as received (already validated by decoding), so the backend sees the sender's
//! bytes. One request is in flight at a time; the queue in front absorbs bursts.
//!
//! Drops are logged at `warn` the first time and then at most once per [`DROP_LOG_INTERVAL`],
//! with the number of drops suppressed in between (`debug` for each of those).

pub mod retry;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::{Bytes, BytesMut};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::config::ExportConfig;
use crate::metrics::{Metrics, export_failed};
use crate::rpc;
use retry::{AttemptOutcome, Classification, RetryPolicy};

/// `Content-Type` of OTLP/HTTP protobuf requests and responses.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";
/// Largest backend response body read (the OTLP spec's 4 MiB response limit); a longer body is
/// treated as "no partial success information".
pub const MAX_RESPONSE_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Largest error body read to describe a failure in logs (the Collector reads 64 KiB too).
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// At most one `warn` per this interval for dropped spans after the first.
pub const DROP_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Characters of a backend error message kept in logs.
const MAX_LOGGED_DETAIL_CHARS: usize = 256;

/// One accepted OTLP request waiting to be forwarded.
#[derive(Clone, Debug)]
pub struct ExportBatch {
    /// The request body exactly as received (a valid `ExportTraceServiceRequest`).
    pub body: Bytes,
    /// Number of spans in `body`.
    pub spans: u64,
}

/// The sending side of the bounded receiver → forwarder queue. Cloneable; never blocks.
#[derive(Clone, Debug)]
pub struct ExportQueue {
    tx: mpsc::Sender<ExportBatch>,
}

/// The receiving side of the queue, consumed by [`Forwarder::spawn`].
#[derive(Debug)]
pub struct ExportReceiver {
    rx: mpsc::Receiver<ExportBatch>,
}

/// Why [`ExportQueue::try_push`] did not take a batch; the batch is handed back so the caller
/// decides (the receiver answers 503, so nothing is acknowledged and dropped).
#[derive(Debug)]
pub enum PushError {
    /// The queue is at capacity.
    Full(ExportBatch),
    /// The forwarder has stopped taking work (shutdown).
    Closed(ExportBatch),
}

/// Errors building the forwarder (configuration already validated, so these are unexpected).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// `export.endpoint` is not a URL.
    #[error("export.endpoint: not a valid URL: {0}")]
    InvalidEndpoint(String),
    /// A header name or value is invalid (the value is never shown).
    #[error("export.headers: header {0:?} has an invalid name or value")]
    InvalidHeader(String),
    /// The HTTP client could not be created.
    #[error("cannot create the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Sends queued batches to the backend with retries. Build with [`Forwarder::new`], run with
/// [`Forwarder::spawn`].
#[derive(Debug)]
pub struct Forwarder {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    headers: HeaderMap,
    policy: RetryPolicy,
    metrics: Arc<Metrics>,
    drop_log: DropLog,
}

/// Handle on a running forwarder task.
#[derive(Debug)]
pub struct ForwarderHandle {
    join: JoinHandle<()>,
    deadline: watch::Sender<Option<Instant>>,
}

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
    /// Log at warn, mentioning the drops suppressed since the previous warning.
    Warn {
        /// Drops logged only at debug since the last warning.
        suppressed_drops: u64,
        /// Spans in those drops.
        suppressed_spans: u64,
    },
    /// Log at debug only.
    Suppress,
}

/// How one batch ended.
#[derive(Debug)]
enum Delivery {
    /// 2xx; `rejected` spans were refused by a partial success.
    Exported { rejected: u64, message: String },
    Failed {
        reason: &'static str,
        detail: String,
    },
}

/// Creates the bounded queue between receiver and forwarder.
pub fn queue(capacity: usize) -> (ExportQueue, ExportReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (ExportQueue { tx }, ExportReceiver { rx })
}

// === impl ExportQueue ===

impl ExportQueue {
    /// Enqueues `batch` without waiting; on failure the batch is returned in the error.
    pub fn try_push(&self, batch: ExportBatch) -> Result<(), PushError> {
        self.tx.try_send(batch).map_err(|error| match error {
            mpsc::error::TrySendError::Full(batch) => PushError::Full(batch),
            mpsc::error::TrySendError::Closed(batch) => PushError::Closed(batch),
        })
    }
}

// === impl Forwarder ===

impl Forwarder {
    /// Builds the HTTP client (per-attempt timeout from `config.timeout_ms`, no proxy, no TLS).
    pub fn new(config: &ExportConfig, metrics: Arc<Metrics>) -> Result<Self, ExportError> {
        let endpoint = reqwest::Url::parse(&config.endpoint)
            .map_err(|e| ExportError::InvalidEndpoint(e.to_string()))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let invalid = || ExportError::InvalidHeader(name.clone());
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
            let mut header_value = HeaderValue::from_str(value).map_err(|_| invalid())?;
            header_value.set_sensitive(true);
            headers.append(header_name, header_value);
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(PROTOBUF_CONTENT_TYPE),
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            // Deterministic routing: the backend is addressed directly, whatever HTTP(S)_PROXY says.
            .no_proxy()
            .build()
            .map_err(ExportError::Client)?;
        Ok(Self {
            client,
            endpoint,
            headers,
            policy: RetryPolicy::from(&config.retry),
            metrics,
            drop_log: DropLog::new(DROP_LOG_INTERVAL),
        })
    }

    /// Starts the forwarding task on the current tokio runtime.
    pub fn spawn(self, receiver: ExportReceiver) -> ForwarderHandle {
        let (deadline, deadline_rx) = watch::channel(None);
        let join = tokio::spawn(self.run(receiver.rx, deadline_rx));
        ForwarderHandle { join, deadline }
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<ExportBatch>,
        mut deadline: watch::Receiver<Option<Instant>>,
    ) {
        loop {
            let next = tokio::select! {
                batch = rx.recv() => Some(batch),
                _ = deadline.wait_for(Option::is_some) => None,
            };
            match next {
                Some(Some(batch)) => self.deliver(batch, &deadline).await,
                // Every queue handle is gone: nothing more can arrive.
                Some(None) => return,
                None => break,
            }
        }
        // Draining: refuse new work, deliver what was acknowledged until the deadline, then
        // count the rest as dropped (deliver() returns at once once the deadline passed).
        rx.close();
        while let Some(batch) = rx.recv().await {
            self.deliver(batch, &deadline).await;
        }
        if let Some((drops, spans)) = self.drop_log.take_suppressed() {
            warn!(
                suppressed_drops = drops,
                suppressed_spans = spans,
                "export forwarder stopped; drops since the last warning"
            );
        }
    }

    async fn deliver(&mut self, batch: ExportBatch, deadline: &watch::Receiver<Option<Instant>>) {
        let delivery = tokio::select! {
            biased;
            () = deadline_passed(deadline.clone()) => Delivery::Failed {
                reason: export_failed::SHUTDOWN,
                detail: "shutdown deadline passed before delivery".to_owned(),
            },
            delivery = self.send_with_retries(&batch) => delivery,
        };
        self.record(&batch, delivery);
    }

    async fn send_with_retries(&self, batch: &ExportBatch) -> Delivery {
        let started = Instant::now();
        let mut attempts_made = 0u32;
        loop {
            attempts_made += 1;
            let (classification, detail, body) = self.attempt(batch).await;
            match classification {
                Classification::Success => {
                    let (rejected, message) = partial_success(&body, batch.spans);
                    return Delivery::Exported { rejected, message };
                }
                Classification::NonRetryable => {
                    return Delivery::Failed {
                        reason: export_failed::REJECTED,
                        detail,
                    };
                }
                Classification::Retryable { retry_after } => {
                    let delay = retry::next_retry_delay(
                        &self.policy,
                        attempts_made,
                        retry_after,
                        started.elapsed(),
                        rand::random::<f64>(),
                    );
                    let Some(delay) = delay else {
                        return Delivery::Failed {
                            reason: export_failed::RETRIES_EXHAUSTED,
                            detail: format!("after {attempts_made} attempts: {detail}"),
                        };
                    };
                    debug!(attempt = attempts_made, ?delay, %detail, "export attempt failed, retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One POST. Returns the classification, a loggable description and, on success, the body.
    async fn attempt(&self, batch: &ExportBatch) -> (Classification, String, Bytes) {
        let sent = self
            .client
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .body(batch.body.clone())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                let outcome = if error.is_builder() {
                    AttemptOutcome::InvalidRequest
                } else {
                    AttemptOutcome::Transport
                };
                // without_url(): the URL may carry credentials.
                let detail = format!("request failed: {}", error_chain(&error.without_url()));
                return (
                    retry::classify(outcome, SystemTime::now()),
                    detail,
                    Bytes::new(),
                );
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let is_protobuf = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(PROTOBUF_CONTENT_TYPE));
        let classification = retry::classify(
            AttemptOutcome::Response {
                status: status.as_u16(),
                retry_after: retry_after.as_deref(),
            },
            SystemTime::now(),
        );
        let limit = if classification == Classification::Success {
            MAX_RESPONSE_BODY_BYTES
        } else {
            MAX_ERROR_BODY_BYTES
        };
        let body = read_limited(response, limit).await;
        let detail = if classification == Classification::Success {
            format!("status {status}")
        } else {
            format!(
                "status {status}: {}",
                describe_error_body(&body, is_protobuf)
            )
        };
        (classification, detail, body)
    }

    fn record(&mut self, batch: &ExportBatch, delivery: Delivery) {
        match delivery {
            Delivery::Exported { rejected, message } => {
                self.metrics
                    .record_exported(batch.spans.saturating_sub(rejected));
                if rejected > 0 {
                    self.metrics
                        .record_export_failed(export_failed::PARTIAL_SUCCESS, rejected);
                    self.log_drop(export_failed::PARTIAL_SUCCESS, rejected, &message);
                }
            }
            Delivery::Failed { reason, detail } => {
                self.metrics.record_export_failed(reason, batch.spans);
                self.log_drop(reason, batch.spans, &detail);
            }
        }
    }

    fn log_drop(&mut self, reason: &'static str, spans: u64, detail: &str) {
        match self.drop_log.on_drop(std::time::Instant::now(), spans) {
            DropLogAction::Warn {
                suppressed_drops,
                suppressed_spans,
            } => warn!(
                reason,
                spans,
                detail,
                suppressed_drops,
                suppressed_spans,
                "dropped spans that could not be exported (further drops are logged at most once \
                 a minute; see meshtrace_shim_export_failed_spans_total)"
            ),
            DropLogAction::Suppress => {
                debug!(
                    reason,
                    spans, detail, "dropped spans that could not be exported"
                );
            }
        }
    }
}

// === impl ForwarderHandle ===

impl ForwarderHandle {
    /// Stops taking new batches, keeps delivering queued ones for at most `timeout` (retries
    /// included), counts whatever is left as dropped with reason `shutdown`, and waits for the
    /// task to end.
    pub async fn drain(self, timeout: Duration) {
        let _ = self.deadline.send(Some(Instant::now() + timeout));
        if let Err(error) = self.join.await {
            warn!(%error, "export forwarder task ended abnormally");
        }
    }
}

/// Resolves once a drain deadline is set and has passed; never if no deadline is ever set.
async fn deadline_passed(mut deadline: watch::Receiver<Option<Instant>>) {
    let at = match deadline.wait_for(Option::is_some).await {
        Ok(value) => *value,
        Err(_) => None,
    };
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reads at most `limit` bytes of the body; on error or overflow returns what makes sense to
/// inspect (empty on error, the truncated prefix on overflow).
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Bytes {
    let mut body = BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit.saturating_sub(body.len());
                if chunk.len() > room {
                    body.extend_from_slice(chunk.get(..room).unwrap_or_default());
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(_) => return Bytes::new(),
        }
    }
    body.freeze()
}

/// The partial-success report in a 2xx body: `(rejected spans, message)`, clamped to the batch.
/// An empty or undecodable body (some backends answer JSON or nothing) means full success.
fn partial_success(body: &[u8], spans: u64) -> (u64, String) {
    match ExportTraceServiceResponse::decode(body) {
        Ok(ExportTraceServiceResponse {
            partial_success: Some(partial),
        }) => {
            let rejected = u64::try_from(partial.rejected_spans)
                .unwrap_or(0)
                .min(spans);
            (rejected, truncate(&partial.error_message))
        }
        _ => (0, String::new()),
    }
}

/// A short description of an error body: the `google.rpc.Status` message when the body is one,
/// else the body as lossy UTF-8, truncated.
fn describe_error_body(body: &[u8], is_protobuf: bool) -> String {
    if is_protobuf && let Ok(status) = rpc::Status::decode(body) {
        return truncate(&status.message);
    }
    truncate(&String::from_utf8_lossy(body))
}

/// An error and its sources, `: `-separated (reqwest's own message alone says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn truncate(text: &str) -> String {
    text.chars().take(MAX_LOGGED_DETAIL_CHARS).collect()
}

// === impl DropLog ===

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

    /// Records one drop of `spans` spans at `now` and says how to log it: the first drop warns,
    /// later ones warn only when `interval` has passed since the last warning, reporting the
    /// drops suppressed in between.
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

    /// The drops suppressed since the last warning, if any, resetting the count (for a final
    /// summary at shutdown).
    pub fn take_suppressed(&mut self) -> Option<(u64, u64)> {
        let taken = (self.suppressed_drops, self.suppressed_spans);
        self.suppressed_drops = 0;
        self.suppressed_spans = 0;
        (taken.0 > 0).then_some(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;

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
        assert_eq!(log.take_suppressed(), None);
        assert_eq!(log.on_drop(at(201), 4), DropLogAction::Suppress);
        assert_eq!(log.take_suppressed(), Some((1, 4)));
        assert_eq!(log.take_suppressed(), None);
    }

    #[test]
    fn queue_hands_the_batch_back_when_full_or_closed() {
        let (queue, receiver) = queue(1);
        let batch = |spans| ExportBatch {
            body: Bytes::from_static(b"x"),
            spans,
        };
        assert!(queue.try_push(batch(1)).is_ok());
        match queue.try_push(batch(2)) {
            Err(PushError::Full(returned)) => assert_eq!(returned.spans, 2),
            other => panic!("expected Full, got {other:?}"),
        }
        drop(receiver);
        match queue.try_push(batch(3)) {
            Err(PushError::Closed(returned)) => assert_eq!(returned.spans, 3),
            other => panic!("expected Closed, got {other:?}"),
        }
    }

    #[test]
    fn partial_success_is_read_and_clamped() {
        let encode = |rejected: i64| {
            ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: "bad spans".to_owned(),
                }),
            }
            .encode_to_vec()
        };
        assert_eq!(partial_success(&encode(2), 5), (2, "bad spans".to_owned()));
        assert_eq!(partial_success(&encode(9), 5).0, 5);
        assert_eq!(partial_success(&encode(-1), 5).0, 0);
        assert_eq!(partial_success(b"", 5).0, 0);
        assert_eq!(partial_success(b"{\"partialSuccess\":{}}", 5).0, 0);
    }

    #[test]
    fn error_bodies_are_described_briefly() {
        let status = rpc::Status {
            code: rpc::code::INVALID_ARGUMENT,
            message: "bad trace".to_owned(),
        }
        .encode_to_vec();
        assert_eq!(describe_error_body(&status, true), "bad trace");
        assert_eq!(describe_error_body(b"plain text", false), "plain text");
        assert_eq!(
            describe_error_body(&[b'x'; 1000], false).len(),
            MAX_LOGGED_DETAIL_CHARS
        );
    }
}
