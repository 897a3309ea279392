//! Trace search: what can be asked ([`TraceQuery`]), what comes back ([`TracePage`]), and the
//! SQL that answers it. The semantics follow Jaeger's search: a trace matches when **one** of
//! its spans matches every span condition (service, name, status, minimum duration); the time
//! range applies to the trace's start (its earliest stored span). Results are newest first,
//! paginated by a keyset [`Cursor`], so a page never repeats or skips a trace that was already
//! there when the first page was read.

use std::fmt;
use std::str::FromStr;

use rusqlite::types::Value;

use super::TraceId;

/// Traces per page when the query does not say.
pub const DEFAULT_LIMIT: usize = 20;
/// Most traces one page may hold.
pub const MAX_LIMIT: usize = 100;

/// A span status condition (OTLP `Status.code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    /// `STATUS_CODE_UNSET` (0).
    Unset,
    /// `STATUS_CODE_OK` (1).
    Ok,
    /// `STATUS_CODE_ERROR` (2).
    Error,
}

/// What to search for. Every field is optional; the default lists the newest traces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceQuery {
    /// A matching span's `service.name`.
    pub service: Option<String>,
    /// A matching span's name (exact).
    pub name: Option<String>,
    /// A matching span's status.
    pub status: Option<StatusFilter>,
    /// A matching span lasts at least this long.
    pub min_duration_ns: Option<i64>,
    /// The trace starts at or after this time (Unix nanoseconds).
    pub start_ns: Option<i64>,
    /// The trace starts before this time (Unix nanoseconds).
    pub end_ns: Option<i64>,
    /// Traces per page, 1 to [`MAX_LIMIT`].
    pub limit: usize,
    /// Where the previous page ended.
    pub cursor: Option<Cursor>,
}

/// The position after the last trace of a page: its start time and id (the sort key).
/// Rendered as `<start_ns>-<trace id hex>`; clients treat it as opaque.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Start of the last trace returned.
    pub start_ns: i64,
    /// Id of the last trace returned.
    pub trace_id: TraceId,
}

/// One page of search results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracePage {
    /// Matching traces, newest start first.
    pub traces: Vec<TraceSummary>,
    /// Present when more traces may follow.
    pub next_cursor: Option<Cursor>,
}

/// What the trace list shows of one trace, computed from its stored spans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceSummary {
    /// The trace id.
    pub trace_id: TraceId,
    /// Earliest stored span start (Unix nanoseconds).
    pub start_ns: i64,
    /// Latest stored span end (Unix nanoseconds).
    pub end_ns: i64,
    /// Stored spans.
    pub span_count: u64,
    /// Stored spans with status ERROR.
    pub error_count: u64,
    /// Distinct services of the stored spans, sorted.
    pub services: Vec<String>,
    /// The span the trace is shown by (see [`RootSpan`]).
    pub root: RootSpan,
}

/// The trace's entry point: its earliest stored span without a parent or, when none is stored
/// (the real root was never received, or was evicted), its earliest stored span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootSpan {
    /// Span id.
    pub span_id: Vec<u8>,
    /// Span name.
    pub name: String,
    /// Its service.
    pub service: String,
    /// True when this span has a parent, i.e. the trace's real root is not stored.
    pub has_parent: bool,
}

impl Default for TraceQuery {
    fn default() -> Self {
        Self {
            service: None,
            name: None,
            status: None,
            min_duration_ns: None,
            start_ns: None,
            end_ns: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

impl StatusFilter {
    /// The OTLP status code.
    pub fn code(self) -> i64 {
        match self {
            Self::Unset => 0,
            Self::Ok => 1,
            Self::Error => 2,
        }
    }
}

impl FromStr for StatusFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "unset" => Ok(Self::Unset),
            "ok" => Ok(Self::Ok),
            "error" => Ok(Self::Error),
            other => Err(format!(
                "status must be one of error, ok, unset; got {other:?}"
            )),
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start_ns, hex::encode(self.trace_id))
    }
}

impl FromStr for Cursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || "cursor is not one returned by this API".to_owned();
        let (start, id) = text.rsplit_once('-').ok_or_else(invalid)?;
        let mut trace_id = [0u8; 16];
        hex::decode_to_slice(id, &mut trace_id).map_err(|_| invalid())?;
        Ok(Self {
            start_ns: start.parse().map_err(|_| invalid())?,
            trace_id,
        })
    }
}

