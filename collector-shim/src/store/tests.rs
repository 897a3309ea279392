//! Store tests: the SQLite core with an explicit clock ([`TraceDb`]), then the threaded handle
//! ([`SpanStore`]).

use super::*;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span, Status};
use prost::Message;

const SECOND: i64 = 1_000_000_000;
/// A receive time (Unix nanoseconds) the tests start from.
const T0: i64 = 1_760_000_000 * SECOND;

fn trace_id(n: u8) -> TraceId {
    [n; 16]
}

fn span(trace: u8, id: u8) -> Span {
    Span {
        trace_id: trace_id(trace).to_vec(),
        span_id: vec![id; 8],
        name: format!("span-{id}"),
        start_time_unix_nano: 1_000 + u64::from(id),
        end_time_unix_nano: 2_000 + u64::from(id),
        ..Span::default()
    }
}

fn child(trace: u8, id: u8, parent: u8) -> Span {
    Span {
        parent_span_id: vec![parent; 8],
        ..span(trace, id)
    }
}

fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![KeyValue {
            key: SERVICE_NAME.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(service.to_owned())),
            }),
            ..KeyValue::default()
        }],
        ..Resource::default()
    }
}

fn scope(name: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: name.to_owned(),
        ..InstrumentationScope::default()
    }
}

