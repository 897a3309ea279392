//! The shim's own Prometheus metrics: every metric name lives here, under one prefix.
//!
//! Exposed on the admin listener at `GET /metrics` in the OpenMetrics text format (which
//! Prometheus scrapes natively), via the `prometheus-client` crate. Names follow the Prometheus
//! conventions: `_total` for counters (added by the encoder), plain nouns for gauges.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `meshtrace_shim_received_spans_total` | counter | |
//! | `meshtrace_shim_refused_spans_total` | counter | `reason` |
//! | `meshtrace_shim_refused_requests_total` | counter | `reason` |
//! | `meshtrace_shim_stored_spans` | gauge | |
//! | `meshtrace_shim_stored_bytes` | gauge | |
//! | `meshtrace_shim_store_evicted_spans_total` | counter | `reason` (bound: `max_age`, `max_spans`, `max_bytes`) |
//! | `meshtrace_shim_store_dropped_spans_total` | counter | `reason` |
//! | `meshtrace_shim_exported_spans_total` | counter | |
//! | `meshtrace_shim_export_failed_spans_total` | counter | `reason` |
//!
//! Accounting invariant once the forwarder is idle (with a backend configured):
//! `received == exported + export_failed`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::store::Evictions;

/// Prefix of every metric name.
pub const METRIC_PREFIX: &str = "meshtrace_shim";
/// `Content-Type` of the `/metrics` response.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why spans or requests were refused by the receiver (`reason` label).
pub mod refused {
    /// Body is not a decodable `ExportTraceServiceRequest`, or could not be read.
    pub const MALFORMED: &str = "malformed";
    /// Body over the configured limit (413).
    pub const TOO_LARGE: &str = "too_large";
    /// Content-Type or Content-Encoding not supported (415).
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// Forwarder queue full (503, retryable).
    pub const EXPORT_QUEUE_FULL: &str = "export_queue_full";
    /// Shim shutting down, forwarder no longer accepts work (503, retryable).
    pub const SHUTTING_DOWN: &str = "shutting_down";
    /// No backend and the trace store's queue is full (503, retryable).
    pub const STORE_QUEUE_FULL: &str = "store_queue_full";

    pub(crate) const ALL: [&str; 6] = [
        MALFORMED,
        TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE,
        EXPORT_QUEUE_FULL,
        SHUTTING_DOWN,
        STORE_QUEUE_FULL,
    ];
}

/// Which bound evicted spans from the trace store (`reason` label).
pub mod store_evicted {
    /// Received longer ago than `store.max_age_secs`.
    pub const MAX_AGE: &str = "max_age";
    /// Over `store.max_spans`.
    pub const MAX_SPANS: &str = "max_spans";
    /// Over `store.max_bytes`.
    pub const MAX_BYTES: &str = "max_bytes";

    pub(crate) const ALL: [&str; 3] = [MAX_AGE, MAX_SPANS, MAX_BYTES];
}

/// Why accepted spans were not written to the trace store (`reason` label). Without a backend
/// a full queue refuses the request instead (`refused_*{reason="store_queue_full"}`), so these
/// count copies lost while forwarding, and write failures.
pub mod store_dropped {
    /// The store's queue was full while forwarding (the backend still got the spans).
    pub const QUEUE_FULL: &str = "queue_full";
    /// The store was closed while forwarding, or writes were queued behind its close.
    pub const SHUTTING_DOWN: &str = "shutting_down";
    /// SQLite failed to write them (e.g. disk full); logged with the error.
    pub const WRITE_ERROR: &str = "write_error";

    pub(crate) const ALL: [&str; 3] = [QUEUE_FULL, SHUTTING_DOWN, WRITE_ERROR];
}

/// Why accepted spans were not delivered to the backend (`reason` label).
pub mod export_failed {
    /// The backend answered a non-retryable status (e.g. 400, 401, 404, 500).
    pub const REJECTED: &str = "rejected";
    /// Retryable failures went on past the attempt or time budget.
    pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";
    /// The backend accepted the request but reported rejected spans (OTLP partial success).
    pub const PARTIAL_SUCCESS: &str = "partial_success";
    /// The shutdown drain deadline passed before the spans could be delivered.
    pub const SHUTDOWN: &str = "shutdown";

    pub(crate) const ALL: [&str; 4] = [REJECTED, RETRIES_EXHAUSTED, PARTIAL_SUCCESS, SHUTDOWN];
}

/// The `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// All shim metrics plus the registry that exposes them. Cheap to share behind an `Arc`; every
/// recording method is lock-free and never blocks.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    received_spans: Counter,
    refused_spans: Family<ReasonLabel, Counter>,
    refused_requests: Family<ReasonLabel, Counter>,
    stored_spans: Gauge,
    stored_bytes: Gauge,
    store_evicted_spans: Family<ReasonLabel, Counter>,
    store_dropped_spans: Family<ReasonLabel, Counter>,
    exported_spans: Counter,
    export_failed_spans: Family<ReasonLabel, Counter>,
}

