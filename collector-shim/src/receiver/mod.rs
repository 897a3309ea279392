//! OTLP receivers: HTTP ([`http`], protobuf and JSON) and gRPC ([`grpc`]). Both decode, then
//! hand the request to [`AppState::accept`]; this module maps every failure to the status the
//! OTLP specification prescribes for each transport.
//!
//! | failure | HTTP | gRPC | retryable |
//! |---|---|---|---|
//! | unsupported `Content-Type` / `Content-Encoding` | 415 | (n/a) | no |
//! | over the size limit (after decompression) | 413 | `RESOURCE_EXHAUSTED` | no |
//! | undecodable body | 400 + `google.rpc.Status` | `INVALID_ARGUMENT` | no |
//! | queue (memory budget), spool or (without exporters) trace store full | 429 + `Retry-After` | `UNAVAILABLE` + `RetryInfo` | yes |
//! | shutting down | 503 + `Retry-After` | `UNAVAILABLE` + `RetryInfo` | yes |
//!
//! An empty request succeeds. Nothing refused has been acknowledged, so nothing refused is lost.

pub mod grpc;
pub mod http;

use std::time::Duration;

use crate::metrics::refused;
use crate::otlp::DecodeError;
use crate::pipeline::Refusal;
use crate::rpc;
use crate::state::AppState;

/// Delay a refused sender is asked to wait (`Retry-After` / `RetryInfo.retry_delay`).
pub const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Why a request was refused. Client errors are logged at `debug` only.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// `Content-Type` missing or not an OTLP media type (HTTP 415).
    #[error("unsupported content type {0:?}: use application/x-protobuf or application/json")]
    UnsupportedContentType(String),
    /// `Content-Encoding` other than identity, gzip, deflate (HTTP 415).
    #[error("unsupported content encoding {0:?}: use gzip, deflate or none")]
    UnsupportedContentEncoding(String),
    /// The request body could not be read (client went away mid-body) (HTTP 400).
    #[error("could not read the request body")]
    BodyRead,
    /// Decoding failed, including "too large" while decompressing.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The pipeline refused the spans.
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// What kind of answer an error gets, independent of the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 415.
    UnsupportedMedia,
    /// 413 / RESOURCE_EXHAUSTED.
    TooLarge,
    /// 400 / INVALID_ARGUMENT.
    BadData,
    /// 429 / UNAVAILABLE + retry delay.
    Throttled,
    /// 503 / UNAVAILABLE + retry delay.
    ShuttingDown,
}

