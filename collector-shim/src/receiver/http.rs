//! OTLP/HTTP receiver: `POST /v1/traces`, protobuf or JSON, identity/gzip/deflate
//! (<https://opentelemetry.io/docs/specs/otlp/#otlphttp>).
//!
//! ```text
//!  POST ─► Content-Type? ─► Content-Encoding? ─► read ≤ limit ─► decompress ≤ limit ─► decode ─► accept ─► 200
//!            415              415                  413              413 / 400           400      429/503
//! ```
//!
//! Responses (success and errors) use the request's content type: an
//! `ExportTraceServiceResponse` or a `google.rpc.Status`, as protobuf or as JSON.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::sync::Semaphore;

use super::{ErrorKind, IngestError, RETRY_DELAY};
use crate::config::TRACES_PATH;
use crate::otlp::{self, Encoding, Format};
use crate::rpc;
use crate::state::AppState;

/// Bodies at least this large are decoded on the blocking pool, not on a runtime worker.
const BLOCKING_DECODE_BYTES: usize = 256 * 1024;

#[derive(Clone, Debug)]
struct HttpReceiver {
    state: AppState,
    permits: Arc<Semaphore>,
}

/// The OTLP/HTTP router: `POST /v1/traces` (other methods on that path get 405).
pub fn otlp_http_app(state: AppState) -> Router {
    let permits = Arc::new(Semaphore::new(state.max_concurrent_requests()));
    Router::new()
        .route(TRACES_PATH, post(export_traces))
        .with_state(HttpReceiver { state, permits })
}

async fn export_traces(State(receiver): State<HttpReceiver>, request: Request) -> Response {
    // A closed semaphore cannot happen (never closed); proceed without a permit if it did.
    let _permit = receiver.permits.acquire().await.ok();
    let state = &receiver.state;
    let format = request_format(request.headers());
    match ingest(state, request).await {
        Ok(()) => (
            [(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            )],
            otlp::encode_success(format),
        )
            .into_response(),
        Err(error) => {
            error.record(state);
            error_response(&error, format)
        }
    }
}

/// The format to answer in: the request's when it is an OTLP type, else protobuf.
fn request_format(headers: &HeaderMap) -> Format {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Format::from_content_type)
        .unwrap_or(Format::Protobuf)
}

async fn ingest(state: &AppState, request: Request) -> Result<(), IngestError> {
    let (parts, body) = request.into_parts();
    let content_type = header_str(&parts.headers, CONTENT_TYPE);
    let format = Format::from_content_type(&content_type)
        .ok_or_else(|| IngestError::UnsupportedContentType(truncate_header(&content_type)))?;
    let encoding_text = header_str(&parts.headers, CONTENT_ENCODING);
    let encoding = Encoding::from_header(Some(&encoding_text))
        .ok_or_else(|| IngestError::UnsupportedContentEncoding(truncate_header(&encoding_text)))?;
    let limit = state.max_request_body_bytes();
    let body = read_body(body, limit).await?;
    let request = if body.len() >= BLOCKING_DECODE_BYTES {
        tokio::task::spawn_blocking(move || decode(&body, encoding, format, limit))
            .await
            .map_err(|_| IngestError::BodyRead)??
    } else {
        decode(&body, encoding, format, limit)?
    };
    state.accept(request)?;
    Ok(())
}

fn decode(
    body: &[u8],
    encoding: Encoding,
    format: Format,
    limit: usize,
) -> Result<ExportTraceServiceRequest, IngestError> {
    let plain = otlp::decompress(body, encoding, limit)?;
    Ok(otlp::decode_request(&plain, format)?)
}

fn header_str(headers: &HeaderMap, name: axum::http::HeaderName) -> String {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// Header text echoed in error messages, cut so a huge header cannot inflate the response.
fn truncate_header(text: &str) -> String {
    text.chars().take(64).collect()
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, IngestError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(otlp::DecodeError::TooLarge { limit }.into())
        }
        Err(_) => Err(IngestError::BodyRead),
    }
}

/// The HTTP answer to `error`, body in `format`.
pub fn error_response(error: &IngestError, format: Format) -> Response {
    let status = match error.kind() {
        ErrorKind::UnsupportedMedia => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::BadData => StatusCode::BAD_REQUEST,
        ErrorKind::Throttled => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
    };
    let rpc_status = rpc::Status {
        code: error.rpc_code(),
        message: error.to_string(),
    };
    let body = match format {
        Format::Protobuf => rpc_status.encode_to_vec(),
        Format::Json => {
            serde_json::json!({ "code": rpc_status.code, "message": rpc_status.message })
                .to_string()
                .into_bytes()
        }
    };
    let mut response = (
        status,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        body,
    )
        .into_response();
    if matches!(error.kind(), ErrorKind::Throttled | ErrorKind::ShuttingDown) {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(RETRY_DELAY.as_secs()));
    }
    response
}
