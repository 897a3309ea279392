//! What an export call's answer means for its batch, following the OTLP/HTTP rules
//! (<https://opentelemetry.io/docs/specs/otlp/#otlphttp-response>): 2xx is success, with
//! `partial_success.rejected_spans` counted and never retried; 429, 502, 503 and 504 (with
//! `Retry-After` honoured) and failures to reach the collector are retryable; every other
//! answer is final.
//!
//! Envoy answers a call it could not deliver itself, as a local reply (see
//! `../shared/anchors/envoy-wasm-notes.md`): 503 with the body `upstream connect error or
//! disconnect/reset before headers. reset reason: …` when the cluster cannot be reached, 504
//! `upstream request timeout` at the call's timeout, and no response at all (no headers) when
//! the stream is reset after the response began. Those bodies tell a collector that is down
//! from one that asks us to slow down.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest answer body read: an `ExportTraceServiceResponse` or an Envoy local reply is far
/// smaller; a longer body is not decoded.
pub const MAX_BODY_READ: usize = 64 * 1024;

/// Why an export call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureCause {
    /// `dispatch_http_call` refused the call (unknown cluster, circuit breaker overflow).
    Dispatch,
    /// Envoy could not connect to the collector (its local 503 reply).
    Connect,
    /// The stream was reset after the response began: Envoy answered with no headers.
    Reset,
    /// No answer before the call's timeout (Envoy's local 504 reply).
    Timeout,
    /// The collector asked us to slow down: 429 or its own 503.
    Throttled,
    /// A gateway between us and the collector failed: 502 or 504 from upstream.
    Gateway,
    /// Any other non-2xx answer: the batch will never be accepted.
    Refused,
}

/// How an export call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: the collector took the batch, except `rejected_spans` of it.
    Accepted {
        /// `partial_success.rejected_spans` (0 without a partial success).
        rejected_spans: u64,
        /// `partial_success.error_message`, if any.
        message: String,
    },
    /// The batch may succeed later, not before `retry_after` when the answer said so.
    Retryable {
        /// What went wrong.
        cause: FailureCause,
        /// The answer's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The batch is refused for good.
    Failed {
        /// What went wrong.
        cause: FailureCause,
    },
}

/// The parts of an export call's answer the classification reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct Response<'a> {
    /// `:status`, `None` when the answer had no headers (a reset).
    pub status: Option<&'a [u8]>,
    /// `retry-after`.
    pub retry_after: Option<&'a [u8]>,
    /// The body, when [`needs_body`] asked for it and there was one.
    pub body: Option<&'a [u8]>,
}

impl FailureCause {
    /// Every cause, in metric order.
    pub const ALL: [FailureCause; 7] = [
        FailureCause::Dispatch,
        FailureCause::Connect,
        FailureCause::Reset,
        FailureCause::Timeout,
        FailureCause::Throttled,
        FailureCause::Gateway,
        FailureCause::Refused,
    ];

    /// Name used in metric names.
    pub fn name(self) -> &'static str {
        match self {
            FailureCause::Dispatch => "dispatch",
            FailureCause::Connect => "connect",
            FailureCause::Reset => "reset",
            FailureCause::Timeout => "timeout",
            FailureCause::Throttled => "throttled",
            FailureCause::Gateway => "gateway",
            FailureCause::Refused => "refused",
        }
    }
}

/// Whether classifying an answer with this `:status` reads its body: 2xx for a partial
/// success, 503 and 504 to recognise Envoy's local replies.
pub fn needs_body(status: Option<&[u8]>) -> bool {
    matches!(status_code(status), Some(200..=299 | 503 | 504))
}

/// Classifies an answer; `now` resolves a `Retry-After` given as an HTTP date.
pub fn classify(response: &Response<'_>, now: SystemTime) -> Answer {
    let Some(status) = response.status else {
        return Answer::Retryable {
            cause: FailureCause::Reset,
            retry_after: None,
        };
    };
    let body = response.body.unwrap_or_default();
    let retry_after = || {
        response
            .retry_after
            .and_then(|value| parse_retry_after(value, now))
    };
    match status_code(Some(status)) {
        Some(200..=299) => accepted(body),
        Some(503) if is_envoy_connect_failure(body) => Answer::Retryable {
            cause: FailureCause::Connect,
            retry_after: None,
        },
        Some(504) if body == b"upstream request timeout" => Answer::Retryable {
            cause: FailureCause::Timeout,
            retry_after: None,
        },
        Some(429 | 503) => Answer::Retryable {
            cause: FailureCause::Throttled,
            retry_after: retry_after(),
        },
        Some(502 | 504) => Answer::Retryable {
            cause: FailureCause::Gateway,
            retry_after: retry_after(),
        },
        _ => Answer::Failed {
            cause: FailureCause::Refused,
        },
    }
}

