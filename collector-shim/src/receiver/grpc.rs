//! OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export` on tonic,
//! gzip accepted (<https://opentelemetry.io/docs/specs/otlp/#otlpgrpc>).
//!
//! tonic enforces the size limit while decompressing (its decoder writes into a buffer limited
//! to `max_decoding_message_size` and fails with `RESOURCE_EXHAUSTED`); an uncompressed message
//! over the limit gets tonic's `OUT_OF_RANGE` and an undecodable one `INTERNAL`, which
//! [`otlp_status_codes`] turns into the `RESOURCE_EXHAUSTED` and
//! `INVALID_ARGUMENT` the OTLP spec asks for.

use axum::http::HeaderValue;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{ErrorKind, IngestError, RETRY_DELAY};
use crate::metrics::refused;
use crate::state::AppState;

/// The TraceService implementation.
#[derive(Clone, Debug)]
pub struct GrpcReceiver {
    state: AppState,
}

/// The tonic service for `state`: gzip accepted and offered, limit from the config.
pub fn trace_service(state: AppState) -> TraceServiceServer<GrpcReceiver> {
    let limit = state.max_request_body_bytes();
    TraceServiceServer::new(GrpcReceiver { state })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit)
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        match self.state.accept(request.into_inner()) {
            Ok(_) => Ok(Response::new(ExportTraceServiceResponse::default())),
            Err(refusal) => {
                let error = IngestError::from(refusal);
                error.record(&self.state);
                Err(status_for(&error))
            }
        }
    }
}

/// The gRPC status for `error`: retryable refusals carry `RetryInfo`.
pub fn status_for(error: &IngestError) -> Status {
    let message = error.to_string();
    match error.kind() {
        ErrorKind::Throttled | ErrorKind::ShuttingDown => Status::with_error_details(
            Code::Unavailable,
            message,
            ErrorDetails::with_retry_info(Some(RETRY_DELAY)),
        ),
        ErrorKind::TooLarge => Status::resource_exhausted(message),
        ErrorKind::UnsupportedMedia | ErrorKind::BadData => Status::invalid_argument(message),
    }
}

/// Rewrites the two codes tonic itself answers before our handler runs to the ones the OTLP
/// spec prescribes (both permanent either way): an uncompressed message over the limit
/// (tonic: `OUT_OF_RANGE`) becomes `RESOURCE_EXHAUSTED`, and an undecodable message (tonic:
/// `INTERNAL`, per gRPC's own guide) becomes `INVALID_ARGUMENT`. Both are trailers-only
/// answers, so the status is in the response headers.
/// These refusals happen before the handler, so they are counted here.
pub fn otlp_status_codes<B>(
    mut response: axum::http::Response<B>,
    metrics: &crate::metrics::Metrics,
) -> axum::http::Response<B> {
    let headers = response.headers_mut();
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(|m| m.replace("%20", " "))
        .unwrap_or_default();
    let code = headers.get("grpc-status").and_then(|v| v.to_str().ok());
    let decoded_too_large = message.contains("size limit") && message.contains("decompressing");
    let replacement = match code {
        Some("11") if message.contains("message length too large") => {
            Some(("8", refused::TOO_LARGE))
        }
        Some("8") if decoded_too_large => Some(("8", refused::TOO_LARGE)),
        Some("13") if message.contains("failed to decode Protobuf message") => {
            Some(("3", refused::MALFORMED))
        }
        Some("13") if message.contains("Error decompressing") => Some(("3", refused::MALFORMED)),
        _ => None,
    };
    if let Some((replacement, reason)) = replacement {
        headers.insert("grpc-status", HeaderValue::from_static(replacement));
        metrics.record_refused(reason, 0);
    }
    response
}
