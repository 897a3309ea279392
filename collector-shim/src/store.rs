//! In-memory span store behind `GET /api/traces/{trace_id}`: pure, synchronous, bounded.
//!
//! ```text
//!  insert(Vec<ResourceSpans>)                         get_trace(trace_id)
//!        │  one Arc per resource / scope                     │
//!        ▼                                                   ▼
//!  spans: VecDeque<StoredSpan>  (oldest at the front)   by_trace: trace id → seq numbers
//!        │                                                   │ regroup by (resource, scope)
//!        └── over max_spans or max_bytes: pop the front ──►  Vec<ResourceSpans>
//! ```
//!
//! Each span is kept with its resource and instrumentation scope (shared through `Arc`, so a
//! request's resource is held once in memory). Eviction is first-in, first-out by span, so the
//! oldest traces go first; a trace whose oldest spans were evicted returns what remains.
//!
//! **Byte accounting.** A span is charged its protobuf-encoded size plus the encoded size of its
//! resource and scope: what it would cost to export alone. This over-counts shared resources on
//! purpose, so `max_bytes` is an upper bound on the payload held, never an under-estimate.
//!
//! Spans whose trace id is not 16 bytes cannot be looked up and are not stored (they are still
//! forwarded by the exporter; the OTLP spec calls such ids invalid).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use crate::config::StoreConfig;

/// A 16-byte OTLP trace id.
pub type TraceId = [u8; 16];

/// Bounded in-memory store of recent spans, indexed by trace id. Not thread-safe by itself; the
/// shim wraps it in a `Mutex`. Every method runs in time proportional to its input or output
/// (no scans of the whole store).
#[derive(Debug)]
pub struct SpanStore {
    limits: StoreConfig,
    /// Stored spans, oldest first. The span with sequence number `s` is at `s - first_seq`.
    spans: VecDeque<StoredSpan>,
    first_seq: u64,
    /// Sequence numbers of each trace's stored spans, oldest first.
    by_trace: HashMap<TraceId, VecDeque<u64>>,
    bytes: usize,
    evicted_total: u64,
}

/// What one [`SpanStore::insert`] did. Invariant:
/// `offered == stored + not_indexed` and evictions are counted separately (they may hit spans
/// stored by earlier calls, or spans of this call that are larger than `max_bytes` on their own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InsertOutcome {
    /// Spans added to the store (some may already have been evicted again by the same call).
    pub stored: u64,
    /// Spans evicted by this call, including any that could never fit.
    pub evicted: u64,
    /// Spans skipped because their trace id is not 16 bytes.
    pub not_indexed: u64,
}

#[derive(Debug)]
struct StoredSpan {
    trace_id: TraceId,
    resource: Arc<Origin<Resource>>,
    scope: Arc<Origin<InstrumentationScope>>,
    span: Span,
    charged_bytes: usize,
}

/// A resource or scope with its schema URL, plus what grouping and accounting need.
#[derive(Debug)]
struct Origin<T> {
    value: Option<T>,
    schema_url: String,
    /// Hash of the encoded value and schema URL: the grouping key (equality is still checked).
    key: u64,
    encoded_len: usize,
}

// === impl SpanStore ===

impl SpanStore {
    /// An empty store with the given bounds (validated by [`crate::config::ShimConfig::validate`];
    /// a zero bound simply stores nothing).
    pub fn new(limits: StoreConfig) -> Self {
        Self {
            limits,
            spans: VecDeque::new(),
            first_seq: 0,
            by_trace: HashMap::new(),
            bytes: 0,
            evicted_total: 0,
        }
    }

    /// Stores every span of `resource_spans`, then evicts the oldest spans until both bounds
    /// hold again. A span larger than `max_bytes` on its own is counted as evicted without
    /// evicting anything else. Never fails and never panics.
    pub fn insert(&mut self, resource_spans: Vec<ResourceSpans>) -> InsertOutcome {
        let mut outcome = InsertOutcome::default();
        for resource_spans in resource_spans {
            let resource = Arc::new(Origin::new(
                resource_spans.resource,
                resource_spans.schema_url,
            ));
            for scope_spans in resource_spans.scope_spans {
                let scope = Arc::new(Origin::new(scope_spans.scope, scope_spans.schema_url));
                for span in scope_spans.spans {
                    let Ok(trace_id) = TraceId::try_from(span.trace_id.as_slice()) else {
                        outcome.not_indexed += 1;
                        continue;
                    };
                    outcome.stored += 1;
                    let charged_bytes =
                        span.encoded_len() + resource.encoded_len + scope.encoded_len;
                    if charged_bytes > self.limits.max_bytes {
                        outcome.evicted += 1;
                        self.evicted_total += 1;
                        continue;
                    }
                    self.push(StoredSpan {
                        trace_id,
                        resource: Arc::clone(&resource),
                        scope: Arc::clone(&scope),
                        span,
                        charged_bytes,
                    });
                    while self.spans.len() > self.limits.max_spans
                        || self.bytes > self.limits.max_bytes
                    {
                        if !self.evict_oldest() {
                            break;
                        }
                        outcome.evicted += 1;
                    }
                }
            }
        }
        outcome
    }

