//! Admin endpoints, on their own listener so they never compete with OTLP traffic:
//!
//! - `GET /healthz` → `200 ok` while the process serves (liveness)
//! - `GET /readyz` → `200 ready`, or `503` while the queue (memory budget) is full or the shim
//!   is shutting down (readiness: take this replica out of load balancing)
//! - `GET /metrics` → OpenMetrics text (see [`crate::metrics`])
//! - `GET /api/traces/{trace_id}` → the stored spans of one trace as OTLP/JSON
//!   (`{"resourceSpans":[...]}`), 404 when unknown, 400 when the id is not 32 hex digits.
//! - the trace search API ([`crate::query`]) and the web viewer at `/` ([`crate::viewer`]).
//!
//! OTLP/JSON (<https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding>) differs from
//! proto3 JSON: ids are hex strings, enums are integers, keys are lowerCamelCase, 64-bit
//! integers are decimal strings. `opentelemetry-proto`'s `with-serde` feature produces exactly
//! that; the tests check it.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use opentelemetry_proto::tonic::trace::v1::TracesData;
use tracing::error;

use crate::metrics::OPENMETRICS_CONTENT_TYPE;
use crate::receiver::RETRY_DELAY;
use crate::state::AppState;
use crate::store::{ReadError, TraceId};

/// `Content-Type` of JSON responses.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// Errors of the admin endpoints, rendered as `{"error": "<message>"}`.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The path id is not 32 hex digits (400).
    #[error("trace id must be 32 hex digits")]
    InvalidTraceId,
    /// No span of this trace is stored (404).
    #[error("trace {0} not found")]
    TraceNotFound(String),
    /// A query parameter is invalid (400); the message names it.
    #[error("{0}")]
    BadQuery(String),
    /// The trace store is busy or closed (503, retry later).
    #[error("{0}")]
    StoreUnavailable(String),
    /// Encoding or the store failed; details are logged, not returned (500).
    #[error("internal error")]
    Internal,
}

/// The admin router: `/healthz`, `/readyz`, `/metrics`, `/api/traces/{trace_id}`, the query
/// API and the viewer.
pub fn admin_app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/traces/{trace_id}", get(trace))
        .merge(crate::query::routes())
        .merge(crate::viewer::routes())
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.pipeline().is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: queue full or shutting down",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Result<Response, AdminError> {
    let text = state.metrics().encode().map_err(|e| {
        error!(error = %e, "cannot encode metrics");
        AdminError::Internal
    })?;
    Ok(([(CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response())
}

async fn trace(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
) -> Result<Response, AdminError> {
    let id = parse_trace_id(&trace_id).ok_or(AdminError::InvalidTraceId)?;
    let resource_spans = state
        .trace(&id)
        .await?
        .ok_or_else(|| AdminError::TraceNotFound(hex::encode(id)))?;
    let json = serde_json::to_vec(&TracesData { resource_spans }).map_err(|e| {
        error!(error = %e, "cannot encode trace as OTLP/JSON");
        AdminError::Internal
    })?;
    Ok(([(CONTENT_TYPE, JSON_CONTENT_TYPE)], json).into_response())
}

/// Parses a 32-hex-digit trace id (either case). Anything else, including the wrong length, is
/// `None`.
pub fn parse_trace_id(text: &str) -> Option<TraceId> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(text, &mut id).ok()?;
    Some(id)
}

// === impl AdminError ===

impl AdminError {
    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidTraceId | Self::BadQuery(_) => StatusCode::BAD_REQUEST,
            Self::TraceNotFound(_) => StatusCode::NOT_FOUND,
            Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ReadError> for AdminError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Busy | ReadError::Closed => Self::StoreUnavailable(error.to_string()),
            ReadError::Store(error) => {
                error!(%error, "trace store read failed");
                Self::Internal
            }
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() }).to_string();
        let mut response =
            (self.status(), [(CONTENT_TYPE, JSON_CONTENT_TYPE)], body).into_response();
        if matches!(self, Self::StoreUnavailable(_)) {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_DELAY.as_secs()));
        }
        response
    }
}
