//! Batching across sources, pure: accepted requests are packed into batches bounded by span
//! count and bytes, flushed by age, and merged by resource and instrumentation scope so a batch
//! holds each `(resource, scope)` once whatever the number of senders.
//!
//! ```text
//!  push(item) ──► pending items ──(max_spans / max_bytes reached)──► Batch
//!                      │ age ≥ timeout (due) ─── flush() ──────────► Batch
//!  items above max_spans are split into pieces first (split_request)
//! ```
//!
//! Like the Collector's batch processor (`send_batch_size`, `send_batch_max_size`, `timeout`),
//! except that bytes are bounded too and the clock is an argument (`now`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use tokio::time::Instant;

use super::Ticket;

/// Bounds of one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most spans in a batch (a larger request is split).
    pub max_spans: u64,
    /// Most encoded bytes in a batch (a single larger piece still goes out alone).
    pub max_bytes: usize,
    /// A non-empty batch is flushed once its oldest item is this old.
    pub timeout: Duration,
}

/// One accepted request (or a piece of one) waiting to be batched.
#[derive(Debug)]
pub struct Item {
    /// The spans.
    pub request: ExportTraceServiceRequest,
    /// Number of spans in `request`.
    pub spans: u64,
    /// Encoded size of `request`.
    pub bytes: usize,
    /// Memory and spool bookkeeping, shared by every piece of one accepted request.
    pub ticket: Arc<Ticket>,
}

/// A batch ready to export: merged spans plus the tickets of every item in it.
#[derive(Debug)]
pub struct Batch {
    /// The merged request.
    pub request: ExportTraceServiceRequest,
    /// Spans in `request`.
    pub spans: u64,
    /// Sum of the items' encoded sizes (an upper bound of the merged size).
    pub bytes: usize,
    /// Tickets of the items (released when the batch is dropped).
    pub tickets: Vec<Arc<Ticket>>,
}

/// Accumulates items into batches. Not thread-safe; owned by the dispatcher task.
#[derive(Debug)]
pub struct Batcher {
    limits: BatchLimits,
    items: Vec<Item>,
    spans: u64,
    bytes: usize,
    oldest: Option<Instant>,
}

// === impl Batcher ===

impl Batcher {
    /// An empty batcher.
    pub fn new(limits: BatchLimits) -> Self {
        Self {
            limits,
            items: Vec::new(),
            spans: 0,
            bytes: 0,
            oldest: None,
        }
    }

    /// Spans waiting in the batcher.
    pub fn spans(&self) -> u64 {
        self.spans
    }

    /// Adds `item` (split first when it alone exceeds `max_spans`) and returns the batches that
    /// became full, oldest first.
    pub fn push(&mut self, item: Item, now: Instant) -> Vec<Batch> {
        let mut full = Vec::new();
        for piece in split_item(item, self.limits.max_spans) {
            let over_spans = self.spans + piece.spans > self.limits.max_spans;
            let over_bytes = self.bytes.saturating_add(piece.bytes) > self.limits.max_bytes;
            if !self.items.is_empty() && (over_spans || over_bytes) {
                full.extend(self.flush());
            }
            self.spans += piece.spans;
            self.bytes = self.bytes.saturating_add(piece.bytes);
            self.oldest.get_or_insert(now);
            self.items.push(piece);
            if self.spans >= self.limits.max_spans || self.bytes >= self.limits.max_bytes {
                full.extend(self.flush());
            }
        }
        full
    }

    /// When the pending batch must be flushed by age (`None` when empty).
    pub fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|oldest| oldest + self.limits.timeout)
    }

    /// Whether the pending batch is old enough to flush.
    pub fn is_due(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|deadline| now >= deadline)
    }

    /// Takes whatever is pending as one batch.
    pub fn flush(&mut self) -> Option<Batch> {
        if self.items.is_empty() {
            return None;
        }
        let items = std::mem::take(&mut self.items);
        let spans = std::mem::take(&mut self.spans);
        let bytes = std::mem::take(&mut self.bytes);
        self.oldest = None;
        let mut tickets = Vec::with_capacity(items.len());
        let mut resource_spans = Vec::new();
        for item in items {
            tickets.push(item.ticket);
            resource_spans.extend(item.request.resource_spans);
        }
        Some(Batch {
            request: ExportTraceServiceRequest {
                resource_spans: merge(resource_spans),
            },
            spans,
            bytes,
            tickets,
        })
    }
}