fn batch(service: &str, scope_name: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(resource(service)),
        scope_spans: vec![ScopeSpans {
            scope: Some(scope(scope_name)),
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn config(max_spans: usize, max_bytes: usize) -> StoreConfig {
    StoreConfig {
        max_spans,
        max_bytes,
        ..StoreConfig::default()
    }
}

fn db(max_spans: usize, max_bytes: usize) -> TraceDb {
    TraceDb::open(&config(max_spans, max_bytes)).unwrap()
}

fn big_db() -> TraceDb {
    db(1_000, 1 << 20)
}

fn span_ids(resource_spans: &[ResourceSpans]) -> Vec<u8> {
    resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.span_id.first().copied().unwrap_or_default())
        .collect()
}

fn ids_of(db: &TraceDb, trace: u8) -> Vec<u8> {
    db.get_trace(&trace_id(trace))
        .unwrap()
        .map(|rs| span_ids(&rs))
        .unwrap_or_default()
}

fn evicted(age: u64, spans: u64, bytes: u64) -> Evictions {
    Evictions { age, spans, bytes }
}

// === TraceDb: OTLP round trip ===

#[test]
fn stores_and_returns_a_trace_with_resource_and_scope() {
    let mut db = big_db();
    let outcome = db
        .insert(
            vec![batch("checkout", "envoy", vec![span(1, 1), span(2, 2)])],
            T0,
        )
        .unwrap();
    assert_eq!(
        outcome,
        InsertOutcome {
            stored: 2,
            not_indexed: 0,
            evicted: Evictions::default()
        }
    );
    assert_eq!(db.span_count(), 2);
    let trace = db.get_trace(&trace_id(1)).unwrap().unwrap();
    assert_eq!(trace, vec![batch("checkout", "envoy", vec![span(1, 1)])]);
    assert_eq!(db.get_trace(&trace_id(9)).unwrap(), None);
}

#[test]
fn regroups_by_resource_then_scope_across_requests() {
    let mut db = big_db();
    db.insert(
        vec![
            batch("a", "s1", vec![span(1, 1)]),
            batch("b", "s1", vec![span(1, 2)]),
        ],
        T0,
    )
    .unwrap();
    // A later request with an equal (but separately decoded) resource and scope.
    db.insert(vec![batch("a", "s1", vec![span(1, 3)])], T0)
        .unwrap();
    db.insert(vec![batch("a", "s2", vec![span(1, 4)])], T0)
        .unwrap();

    let trace = db.get_trace(&trace_id(1)).unwrap().unwrap();
    assert_eq!(trace.len(), 2, "two resources");
    assert_eq!(trace[0].resource, Some(resource("a")));
    assert_eq!(trace[0].scope_spans.len(), 2, "two scopes under resource a");
    assert_eq!(trace[0].scope_spans[0].scope, Some(scope("s1")));
    assert_eq!(span_ids(&trace[..1]), [1, 3, 4]);
    assert_eq!(trace[0].scope_spans[1].scope, Some(scope("s2")));
    assert_eq!(trace[1].resource, Some(resource("b")));
    assert_eq!(span_ids(&trace), [1, 3, 4, 2]);
}

#[test]
fn schema_urls_separate_groups() {
    let mut db = big_db();
    let mut with_schema = batch("a", "s", vec![span(1, 2)]);
    with_schema.schema_url = "https://opentelemetry.io/schemas/1.26.0".to_owned();
    db.insert(vec![batch("a", "s", vec![span(1, 1)]), with_schema], T0)
        .unwrap();
    let trace = db.get_trace(&trace_id(1)).unwrap().unwrap();
    assert_eq!(trace.len(), 2);
    assert_eq!(
        trace[1].schema_url,
        "https://opentelemetry.io/schemas/1.26.0"
    );
}

#[test]
fn resource_and_scope_may_be_absent() {
    let mut db = big_db();
    let bare = ResourceSpans {
        resource: None,
        scope_spans: vec![ScopeSpans {
            scope: None,
            spans: vec![span(1, 1)],
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    };
    db.insert(vec![bare.clone()], T0).unwrap();
    // An empty (present) resource is not the same as none.
    let mut empty = bare.clone();
    empty.resource = Some(Resource::default());
    empty.scope_spans[0].spans = vec![span(1, 2)];
    db.insert(vec![empty, bare], T0).unwrap();
    let trace = db.get_trace(&trace_id(1)).unwrap().unwrap();
    assert_eq!(trace.len(), 2);
    assert_eq!(trace[0].resource, None);
    assert_eq!(trace[0].scope_spans[0].scope, None);
    assert_eq!(span_ids(&trace[..1]), [1, 1]);
    assert_eq!(trace[1].resource, Some(Resource::default()));
}

#[test]
fn spans_with_invalid_trace_ids_are_not_indexed() {
    let mut db = big_db();
    let mut short = span(1, 1);
    short.trace_id = vec![1, 2, 3];
    let mut empty = span(1, 2);
    empty.trace_id.clear();
    let outcome = db
        .insert(vec![batch("a", "s", vec![short, empty, span(1, 3)])], T0)
        .unwrap();
    assert_eq!((outcome.stored, outcome.not_indexed), (1, 2));
    assert_eq!(db.span_count(), 1);
}

// === TraceDb: bounds ===

#[test]
fn span_bound_evicts_oldest_first_and_counts() {
    let mut db = db(3, 1 << 20);
    db.insert(vec![batch("a", "s", vec![span(1, 1), span(1, 2)])], T0)
        .unwrap();
    db.insert(vec![batch("a", "s", vec![span(2, 3)])], T0)
        .unwrap();
    let outcome = db
        .insert(vec![batch("a", "s", vec![span(3, 4), span(3, 5)])], T0)
        .unwrap();
    assert_eq!(outcome.stored, 2);
    assert_eq!(outcome.evicted, evicted(0, 2, 0));
    assert_eq!(db.span_count(), 3);
    // Trace 1 was oldest and is gone entirely; 2 and 3 remain.
    assert_eq!(db.get_trace(&trace_id(1)).unwrap(), None);
    assert_eq!(ids_of(&db, 2), [3]);
    assert_eq!(ids_of(&db, 3), [4, 5]);
    assert_eq!(db.search(&TraceQuery::default()).unwrap().traces.len(), 2);
}

#[test]
fn partially_evicted_trace_returns_what_remains() {
    let mut db = db(2, 1 << 20);
    db.insert(
        vec![batch("a", "s", vec![span(1, 1), span(2, 2), span(1, 3)])],
        T0,
    )
    .unwrap();
    assert_eq!(ids_of(&db, 1), [3]);
    assert_eq!(ids_of(&db, 2), [2]);
    // The trace row follows: its start is now span 3's.
    let summary = db.summary(&trace_id(1)).unwrap().unwrap();
    assert_eq!((summary.start_ns, summary.span_count), (1_003, 1));
}

#[test]
fn byte_bound_evicts_and_accounts_exactly() {
    // What one span costs alone (with its resource and scope), and what a second one adds.
    let mut probe = big_db();
    probe
        .insert(vec![batch("a", "s", vec![span(1, 1)])], T0)
        .unwrap();
    let first = probe.bytes();
    probe
        .insert(vec![batch("a", "s", vec![span(2, 2)])], T0)
        .unwrap();
    let per_span = probe.bytes() - first;
    assert!(per_span > 0 && first > per_span, "{first} {per_span}");

    // Room for exactly two spans by bytes, plenty by count.
    let mut db = db(100, usize::try_from(first + per_span).unwrap());
    db.insert(vec![batch("a", "s", vec![span(1, 1), span(2, 2)])], T0)
        .unwrap();
    assert_eq!((db.span_count(), db.bytes()), (2, first + per_span));
    let outcome = db
        .insert(vec![batch("a", "s", vec![span(3, 3)])], T0)
        .unwrap();
    assert_eq!(outcome.evicted, evicted(0, 0, 1));
    assert_eq!((db.span_count(), db.bytes()), (2, first + per_span));
    assert_eq!(db.get_trace(&trace_id(1)).unwrap(), None);
    assert_eq!(ids_of(&db, 3), [3]);
}

#[test]
fn span_larger_than_the_byte_bound_is_evicted_alone() {
    let mut db = db(100, 400);
    db.insert(vec![batch("a", "s", vec![span(1, 1)])], T0)
        .unwrap();
    let mut huge = span(2, 2);
    huge.name = "x".repeat(1_000);
    let outcome = db.insert(vec![batch("a", "s", vec![huge])], T0).unwrap();
    assert_eq!((outcome.stored, outcome.evicted), (1, evicted(0, 0, 1)));
    assert_eq!(
        db.span_count(),
        1,
        "the small span was not evicted for nothing"
    );
    assert_eq!(ids_of(&db, 1), [1]);
    assert_eq!(db.get_trace(&trace_id(2)).unwrap(), None);
}

#[test]
fn age_bound_evicts_spans_received_too_long_ago() {
    let mut db = TraceDb::open(&StoreConfig {
        max_age_secs: 60,
        ..StoreConfig::default()
    })
    .unwrap();
    db.insert(vec![batch("a", "s", vec![span(1, 1), span(2, 2)])], T0)
        .unwrap();
    db.insert(vec![batch("a", "s", vec![span(3, 3)])], T0 + 30 * SECOND)
        .unwrap();

    // Exactly 60 s old is still kept; older is evicted.
    assert_eq!(
        db.evict_expired(T0 + 60 * SECOND).unwrap(),
        Evictions::default()
    );
    assert_eq!(
        db.evict_expired(T0 + 61 * SECOND).unwrap(),
        evicted(2, 0, 0)
    );
    assert_eq!(db.span_count(), 1);
    assert_eq!(db.get_trace(&trace_id(1)).unwrap(), None);
    assert_eq!(ids_of(&db, 3), [3]);

    // A write also applies the age bound.
    let outcome = db
        .insert(vec![batch("a", "s", vec![span(4, 4)])], T0 + 100 * SECOND)
        .unwrap();
    assert_eq!(outcome.evicted, evicted(1, 0, 0));
    assert_eq!(db.span_count(), 1);
    let listed: Vec<TraceId> = db
        .search(&TraceQuery::default())
        .unwrap()
        .traces
        .iter()
        .map(|t| t.trace_id)
        .collect();
    assert_eq!(listed, [trace_id(4)]);
}

#[test]
fn receive_times_never_go_backwards() {
    let mut db = TraceDb::open(&StoreConfig {
        max_age_secs: 60,
        ..StoreConfig::default()
    })
    .unwrap();
    db.insert(vec![batch("a", "s", vec![span(1, 1)])], T0)
        .unwrap();
    // The clock steps back an hour: the span counts as received at T0, not before.
    db.insert(vec![batch("a", "s", vec![span(2, 2)])], T0 - 3_600 * SECOND)
        .unwrap();
    assert_eq!(
        db.evict_expired(T0 + 30 * SECOND).unwrap(),
        Evictions::default()
    );
    assert_eq!(
        db.evict_expired(T0 + 61 * SECOND).unwrap(),
        evicted(2, 0, 0)
    );
}

#[test]
fn resources_and_scopes_are_stored_once_and_go_with_their_last_span() {
    let mut db = db(2, 1 << 20);
    db.insert(vec![batch("a", "s", vec![span(1, 1)])], T0)
        .unwrap();
    let one = db.bytes();
    db.insert(vec![batch("a", "s", vec![span(1, 2)])], T0)
        .unwrap();
    let two = db.bytes();
    // The second span is charged its own row only: its resource and scope were already there.
    let row_only = (two - one) as usize;
    let resource_and_scope = resource("a").encoded_len() + scope("s").encoded_len();
    assert_eq!(one as usize, row_only + resource_and_scope);

    // Two spans of another resource evict both of "a": its resource and scope go too.
    db.insert(vec![batch("b", "t", vec![span(2, 3), span(2, 4)])], T0)
        .unwrap();
    assert_eq!(db.bytes(), two, "same shapes, same charge");
    db.insert(vec![batch("b", "t", vec![span(2, 5), span(2, 6)])], T0)
        .unwrap();
    assert_eq!(db.bytes(), two);
    assert_eq!(db.services().unwrap(), ["b"]);
}

#[test]
fn many_evictions_keep_the_totals_and_index_consistent() {
    let mut db = db(7, 1 << 20);
    let mut total_evicted = 0;
    for i in 0..200u8 {
        let service = ["a", "b", "c"][usize::from(i % 3)];
        let outcome = db
            .insert(vec![batch(service, "s", vec![span(i % 5, i)])], T0)
            .unwrap();
        total_evicted += outcome.evicted.total();
    }
    assert_eq!(db.span_count(), 7);
    assert_eq!(total_evicted, 193);
    let stored: usize = (0..5u8).map(|t| ids_of(&db, t).len()).sum();
    assert_eq!(stored, 7);
    // The running total matches a fresh count of what is in the file.
    let bytes = db.bytes();
    let reopened_totals = {
        let mut again = big_db();
        for t in 0..5u8 {
            if let Some(trace) = db.get_trace(&trace_id(t)).unwrap() {
                again.insert(trace, T0).unwrap();
            }
        }
        again.bytes()
    };
    assert_eq!(bytes, reopened_totals);
}

#[test]
fn database_pages_stay_within_a_small_multiple_of_the_byte_bound() {
    let max_bytes = 512 * 1024;
    let mut db = db(1_000_000, max_bytes);
    for request in 0..1_000u32 {
        let spans = (0..20u32)
            .map(|n| {
                let i = request * 20 + n;
                let mut s = span(0, (i % 256) as u8);
                s.trace_id = [i.to_be_bytes().as_slice(), &[7; 12]].concat();
                s.name = format!("GET /api/v1/items/{}", i % 50);
                s.attributes = vec![KeyValue {
                    key: "http.request.method".to_owned(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("GET".to_owned())),
                    }),
                    ..KeyValue::default()
                }];
                s
            })
            .collect();
        db.insert(vec![batch("svc", "envoy", spans)], T0).unwrap();
    }
    let file = db.database_bytes().unwrap();
    assert!(db.bytes() <= max_bytes as u64);
    let ratio = file as f64 / max_bytes as f64;
    println!(
        "charged {} bytes of {max_bytes}; database pages {file} bytes ({ratio:.2}x the bound)",
        db.bytes()
    );
    assert!(ratio < 3.0, "{ratio}");
}

// === TraceDb: persistence ===

#[test]
fn on_disk_store_survives_reopen_and_applies_its_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        data_dir: Some(dir.path().join("nested/data")),
        max_age_secs: 60,
        ..StoreConfig::default()
    };
    let (count, bytes) = {
        let mut db = TraceDb::open(&config).unwrap();
        db.insert(vec![batch("a", "s", vec![span(1, 1), child(1, 2, 1)])], T0)
            .unwrap();
        db.insert(vec![batch("b", "s", vec![span(2, 3)])], T0 + 30 * SECOND)
            .unwrap();
        (db.span_count(), db.bytes())
    };
    assert!(dir.path().join("nested/data").join(DB_FILE).is_file());

    let mut db = TraceDb::open(&config).unwrap();
    assert_eq!((db.span_count(), db.bytes()), (count, bytes));
    assert_eq!(ids_of(&db, 1), [1, 2]);
    assert_eq!(db.services().unwrap(), ["a", "b"]);
    // Receive times survive too: the age bound applies to the old data.
    assert_eq!(
        db.evict_expired(T0 + 61 * SECOND).unwrap(),
        evicted(2, 0, 0)
    );
    assert_eq!(ids_of(&db, 2), [3]);
}

