//! State shared by the receivers and the admin endpoints.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use crate::config::ShimConfig;
use crate::metrics::{Metrics, store_dropped};
use crate::pipeline::{Pipeline, Refusal};
use crate::store::{InsertRefused, ReadError, SpanStore, StoreError, TraceId};

/// Everything the routers need. Cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: SpanStore,
    store_while_forwarding: bool,
    metrics: Arc<Metrics>,
    pipeline: Arc<Pipeline>,
    max_request_body_bytes: usize,
    max_concurrent_requests: usize,
}

impl AppState {
    /// State for `config` around `pipeline`: opens the trace store (see [`SpanStore::open`]).
    pub fn new(
        config: &ShimConfig,
        metrics: Arc<Metrics>,
        pipeline: Arc<Pipeline>,
    ) -> Result<Self, StoreError> {
        let store = SpanStore::open(&config.store, Arc::clone(&metrics))?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                store_while_forwarding: config.store.while_forwarding,
                metrics,
                pipeline,
                max_request_body_bytes: config.max_request_body_bytes,
                max_concurrent_requests: config.max_concurrent_requests,
            }),
        })
    }

    /// A pipeline without exporters (spans are only stored), for router tests.
    pub fn without_exporters(config: &ShimConfig) -> Result<Self, StoreError> {
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

    /// The trace store.
    pub fn store(&self) -> &SpanStore {
        &self.inner.store
    }

    /// Largest accepted request, in bytes, after decompression.
    pub fn max_request_body_bytes(&self) -> usize {
        self.inner.max_request_body_bytes
    }

    /// Requests decoded at once per listener.
    pub fn max_concurrent_requests(&self) -> usize {
        self.inner.max_concurrent_requests
    }

    /// Accepts a decoded request and returns its number of spans. With exporters, the pipeline
    /// takes it (a refusal leaves nothing behind) and the trace store gets a copy when
    /// `store.while_forwarding` (a copy the store cannot take is only counted,
    /// `meshtrace_shim_store_dropped_spans_total`). Without exporters the store is where the
    /// spans go: when its queue is full the request is refused with a retryable answer, so
    /// that the sender retries and nothing acknowledged is lost.
    pub fn accept(&self, request: ExportTraceServiceRequest) -> Result<u64, Refusal> {
        let pipeline = self.pipeline();
        if !pipeline.has_exporters() {
            let spans = crate::otlp::count_spans(&request);
            self.store()
                .try_insert(request.resource_spans)
                .map_err(|refused| match refused {
                    InsertRefused::Full { spans } => Refusal::StoreBusy { spans },
                    InsertRefused::Closed { spans } => Refusal::ShuttingDown { spans },
                })?;
            self.metrics().record_accepted(spans);
            return Ok(spans);
        }
        let copy = self
            .inner
            .store_while_forwarding
            .then(|| request.resource_spans.clone());
        let spans = pipeline.admit(request)?;
        if spans > 0
            && let Some(copy) = copy
        {
            self.store_copy(copy);
        }
        Ok(spans)
    }

    /// Queues a copy of forwarded spans for the store; a refusal is counted, not returned (the
    /// exporters have the spans).
    fn store_copy(&self, resource_spans: Vec<ResourceSpans>) {
        if let Err(refused) = self.store().try_insert(resource_spans) {
            let (reason, spans) = match refused {
                InsertRefused::Full { spans } => (store_dropped::QUEUE_FULL, spans),
                InsertRefused::Closed { spans } => (store_dropped::SHUTTING_DOWN, spans),
            };
            self.metrics().record_store_dropped(reason, spans);
        }
    }

    /// The stored spans of one trace (see [`crate::store::TraceDb::get_trace`]).
    pub async fn trace(&self, trace_id: &TraceId) -> Result<Option<Vec<ResourceSpans>>, ReadError> {
        self.store().get_trace(*trace_id).await
    }
}