/// Splits an item into pieces of at most `max_spans` spans (each piece keeps its resource and
/// scope, and shares the item's ticket). Items within the limit come back unchanged.
pub fn split_item(item: Item, max_spans: u64) -> Vec<Item> {
    if item.spans <= max_spans || max_spans == 0 {
        return vec![item];
    }
    let mut pieces = Vec::new();
    let mut current: Vec<ResourceSpans> = Vec::new();
    let mut current_spans = 0u64;
    for resource_spans in item.request.resource_spans {
        let ResourceSpans {
            resource,
            scope_spans,
            schema_url,
        } = resource_spans;
        for scope_spans in scope_spans {
            let ScopeSpans {
                scope,
                spans,
                schema_url: scope_schema_url,
            } = scope_spans;
            let mut spans = spans.into_iter().peekable();
            while spans.peek().is_some() {
                let room = usize::try_from(max_spans - current_spans).unwrap_or(usize::MAX);
                let chunk: Vec<_> = spans.by_ref().take(room).collect();
                current_spans += chunk.len() as u64;
                current.push(ResourceSpans {
                    resource: resource.clone(),
                    scope_spans: vec![ScopeSpans {
                        scope: scope.clone(),
                        spans: chunk,
                        schema_url: scope_schema_url.clone(),
                    }],
                    schema_url: schema_url.clone(),
                });
                if current_spans == max_spans {
                    pieces.push(piece(
                        std::mem::take(&mut current),
                        current_spans,
                        &item.ticket,
                    ));
                    current_spans = 0;
                }
            }
        }
    }
    if current_spans > 0 {
        pieces.push(piece(current, current_spans, &item.ticket));
    }
    pieces
}

fn piece(resource_spans: Vec<ResourceSpans>, spans: u64, ticket: &Arc<Ticket>) -> Item {
    let request = ExportTraceServiceRequest {
        resource_spans: merge(resource_spans),
    };
    Item {
        bytes: request.encoded_len(),
        request,
        spans,
        ticket: Arc::clone(ticket),
    }
}