#[test]
fn a_data_dir_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        data_dir: Some(dir.path().to_owned()),
        ..StoreConfig::default()
    };
    let mut first = TraceDb::open(&config).unwrap();
    first
        .insert(vec![batch("a", "s", vec![span(1, 1)])], T0)
        .unwrap();
    let error = TraceDb::open(&config).unwrap_err();
    assert!(matches!(error, StoreError::Locked { .. }), "{error:?}");
    assert!(
        error.to_string().contains("in use by another process"),
        "{error}"
    );
    drop(first);
    assert!(TraceDb::open(&config).is_ok(), "released on close");
}

#[test]
fn a_newer_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let error = TraceDb::open(&StoreConfig {
        data_dir: Some(dir.path().to_owned()),
        ..StoreConfig::default()
    })
    .unwrap_err();
    assert!(error.to_string().contains("layout version 99"), "{error}");
}

#[test]
fn an_unusable_data_dir_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let error = TraceDb::open(&StoreConfig {
        data_dir: Some(file.join("sub")),
        ..StoreConfig::default()
    })
    .unwrap_err();
    assert!(error.to_string().starts_with("store.data_dir: "), "{error}");
}

// === TraceDb: search ===

/// Four traces, newest start last:
/// 1: a/"GET" root + b/"db" child (error, 500 ns); 2: a/"POST" root (2000 ns);
/// 3: orphan b/"db" (its parent was never received); 4: c/"GET" root, status ok.
fn searchable() -> TraceDb {
    let mut db = big_db();
    let timed = |mut s: Span, start: u64, duration: u64| {
        s.start_time_unix_nano = start;
        s.end_time_unix_nano = start + duration;
        s
    };
    let named = |mut s: Span, name: &str| {
        s.name = name.to_owned();
        s
    };
    let mut failing = timed(named(child(1, 2, 1), "db"), 1_100, 500);
    failing.status = Some(Status {
        code: 2,
        message: "boom".to_owned(),
    });
    let mut fine = timed(named(span(4, 6), "GET"), 4_000, 100);
    fine.status = Some(Status {
        code: 1,
        message: String::new(),
    });
    db.insert(
        vec![
            batch(
                "a",
                "s",
                vec![timed(named(span(1, 1), "GET"), 1_000, 1_000)],
            ),
            batch("b", "s", vec![failing]),
        ],
        T0,
    )
    .unwrap();
    db.insert(
        vec![batch(
            "a",
            "s",
            vec![timed(named(span(2, 3), "POST"), 2_000, 2_000)],
        )],
        T0,
    )
    .unwrap();
    db.insert(
        vec![batch(
            "b",
            "s",
            vec![timed(named(child(3, 5, 4), "db"), 3_000, 50)],
        )],
        T0,
    )
    .unwrap();
    db.insert(vec![batch("c", "s", vec![fine])], T0).unwrap();
    db
}

