//! Pure retry logic for OTLP export (HTTP and gRPC): which outcomes are retryable, how long
//! to wait.
//!
//! Rules from the OTLP specification
//! (<https://opentelemetry.io/docs/specs/otlp/#retryable-response-codes>): only **429, 502, 503
//! and 504** are retryable; every other 4xx/5xx MUST NOT be retried. A `Retry-After` header
//! (seconds or HTTP-date) on 429/503 SHOULD be honoured. Failures without a response (connection
//! refused or reset, timeout) are retried with exponential backoff **with jitter**.
//!
//! gRPC (<https://opentelemetry.io/docs/specs/otlp/#failures>): `CANCELLED`, `DEADLINE_EXCEEDED`,
//! `ABORTED`, `OUT_OF_RANGE`, `UNAVAILABLE` and `DATA_LOSS` are retryable; `RESOURCE_EXHAUSTED`
//! only when the status carries `RetryInfo` (then wait `retry_delay`); every other code is
//! permanent. `RetryInfo.retry_delay` is honoured on any retryable code.
//!
//! Nothing here reads a clock or a random source: `now`, `elapsed` and `jitter` are arguments.

use std::time::{Duration, SystemTime};

use crate::config::RetryConfig;

/// What one send attempt produced, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome<'a> {
    /// The backend answered with `status`; `retry_after` is the raw `Retry-After` header, if any.
    Response {
        /// HTTP status code.
        status: u16,
        /// Raw `Retry-After` value.
        retry_after: Option<&'a str>,
    },
    /// No response: connection refused/reset, timeout, or the connection closed mid-response.
    Transport,
    /// The request could not even be built (a bug or bad configuration): retrying cannot help.
    InvalidRequest,
}

/// The decision for one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classification {
    /// 2xx: delivered (the body may still report a partial success).
    Success,
    /// Try again, no sooner than `retry_after` when the backend asked for a delay.
    Retryable {
        /// Delay requested by the backend's `Retry-After`, if it parsed.
        retry_after: Option<Duration>,
    },
    /// Drop the data: retrying cannot succeed.
    NonRetryable,
}

/// Backoff parameters, converted from [`RetryConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, first included.
    pub max_attempts: u32,
    /// Backoff before the first retry (before jitter).
    pub initial_backoff: Duration,
    /// Cap on the computed backoff (a `Retry-After` may exceed it).
    pub max_backoff: Duration,
    /// No retry starts later than this after the first attempt began.
    pub max_elapsed: Duration,
}

// === impl RetryPolicy ===

impl From<&RetryConfig> for RetryPolicy {
    fn from(config: &RetryConfig) -> Self {
        Self {
            max_attempts: config.max_attempts,
            initial_backoff: Duration::from_millis(config.initial_backoff_ms),
            max_backoff: Duration::from_millis(config.max_backoff_ms),
            max_elapsed: Duration::from_millis(config.max_elapsed_ms),
        }
    }
}

/// Classifies one attempt per the OTLP/HTTP rules. `now` is only used to turn an HTTP-date
/// `Retry-After` into a delay.
pub fn classify(outcome: AttemptOutcome<'_>, now: SystemTime) -> Classification {
    match outcome {
        AttemptOutcome::Response { status, .. } if (200..300).contains(&status) => {
            Classification::Success
        }
        AttemptOutcome::Response {
            status: 429 | 503,
            retry_after,
        } => Classification::Retryable {
            retry_after: retry_after.and_then(|value| parse_retry_after(value, now)),
        },
        AttemptOutcome::Response {
            status: 502 | 504, ..
        }
        | AttemptOutcome::Transport => Classification::Retryable { retry_after: None },
        AttemptOutcome::Response { .. } | AttemptOutcome::InvalidRequest => {
            Classification::NonRetryable
        }
    }
}

/// Classifies one gRPC outcome per the OTLP table; `retry_delay` is the status' `RetryInfo`.
pub fn classify_grpc(code: tonic::Code, retry_delay: Option<Duration>) -> Classification {
    use tonic::Code;
    match code {
        Code::Ok => Classification::Success,
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Classification::Retryable {
            retry_after: retry_delay,
        },
        Code::ResourceExhausted if retry_delay.is_some() => Classification::Retryable {
            retry_after: retry_delay,
        },
        _ => Classification::NonRetryable,
    }
}