/// Merges `ResourceSpans` with equal resource (and schema URL), and within each, `ScopeSpans`
/// with equal scope (and schema URL). Order of first appearance is kept; spans are not
/// reordered. Empty scopes and resources are dropped.
pub fn merge(resource_spans: Vec<ResourceSpans>) -> Vec<ResourceSpans> {
    let mut merged: Vec<ResourceSpans> = Vec::new();
    let mut resource_index: HashMap<(Vec<u8>, String), usize> = HashMap::new();
    let mut scope_index: Vec<HashMap<(Vec<u8>, String), usize>> = Vec::new();
    for rs in resource_spans {
        let key = (
            rs.resource
                .as_ref()
                .map(Message::encode_to_vec)
                .unwrap_or_default(),
            rs.schema_url.clone(),
        );
        let r = *resource_index.entry(key).or_insert_with(|| {
            merged.push(ResourceSpans {
                resource: rs.resource.clone(),
                scope_spans: Vec::new(),
                schema_url: rs.schema_url.clone(),
            });
            scope_index.push(HashMap::new());
            merged.len() - 1
        });
        let (Some(target), Some(scopes)) = (merged.get_mut(r), scope_index.get_mut(r)) else {
            continue;
        };
        for ss in rs.scope_spans {
            if ss.spans.is_empty() {
                continue;
            }
            let key = (
                ss.scope
                    .as_ref()
                    .map(Message::encode_to_vec)
                    .unwrap_or_default(),
                ss.schema_url.clone(),
            );
            match scopes
                .get(&key)
                .and_then(|&s| target.scope_spans.get_mut(s))
            {
                Some(existing) => existing.spans.extend(ss.spans),
                None => {
                    scopes.insert(key, target.scope_spans.len());
                    target.scope_spans.push(ss);
                }
            }
        }
    }
    merged.retain(|rs| !rs.scope_spans.is_empty());
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::count_spans;
    use crate::pipeline::Ticket;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, any_value,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::Span;

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

    fn rs(service: &str, scope: &str, names: &[&str]) -> ResourceSpans {
        ResourceSpans {
            resource: Some(resource(service)),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: scope.to_owned(),
                    ..InstrumentationScope::default()
                }),
                spans: names
                    .iter()
                    .map(|n| Span {
                        name: (*n).to_owned(),
                        ..Span::default()
                    })
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }

    fn item(resource_spans: Vec<ResourceSpans>) -> Item {
        let request = ExportTraceServiceRequest { resource_spans };
        Item {
            spans: count_spans(&request),
            bytes: request.encoded_len(),
            request,
            ticket: Arc::new(Ticket::detached()),
        }
    }

    /// `(service, scope, span names)` per ScopeSpans, in order.
    fn shape(request: &ExportTraceServiceRequest) -> Vec<(String, String, Vec<String>)> {
        let mut out = Vec::new();
        for rs in &request.resource_spans {
            let service = match &rs.resource.as_ref().unwrap().attributes[0]
                .value
                .as_ref()
                .unwrap()
                .value
            {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                _ => String::new(),
            };
            for ss in &rs.scope_spans {
                let names = ss.spans.iter().map(|s| s.name.clone()).collect();
                out.push((
                    service.clone(),
                    ss.scope.as_ref().unwrap().name.clone(),
                    names,
                ));
            }
        }
        out
    }

    fn owned(rows: &[(&str, &str, &[&str])]) -> Vec<(String, String, Vec<String>)> {
        rows.iter()
            .map(|(r, s, n)| {
                (
                    (*r).to_owned(),
                    (*s).to_owned(),
                    n.iter().map(|x| (*x).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn merge_groups_by_resource_then_scope_keeping_order() {
        let merged = merge(vec![
            rs("a", "x", &["1"]),
            rs("b", "x", &["2"]),
            rs("a", "y", &["3"]),
            rs("a", "x", &["4", "5"]),
            rs("c", "x", &[]),
        ]);
        let request = ExportTraceServiceRequest {
            resource_spans: merged,
        };
        assert_eq!(
            shape(&request),
            owned(&[
                ("a", "x", &["1", "4", "5"]),
                ("a", "y", &["3"]),
                ("b", "x", &["2"])
            ])
        );
        assert_eq!(request.resource_spans.len(), 2, "empty resource c dropped");
    }

    #[test]
    fn different_schema_urls_are_not_merged() {
        let mut other = rs("a", "x", &["2"]);
        other.schema_url = "https://opentelemetry.io/schemas/1.30.0".to_owned();
        let merged = merge(vec![rs("a", "x", &["1"]), other]);
        assert_eq!(merged.len(), 2);
    }

    #[test]
    fn split_keeps_resources_and_scopes_and_every_span() {
        let big = item(vec![
            rs("a", "x", &["1", "2", "3"]),
            rs("b", "y", &["4", "5"]),
        ]);
        let pieces = split_item(big, 2);
        let shapes: Vec<_> = pieces.iter().map(|p| shape(&p.request)).collect();
        assert_eq!(
            shapes,
            vec![
                owned(&[("a", "x", &["1", "2"])]),
                owned(&[("a", "x", &["3"]), ("b", "y", &["4"])]),
                owned(&[("b", "y", &["5"])]),
            ]
        );
        assert_eq!(
            pieces.iter().map(|p| p.spans).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        assert!(Arc::ptr_eq(&pieces[0].ticket, &pieces[2].ticket));
    }

    fn limits(max_spans: u64, max_bytes: usize) -> BatchLimits {
        BatchLimits {
            max_spans,
            max_bytes,
            timeout: Duration::from_millis(200),
        }
    }

    #[test]
    fn batches_by_span_count_across_sources() {
        let now = Instant::now();
        let mut batcher = Batcher::new(limits(4, usize::MAX));
        assert!(
            batcher
                .push(item(vec![rs("a", "x", &["1", "2"])]), now)
                .is_empty()
        );
        assert_eq!(batcher.spans(), 2);
        let full = batcher.push(item(vec![rs("b", "x", &["3", "4", "5"])]), now);
        assert_eq!(full.len(), 1);
        assert_eq!(shape(&full[0].request), owned(&[("a", "x", &["1", "2"])]));
        assert_eq!(batcher.spans(), 3);
        let full = batcher.push(item(vec![rs("a", "x", &["6"])]), now);
        assert_eq!(full.len(), 1, "reaching max_spans flushes at once");
        assert_eq!(
            shape(&full[0].request),
            owned(&[("b", "x", &["3", "4", "5"]), ("a", "x", &["6"])])
        );
        assert_eq!(full[0].spans, 4);
        assert_eq!(full[0].tickets.len(), 2);
        assert_eq!(batcher.flush().map(|b| b.spans), None);
    }

    #[test]
    fn batches_by_bytes() {
        let now = Instant::now();
        let one = item(vec![rs("a", "x", &["1"])]);
        let size = one.bytes;
        let mut batcher = Batcher::new(limits(1000, size * 2 + size / 2));
        assert!(batcher.push(one, now).is_empty());
        assert!(
            batcher
                .push(item(vec![rs("a", "x", &["2"])]), now)
                .is_empty()
        );
        let full = batcher.push(item(vec![rs("a", "x", &["3"])]), now);
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].spans, 2);
        // A single item above max_bytes still goes out, alone.
        let mut tiny = Batcher::new(limits(1000, 1));
        let full = tiny.push(item(vec![rs("a", "x", &["1", "2"])]), now);
        assert_eq!(full.iter().map(|b| b.spans).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn age_makes_a_batch_due() {
        let start = Instant::now();
        let mut batcher = Batcher::new(limits(100, usize::MAX));
        assert_eq!(batcher.deadline(), None);
        assert!(!batcher.is_due(start));
        let _ = batcher.push(item(vec![rs("a", "x", &["1"])]), start);
        let _ = batcher.push(
            item(vec![rs("a", "x", &["2"])]),
            start + Duration::from_millis(150),
        );
        assert_eq!(batcher.deadline(), Some(start + Duration::from_millis(200)));
        assert!(!batcher.is_due(start + Duration::from_millis(199)));
        assert!(batcher.is_due(start + Duration::from_millis(200)));
        let batch = batcher.flush().unwrap();
        assert_eq!(shape(&batch.request), owned(&[("a", "x", &["1", "2"])]));
        assert_eq!(batcher.deadline(), None);
    }

    #[test]
    fn oversized_item_is_split_into_full_batches() {
        let now = Instant::now();
        let mut batcher = Batcher::new(limits(2, usize::MAX));
        let full = batcher.push(item(vec![rs("a", "x", &["1", "2", "3", "4", "5"])]), now);
        assert_eq!(full.iter().map(|b| b.spans).collect::<Vec<_>>(), [2, 2]);
        assert_eq!(batcher.spans(), 1);
    }
}