fn found(db: &TraceDb, query: TraceQuery) -> Vec<u8> {
    db.search(&query)
        .unwrap()
        .traces
        .iter()
        .map(|t| t.trace_id[0])
        .collect()
}

#[test]
fn search_lists_newest_first_with_summaries() {
    let db = searchable();
    let page = db.search(&TraceQuery::default()).unwrap();
    assert_eq!(page.next_cursor, None);
    let ids: Vec<u8> = page.traces.iter().map(|t| t.trace_id[0]).collect();
    assert_eq!(ids, [4, 3, 2, 1]);

    let one = &page.traces[3];
    assert_eq!((one.start_ns, one.end_ns), (1_000, 2_000));
    assert_eq!((one.span_count, one.error_count), (2, 1));
    assert_eq!(one.services, ["a", "b"]);
    assert_eq!(
        one.root,
        RootSpan {
            span_id: vec![1; 8],
            name: "GET".to_owned(),
            service: "a".to_owned(),
            has_parent: false,
        }
    );
    let orphan = &page.traces[1];
    assert_eq!(orphan.root.name, "db");
    assert!(orphan.root.has_parent, "the real root was never received");
}

#[test]
fn search_filters_match_one_span_with_every_condition() {
    let db = searchable();
    let q = TraceQuery::default;
    let by = |service: &str| TraceQuery {
        service: Some(service.to_owned()),
        ..q()
    };
    assert_eq!(found(&db, by("a")), [2, 1]);
    assert_eq!(found(&db, by("b")), [3, 1]);
    assert_eq!(found(&db, by("nope")), Vec::<u8>::new());
    let name = |name: &str| Some(name.to_owned());
    assert_eq!(
        found(
            &db,
            TraceQuery {
                name: name("GET"),
                ..q()
            }
        ),
        [4, 1]
    );
    assert_eq!(
        found(
            &db,
            TraceQuery {
                name: name("GET"),
                ..by("c")
            }
        ),
        [4]
    );
    // Service a has no span named "db": the conditions hold for one span, not across spans.
    assert_eq!(
        found(
            &db,
            TraceQuery {
                name: name("db"),
                ..by("a")
            }
        ),
        Vec::<u8>::new()
    );
    let status = |status| TraceQuery {
        status: Some(status),
        ..q()
    };
    assert_eq!(found(&db, status(StatusFilter::Error)), [1]);
    assert_eq!(found(&db, status(StatusFilter::Ok)), [4]);
    assert_eq!(found(&db, status(StatusFilter::Unset)), [3, 2, 1]);
    let min = |ns| TraceQuery {
        min_duration_ns: Some(ns),
        ..q()
    };
    assert_eq!(found(&db, min(1_000)), [2, 1]);
    assert_eq!(found(&db, min(1_001)), [2]);
    assert_eq!(found(&db, min(0)), [4, 3, 2, 1]);
    // Time range: on the trace's start, start inclusive, end exclusive.
    let range = |start, end| TraceQuery {
        start_ns: start,
        end_ns: end,
        ..q()
    };
    assert_eq!(found(&db, range(Some(2_000), None)), [4, 3, 2]);
    assert_eq!(found(&db, range(Some(1_500), Some(3_000))), [2]);
    assert_eq!(found(&db, range(None, Some(1_000))), Vec::<u8>::new());
}

