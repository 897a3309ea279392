//! State shared by the OTLP receiver and the admin endpoints.

use std::sync::Arc;

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

use crate::config::ShimConfig;
use crate::export::ExportQueue;
use crate::metrics::{Metrics, store_dropped};
use crate::store::{InsertRefused, ReadError, SpanStore, StoreError, TraceId};

/// Everything the routers need: the store, the metrics, the limits and, when a backend is
/// configured, the export queue. Cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: SpanStore,
    store_while_forwarding: bool,
    metrics: Arc<Metrics>,
    export: Option<ExportQueue>,
    max_request_body_bytes: usize,
}

impl AppState {
    /// State for `config`: opens the trace store (see [`SpanStore::open`]). Pass the export
    /// queue when a backend is configured (see [`crate::export::queue`]); with `None`, accepted
    /// spans are only stored.
    pub fn new(
        config: &ShimConfig,
        metrics: Arc<Metrics>,
        export: Option<ExportQueue>,
    ) -> Result<Self, StoreError> {
        let store = SpanStore::open(&config.store, Arc::clone(&metrics))?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                store_while_forwarding: config.store.while_forwarding,
                metrics,
                export,
                max_request_body_bytes: config.max_request_body_bytes,
            }),
        })
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

    /// The trace store.
    pub fn store(&self) -> &SpanStore {
        &self.inner.store
    }

    /// Queues accepted spans for the store, without waiting. While forwarding, the store holds
    /// a copy (when `store.while_forwarding`) and a refusal is only counted
    /// (`meshtrace_shim_store_dropped_spans_total`). Without a backend the store is where the
    /// spans go: a refusal is returned, and the caller must refuse the request (503) so that
    /// the sender retries.
    pub fn store_spans(&self, resource_spans: Vec<ResourceSpans>) -> Result<(), InsertRefused> {
        let forwarding = self.export_queue().is_some();
        if forwarding && !self.inner.store_while_forwarding {
            return Ok(());
        }
        match self.inner.store.try_insert(resource_spans) {
            Err(refused) if forwarding => {
                let (reason, spans) = match refused {
                    InsertRefused::Full { spans } => (store_dropped::QUEUE_FULL, spans),
                    InsertRefused::Closed { spans } => (store_dropped::SHUTTING_DOWN, spans),
                };
                self.metrics().record_store_dropped(reason, spans);
                Ok(())
            }
            result => result,
        }
    }

    /// The stored spans of one trace (see [`crate::store::TraceDb::get_trace`]).
    pub async fn trace(&self, trace_id: &TraceId) -> Result<Option<Vec<ResourceSpans>>, ReadError> {
        self.inner.store.get_trace(*trace_id).await
    }
}
