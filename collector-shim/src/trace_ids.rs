//! The trace ids a log line about a batch names, so that an operator can go from the shim's log
//! to the traces concerned (`/api/traces/{trace_id}`, the viewer, the backend) and back.
//!
//! Lines carry two fields: `trace_ids`, the batch's distinct trace ids in the order first met
//! (lowercase hex, comma-separated, at most [`DEBUG_TRACE_IDS`] at debug level and
//! [`WARN_TRACE_IDS`] at warn and error), and `traces`, how many distinct ids the batch holds
//! in all. Lines stay bounded whatever the batch size; the ids are only computed when the line
//! is actually logged (`tracing` evaluates field values after its level check).

use std::collections::HashSet;
use std::fmt;

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

/// Trace ids named by a debug line.
pub const DEBUG_TRACE_IDS: usize = 64;
/// Trace ids named by a warn or error line (the first few).
pub const WARN_TRACE_IDS: usize = 5;

/// The first distinct trace ids of a batch and the number of distinct ids in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceIds {
    shown: Vec<String>,
    total: usize,
}

impl TraceIds {
    /// The distinct trace ids of `batch`, the first `limit` of them kept for display.
    pub fn of(batch: &[ResourceSpans], limit: usize) -> Self {
        let mut seen: HashSet<&[u8]> = HashSet::new();
        let mut shown = Vec::new();
        let spans = batch
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| &scope.spans);
        for span in spans {
            if seen.insert(span.trace_id.as_slice()) && shown.len() < limit {
                shown.push(hex::encode(&span.trace_id));
            }
        }
        Self {
            shown,
            total: seen.len(),
        }
    }

    /// How many distinct trace ids the batch holds (shown or not).
    pub fn total(&self) -> usize {
        self.total
    }
}

/// The shown ids, comma-separated.
impl fmt::Display for TraceIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};

    fn batch(trace_ids: &[u8]) -> Vec<ResourceSpans> {
        let span = |id: u8| Span {
            trace_id: vec![id; 16],
            span_id: vec![1; 8],
            ..Default::default()
        };
        // Two resources, so the ids are gathered across them.
        let (first, second) = trace_ids.split_at(trace_ids.len() / 2);
        [first, second]
            .into_iter()
            .map(|ids| ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: ids.iter().map(|&id| span(id)).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn distinct_ids_in_first_met_order_across_resources() {
        let ids = TraceIds::of(&batch(&[0xab, 0x01, 0xab, 0x02, 0x01]), 10);
        assert_eq!(
            ids.to_string(),
            format!(
                "{},{},{}",
                "ab".repeat(16),
                "01".repeat(16),
                "02".repeat(16)
            )
        );
        assert_eq!(ids.total(), 3);
    }

    #[test]
    fn the_list_is_bounded_and_the_count_is_not() {
        let many: Vec<u8> = (1..=200).collect();
        let ids = TraceIds::of(&batch(&many), WARN_TRACE_IDS);
        assert_eq!(ids.to_string().split(',').count(), WARN_TRACE_IDS);
        assert!(ids.to_string().starts_with(&"01".repeat(16)));
        assert_eq!(ids.total(), 200);
    }

    #[test]
    fn an_empty_batch_names_nothing() {
        let ids = TraceIds::of(&[], DEBUG_TRACE_IDS);
        assert_eq!((ids.to_string().as_str(), ids.total()), ("", 0));
    }
}