#[test]
fn search_pages_with_a_cursor_without_repeats_or_gaps() {
    let mut db = big_db();
    // 25 traces; several share a start time, so the id breaks ties.
    for n in 0..25u8 {
        let mut s = span(n, n);
        s.start_time_unix_nano = 1_000 * u64::from(n / 3);
        db.insert(vec![batch("a", "s", vec![s])], T0).unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = db
            .search(&TraceQuery {
                limit: 10,
                cursor,
                ..TraceQuery::default()
            })
            .unwrap();
        pages += 1;
        seen.extend(page.traces.iter().map(|t| (t.start_ns, t.trace_id[0])));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected: Vec<(i64, u8)> = (0..25u8).map(|n| (1_000 * i64::from(n / 3), n)).collect();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, expected);
}

#[test]
fn services_and_span_names() {
    let db = searchable();
    assert_eq!(db.services().unwrap(), ["a", "b", "c"]);
    assert_eq!(db.span_names(None).unwrap(), ["GET", "POST", "db"]);
    assert_eq!(db.span_names(Some("a")).unwrap(), ["GET", "POST"]);
    assert_eq!(db.span_names(Some("zzz")).unwrap(), Vec::<String>::new());
}

// === SpanStore: the threaded handle ===

fn open_store(config: &StoreConfig) -> (SpanStore, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    (
        SpanStore::open(config, Arc::clone(&metrics)).unwrap(),
        metrics,
    )
}