    /// The stored spans of `trace_id`, regrouped by (resource, scope) in order of first arrival,
    /// spans in arrival order; `None` when no span of that trace is stored.
    pub fn get_trace(&self, trace_id: &TraceId) -> Option<Vec<ResourceSpans>> {
        let seqs = self.by_trace.get(trace_id)?;
        let mut groups = TraceGroups::default();
        for &seq in seqs {
            let Some(stored) = usize::try_from(seq - self.first_seq)
                .ok()
                .and_then(|index| self.spans.get(index))
            else {
                // Unreachable while the index is consistent; skip rather than panic.
                continue;
            };
            groups.push(stored);
        }
        let grouped = groups.into_resource_spans();
        (!grouped.is_empty()).then_some(grouped)
    }

    /// Number of stored spans.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether no span is stored.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Bytes currently charged (see the module docs).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of distinct traces with at least one stored span.
    pub fn trace_count(&self) -> usize {
        self.by_trace.len()
    }

    /// Spans evicted since the store was created.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    fn push(&mut self, stored: StoredSpan) {
        let seq = self.first_seq + self.spans.len() as u64;
        self.bytes += stored.charged_bytes;
        self.by_trace
            .entry(stored.trace_id)
            .or_default()
            .push_back(seq);
        self.spans.push_back(stored);
    }

    /// Removes the oldest span; `false` when the store is empty.
    fn evict_oldest(&mut self) -> bool {
        let Some(oldest) = self.spans.pop_front() else {
            return false;
        };
        self.first_seq += 1;
        self.bytes = self.bytes.saturating_sub(oldest.charged_bytes);
        self.evicted_total += 1;
        if let Some(seqs) = self.by_trace.get_mut(&oldest.trace_id) {
            // FIFO eviction means the globally oldest span is also its trace's oldest.
            seqs.pop_front();
            if seqs.is_empty() {
                self.by_trace.remove(&oldest.trace_id);
            }
        }
        true
    }
}

// === impl Origin ===

impl<T: Message> Origin<T> {
    fn new(value: Option<T>, schema_url: String) -> Self {
        let encoded = value
            .as_ref()
            .map(Message::encode_to_vec)
            .unwrap_or_default();
        let mut hasher = DefaultHasher::new();
        encoded.hash(&mut hasher);
        schema_url.hash(&mut hasher);
        Self {
            encoded_len: encoded.len() + schema_url.len(),
            key: hasher.finish(),
            value,
            schema_url,
        }
    }
}

impl<T: PartialEq> Origin<T> {
    fn same_as(self: &Arc<Self>, other: &Arc<Self>) -> bool {
        Arc::ptr_eq(self, other)
            || (self.key == other.key
                && self.schema_url == other.schema_url
                && self.value == other.value)
    }
}

// === TraceGroups ===

/// Regroups one trace's spans by resource, then scope, in first-seen order. Lookups go through
/// the precomputed hash so regrouping stays linear even with many distinct resources.
#[derive(Default)]
struct TraceGroups {
    resources: Vec<ResourceGroup>,
    resource_index: HashMap<u64, Vec<usize>>,
}

struct ResourceGroup {
    origin: Arc<Origin<Resource>>,
    scopes: Vec<(Arc<Origin<InstrumentationScope>>, Vec<Span>)>,
    scope_index: HashMap<u64, Vec<usize>>,
}

impl TraceGroups {
    fn push(&mut self, stored: &StoredSpan) {
        let candidates = self.resource_index.entry(stored.resource.key).or_default();
        let found = candidates.iter().copied().find(|&i| {
            self.resources
                .get(i)
                .is_some_and(|group| group.origin.same_as(&stored.resource))
        });
        let index = found.unwrap_or_else(|| {
            self.resources.push(ResourceGroup {
                origin: Arc::clone(&stored.resource),
                scopes: Vec::new(),
                scope_index: HashMap::new(),
            });
            let index = self.resources.len() - 1;
            candidates.push(index);
            index
        });
        if let Some(group) = self.resources.get_mut(index) {
            group.push(stored);
        }
    }

