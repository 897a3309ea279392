//! OTLP/HTTP receiver: `POST /v1/traces` with `Content-Type: application/x-protobuf`.
//!
//! Implements the server side of OTLP/HTTP
//! (<https://opentelemetry.io/docs/specs/otlp/#otlphttp>) for binary protobuf:
//!
//! ```text
//!  POST /v1/traces ─► content type? ─► read ≤ limit ─► empty? ─► decode ─► queue (if backend) ─► store ─► 200
//!                        │ 415          │ 413            │ 200     │ 400      │ 503 Retry-After: 1  │ 503 (no backend)
//! ```
//!
//! Success is 200 with an encoded empty `ExportTraceServiceResponse` (no partial success).
//! Errors carry a protobuf `google.rpc.Status` body. Nothing is acknowledged before the export
//! queue took the request, so a full queue never loses acknowledged spans: the client retries.
//! JSON (`application/json`) and gzip are not implemented yet and get 415.
//! Request data is never indexed, unwrapped or trusted: any input yields a response.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tracing::debug;

use crate::config::TRACES_PATH;
use crate::export::{ExportBatch, PROTOBUF_CONTENT_TYPE, PushError};
use crate::metrics::refused;
use crate::rpc;
use crate::state::AppState;
use crate::store::InsertRefused;

/// Seconds a client is asked to wait (`Retry-After`) when the export queue is full.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Why a request was refused. Each variant maps to one HTTP status (see [`IngestError::status`])
/// and a `google.rpc.Status` body; none is logged above `debug` (they are the client's doing).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// `Content-Type` is missing or not `application/x-protobuf` (415).
    #[error("unsupported content type {0:?}: only application/x-protobuf is supported")]
    UnsupportedContentType(String),
    /// `Content-Encoding` other than `identity` (415).
    #[error("unsupported content encoding {0:?}: only uncompressed requests are supported")]
    UnsupportedContentEncoding(String),
    /// The body is larger than the configured limit (413, not retryable).
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The body could not be read (client went away or sent a broken stream) (400).
    #[error("could not read the request body")]
    BodyRead,
    /// The body is not a valid `ExportTraceServiceRequest` (400).
    #[error("request body is not a valid ExportTraceServiceRequest: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// The export queue is full (503 with `Retry-After`, retryable).
    #[error("export queue is full, retry later")]
    ExportQueueFull {
        /// Spans in the refused request.
        spans: u64,
    },
    /// The shim is shutting down and no longer forwards (503 with `Retry-After`, retryable).
    #[error("shutting down, retry later")]
    ShuttingDown {
        /// Spans in the refused request.
        spans: u64,
    },
    /// No backend is configured and the trace store's queue is full (503 with `Retry-After`,
    /// retryable).
    #[error("trace store is busy, retry later")]
    StoreQueueFull {
        /// Spans in the refused request.
        spans: u64,
    },
}

/// The OTLP/HTTP router: `POST /v1/traces` (other methods on that path get 405).
pub fn otlp_http_app(state: AppState) -> Router {
    Router::new()
        .route(TRACES_PATH, post(export_traces))
        .with_state(state)
}

async fn export_traces(State(state): State<AppState>, request: Request) -> Response {
    match ingest(&state, request).await {
        Ok(()) => (
            [(
                CONTENT_TYPE,
                HeaderValue::from_static(PROTOBUF_CONTENT_TYPE),
            )],
            ExportTraceServiceResponse::default().encode_to_vec(),
        )
            .into_response(),
        Err(error) => {
            state
                .metrics()
                .record_refused(error.reason(), error.refused_spans());
            debug!(%error, reason = error.reason(), "refused OTLP request");
            error.into_response()
        }
    }
}

