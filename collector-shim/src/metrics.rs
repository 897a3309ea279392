//! The shim's own Prometheus metrics: every name lives here, under the `meshtrace_shim_` prefix,
//! served at `GET /metrics` (OpenMetrics text, `prometheus-client`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `accepted_spans_total` | counter | |
//! | `refused_spans_total`, `refused_requests_total` | counter | `reason` |
//! | `queue_spans`, `queue_bytes` (accepted, not yet handed to the exporters) | gauge | |
//! | `queue_capacity_spans`, `queue_capacity_bytes` (the memory budget) | gauge | |
//! | `memory_used_spans`, `memory_used_bytes` (queue + batches in flight) | gauge | |
//! | `exported_spans_total` | counter | `exporter` |
//! | `dropped_spans_total` | counter | `exporter`, `reason` |
//! | `export_requests_total` (attempts) | counter | `exporter`, `outcome` |
//! | `export_retries_total` | counter | `exporter` |
//! | `export_in_flight_requests` | gauge | `exporter` |
//! | `export_pending_spans` (handed to the exporter, not finished) | gauge | `exporter` |
//! | `export_duration_seconds` (one attempt) | histogram | `exporter` |
//! | `spool_spans`, `spool_bytes` (on disk, not yet delivered) | gauge | |
//! | `spool_replayed_spans_total` (loaded from the spool after a restart) | counter | |
//! | `spool_redelivered_spans_total` (replayed spans whose export had begun: possible duplicates) | counter | |
//! | `spool_retained_spans_total` (left in the spool at shutdown, for the next start) | counter | `exporter` |
//! | `stored_spans`, `stored_bytes` (the trace store behind the viewer and `/api/traces`) | gauge | |
//! | `store_evicted_spans_total` | counter | `reason` (bound: `max_age`, `max_spans`, `max_bytes`) |
//! | `store_dropped_spans_total` (accepted, not kept by the trace store) | counter | `reason` |
//!
//! **Accounting invariant**, for every exporter `e`, checkable on one scrape:
//! `accepted + spool_replayed = exported{e} + Σ dropped{e,*} + spool_retained{e} + queue_spans +
//! export_pending_spans{e}`. Without exporters spans are only stored.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::Evictions;

/// Prefix of every metric name.
pub const METRIC_PREFIX: &str = "meshtrace_shim";
/// `Content-Type` of the `/metrics` response.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the receiver refused a request (`reason` label).
pub mod refused {
    /// Not a decodable request, or unreadable body.
    pub const MALFORMED: &str = "malformed";
    /// Over the size limit (413 / RESOURCE_EXHAUSTED).
    pub const TOO_LARGE: &str = "too_large";
    /// Content-Type or Content-Encoding not supported (415).
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// Queue (memory budget) full: retryable.
    pub const QUEUE_FULL: &str = "queue_full";
    /// Spool full or failing: retryable.
    pub const SPOOL_UNAVAILABLE: &str = "spool_unavailable";
    /// Shutting down: retryable.
    pub const SHUTTING_DOWN: &str = "shutting_down";
    /// No exporter and the trace store's queue is full: retryable.
    pub const STORE_QUEUE_FULL: &str = "store_queue_full";