// === impl Metrics ===

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric. Labelled counters start at 0 for every known reason, so dashboards
    /// see the series before the first event.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(METRIC_PREFIX);
        let metrics = Self {
            received_spans: Counter::default(),
            refused_spans: Family::default(),
            refused_requests: Family::default(),
            stored_spans: Gauge::default(),
            stored_bytes: Gauge::default(),
            store_evicted_spans: Family::default(),
            store_dropped_spans: Family::default(),
            exported_spans: Counter::default(),
            export_failed_spans: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "received_spans",
            "Spans accepted by the OTLP receiver",
            metrics.received_spans.clone(),
        );
        registry.register(
            "refused_spans",
            "Spans in decodable requests the receiver refused, by reason",
            metrics.refused_spans.clone(),
        );
        registry.register(
            "refused_requests",
            "OTLP requests the receiver refused, by reason",
            metrics.refused_requests.clone(),
        );
        registry.register(
            "stored_spans",
            "Spans currently held by the trace store",
            metrics.stored_spans.clone(),
        );
        registry.register(
            "stored_bytes",
            "Bytes currently charged to the trace store",
            metrics.stored_bytes.clone(),
        );
        registry.register(
            "store_evicted_spans",
            "Spans evicted from the trace store to stay within its bounds, by bound",
            metrics.store_evicted_spans.clone(),
        );
        registry.register(
            "store_dropped_spans",
            "Accepted spans the trace store did not keep, by reason",
            metrics.store_dropped_spans.clone(),
        );
        registry.register(
            "exported_spans",
            "Spans delivered to the backend",
            metrics.exported_spans.clone(),
        );
        registry.register(
            "export_failed_spans",
            "Accepted spans that could not be delivered to the backend and were dropped, by reason",
            metrics.export_failed_spans.clone(),
        );
        for (family, reasons) in [
            (&metrics.refused_spans, &refused::ALL[..]),
            (&metrics.refused_requests, &refused::ALL[..]),
            (&metrics.export_failed_spans, &export_failed::ALL[..]),
            (&metrics.store_evicted_spans, &store_evicted::ALL[..]),
            (&metrics.store_dropped_spans, &store_dropped::ALL[..]),
        ] {
            for &reason in reasons {
                family.get_or_create(&ReasonLabel { reason }).inc_by(0);
            }
        }
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts spans accepted by the receiver.
    pub fn record_received(&self, spans: u64) {
        self.received_spans.inc_by(spans);
    }

    /// Counts one refused request and the spans it held (0 when they could not be decoded).
    pub fn record_refused(&self, reason: &'static str, spans: u64) {
        self.refused_requests
            .get_or_create(&ReasonLabel { reason })
            .inc();
        self.refused_spans
            .get_or_create(&ReasonLabel { reason })
            .inc_by(spans);
    }

    /// Updates the store gauges and counts new evictions by bound.
    pub fn record_store(&self, stored_spans: u64, stored_bytes: u64, evicted: &Evictions) {
        self.stored_spans
            .set(i64::try_from(stored_spans).unwrap_or(i64::MAX));
        self.stored_bytes
            .set(i64::try_from(stored_bytes).unwrap_or(i64::MAX));
        for (reason, spans) in [
            (store_evicted::MAX_AGE, evicted.age),
            (store_evicted::MAX_SPANS, evicted.spans),
            (store_evicted::MAX_BYTES, evicted.bytes),
        ] {
            self.store_evicted_spans
                .get_or_create(&ReasonLabel { reason })
                .inc_by(spans);
        }
    }

    /// Counts accepted spans the trace store did not keep.
    pub fn record_store_dropped(&self, reason: &'static str, spans: u64) {
        self.store_dropped_spans
            .get_or_create(&ReasonLabel { reason })
            .inc_by(spans);
    }

    /// Counts spans delivered to the backend.
    pub fn record_exported(&self, spans: u64) {
        self.exported_spans.inc_by(spans);
    }

    /// Counts accepted spans dropped by the forwarder.
    pub fn record_export_failed(&self, reason: &'static str, spans: u64) {
        self.export_failed_spans
            .get_or_create(&ReasonLabel { reason })
            .inc_by(spans);
    }

    /// The OpenMetrics text exposition of every metric, ending with `# EOF`.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_documented_names_and_values() {
        let metrics = Metrics::new();
        metrics.record_received(5);
        metrics.record_refused(refused::EXPORT_QUEUE_FULL, 3);
        metrics.record_refused(refused::MALFORMED, 0);
        metrics.record_store(
            4,
            1024,
            &Evictions {
                age: 2,
                spans: 0,
                bytes: 1,
            },
        );
        metrics.record_store_dropped(store_dropped::WRITE_ERROR, 3);
        metrics.record_exported(2);
        metrics.record_export_failed(export_failed::REJECTED, 3);
        let text = metrics.encode().unwrap();
        for line in [
            "meshtrace_shim_received_spans_total 5",
            "meshtrace_shim_refused_spans_total{reason=\"export_queue_full\"} 3",
            "meshtrace_shim_refused_spans_total{reason=\"malformed\"} 0",
            "meshtrace_shim_refused_requests_total{reason=\"malformed\"} 1",
            "meshtrace_shim_refused_requests_total{reason=\"too_large\"} 0",
            "meshtrace_shim_stored_spans 4",
            "meshtrace_shim_stored_bytes 1024",
            "meshtrace_shim_store_evicted_spans_total{reason=\"max_age\"} 2",
            "meshtrace_shim_store_evicted_spans_total{reason=\"max_spans\"} 0",
            "meshtrace_shim_store_evicted_spans_total{reason=\"max_bytes\"} 1",
            "meshtrace_shim_store_dropped_spans_total{reason=\"write_error\"} 3",
            "meshtrace_shim_store_dropped_spans_total{reason=\"queue_full\"} 0",
            "meshtrace_shim_exported_spans_total 2",
            "meshtrace_shim_export_failed_spans_total{reason=\"rejected\"} 3",
            "meshtrace_shim_export_failed_spans_total{reason=\"shutdown\"} 0",
            "# TYPE meshtrace_shim_stored_spans gauge",
            "# TYPE meshtrace_shim_received_spans counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