/// Parses `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date; a date in the past
/// is zero, anything else `None`.
pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let value = std::str::from_utf8(value).ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The time `unix_nanos` as a `SystemTime`.
pub fn system_time(unix_nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(unix_nanos)
}

fn status_code(status: Option<&[u8]>) -> Option<u16> {
    std::str::from_utf8(status?).ok()?.parse().ok()
}

fn accepted(body: &[u8]) -> Answer {
    let partial = ExportTraceServiceResponse::decode(body)
        .ok()
        .and_then(|response| response.partial_success);
    let (rejected_spans, message) = partial
        .map(|p| {
            (
                u64::try_from(p.rejected_spans).unwrap_or(0),
                p.error_message,
            )
        })
        .unwrap_or_default();
    Answer::Accepted {
        rejected_spans,
        message,
    }
}

/// Envoy's local reply when no connection to the cluster could be made or used (refused,
/// reset before headers, connection-pool overflow) or no host is healthy.
fn is_envoy_connect_failure(body: &[u8]) -> bool {
    body.starts_with(b"upstream connect error or disconnect/reset before headers")
        || body == b"no healthy upstream"
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NOW: u64 = 1_767_225_600_000_000_000;

    fn answer(status: Option<&str>, retry_after: Option<&str>, body: &[u8]) -> Answer {
        let response = Response {
            status: status.map(str::as_bytes),
            retry_after: retry_after.map(str::as_bytes),
            body: Some(body),
        };
        classify(&response, system_time(NOW))
    }

    fn retryable(cause: FailureCause, retry_after: Option<u64>) -> Answer {
        Answer::Retryable {
            cause,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    fn failed() -> Answer {
        Answer::Failed {
            cause: FailureCause::Refused,
        }
    }

    /// `:status`, `retry-after`, body, and the answer they make.
    type Case<'a> = (Option<&'a str>, Option<&'a str>, &'a [u8], Answer);

    #[rustfmt::skip]
    #[test]
    fn every_answer_class() {
        let connect = b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure";
        let overflow = b"upstream connect error or disconnect/reset before headers. reset reason: overflow";
        let ok = Answer::Accepted { rejected_spans: 0, message: String::new() };
        let cases: [Case; 17] = [
            (Some("200"), None, b"", ok.clone()),
            (Some("202"), None, b"not protobuf \xff", ok.clone()),
            (None, None, b"", retryable(FailureCause::Reset, None)),
            (Some("503"), Some("7"), connect, retryable(FailureCause::Connect, None)),
            (Some("503"), None, overflow, retryable(FailureCause::Connect, None)),
            (Some("503"), None, b"no healthy upstream", retryable(FailureCause::Connect, None)),
            (Some("504"), None, b"upstream request timeout", retryable(FailureCause::Timeout, None)),
            (Some("503"), Some("3"), b"queue full", retryable(FailureCause::Throttled, Some(3))),
            (Some("429"), Some(" 10 "), b"", retryable(FailureCause::Throttled, Some(10))),
            (Some("429"), Some("soon"), b"", retryable(FailureCause::Throttled, None)),
            (Some("429"), Some("Thu, 01 Jan 2026 00:00:30 GMT"), b"", retryable(FailureCause::Throttled, Some(30))),
            (Some("429"), Some("Wed, 31 Dec 2025 00:00:00 GMT"), b"", retryable(FailureCause::Throttled, Some(0))),
            (Some("502"), Some("2"), b"", retryable(FailureCause::Gateway, Some(2))),
            (Some("504"), None, b"gateway says no", retryable(FailureCause::Gateway, None)),
            (Some("400"), Some("1"), b"bad", failed()),
            (Some("500"), None, b"", failed()),
            (Some("2x0"), None, b"", failed()),
        ];
        for (status, retry_after, body, expected) in cases {
            assert_eq!(answer(status, retry_after, body), expected, "{status:?} {retry_after:?}");
        }
    }

    #[test]
    fn partial_success_is_read_from_the_body() {
        let body = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "3 spans too old".to_owned(),
            }),
        }
        .encode_to_vec();
        assert_eq!(
            answer(Some("200"), None, &body),
            Answer::Accepted {
                rejected_spans: 3,
                message: "3 spans too old".to_owned()
            }
        );
        let negative = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: -5,
                error_message: String::new(),
            }),
        }
        .encode_to_vec();
        assert_eq!(
            answer(Some("200"), None, &negative),
            Answer::Accepted {
                rejected_spans: 0,
                message: String::new()
            }
        );
    }

    #[test]
    fn bodies_are_read_only_where_they_matter() {
        for (status, needed) in [
            (Some(&b"200"[..]), true),
            (Some(b"204"), true),
            (Some(b"503"), true),
            (Some(b"504"), true),
            (Some(b"429"), false),
            (Some(b"400"), false),
            (None, false),
        ] {
            assert_eq!(needs_body(status), needed, "{status:?}");
        }
    }
}