    fn into_resource_spans(self) -> Vec<ResourceSpans> {
        self.resources
            .into_iter()
            .map(|group| ResourceSpans {
                resource: group.origin.value.clone(),
                schema_url: group.origin.schema_url.clone(),
                scope_spans: group
                    .scopes
                    .into_iter()
                    .map(|(scope, spans)| ScopeSpans {
                        scope: scope.value.clone(),
                        schema_url: scope.schema_url.clone(),
                        spans,
                    })
                    .collect(),
            })
            .collect()
    }
}

impl ResourceGroup {
    fn push(&mut self, stored: &StoredSpan) {
        let candidates = self.scope_index.entry(stored.scope.key).or_default();
        let found = candidates.iter().copied().find(|&i| {
            self.scopes
                .get(i)
                .is_some_and(|(scope, _)| scope.same_as(&stored.scope))
        });
        let index = found.unwrap_or_else(|| {
            self.scopes.push((Arc::clone(&stored.scope), Vec::new()));
            let index = self.scopes.len() - 1;
            candidates.push(index);
            index
        });
        if let Some((_, spans)) = self.scopes.get_mut(index) {
            spans.push(stored.span.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

    fn trace_id(n: u8) -> TraceId {
        [n; 16]
    }

    fn span(trace: u8, id: u8) -> Span {
        Span {
            trace_id: trace_id(trace).to_vec(),
            span_id: vec![id; 8],
            name: format!("span-{id}"),
            ..Span::default()
        }
    }

    fn resource(service: &str) -> Resource {
        Resource {
            attributes: vec![KeyValue {
                key: "service.name".to_owned(),
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

    fn big_store() -> SpanStore {
        SpanStore::new(StoreConfig {
            max_spans: 1_000,
            max_bytes: 1 << 20,
        })
    }

    fn span_ids(resource_spans: &[ResourceSpans]) -> Vec<u8> {
        resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| s.span_id.first().copied().unwrap_or_default())
            .collect()
    }

    #[test]
    fn stores_and_returns_a_trace_with_resource_and_scope() {
        let mut store = big_store();
        let outcome = store.insert(vec![batch(
            "checkout",
            "envoy",
            vec![span(1, 1), span(2, 2)],
        )]);
        assert_eq!(
            outcome,
            InsertOutcome {
                stored: 2,
                evicted: 0,
                not_indexed: 0
            }
        );
        assert_eq!(store.len(), 2);
        assert_eq!(store.trace_count(), 2);

        let trace = store.get_trace(&trace_id(1)).unwrap();
        assert_eq!(trace, vec![batch("checkout", "envoy", vec![span(1, 1)])]);
        assert_eq!(store.get_trace(&trace_id(9)), None);
    }

    #[test]
    fn regroups_by_resource_then_scope_across_requests() {
        let mut store = big_store();
        store.insert(vec![
            batch("a", "s1", vec![span(1, 1)]),
            batch("b", "s1", vec![span(1, 2)]),
        ]);
        // A later request with an equal (but separately decoded) resource and scope.
        store.insert(vec![batch("a", "s1", vec![span(1, 3)])]);
        store.insert(vec![batch("a", "s2", vec![span(1, 4)])]);

        let trace = store.get_trace(&trace_id(1)).unwrap();
        assert_eq!(trace.len(), 2, "two resources");
        assert_eq!(trace[0].resource, Some(resource("a")));
        assert_eq!(trace[0].scope_spans.len(), 2, "two scopes under resource a");
        assert_eq!(trace[0].scope_spans[0].scope, Some(scope("s1")));
        let first_scope_ids: Vec<u8> = trace[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| s.span_id[0])
            .collect();
        assert_eq!(first_scope_ids, [1, 3]);
        assert_eq!(trace[0].scope_spans[1].scope, Some(scope("s2")));
        assert_eq!(trace[1].resource, Some(resource("b")));
        assert_eq!(span_ids(&trace), [1, 3, 4, 2]);
    }

    #[test]
    fn schema_urls_separate_groups() {
        let mut store = big_store();
        let mut with_schema = batch("a", "s", vec![span(1, 2)]);
        with_schema.schema_url = "https://opentelemetry.io/schemas/1.26.0".to_owned();
        store.insert(vec![batch("a", "s", vec![span(1, 1)]), with_schema]);
        let trace = store.get_trace(&trace_id(1)).unwrap();
        assert_eq!(trace.len(), 2);
        assert_eq!(
            trace[1].schema_url,
            "https://opentelemetry.io/schemas/1.26.0"
        );
    }

    #[test]
    fn span_bound_evicts_oldest_first_and_counts() {
        let mut store = SpanStore::new(StoreConfig {
            max_spans: 3,
            max_bytes: 1 << 20,
        });
        store.insert(vec![batch("a", "s", vec![span(1, 1), span(1, 2)])]);
        store.insert(vec![batch("a", "s", vec![span(2, 3)])]);
        let outcome = store.insert(vec![batch("a", "s", vec![span(3, 4), span(3, 5)])]);
        assert_eq!(outcome.stored, 2);
        assert_eq!(outcome.evicted, 2);
        assert_eq!(store.len(), 3);
        assert_eq!(store.evicted_total(), 2);
        // Trace 1 was oldest and is gone entirely; 2 and 3 remain.
        assert_eq!(store.get_trace(&trace_id(1)), None);
        assert_eq!(span_ids(&store.get_trace(&trace_id(2)).unwrap()), [3]);
        assert_eq!(span_ids(&store.get_trace(&trace_id(3)).unwrap()), [4, 5]);
        assert_eq!(store.trace_count(), 2);
    }

    #[test]
    fn partially_evicted_trace_returns_what_remains() {
        let mut store = SpanStore::new(StoreConfig {
            max_spans: 2,
            max_bytes: 1 << 20,
        });
        store.insert(vec![batch(
            "a",
            "s",
            vec![span(1, 1), span(2, 2), span(1, 3)],
        )]);
        assert_eq!(span_ids(&store.get_trace(&trace_id(1)).unwrap()), [3]);
        assert_eq!(span_ids(&store.get_trace(&trace_id(2)).unwrap()), [2]);
    }

    #[test]
    fn byte_bound_evicts_and_accounts_exactly() {
        let one = batch("a", "s", vec![span(1, 1)]);
        let mut probe = big_store();
        probe.insert(vec![one]);
        let per_span = probe.bytes();
        assert!(per_span > 0);

        // Room for exactly two spans by bytes, plenty by count.
        let mut store = SpanStore::new(StoreConfig {
            max_spans: 100,
            max_bytes: per_span * 2,
        });
        store.insert(vec![batch("a", "s", vec![span(1, 1), span(2, 2)])]);
        assert_eq!(
            (store.len(), store.bytes(), store.evicted_total()),
            (2, per_span * 2, 0)
        );
        let outcome = store.insert(vec![batch("a", "s", vec![span(3, 3)])]);
        assert_eq!(outcome.evicted, 1);
        assert_eq!((store.len(), store.bytes()), (2, per_span * 2));
        assert_eq!(store.get_trace(&trace_id(1)), None);
    }

    #[test]
    fn span_larger_than_the_byte_bound_is_evicted_alone() {
        let mut store = SpanStore::new(StoreConfig {
            max_spans: 100,
            max_bytes: 200,
        });
        store.insert(vec![batch("a", "s", vec![span(1, 1)])]);
        let mut huge = span(2, 2);
        huge.name = "x".repeat(1_000);
        let outcome = store.insert(vec![batch("a", "s", vec![huge])]);
        assert_eq!(
            outcome,
            InsertOutcome {
                stored: 1,
                evicted: 1,
                not_indexed: 0
            }
        );
        assert_eq!(store.len(), 1, "the small span was not evicted for nothing");
        assert!(store.get_trace(&trace_id(1)).is_some());
        assert_eq!(store.get_trace(&trace_id(2)), None);
    }

    #[test]
    fn spans_with_invalid_trace_ids_are_not_indexed() {
        let mut store = big_store();
        let mut short = span(1, 1);
        short.trace_id = vec![1, 2, 3];
        let mut empty = span(1, 2);
        empty.trace_id.clear();
        let outcome = store.insert(vec![batch("a", "s", vec![short, empty, span(1, 3)])]);
        assert_eq!(
            outcome,
            InsertOutcome {
                stored: 1,
                evicted: 0,
                not_indexed: 2
            }
        );
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn resource_and_scope_may_be_absent() {
        let mut store = big_store();
        store.insert(vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: vec![span(1, 1)],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }]);
        let trace = store.get_trace(&trace_id(1)).unwrap();
        assert_eq!(trace[0].resource, None);
        assert_eq!(trace[0].scope_spans[0].scope, None);
    }

    #[test]
    fn many_evictions_keep_the_index_consistent() {
        let mut store = SpanStore::new(StoreConfig {
            max_spans: 7,
            max_bytes: 1 << 20,
        });
        for i in 0..200u8 {
            store.insert(vec![batch("a", "s", vec![span(i % 5, i)])]);
        }
        assert_eq!(store.len(), 7);
        assert_eq!(store.evicted_total(), 193);
        let stored: usize = (0..5u8)
            .filter_map(|t| store.get_trace(&trace_id(t)))
            .map(|trace| span_ids(&trace).len())
            .sum();
        assert_eq!(stored, 7);
    }
}