/// Parses `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date. A date in the past
/// means "now" (zero); anything unparsable is `None` (fall back to plain backoff).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The exponential backoff after `attempts_made` attempts (≥ 1): `initial · 2^(attempts_made-1)`
/// capped at `max_backoff`, then "equal jitter": scaled into `[½, 1]` of that by `jitter`
/// (expected in `[0, 1)`; out-of-range or NaN values are clamped).
pub fn backoff(policy: &RetryPolicy, attempts_made: u32, jitter: f64) -> Duration {
    let doublings = attempts_made.saturating_sub(1).min(31);
    let base = policy
        .initial_backoff
        .saturating_mul(1u32 << doublings)
        .min(policy.max_backoff);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    base.mul_f64(0.5 + 0.5 * jitter)
}

/// How long to wait before the next attempt, or `None` to give up: when `attempts_made` reached
/// `max_attempts`, or when the retry would start after `max_elapsed` (this includes a
/// `Retry-After` longer than the remaining budget: the delay is honoured, never shortened).
pub fn next_retry_delay(
    policy: &RetryPolicy,
    attempts_made: u32,
    retry_after: Option<Duration>,
    elapsed: Duration,
    jitter: f64,
) -> Option<Duration> {
    if attempts_made >= policy.max_attempts {
        return None;
    }
    let delay = backoff(policy, attempts_made, jitter).max(retry_after.unwrap_or(Duration::ZERO));
    (elapsed.saturating_add(delay) <= policy.max_elapsed).then_some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_SECS: u64 = 1_760_000_000;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_SECS)
    }

    fn response(status: u16, retry_after: Option<&str>) -> Classification {
        classify(
            AttemptOutcome::Response {
                status,
                retry_after,
            },
            now(),
        )
    }

    fn retryable(after: Option<u64>) -> Classification {
        Classification::Retryable {
            retry_after: after.map(Duration::from_secs),
        }
    }

    #[rustfmt::skip]
    #[test]
    fn classification_follows_the_otlp_http_table() {
        let table: &[(u16, Option<&str>, Classification)] = &[
            (200, None,        Classification::Success),
            (202, None,        Classification::Success),
            (429, None,        retryable(None)),
            (429, Some("3"),   retryable(Some(3))),
            (503, Some(" 1 "), retryable(Some(1))),
            (503, Some("soon"), retryable(None)),
            (502, Some("9"),   retryable(None)), // Retry-After is only defined for 429/503
            (504, None,        retryable(None)),
            (400, None,        Classification::NonRetryable),
            (401, None,        Classification::NonRetryable),
            (403, None,        Classification::NonRetryable),
            (404, None,        Classification::NonRetryable),
            (408, None,        Classification::NonRetryable),
            (413, None,        Classification::NonRetryable),
            (415, None,        Classification::NonRetryable),
            (500, None,        Classification::NonRetryable),
            (501, None,        Classification::NonRetryable),
            (301, None,        Classification::NonRetryable),
            (100, None,        Classification::NonRetryable),
        ];
        for (status, retry_after, expected) in table {
            assert_eq!(response(*status, *retry_after), *expected, "status {status} {retry_after:?}");
        }
        assert_eq!(classify(AttemptOutcome::Transport, now()), retryable(None));
        assert_eq!(classify(AttemptOutcome::InvalidRequest, now()), Classification::NonRetryable);
    }

    #[rustfmt::skip]
    #[test]
    fn grpc_classification_follows_the_otlp_table() {
        use tonic::Code;
        let two = Some(Duration::from_secs(2));
        let table: &[(Code, Option<Duration>, Classification)] = &[
            (Code::Ok,                 None, Classification::Success),
            (Code::Cancelled,          None, retryable(None)),
            (Code::DeadlineExceeded,   None, retryable(None)),
            (Code::Aborted,            None, retryable(None)),
            (Code::OutOfRange,         None, retryable(None)),
            (Code::Unavailable,        None, retryable(None)),
            (Code::Unavailable,        two,  retryable(Some(2))),
            (Code::DataLoss,           None, retryable(None)),
            (Code::ResourceExhausted,  None, Classification::NonRetryable),
            (Code::ResourceExhausted,  two,  retryable(Some(2))),
            (Code::Unknown,            None, Classification::NonRetryable),
            (Code::InvalidArgument,    two,  Classification::NonRetryable),
            (Code::NotFound,           None, Classification::NonRetryable),
            (Code::AlreadyExists,      None, Classification::NonRetryable),
            (Code::PermissionDenied,   None, Classification::NonRetryable),
            (Code::FailedPrecondition, None, Classification::NonRetryable),
            (Code::Unimplemented,      None, Classification::NonRetryable),
            (Code::Internal,           None, Classification::NonRetryable),
            (Code::Unauthenticated,    None, Classification::NonRetryable),
        ];
        for (code, delay, expected) in table {
            assert_eq!(classify_grpc(*code, *delay), *expected, "{code:?} {delay:?}");
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let in_ten = httpdate::fmt_http_date(now() + Duration::from_secs(10));
        let past = httpdate::fmt_http_date(now() - Duration::from_secs(10));
        assert_eq!(
            parse_retry_after("120", now()),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after(&in_ten, now()),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after(&past, now()), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now()), None);
        assert_eq!(parse_retry_after("", now()), None);
        assert_eq!(
            parse_retry_after("18446744073709551615", now()),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1_000),
            max_elapsed: Duration::from_secs(10),
        }
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_within_half_to_full() {
        let p = policy();
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(backoff(&p, 1, 1.0)), 100);
        assert_eq!(ms(backoff(&p, 2, 1.0)), 200);
        assert_eq!(ms(backoff(&p, 3, 1.0)), 400);
        assert_eq!(ms(backoff(&p, 5, 1.0)), 1_000, "capped");
        assert_eq!(ms(backoff(&p, u32::MAX, 1.0)), 1_000, "no overflow");
        assert_eq!(ms(backoff(&p, 1, 0.0)), 50);
        assert_eq!(ms(backoff(&p, 3, 0.5)), 300);
        assert_eq!(ms(backoff(&p, 1, f64::NAN)), 50);
        assert_eq!(ms(backoff(&p, 1, 7.0)), 100);
    }

    #[test]
    fn next_retry_delay_honours_attempts_elapsed_and_retry_after() {
        let p = policy();
        let zero = Duration::ZERO;
        assert_eq!(
            next_retry_delay(&p, 1, None, zero, 1.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            next_retry_delay(&p, 4, None, zero, 1.0),
            Some(Duration::from_millis(800))
        );
        assert_eq!(
            next_retry_delay(&p, 5, None, zero, 1.0),
            None,
            "attempt budget spent"
        );
        // Retry-After longer than the backoff wins, even above max_backoff.
        assert_eq!(
            next_retry_delay(&p, 1, Some(Duration::from_secs(3)), zero, 1.0),
            Some(Duration::from_secs(3))
        );
        // A shorter Retry-After does not shorten the backoff.
        assert_eq!(
            next_retry_delay(&p, 3, Some(Duration::from_millis(1)), zero, 1.0),
            Some(Duration::from_millis(400))
        );
        // Would start after max_elapsed: give up rather than shorten the server's delay.
        assert_eq!(
            next_retry_delay(&p, 1, Some(Duration::from_secs(11)), zero, 1.0),
            None
        );
        assert_eq!(
            next_retry_delay(&p, 1, None, Duration::from_millis(9_950), 1.0),
            None
        );
        assert_eq!(
            next_retry_delay(
                &p,
                1,
                Some(Duration::from_secs(u64::MAX)),
                Duration::from_secs(1),
                0.0
            ),
            None,
            "no overflow"
        );
    }

    #[test]
    fn policy_from_config() {
        let p = RetryPolicy::from(&RetryConfig {
            max_attempts: 2,
            initial_backoff_ms: 10,
            max_backoff_ms: 20,
            max_elapsed_ms: 30,
        });
        assert_eq!(p.max_attempts, 2);
        assert_eq!(p.initial_backoff, Duration::from_millis(10));
        assert_eq!(p.max_backoff, Duration::from_millis(20));
        assert_eq!(p.max_elapsed, Duration::from_millis(30));
    }
}