fn metric(metrics: &Metrics, series: &str) -> Option<u64> {
    let text = metrics.encode().unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn a_read_sees_every_insert_queued_before_it() {
    let (store, metrics) = open_store(&StoreConfig::default());
    for n in 0..50u8 {
        store
            .try_insert(vec![batch("a", "s", vec![span(n, n)])])
            .unwrap();
    }
    let page = store
        .read(|db| {
            db.search(&TraceQuery {
                limit: 100,
                ..TraceQuery::default()
            })
        })
        .await
        .unwrap();
    assert_eq!(page.traces.len(), 50);
    assert_eq!(
        store
            .get_trace(trace_id(7))
            .await
            .unwrap()
            .map(|t| span_ids(&t)),
        Some(vec![7])
    );
    assert_eq!(metric(&metrics, "meshtrace_shim_stored_spans"), Some(50));
}

/// Holds the writer thread inside a read until the returned sender is used (or dropped).
async fn hold_writer(
    store: &SpanStore,
) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (entered, inside) = oneshot::channel();
    let store = store.clone();
    let task = tokio::spawn(async move {
        store
            .read(move |_| {
                let _ = entered.send(());
                let _ = held.recv();
                Ok(())
            })
            .await
            .unwrap();
    });
    inside.await.unwrap();
    (release, task)
}

