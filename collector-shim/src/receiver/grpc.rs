//! OTLP/gRPC receiver: `opentelemetry.proto.collector.trace.v1.TraceService/Export` on tonic,
//! gzip accepted (<https://opentelemetry.io/docs/specs/otlp/#otlpgrpc>).
//!
//! tonic enforces the size limit while decompressing (its decoder writes into a buffer limited
//! to `max_decoding_message_size` and fails with `RESOURCE_EXHAUSTED`); an uncompressed message
//! over the limit gets tonic's `OUT_OF_RANGE`, which [`resource_exhausted_for_oversize`] turns
//! into the `RESOURCE_EXHAUSTED` the OTLP spec asks for.

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

/// Rewrites tonic's trailers-only `OUT_OF_RANGE` "decoded message length too large" answer
/// to `RESOURCE_EXHAUSTED` (OTLP: oversized requests are `RESOURCE_EXHAUSTED`, not retryable).
pub fn resource_exhausted_for_oversize<B>(
    mut response: axum::http::Response<B>,
) -> axum::http::Response<B> {
    let headers = response.headers_mut();
    let oversize = headers.get("grpc-status").is_some_and(|v| v == "11")
        && headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| {
                m.contains("message%20length%20too%20large")
                    || m.contains("message length too large")
            });
    if oversize {
        headers.insert("grpc-status", HeaderValue::from_static("8"));
    }
    response
}