    pub(crate) const ALL: [&str; 7] = [
        MALFORMED,
        TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE,
        QUEUE_FULL,
        SPOOL_UNAVAILABLE,
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

/// Why accepted spans were not written to the trace store (`reason` label). Without exporters
/// a full queue refuses the request instead (`refused_*{reason="store_queue_full"}`), so these
/// count copies lost while forwarding, and write failures.
pub mod store_dropped {
    /// The store's queue was full while forwarding (the exporters still got the spans).
    pub const QUEUE_FULL: &str = "queue_full";
    /// The store was closed while forwarding, or writes were queued behind its close.
    pub const SHUTTING_DOWN: &str = "shutting_down";
    /// SQLite failed to write them (e.g. disk full); logged with the error.
    pub const WRITE_ERROR: &str = "write_error";

    pub(crate) const ALL: [&str; 3] = [QUEUE_FULL, SHUTTING_DOWN, WRITE_ERROR];
}

/// Why accepted spans were dropped (`reason` label of `dropped_spans_total`).
pub mod dropped {
    /// The backend answered a non-retryable error.
    pub const REJECTED: &str = "rejected";
    /// Retryable failures outlasted the attempt or time budget.
    pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";
    /// The backend accepted the request but reported rejected spans (partial success).
    pub const PARTIAL_SUCCESS: &str = "partial_success";
    /// Dropped to make room (`queue.full_policy: drop_oldest`).
    pub const QUEUE_FULL: &str = "queue_full";
    /// Not delivered before the shutdown deadline, and no spool.
    pub const SHUTDOWN: &str = "shutdown";

    pub(crate) const ALL: [&str; 5] = [
        REJECTED,
        RETRIES_EXHAUSTED,
        PARTIAL_SUCCESS,
        QUEUE_FULL,
        SHUTDOWN,
    ];
}

/// Outcome of one export attempt (`outcome` label of `export_requests_total`).
pub mod outcome {
    /// 2xx / OK.
    pub const SUCCESS: &str = "success";
    /// Failed, retryable.
    pub const RETRYABLE_ERROR: &str = "retryable_error";
    /// Failed, not retryable.
    pub const PERMANENT_ERROR: &str = "permanent_error";

    pub(crate) const ALL: [&str; 3] = [SUCCESS, RETRYABLE_ERROR, PERMANENT_ERROR];
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExporterLabel {
    exporter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DroppedLabels {
    exporter: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    exporter: String,
    outcome: &'static str,
}

fn duration_histogram() -> Histogram {
    // 1 ms … ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// All shim metrics and their registry. Share behind an `Arc`; recording never blocks.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    accepted_spans: Counter,
    refused_spans: Family<ReasonLabel, Counter>,
    refused_requests: Family<ReasonLabel, Counter>,
    queue_spans: Gauge,
    queue_bytes: Gauge,
    queue_capacity_spans: Gauge,
    queue_capacity_bytes: Gauge,
    memory_used_spans: Gauge,
    memory_used_bytes: Gauge,
    exported_spans: Family<ExporterLabel, Counter>,
    dropped_spans: Family<DroppedLabels, Counter>,
    export_requests: Family<OutcomeLabels, Counter>,
    export_retries: Family<ExporterLabel, Counter>,
    export_in_flight: Family<ExporterLabel, Gauge>,
    export_pending_spans: Family<ExporterLabel, Gauge>,
    export_duration: Family<ExporterLabel, Histogram, fn() -> Histogram>,
    spool_spans: Gauge,
    spool_bytes: Gauge,
    spool_replayed_spans: Counter,
    spool_redelivered_spans: Counter,
    spool_retained_spans: Family<ExporterLabel, Counter>,
    stored_spans: Gauge,
    stored_bytes: Gauge,
    store_evicted_spans: Family<ReasonLabel, Counter>,
    store_dropped_spans: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(&[])
    }
}

fn to_i64<T: TryInto<i64>>(value: T) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

impl Metrics {
    /// Registers every metric; labelled series start at 0 for every known reason and for each
    /// of `exporters`, so dashboards see them before the first event.
    pub fn new(exporters: &[String]) -> Self {
        let mut registry = Registry::with_prefix(METRIC_PREFIX);
        let m = Self {
            registry: Registry::default(),
            accepted_spans: Counter::default(),
            refused_spans: Family::default(),
            refused_requests: Family::default(),
            queue_spans: Gauge::default(),
            queue_bytes: Gauge::default(),
            queue_capacity_spans: Gauge::default(),
            queue_capacity_bytes: Gauge::default(),
            memory_used_spans: Gauge::default(),
            memory_used_bytes: Gauge::default(),
            exported_spans: Family::default(),
            dropped_spans: Family::default(),
            export_requests: Family::default(),
            export_retries: Family::default(),
            export_in_flight: Family::default(),
            export_pending_spans: Family::default(),
            export_duration: Family::new_with_constructor(duration_histogram),
            spool_spans: Gauge::default(),
            spool_bytes: Gauge::default(),
            spool_replayed_spans: Counter::default(),
            spool_redelivered_spans: Counter::default(),
            spool_retained_spans: Family::default(),
            stored_spans: Gauge::default(),
            stored_bytes: Gauge::default(),
            store_evicted_spans: Family::default(),
            store_dropped_spans: Family::default(),
        };
        let r = &mut registry;
        r.register(
            "accepted_spans",
            "Spans acknowledged by the receivers",
            m.accepted_spans.clone(),
        );
        r.register(
            "refused_spans",
            "Spans in requests the receivers refused, by reason (0 when undecodable)",
            m.refused_spans.clone(),
        );
        r.register(
            "refused_requests",
            "OTLP requests the receivers refused, by reason",
            m.refused_requests.clone(),
        );
        r.register(
            "queue_spans",
            "Accepted spans not yet handed to the exporters",
            m.queue_spans.clone(),
        );
        r.register(
            "queue_bytes",
            "Encoded bytes of accepted spans not yet handed to the exporters",
            m.queue_bytes.clone(),
        );
        r.register(
            "queue_capacity_spans",
            "Most spans held in memory (queued and in flight)",
            m.queue_capacity_spans.clone(),
        );
        r.register(
            "queue_capacity_bytes",
            "Memory budget in bytes over queued and in-flight data",
            m.queue_capacity_bytes.clone(),
        );
        r.register(
            "memory_used_spans",
            "Spans charged to the memory budget (queued and in flight)",
            m.memory_used_spans.clone(),
        );
        r.register(
            "memory_used_bytes",
            "Bytes charged to the memory budget (queued and in flight)",
            m.memory_used_bytes.clone(),
        );
        r.register(
            "exported_spans",
            "Spans delivered, by exporter",
            m.exported_spans.clone(),
        );
        r.register(
            "dropped_spans",
            "Accepted spans an exporter will never deliver, by exporter and reason",
            m.dropped_spans.clone(),
        );
        r.register(
            "export_requests",
            "Export attempts, by exporter and outcome",
            m.export_requests.clone(),
        );
        r.register(
            "export_retries",
            "Export attempts that were retries, by exporter",
            m.export_retries.clone(),
        );
        r.register(
            "export_in_flight_requests",
            "Export requests in flight, by exporter",
            m.export_in_flight.clone(),
        );
        r.register(
            "export_pending_spans",
            "Spans handed to an exporter and not finished (in flight or waiting to retry)",
            m.export_pending_spans.clone(),
        );
        r.register(
            "export_duration_seconds",
            "Duration of one export attempt, by exporter",
            m.export_duration.clone(),
        );
        r.register(
            "spool_spans",
            "Spans in the on-disk spool not yet delivered",
            m.spool_spans.clone(),
        );
        r.register(
            "spool_bytes",
            "Bytes of on-disk spool segments",
            m.spool_bytes.clone(),
        );
        r.register(
            "spool_replayed_spans",
            "Spans loaded from the spool after a restart",
            m.spool_replayed_spans.clone(),
        );
        r.register(
            "spool_redelivered_spans",
            "Replayed spans whose export had begun before the restart (possible duplicates)",
            m.spool_redelivered_spans.clone(),
        );
        r.register(
            "spool_retained_spans",
            "Spans left in the spool at shutdown for the next start, by exporter",
            m.spool_retained_spans.clone(),
        );
        r.register(
            "stored_spans",
            "Spans currently held by the trace store",
            m.stored_spans.clone(),
        );
        r.register(
            "stored_bytes",
            "Bytes currently charged to the trace store",
            m.stored_bytes.clone(),
        );
        r.register(
            "store_evicted_spans",
            "Spans evicted from the trace store to stay within its bounds, by bound",
            m.store_evicted_spans.clone(),
        );
        r.register(
            "store_dropped_spans",
            "Accepted spans the trace store did not keep, by reason",
            m.store_dropped_spans.clone(),
        );
        for (family, reasons) in [
            (&m.refused_spans, &refused::ALL[..]),
            (&m.refused_requests, &refused::ALL[..]),
            (&m.store_evicted_spans, &store_evicted::ALL[..]),
            (&m.store_dropped_spans, &store_dropped::ALL[..]),
        ] {
            for &reason in reasons {
                family.get_or_create(&ReasonLabel { reason }).inc_by(0);
            }
        }
        for exporter in exporters {
            let label = ExporterLabel {
                exporter: exporter.clone(),
            };
            m.exported_spans.get_or_create(&label).inc_by(0);
            m.export_retries.get_or_create(&label).inc_by(0);
            m.export_in_flight.get_or_create(&label).set(0);
            m.export_pending_spans.get_or_create(&label).set(0);
            m.spool_retained_spans.get_or_create(&label).inc_by(0);
            for reason in dropped::ALL {
                m.dropped_spans
                    .get_or_create(&DroppedLabels {
                        exporter: exporter.clone(),
                        reason,
                    })
                    .inc_by(0);
            }
            for outcome in outcome::ALL {
                m.export_requests
                    .get_or_create(&OutcomeLabels {
                        exporter: exporter.clone(),
                        outcome,
                    })
                    .inc_by(0);
            }
        }
        Self { registry, ..m }
    }

    /// Counts spans acknowledged by a receiver.
    pub fn record_accepted(&self, spans: u64) {
        self.accepted_spans.inc_by(spans);
    }

    /// Counts one refused request and the spans it held.
    pub fn record_refused(&self, reason: &'static str, spans: u64) {
        self.refused_requests
            .get_or_create(&ReasonLabel { reason })
            .inc();
        self.refused_spans
            .get_or_create(&ReasonLabel { reason })
            .inc_by(spans);
    }

    /// Sets the queue capacity gauges.
    pub fn set_queue_capacity(&self, spans: u64, bytes: usize) {
        self.queue_capacity_spans.set(to_i64(spans));
        self.queue_capacity_bytes.set(to_i64(bytes));
    }

    /// Adds (or with negative values removes) spans and bytes to the queue gauges.
    pub fn add_queued(&self, spans: i64, bytes: i64) {
        self.queue_spans.inc_by(spans);
        self.queue_bytes.inc_by(bytes);
    }

    /// Sets the memory budget usage.
    pub fn set_memory_used(&self, spans: u64, bytes: usize) {
        self.memory_used_spans.set(to_i64(spans));
        self.memory_used_bytes.set(to_i64(bytes));
    }

    /// Counts delivered spans.
    pub fn record_exported(&self, exporter: &str, spans: u64) {
        self.exported_spans
            .get_or_create(&exporter_label(exporter))
            .inc_by(spans);
    }

    /// Counts dropped spans.
    pub fn record_dropped(&self, exporter: &str, reason: &'static str, spans: u64) {
        self.dropped_spans
            .get_or_create(&DroppedLabels {
                exporter: exporter.to_owned(),
                reason,
            })
            .inc_by(spans);
    }

    /// Counts one attempt and its duration.
    pub fn record_attempt(&self, exporter: &str, outcome: &'static str, seconds: f64, retry: bool) {
        self.export_requests
            .get_or_create(&OutcomeLabels {
                exporter: exporter.to_owned(),
                outcome,
            })
            .inc();
        self.export_duration
            .get_or_create(&exporter_label(exporter))
            .observe(seconds);
        if retry {
            self.export_retries
                .get_or_create(&exporter_label(exporter))
                .inc();
        }
    }

    /// Adds to the in-flight request gauge.
    pub fn add_in_flight(&self, exporter: &str, delta: i64) {
        self.export_in_flight
            .get_or_create(&exporter_label(exporter))
            .inc_by(delta);
    }

    /// Adds to the pending spans gauge.
    pub fn add_pending(&self, exporter: &str, spans: i64) {
        self.export_pending_spans
            .get_or_create(&exporter_label(exporter))
            .inc_by(spans);
    }

    /// Sets the spool gauges.
    pub fn set_spool(&self, spans: u64, bytes: u64) {
        self.spool_spans.set(to_i64(spans));
        self.spool_bytes.set(to_i64(bytes));
    }

    /// Counts spans loaded from the spool, and how many of them may be duplicates.
    pub fn record_replayed(&self, spans: u64, redelivered: u64) {
        self.spool_replayed_spans.inc_by(spans);
        self.spool_redelivered_spans.inc_by(redelivered);
    }

    /// Counts spans left in the spool at shutdown.
    pub fn record_retained(&self, exporter: &str, spans: u64) {
        self.spool_retained_spans
            .get_or_create(&exporter_label(exporter))
            .inc_by(spans);
    }

    /// Updates the store gauges and counts new evictions by bound.
    pub fn record_store(&self, stored_spans: u64, stored_bytes: u64, evicted: &Evictions) {
        self.stored_spans.set(to_i64(stored_spans));
        self.stored_bytes.set(to_i64(stored_bytes));
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

    /// The OpenMetrics text exposition, ending with `# EOF`.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Lets one warning through per minute (process-wide, lock-free), for log lines that could
/// otherwise repeat once per request.
#[derive(Debug)]
pub struct WarnLimiter {
    last_secs: std::sync::atomic::AtomicU64,
}

impl WarnLimiter {
    /// A limiter that has not warned yet.
    pub const fn new() -> Self {
        Self {
            last_secs: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// True at most once per 60 s.
    pub fn ready(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last_secs.load(Ordering::Relaxed);
        (last == 0 || now >= last + 60)
            && self
                .last_secs
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl Default for WarnLimiter {
    fn default() -> Self {
        Self::new()
    }
}

fn exporter_label(exporter: &str) -> ExporterLabel {
    ExporterLabel {
        exporter: exporter.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_documented_names_and_values() {
        let metrics = Metrics::new(&["tempo".to_owned()]);
        metrics.record_accepted(5);
        metrics.record_refused(refused::QUEUE_FULL, 3);
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
        metrics.record_exported("tempo", 2);
        metrics.record_dropped("tempo", dropped::REJECTED, 3);
        metrics.record_attempt("tempo", outcome::SUCCESS, 0.01, true);
        metrics.add_queued(7, 700);
        metrics.set_queue_capacity(100, 1000);
        metrics.add_pending("tempo", 4);
        let text = metrics.encode().unwrap();
        for line in [
            "meshtrace_shim_accepted_spans_total 5",
            "meshtrace_shim_refused_spans_total{reason=\"queue_full\"} 3",
            "meshtrace_shim_refused_requests_total{reason=\"malformed\"} 1",
            "meshtrace_shim_refused_requests_total{reason=\"too_large\"} 0",
            "meshtrace_shim_stored_spans 4",
            "meshtrace_shim_stored_bytes 1024",
            "meshtrace_shim_store_evicted_spans_total{reason=\"max_age\"} 2",
            "meshtrace_shim_store_evicted_spans_total{reason=\"max_spans\"} 0",
            "meshtrace_shim_store_evicted_spans_total{reason=\"max_bytes\"} 1",
            "meshtrace_shim_store_dropped_spans_total{reason=\"write_error\"} 3",
            "meshtrace_shim_store_dropped_spans_total{reason=\"queue_full\"} 0",
            "meshtrace_shim_refused_requests_total{reason=\"store_queue_full\"} 0",
            "meshtrace_shim_exported_spans_total{exporter=\"tempo\"} 2",
            "meshtrace_shim_dropped_spans_total{exporter=\"tempo\",reason=\"rejected\"} 3",
            "meshtrace_shim_dropped_spans_total{exporter=\"tempo\",reason=\"shutdown\"} 0",
            "meshtrace_shim_export_requests_total{exporter=\"tempo\",outcome=\"success\"} 1",
            "meshtrace_shim_export_retries_total{exporter=\"tempo\"} 1",
            "meshtrace_shim_export_duration_seconds_count{exporter=\"tempo\"} 1",
            "meshtrace_shim_queue_spans 7",
            "meshtrace_shim_queue_capacity_bytes 1000",
            "meshtrace_shim_export_pending_spans{exporter=\"tempo\"} 4",
            "# TYPE meshtrace_shim_queue_spans gauge",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