#[tokio::test]
async fn a_full_queue_refuses_at_once() {
    const CAPACITY: usize = 8;
    const MAX_PENDING: u64 = 100;
    let metrics = Arc::new(Metrics::default());
    let store = SpanStore::open_with_queue(&StoreConfig::default(), metrics, CAPACITY, MAX_PENDING)
        .unwrap();
    let spans = |trace: u8, count: u64| {
        let spans = (0..count).map(|n| span(trace, n as u8)).collect();
        vec![batch("a", "s", spans)]
    };

    // Pending spans: a batch larger than the bound gets in alone; nothing more until written.
    let (release, held) = hold_writer(&store).await;
    store.try_insert(spans(1, MAX_PENDING + 50)).unwrap();
    assert_eq!(
        store.try_insert(spans(2, 1)),
        Err(InsertRefused::Full { spans: 1 })
    );
    release.send(()).unwrap();
    held.await.unwrap();
    let stored = store.read(|db| Ok(db.span_count())).await.unwrap();
    assert_eq!(stored, MAX_PENDING + 50);

    // Up to the bound in several batches, then refused.
    let (release, held) = hold_writer(&store).await;
    store.try_insert(spans(2, MAX_PENDING - 1)).unwrap();
    store.try_insert(spans(2, 1)).unwrap();
    assert_eq!(
        store.try_insert(spans(2, 1)),
        Err(InsertRefused::Full { spans: 1 })
    );
    release.send(()).unwrap();
    held.await.unwrap();

    // Commands: the queue holds CAPACITY, then refuses writes and reads alike.
    let (release, held) = hold_writer(&store).await;
    let mut accepted = 0;
    let refused = loop {
        match store.try_insert(spans(3, 1)) {
            Ok(()) => accepted += 1,
            Err(refused) => break refused,
        }
        assert!(accepted <= CAPACITY, "the queue is bounded");
    };
    assert_eq!(accepted, CAPACITY);
    assert_eq!(refused, InsertRefused::Full { spans: 1 });
    assert!(matches!(
        store.read(|db| db.services()).await,
        Err(ReadError::Busy)
    ));
    release.send(()).unwrap();
    held.await.unwrap();
    let stored = store.read(|db| Ok(db.span_count())).await.unwrap();
    assert_eq!(stored, 2 * MAX_PENDING + 50 + CAPACITY as u64);
}