async fn ingest(state: &AppState, request: Request) -> Result<(), IngestError> {
    let (parts, body) = request.into_parts();
    check_content_type(&parts.headers)?;
    check_content_encoding(&parts.headers)?;
    let body = read_body(body, state.max_request_body_bytes()).await?;
    if body.is_empty() {
        // An empty body is a valid, empty ExportTraceServiceRequest: success, nothing to do.
        return Ok(());
    }
    let request = ExportTraceServiceRequest::decode(body.clone())?;
    let spans = count_spans(&request);
    if spans == 0 {
        return Ok(());
    }
    if let Some(queue) = state.export_queue() {
        // Queue first: if it refuses, nothing has been stored or acknowledged.
        queue
            .try_push(ExportBatch { body, spans })
            .map_err(|error| match error {
                PushError::Full(_) => IngestError::ExportQueueFull { spans },
                PushError::Closed(_) => IngestError::ShuttingDown { spans },
            })?;
    }
    state
        .store_spans(request.resource_spans)
        .map_err(|refused| match refused {
            InsertRefused::Full { spans } => IngestError::StoreQueueFull { spans },
            InsertRefused::Closed { spans } => IngestError::ShuttingDown { spans },
        })?;
    state.metrics().record_received(spans);
    Ok(())
}

/// Number of spans in a request.
pub fn count_spans(request: &ExportTraceServiceRequest) -> u64 {
    crate::store::count_spans(&request.resource_spans)
}

/// Accepts `application/x-protobuf`, case-insensitively and with parameters.
fn check_content_type(headers: &HeaderMap) -> Result<(), IngestError> {
    let raw = headers
        .get(CONTENT_TYPE)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    let text = String::from_utf8_lossy(raw);
    let media_type = text.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case(PROTOBUF_CONTENT_TYPE) {
        Ok(())
    } else {
        Err(IngestError::UnsupportedContentType(truncate_header(&text)))
    }
}

/// Accepts no `Content-Encoding` or `identity` (gzip comes later).
fn check_content_encoding(headers: &HeaderMap) -> Result<(), IngestError> {
    let Some(value) = headers.get(CONTENT_ENCODING) else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    if text.trim().eq_ignore_ascii_case("identity") {
        Ok(())
    } else {
        Err(IngestError::UnsupportedContentEncoding(truncate_header(
            &text,
        )))
    }
}

/// Header text echoed in error messages, cut so a huge header cannot inflate the response.
fn truncate_header(text: &str) -> String {
    text.chars().take(64).collect()
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, IngestError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(IngestError::TooLarge { limit })
        }
        Err(_) => Err(IngestError::BodyRead),
    }
}

// === impl IngestError ===

impl IngestError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnsupportedContentType(_) | Self::UnsupportedContentEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyRead | Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::ExportQueueFull { .. }
            | Self::ShuttingDown { .. }
            | Self::StoreQueueFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `reason` label for `meshtrace_shim_refused_*_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnsupportedContentType(_) | Self::UnsupportedContentEncoding(_) => {
                refused::UNSUPPORTED_MEDIA_TYPE
            }
            Self::TooLarge { .. } => refused::TOO_LARGE,
            Self::BodyRead | Self::Malformed(_) => refused::MALFORMED,
            Self::ExportQueueFull { .. } => refused::EXPORT_QUEUE_FULL,
            Self::ShuttingDown { .. } => refused::SHUTTING_DOWN,
            Self::StoreQueueFull { .. } => refused::STORE_QUEUE_FULL,
        }
    }

    /// Spans known to be in the refused request (0 when it was not decoded).
    pub fn refused_spans(&self) -> u64 {
        match self {
            Self::ExportQueueFull { spans }
            | Self::ShuttingDown { spans }
            | Self::StoreQueueFull { spans } => *spans,
            _ => 0,
        }
    }

    fn rpc_code(&self) -> i32 {
        match self.status() {
            StatusCode::PAYLOAD_TOO_LARGE => rpc::code::RESOURCE_EXHAUSTED,
            StatusCode::SERVICE_UNAVAILABLE => rpc::code::UNAVAILABLE,
            _ => rpc::code::INVALID_ARGUMENT,
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let body = rpc::Status {
            code: self.rpc_code(),
            message: self.to_string(),
        }
        .encode_to_vec();
        let mut response = (
            self.status(),
            [(
                CONTENT_TYPE,
                HeaderValue::from_static(PROTOBUF_CONTENT_TYPE),
            )],
            body,
        )
            .into_response();
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}
