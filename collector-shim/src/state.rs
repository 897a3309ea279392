//! State shared by the receivers and the admin endpoints.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use crate::config::ShimConfig;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, Refusal};
use crate::store::{SpanStore, TraceId};

/// Everything the routers need. Cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    // A std Mutex is enough: every critical section is short and synchronous.
    store: Mutex<SpanStore>,
    metrics: Arc<Metrics>,
    pipeline: Arc<Pipeline>,
    max_request_body_bytes: usize,
    max_concurrent_requests: usize,
}

impl AppState {
    /// State for `config` around `pipeline`.
    pub fn new(config: &ShimConfig, metrics: Arc<Metrics>, pipeline: Arc<Pipeline>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store: Mutex::new(SpanStore::new(config.store.clone())),
                metrics,
                pipeline,
                max_request_body_bytes: config.max_request_body_bytes,
                max_concurrent_requests: config.max_concurrent_requests,
            }),
        }
    }

    /// A pipeline without exporters (spans are only stored), for router tests.
    pub fn without_exporters(config: &ShimConfig) -> Self {
        let metrics = Arc::new(Metrics::new(&[]));
        let pipeline = Arc::new(Pipeline::new(
            &config.queue,
            None,
            Arc::clone(&metrics),
            Vec::new(),
        ));
        Self::new(config, metrics, pipeline)
    }

    /// The shared metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.inner.pipeline
    }

    /// Largest accepted request, in bytes, after decompression.
    pub fn max_request_body_bytes(&self) -> usize {
        self.inner.max_request_body_bytes
    }

    /// Requests decoded at once per listener.
    pub fn max_concurrent_requests(&self) -> usize {
        self.inner.max_concurrent_requests
    }

    /// Accepts a decoded request: queued for the exporters (if any; a refusal leaves nothing
    /// behind), then kept in the in-memory store. Returns the number of spans.
    pub fn accept(&self, request: ExportTraceServiceRequest) -> Result<u64, Refusal> {
        let pipeline = self.pipeline();
        if !pipeline.has_exporters() {
            let spans = crate::otlp::count_spans(&request);
            self.metrics().record_accepted(spans);
            self.store_spans(request.resource_spans);
            return Ok(spans);
        }
        let copy = request.resource_spans.clone();
        let spans = pipeline.admit(request)?;
        if spans > 0 {
            self.store_spans(copy);
        }
        Ok(spans)
    }

    /// Stores spans and updates the store metrics.
    pub fn store_spans(&self, resource_spans: Vec<ResourceSpans>) {
        let mut store = self.lock_store();
        let outcome = store.insert(resource_spans);
        self.metrics()
            .record_store(store.len(), store.bytes(), outcome.evicted);
    }

    /// The stored spans of one trace, regrouped.
    pub fn trace(&self, trace_id: &TraceId) -> Option<Vec<ResourceSpans>> {
        self.lock_store().get_trace(trace_id)
    }

    fn lock_store(&self) -> MutexGuard<'_, SpanStore> {
        self.inner
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
