use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::*;
use crate::config::{FullPolicy, QueueConfig};

fn request(spans: usize) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..spans)
                    .map(|i| Span {
                        name: format!("span-{i}"),
                        ..Span::default()
                    })
                    .collect(),
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

fn pipeline(max_spans: u64, max_bytes: usize, policy: FullPolicy) -> (Pipeline, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new(&["a".to_owned(), "b".to_owned()]));
    let config = QueueConfig {
        max_spans,
        max_bytes,
        full_policy: policy,
    };
    let pipeline = Pipeline::new(
        &config,
        None,
        Arc::clone(&metrics),
        vec!["a".to_owned(), "b".to_owned()],
    );
    (pipeline, metrics)
}

fn metric(metrics: &Metrics, series: &str) -> u64 {
    let text = metrics.encode().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
fn admission_charges_the_budget_and_refuses_when_full() {
    let (pipeline, metrics) = pipeline(10, usize::MAX, FullPolicy::Refuse);
    assert_eq!(pipeline.admit(request(0)).unwrap(), 0, "empty is success");
    assert_eq!(pipeline.admit(request(6)).unwrap(), 6);
    assert!(pipeline.is_ready());
    match pipeline.admit(request(5)) {
        Err(Refusal::QueueFull { spans: 5 }) => {}
        other => panic!("expected QueueFull, got {other:?}"),
    }
    assert!(!pipeline.is_ready(), "not ready while full");
    assert_eq!(
        pipeline.admit(request(4)).unwrap(),
        4,
        "what fits is still taken"
    );
    assert_eq!(pipeline.budget().used().0, 10);
    assert_eq!(metric(&metrics, "meshtrace_shim_accepted_spans_total"), 10);
    assert_eq!(metric(&metrics, "meshtrace_shim_queue_spans"), 10);
    match pipeline.admit(request(11)) {
        Err(Refusal::TooLarge { spans: 11, max: 10 }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn byte_budget_is_enforced_too() {
    let one = crate::otlp::memory_size(&request(1));
    let (pipeline, _) = pipeline(1000, one * 2, FullPolicy::Refuse);
    pipeline.admit(request(1)).unwrap();
    pipeline.admit(request(1)).unwrap();
    assert!(matches!(
        pipeline.admit(request(1)),
        Err(Refusal::QueueFull { .. })
    ));
}

#[test]
fn released_tickets_free_the_budget_and_restore_readiness() {
    let (pipeline, metrics) = pipeline(10, usize::MAX, FullPolicy::Refuse);
    pipeline.admit(request(10)).unwrap();
    assert!(pipeline.admit(request(1)).is_err());
    assert!(!pipeline.is_ready());
    let (items, closed) = pipeline.take_queued();
    assert!(!closed);
    assert_eq!(items.len(), 1);
    assert_eq!(metric(&metrics, "meshtrace_shim_queue_spans"), 0);
    assert_eq!(
        metric(
            &metrics,
            "meshtrace_shim_export_pending_spans{exporter=\"a\"}"
        ),
        10
    );
    assert_eq!(pipeline.budget().used().0, 10, "in flight still counts");
    drop(items);
    assert_eq!(pipeline.budget().used(), (0, 0));
    assert!(pipeline.is_ready());
}

#[test]
fn drop_oldest_makes_room_and_counts_for_every_exporter() {
    let (pipeline, metrics) = pipeline(10, usize::MAX, FullPolicy::DropOldest);
    pipeline.admit(request(4)).unwrap();
    pipeline.admit(request(4)).unwrap();
    pipeline.admit(request(5)).unwrap();
    assert_eq!(pipeline.budget().used().0, 9, "the first 4 were dropped");
    for exporter in ["a", "b"] {
        let series = format!(
            "meshtrace_shim_dropped_spans_total{{exporter=\"{exporter}\",reason=\"queue_full\"}}"
        );
        assert_eq!(metric(&metrics, &series), 4);
    }
    assert_eq!(metric(&metrics, "meshtrace_shim_accepted_spans_total"), 13);
    assert_eq!(metric(&metrics, "meshtrace_shim_queue_spans"), 9);
    // Nothing queued to drop (all in flight): refuse instead.
    let (in_flight, _) = pipeline.take_queued();
    assert!(matches!(
        pipeline.admit(request(5)),
        Err(Refusal::QueueFull { .. })
    ));
    drop(in_flight);
}

#[test]
fn closed_pipeline_refuses_as_shutting_down() {
    let (pipeline, _) = pipeline(10, usize::MAX, FullPolicy::Refuse);
    pipeline.close();
    assert!(!pipeline.is_ready());
    assert!(matches!(
        pipeline.admit(request(1)),
        Err(Refusal::ShuttingDown { spans: 1 })
    ));
    assert_eq!(pipeline.admit(request(0)).unwrap(), 0);
}
