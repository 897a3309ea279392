//! State shared by the OTLP receiver and the admin endpoints.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use crate::config::ShimConfig;
use crate::export::ExportQueue;
use crate::metrics::Metrics;
use crate::store::{SpanStore, TraceId};

/// Everything the routers need: the store, the metrics, the limits and, when a backend is
/// configured, the export queue. Cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    // A std Mutex is enough: every critical section is short and synchronous (no await inside).
    store: Mutex<SpanStore>,
    metrics: Arc<Metrics>,
    export: Option<ExportQueue>,
    max_request_body_bytes: usize,
}

impl AppState {
    /// State for `config`. Pass the export queue when a backend is configured (see
    /// [`crate::export::queue`]); with `None`, accepted spans are only stored.
    pub fn new(config: &ShimConfig, metrics: Arc<Metrics>, export: Option<ExportQueue>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: Mutex::new(SpanStore::new(config.store.clone())),
                metrics,
                export,
                max_request_body_bytes: config.max_request_body_bytes,
            }),
        }
    }

    /// The shared metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The export queue, when a backend is configured.
    pub fn export_queue(&self) -> Option<&ExportQueue> {
        self.inner.export.as_ref()
    }

    /// Largest accepted request body, in bytes.
    pub fn max_request_body_bytes(&self) -> usize {
        self.inner.max_request_body_bytes
    }

    /// Stores accepted spans and updates the store metrics.
    pub fn store_spans(&self, resource_spans: Vec<ResourceSpans>) {
        let mut store = self.lock_store();
        let outcome = store.insert(resource_spans);
        self.metrics()
            .record_store(store.len(), store.bytes(), outcome.evicted);
    }

    /// The stored spans of one trace, regrouped (see [`SpanStore::get_trace`]).
    pub fn trace(&self, trace_id: &TraceId) -> Option<Vec<ResourceSpans>> {
        self.lock_store().get_trace(trace_id)
    }

    fn lock_store(&self) -> MutexGuard<'_, SpanStore> {
        // Nothing under this lock is expected to panic; if something did, serving the store as
        // it is beats failing every later request.
        self.inner
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