#[tokio::test]
async fn queued_writes_share_a_transaction_but_a_read_keeps_its_place() {
    let (store, _metrics) = open_store(&StoreConfig::default());
    let (release, held) = hold_writer(&store).await;
    for n in 0..10u8 {
        store
            .try_insert(vec![batch("a", "s", vec![span(n, n)])])
            .unwrap();
    }
    let mut between = Box::pin(store.read(|db| Ok(db.span_count())));
    // Poll it once, which queues it, before the next writes.
    tokio::select! {
        biased;
        _ = &mut between => panic!("the writer is held"),
        () = std::future::ready(()) => {}
    }
    for n in 10..15u8 {
        store
            .try_insert(vec![batch("a", "s", vec![span(n, n)])])
            .unwrap();
    }
    release.send(()).unwrap();
    held.await.unwrap();
    assert_eq!(
        between.await.unwrap(),
        10,
        "the read saw exactly what came before it"
    );
    assert_eq!(store.read(|db| Ok(db.span_count())).await.unwrap(), 15);
}

#[tokio::test]
async fn close_writes_what_was_queued_and_releases_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        data_dir: Some(dir.path().to_owned()),
        ..StoreConfig::default()
    };
    let (store, _) = open_store(&config);
    for n in 0..20u8 {
        store
            .try_insert(vec![batch("a", "s", vec![span(n, n)])])
            .unwrap();
    }
    store.close(Duration::from_secs(5)).await;
    assert_eq!(
        store.try_insert(vec![batch("a", "s", vec![span(1, 1)])]),
        Err(InsertRefused::Closed { spans: 1 })
    );
    assert!(matches!(
        store.get_trace(trace_id(1)).await,
        Err(ReadError::Closed)
    ));

    // The next process (here: the next store) finds everything.
    let (again, metrics) = open_store(&config);
    let count = again.read(|db| Ok(db.span_count())).await.unwrap();
    assert_eq!(count, 20);
    assert_eq!(metric(&metrics, "meshtrace_shim_stored_spans"), Some(20));
}

#[tokio::test]
async fn the_writer_sweeps_expired_spans_when_idle() {
    let (store, metrics) = open_store(&StoreConfig {
        max_age_secs: 1,
        ..StoreConfig::default()
    });
    store
        .try_insert(vec![batch("a", "s", vec![span(1, 1)])])
        .unwrap();
    assert_eq!(store.read(|db| Ok(db.span_count())).await.unwrap(), 1);
    // Received "now"; gone after the 1 s bound plus at most one sweep interval.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.read(|db| Ok(db.span_count())).await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "never swept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(
            &metrics,
            "meshtrace_shim_store_evicted_spans_total{reason=\"max_age\"}"
        ),
        Some(1)
    );
    assert_eq!(metric(&metrics, "meshtrace_shim_stored_spans"), Some(0));
}