impl IngestError {
    /// The answer class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::UnsupportedContentType(_) | Self::UnsupportedContentEncoding(_) => {
                ErrorKind::UnsupportedMedia
            }
            Self::Decode(DecodeError::TooLarge { .. })
            | Self::Refused(Refusal::TooLarge { .. } | Refusal::TooLargeForBudget { .. }) => {
                ErrorKind::TooLarge
            }
            Self::BodyRead | Self::Decode(_) => ErrorKind::BadData,
            Self::Refused(
                Refusal::QueueFull { .. }
                | Refusal::SpoolUnavailable { .. }
                | Refusal::StoreBusy { .. },
            ) => ErrorKind::Throttled,
            Self::Refused(Refusal::ShuttingDown { .. }) => ErrorKind::ShuttingDown,
        }
    }

    /// The `reason` label of `meshtrace_shim_refused_*_total`.
    pub fn reason(&self) -> &'static str {
        match (self.kind(), self) {
            (ErrorKind::UnsupportedMedia, _) => refused::UNSUPPORTED_MEDIA_TYPE,
            (ErrorKind::TooLarge, _) => refused::TOO_LARGE,
            (ErrorKind::BadData, _) => refused::MALFORMED,
            (ErrorKind::Throttled, Self::Refused(Refusal::SpoolUnavailable { .. })) => {
                refused::SPOOL_UNAVAILABLE
            }
            (ErrorKind::Throttled, Self::Refused(Refusal::StoreBusy { .. })) => {
                refused::STORE_QUEUE_FULL
            }
            (ErrorKind::Throttled, _) => refused::QUEUE_FULL,
            (ErrorKind::ShuttingDown, _) => refused::SHUTTING_DOWN,
        }
    }

    /// Spans known to be in the refused request (0 when it was not decoded).
    pub fn refused_spans(&self) -> u64 {
        match self {
            Self::Refused(
                Refusal::QueueFull { spans }
                | Refusal::TooLarge { spans, .. }
                | Refusal::TooLargeForBudget { spans, .. }
                | Refusal::SpoolUnavailable { spans, .. }
                | Refusal::StoreBusy { spans }
                | Refusal::ShuttingDown { spans },
            ) => *spans,
            _ => 0,
        }
    }

    /// The `google.rpc.Code`.
    pub fn rpc_code(&self) -> i32 {
        match self.kind() {
            ErrorKind::TooLarge => rpc::code::RESOURCE_EXHAUSTED,
            ErrorKind::Throttled | ErrorKind::ShuttingDown => rpc::code::UNAVAILABLE,
            ErrorKind::UnsupportedMedia | ErrorKind::BadData => rpc::code::INVALID_ARGUMENT,
        }
    }

    /// Counts the refusal and logs it at debug (these are the client's doing or back-pressure,
    /// both visible on `/metrics`).
    pub fn record(&self, state: &AppState) {
        state
            .metrics()
            .record_refused(self.reason(), self.refused_spans());
        tracing::debug!(error = %self, reason = self.reason(), "refused OTLP request");
        // Back-pressure is the operator's business too: say so, at most once a minute.
        static THROTTLED: crate::metrics::WarnLimiter = crate::metrics::WarnLimiter::new();
        if self.kind() == ErrorKind::Throttled && THROTTLED.ready() {
            tracing::warn!(
                error = %self,
                "refusing OTLP requests with a retryable status (logged at most once a minute; \
                 see meshtrace_shim_refused_spans_total and /readyz)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use tonic::Code;
    use tonic_types::StatusExt;

    use super::*;
    use crate::otlp::Format;

    /// Every pipeline refusal: HTTP status, gRPC code, whether a retry delay is given, reason.
    #[rustfmt::skip]
    #[test]
    fn refusals_map_to_the_otlp_answers() {
        let cases = [
            (Refusal::QueueFull { spans: 1 }, StatusCode::TOO_MANY_REQUESTS, Code::Unavailable, true, refused::QUEUE_FULL),
            (Refusal::SpoolUnavailable { spans: 1, detail: String::new() }, StatusCode::TOO_MANY_REQUESTS, Code::Unavailable, true, refused::SPOOL_UNAVAILABLE),
            (Refusal::StoreBusy { spans: 1 }, StatusCode::TOO_MANY_REQUESTS, Code::Unavailable, true, refused::STORE_QUEUE_FULL),
            (Refusal::ShuttingDown { spans: 1 }, StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable, true, refused::SHUTTING_DOWN),
            (Refusal::TooLarge { spans: 1, max: 0 }, StatusCode::PAYLOAD_TOO_LARGE, Code::ResourceExhausted, false, refused::TOO_LARGE),
            (Refusal::TooLargeForBudget { spans: 1, bytes: 1, max: 0 }, StatusCode::PAYLOAD_TOO_LARGE, Code::ResourceExhausted, false, refused::TOO_LARGE),
        ];
        for (refusal, http, grpc, retry, reason) in cases {
            let error = IngestError::Refused(refusal);
            let response = http::error_response(&error, Format::Protobuf);
            assert_eq!(response.status(), http, "{error}");
            assert_eq!(response.headers().contains_key("retry-after"), retry, "{error}");
            let status = grpc::status_for(&error);
            assert_eq!(status.code(), grpc, "{error}");
            assert_eq!(status.get_details_retry_info().is_some(), retry, "{error}");
            assert_eq!((error.reason(), error.refused_spans()), (reason, 1), "{error}");
        }
    }
}