/// The statement selecting one page of `(trace_id, start_ns)` for `query` (one row more than
/// the limit, to know whether another page follows), and its parameters.
pub(super) fn page_sql(query: &TraceQuery) -> (String, Vec<Value>) {
    let mut sql = String::from("SELECT t.trace_id, t.start_ns FROM traces t WHERE 1");
    let mut params = Vec::new();
    if let Some(start) = query.start_ns {
        sql.push_str(" AND t.start_ns >= ?");
        params.push(Value::Integer(start));
    }
    if let Some(end) = query.end_ns {
        sql.push_str(" AND t.start_ns < ?");
        params.push(Value::Integer(end));
    }
    if let Some(cursor) = query.cursor {
        sql.push_str(" AND (t.start_ns, t.trace_id) < (?, ?)");
        params.push(Value::Integer(cursor.start_ns));
        params.push(Value::Blob(cursor.trace_id.to_vec()));
    }
    let mut span_conditions = Vec::new();
    if let Some(service) = &query.service {
        span_conditions.push("s.service = ?");
        params.push(Value::Text(service.clone()));
    }
    if let Some(name) = &query.name {
        span_conditions.push("s.name = ?");
        params.push(Value::Text(name.clone()));
    }
    if let Some(status) = query.status {
        span_conditions.push("s.status_code = ?");
        params.push(Value::Integer(status.code()));
    }
    if let Some(min) = query.min_duration_ns {
        span_conditions.push("s.end_ns - s.start_ns >= ?");
        params.push(Value::Integer(min));
    }
    if !span_conditions.is_empty() {
        // Always the trace's own spans (a few rows): the service index would make each check
        // walk every span of a busy service. Worst case, a filter matching nothing, is one
        // lookup per stored trace.
        sql.push_str(
            " AND EXISTS (SELECT 1 FROM spans s INDEXED BY spans_trace \
             WHERE s.trace_id = t.trace_id AND ",
        );
        sql.push_str(&span_conditions.join(" AND "));
        sql.push(')');
    }
    sql.push_str(" ORDER BY t.start_ns DESC, t.trace_id DESC LIMIT ?");
    let fetch = query.limit.clamp(1, MAX_LIMIT) + 1;
    params.push(Value::Integer(i64::try_from(fetch).unwrap_or(i64::MAX)));
    (sql, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let cursor = Cursor {
            start_ns: 1_760_000_000_000_000_000,
            trace_id: [0xab; 16],
        };
        let text = cursor.to_string();
        assert_eq!(text, format!("1760000000000000000-{}", "ab".repeat(16)));
        assert_eq!(text.parse::<Cursor>(), Ok(cursor));
        let negative = Cursor {
            start_ns: -5,
            ..cursor
        };
        assert_eq!(negative.to_string().parse::<Cursor>(), Ok(negative));
        for bad in [
            "",
            "12",
            "x-abab",
            "12-abab",
            &format!("-{}", "ab".repeat(16)),
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn status_names() {
        assert_eq!("error".parse(), Ok(StatusFilter::Error));
        assert_eq!("ok".parse::<StatusFilter>().map(StatusFilter::code), Ok(1));
        assert_eq!(
            "unset".parse::<StatusFilter>().map(StatusFilter::code),
            Ok(0)
        );
        assert!("ERROR".parse::<StatusFilter>().is_err());
    }

    #[test]
    fn sql_has_one_placeholder_per_parameter() {
        let full = TraceQuery {
            service: Some("a".to_owned()),
            name: Some("b".to_owned()),
            status: Some(StatusFilter::Error),
            min_duration_ns: Some(5),
            start_ns: Some(1),
            end_ns: Some(2),
            limit: 1_000,
            cursor: Some(Cursor {
                start_ns: 3,
                trace_id: [1; 16],
            }),
        };
        for query in [TraceQuery::default(), full] {
            let (sql, params) = page_sql(&query);
            assert_eq!(sql.matches('?').count(), params.len(), "{sql}");
        }
        let (_, params) = page_sql(&TraceQuery {
            limit: 1_000,
            ..TraceQuery::default()
        });
        assert_eq!(params.last(), Some(&Value::Integer(101)), "limit is capped");
    }
}
