//! The trace query API on the admin listener (JSON; shapes documented in `docs/viewer.md`):
//!
//! - `GET /api/traces?service=&name=&status=&min_duration_ms=&start_unix_nano=&end_unix_nano=&limit=&cursor=`
//!   → `{"traces":[summary…],"nextCursor":"…"|null}`, newest first (see [`crate::store::search`]
//!   for what matches).
//! - `GET /api/services` → `{"services":["…"]}`
//! - `GET /api/span-names?service=` → `{"names":["…"]}`
//!
//! One trace by id stays at `GET /api/traces/{trace_id}` ([`crate::admin`]). Unknown or invalid
//! parameters are answered 400 with `{"error": "<message naming the parameter>"}`; a busy
//! store 503 with `Retry-After`. 64-bit times are decimal strings, as in OTLP/JSON.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::admin::AdminError;
use crate::state::AppState;
use crate::store::search::{MAX_LIMIT, TracePage, TraceSummary};
use crate::store::{Cursor, StatusFilter, TraceQuery};

/// The query routes (state: [`AppState`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/traces", get(search))
        .route("/api/services", get(services))
        .route("/api/span-names", get(span_names))
}

/// `GET /api/traces` parameters, as sent.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SearchParams {
    service: Option<String>,
    name: Option<String>,
    status: Option<String>,
    min_duration_ms: Option<f64>,
    start_unix_nano: Option<i64>,
    end_unix_nano: Option<i64>,
    limit: Option<usize>,
    cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct NamesParams {
    service: Option<String>,
}

/// `GET /api/traces` answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TraceList {
    traces: Vec<TraceItem>,
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TraceItem {
    trace_id: String,
    start_time_unix_nano: String,
    end_time_unix_nano: String,
    duration_nanos: String,
    span_count: u64,
    error_count: u64,
    services: Vec<String>,
    root: RootItem,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RootItem {
    span_id: String,
    name: String,
    service: String,
    /// True when the trace's real root span is not stored (this is its earliest stored span).
    has_parent: bool,
}

async fn search(
    State(state): State<AppState>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<TraceList>, AdminError> {
    let query = params
        .map_err(|rejection| AdminError::BadQuery(rejection.body_text()))?
        .0
        .into_query()
        .map_err(AdminError::BadQuery)?;
    let page = state.store().read(move |db| db.search(&query)).await?;
    Ok(Json(TraceList::from(page)))
}

async fn services(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AdminError> {
    let services = state.store().read(|db| db.services()).await?;
    Ok(Json(serde_json::json!({ "services": services })))
}

async fn span_names(
    State(state): State<AppState>,
    params: Result<Query<NamesParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let service = params
        .map_err(|rejection| AdminError::BadQuery(rejection.body_text()))?
        .0
        .service
        .filter(|service| !service.is_empty());
    let names = state
        .store()
        .read(move |db| db.span_names(service.as_deref()))
        .await?;
    Ok(Json(serde_json::json!({ "names": names })))
}

// === impl SearchParams ===

impl SearchParams {
    /// Validates every parameter; the error names the first bad one. Empty strings count as
    /// absent (an HTML form sends empty fields).
    fn into_query(self) -> Result<TraceQuery, String> {
        let non_empty = |value: Option<String>| value.filter(|v| !v.is_empty());
        let status = non_empty(self.status)
            .map(|status| status.parse::<StatusFilter>())
            .transpose()?;
        let min_duration_ns = self
            .min_duration_ms
            .map(|ms| {
                if ms.is_finite() && ms >= 0.0 {
                    // Saturating float-to-int conversion: huge values mean "longer than any".
                    Ok((ms * 1e6) as i64)
                } else {
                    Err(format!("min_duration_ms must be a number >= 0, got {ms}"))
                }
            })
            .transpose()?;
        let limit = match self.limit {
            None => TraceQuery::default().limit,
            Some(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
            Some(limit) => {
                return Err(format!(
                    "limit must be between 1 and {MAX_LIMIT}, got {limit}"
                ));
            }
        };
        let cursor = non_empty(self.cursor)
            .map(|cursor| cursor.parse::<Cursor>())
            .transpose()?;
        Ok(TraceQuery {
            service: non_empty(self.service),
            name: non_empty(self.name),
            status,
            min_duration_ns,
            start_ns: self.start_unix_nano,
            end_ns: self.end_unix_nano,
            limit,
            cursor,
        })
    }
}

// === impl TraceList ===

impl From<TracePage> for TraceList {
    fn from(page: TracePage) -> Self {
        Self {
            traces: page.traces.into_iter().map(TraceItem::from).collect(),
            next_cursor: page.next_cursor.map(|cursor| cursor.to_string()),
        }
    }
}

impl From<TraceSummary> for TraceItem {
    fn from(summary: TraceSummary) -> Self {
        let duration = summary.end_ns.saturating_sub(summary.start_ns).max(0);
        Self {
            trace_id: hex::encode(summary.trace_id),
            start_time_unix_nano: summary.start_ns.to_string(),
            end_time_unix_nano: summary.end_ns.to_string(),
            duration_nanos: duration.to_string(),
            span_count: summary.span_count,
            error_count: summary.error_count,
            services: summary.services,
            root: RootItem {
                span_id: hex::encode(&summary.root.span_id),
                name: summary.root.name,
                service: summary.root.service,
                has_parent: summary.root.has_parent,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_validated_and_name_the_parameter() {
        let ok = SearchParams {
            service: Some("svc".to_owned()),
            name: Some(String::new()),
            status: Some("error".to_owned()),
            min_duration_ms: Some(1.5),
            limit: Some(5),
            ..SearchParams::default()
        }
        .into_query()
        .unwrap();
        assert_eq!(ok.service.as_deref(), Some("svc"));
        assert_eq!(ok.name, None, "empty means absent");
        assert_eq!(ok.status, Some(StatusFilter::Error));
        assert_eq!(ok.min_duration_ns, Some(1_500_000));
        assert_eq!(ok.limit, 5);

        for (params, needle) in [
            (
                SearchParams {
                    status: Some("bad".to_owned()),
                    ..SearchParams::default()
                },
                "status",
            ),
            (
                SearchParams {
                    min_duration_ms: Some(-1.0),
                    ..SearchParams::default()
                },
                "min_duration_ms",
            ),
            (
                SearchParams {
                    limit: Some(0),
                    ..SearchParams::default()
                },
                "limit",
            ),
            (
                SearchParams {
                    limit: Some(MAX_LIMIT + 1),
                    ..SearchParams::default()
                },
                "limit",
            ),
            (
                SearchParams {
                    cursor: Some("nope".to_owned()),
                    ..SearchParams::default()
                },
                "cursor",
            ),
        ] {
            let error = params.into_query().unwrap_err();
            assert!(error.contains(needle), "{error}");
        }
    }
}
