//! From "accepted" to "handed to the exporters": admission against one memory budget, the
//! queue, batching across sources, and dispatch to every exporter (fan-out).
//!
//! ```text
//!  receivers ──admit()──► budget (spans, bytes) ──► [spool append] ──► queue ──► dispatcher
//!     │ full: Refusal::QueueFull (429 / UNAVAILABLE)        │                   │ Batcher (merge,
//!     │ or drop the oldest queued (opt-in, counted)         │                   │ spans/bytes/age)
//!     ▼                                                     ▼                   ▼
//!   ack only after the queue (and spool) took it       Ticket per request   each exporter:
//!                                                      releases the budget  bounded in-flight,
//!                                                      (and acks the spool) retries, metrics
//!                                                      when every exporter
//!                                                      is done with it
//! ```
//!
//! The budget is charged the request's decoded size in memory ([`crate::otlp::memory_size`]) at
//! admission and released only when every exporter has finished with all of its spans, so queued, batched, in-flight and
//! waiting-to-retry data all count against one bound. A slow exporter fills the budget and the
//! receivers then refuse with a retryable status: back-pressure reaches the senders instead of
//! memory growing.

pub mod batch;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::{FullPolicy, QueueConfig};
use crate::export::{Exporter, ReadyBatch};
use crate::metrics::{Metrics, dropped};
use crate::otlp::count_spans;
use crate::spool::{RecordId, Spool, SpoolError};
use crate::trace_ids::{TraceIds, WARN_TRACE_IDS};
use batch::{BatchLimits, Batcher, Item};

/// Memory use is "no longer full" (ready again) below this fraction of both limits.
const READY_AGAIN_FRACTION: f64 = 0.9;

/// Why [`Pipeline::admit`] refused a request. Nothing refused was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The memory budget is used up (retryable).
    #[error("queue is full, retry later")]
    QueueFull {
        /// Spans in the refused request.
        spans: u64,
    },
    /// The request alone holds more spans than the queue can ever hold (not retryable).
    #[error("request has {spans} spans, more than the queue holds ({max})")]
    TooLarge {
        /// Spans in the request.
        spans: u64,
        /// `queue.max_spans`.
        max: u64,
    },
    /// The request alone needs more memory than the whole budget (not retryable).
    #[error("request needs {bytes} bytes of memory, more than the queue budget ({max})")]
    TooLargeForBudget {
        /// Spans in the request.
        spans: u64,
        /// Its decoded size.
        bytes: usize,
        /// `queue.max_bytes`.
        max: usize,
    },
    /// The spool is full or failing (retryable).
    #[error("spool unavailable, retry later: {detail}")]
    SpoolUnavailable {
        /// Spans in the refused request.
        spans: u64,
        /// What went wrong.
        detail: String,
    },
    /// No exporter is configured and the trace store's queue is full (retryable): without a
    /// backend the store is where spans go, so it refuses like a full queue.
    #[error("trace store is busy, retry later")]
    StoreBusy {
        /// Spans in the refused request.
        spans: u64,
    },
    /// Shutting down (retryable: another replica or the restarted shim will take it).
    #[error("shutting down, retry later")]
    ShuttingDown {
        /// Spans in the refused request.
        spans: u64,
    },
}

/// The one memory budget: spans and encoded bytes of everything accepted and not yet finished.
#[derive(Debug)]
pub struct Budget {
    max_spans: u64,
    max_bytes: usize,
    used: Mutex<(u64, usize)>,
    full: AtomicBool,
    metrics: Arc<Metrics>,
}

/// Bookkeeping of one accepted request (shared by its pieces and batches): releases the memory
/// budget when dropped, and acknowledges the spool record unless an exporter left it
/// undelivered (shutdown), in which case the record stays for the next start.
#[derive(Debug)]
pub struct Ticket {
    charge: Option<(Arc<Budget>, u64, usize)>,
    spool: Option<(Arc<Spool>, RecordId)>,
    unsettled: AtomicBool,
    dispatched: AtomicBool,
}

/// Admission, queue and dispatch. Shared by the receivers (`admit`) and the dispatcher task.
#[derive(Debug)]
pub struct Pipeline {
    budget: Arc<Budget>,
    policy: FullPolicy,
    queue: Mutex<QueueState>,
    wake: Notify,
    spool: Option<Arc<Spool>>,
    metrics: Arc<Metrics>,
    exporter_names: Vec<String>,
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Item>,
    closed: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections here never panic; if one did, the data is still consistent enough.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl Budget ===

impl Budget {
    /// A budget of `config.max_spans` and `config.max_bytes`.
    pub fn new(config: &QueueConfig, metrics: Arc<Metrics>) -> Self {
        metrics.set_queue_capacity(config.max_spans, config.max_bytes);
        Self {
            max_spans: config.max_spans,
            max_bytes: config.max_bytes,
            used: Mutex::new((0, 0)),
            full: AtomicBool::new(false),
            metrics,
        }
    }

    /// Charges `spans` and `bytes` if both fit.
    pub fn try_charge(&self, spans: u64, bytes: usize) -> bool {
        let mut used = lock(&self.used);
        let fits =
            used.0 + spans <= self.max_spans && used.1.saturating_add(bytes) <= self.max_bytes;
        if fits {
            used.0 += spans;
            used.1 += bytes;
            self.metrics.set_memory_used(used.0, used.1);
        } else {
            self.full.store(true, Ordering::Relaxed);
        }
        fits
    }

    fn release(&self, spans: u64, bytes: usize) {
        let mut used = lock(&self.used);
        used.0 = used.0.saturating_sub(spans);
        used.1 = used.1.saturating_sub(bytes);
        self.metrics.set_memory_used(used.0, used.1);
        let low_spans = (used.0 as f64) < self.max_spans as f64 * READY_AGAIN_FRACTION;
        let low_bytes = (used.1 as f64) < self.max_bytes as f64 * READY_AGAIN_FRACTION;
        if low_spans && low_bytes {
            self.full.store(false, Ordering::Relaxed);
        }
    }

    /// True from a refusal for lack of room until usage falls below 90 % of both limits.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// `(spans, bytes)` in use.
    pub fn used(&self) -> (u64, usize) {
        *lock(&self.used)
    }
}

// === impl Ticket ===

impl Ticket {
    /// A ticket that charges nothing and has no spool record (tests, replay accounting).
    pub fn detached() -> Self {
        Self {
            charge: None,
            spool: None,
            unsettled: AtomicBool::new(false),
            dispatched: AtomicBool::new(false),
        }
    }

    /// An exporter could not finish with these spans (shutdown): keep the spool record.
    pub fn mark_unsettled(&self) {
        self.unsettled.store(true, Ordering::Relaxed);
    }

    /// The first export attempt began: after a crash, a replay may duplicate these spans.
    pub fn mark_dispatched(&self) {
        if !self.dispatched.swap(true, Ordering::Relaxed)
            && let Some((spool, id)) = &self.spool
        {
            spool.mark_dispatched(*id);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some((budget, spans, bytes)) = self.charge.take() {
            budget.release(spans, bytes);
        }
        if let Some((spool, id)) = self.spool.take()
            && !self.unsettled.load(Ordering::Relaxed)
        {
            spool.ack(id);
        }
    }
}

// === impl Pipeline ===

impl Pipeline {
    /// A pipeline feeding `exporter_names` (empty: spans are not queued at all).
    pub fn new(
        config: &QueueConfig,
        spool: Option<Arc<Spool>>,
        metrics: Arc<Metrics>,
        exporter_names: Vec<String>,
    ) -> Self {
        Self {
            budget: Arc::new(Budget::new(config, Arc::clone(&metrics))),
            policy: config.full_policy,
            queue: Mutex::new(QueueState::default()),
            wake: Notify::new(),
            spool,
            metrics,
            exporter_names,
        }
    }

    /// Whether any exporter is configured.
    pub fn has_exporters(&self) -> bool {
        !self.exporter_names.is_empty()
    }

    /// Ready for traffic: not shutting down and the budget not (recently) exhausted.
    pub fn is_ready(&self) -> bool {
        !lock(&self.queue).closed && !self.budget.is_full()
    }

    /// The memory budget.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Takes an accepted request into the queue (and the spool, when configured), or refuses it
    /// with nothing acknowledged. Returns the number of spans taken. Requests without spans are
    /// success and take nothing.
    pub fn admit(&self, request: ExportTraceServiceRequest) -> Result<u64, Refusal> {
        let spans = count_spans(&request);
        if spans == 0 || !self.has_exporters() {
            return Ok(spans);
        }
        if lock(&self.queue).closed {
            return Err(Refusal::ShuttingDown { spans });
        }
        if spans > self.budget.max_spans {
            return Err(Refusal::TooLarge {
                spans,
                max: self.budget.max_spans,
            });
        }
        let bytes = crate::otlp::memory_size(&request);
        let encoded = request.encoded_len();
        if bytes > self.budget.max_bytes {
            return Err(Refusal::TooLargeForBudget {
                spans,
                bytes,
                max: self.budget.max_bytes,
            });
        }
        self.charge(spans, bytes)?;
        let charge = Some((Arc::clone(&self.budget), spans, bytes));
        let spool = match &self.spool {
            Some(spool) => match spool.append(&request.encode_to_vec(), spans) {
                Ok(id) => Some((Arc::clone(spool), id)),
                Err(error) => {
                    self.budget.release(spans, bytes);
                    return Err(Refusal::SpoolUnavailable {
                        spans,
                        detail: error.to_string(),
                    });
                }
            },
            None => None,
        };
        let ticket = Ticket {
            charge,
            spool,
            unsettled: AtomicBool::new(false),
            dispatched: AtomicBool::new(false),
        };
        self.enqueue(request, spans, encoded, ticket, false)?;
        self.metrics.record_accepted(spans);
        Ok(spans)
    }

    /// Queues spans replayed from the spool after a restart, waiting for room in the budget.
    /// Returns false when the pipeline closed first.
    pub async fn admit_replayed(
        &self,
        request: ExportTraceServiceRequest,
        id: RecordId,
        redelivered: bool,
    ) -> bool {
        let spans = count_spans(&request);
        let bytes = crate::otlp::memory_size(&request);
        let encoded = request.encoded_len();
        loop {
            if lock(&self.queue).closed {
                return false;
            }
            if self.exceeds_budget(spans, bytes) || self.budget.try_charge(spans, bytes) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let charge =
            (spans <= self.budget.max_spans).then(|| (Arc::clone(&self.budget), spans, bytes));
        let ticket = Ticket {
            charge,
            spool: self.spool.as_ref().map(|spool| (Arc::clone(spool), id)),
            unsettled: AtomicBool::new(false),
            dispatched: AtomicBool::new(redelivered),
        };
        if self.enqueue(request, spans, encoded, ticket, true).is_err() {
            return false;
        }
        self.metrics
            .record_replayed(spans, if redelivered { spans } else { 0 });
        true
    }

    fn exceeds_budget(&self, spans: u64, bytes: usize) -> bool {
        spans > self.budget.max_spans || bytes > self.budget.max_bytes
    }

    fn charge(&self, spans: u64, bytes: usize) -> Result<(), Refusal> {
        loop {
            if self.budget.try_charge(spans, bytes) {
                return Ok(());
            }
            if self.policy != FullPolicy::DropOldest || !self.drop_oldest() {
                return Err(Refusal::QueueFull { spans });
            }
        }
    }

    /// Drops the oldest queued item (counted for every exporter). False when the queue is
    /// empty (everything is already in flight).
    fn drop_oldest(&self) -> bool {
        let Some(item) = lock(&self.queue).items.pop_front() else {
            return false;
        };
        self.metrics
            .add_queued(-(item.spans as i64), -(item.bytes as i64));
        for exporter in &self.exporter_names {
            self.metrics
                .record_dropped(exporter, dropped::QUEUE_FULL, item.spans);
        }
        warn_rate_limited(&item);
        // Dropping the item releases its budget and acknowledges its spool record.
        drop(item);
        true
    }

    /// Queues an admitted request; `bytes` is its encoded size (what batches are cut by).
    fn enqueue(
        &self,
        request: ExportTraceServiceRequest,
        spans: u64,
        bytes: usize,
        ticket: Ticket,
        replayed: bool,
    ) -> Result<(), Refusal> {
        let mut queue = lock(&self.queue);
        if queue.closed {
            // A refused request stays with its sender, who retries: dropping the ticket
            // releases the budget and acknowledges the spool record (a replay would be a
            // duplicate). A replayed record has no sender: keep it for the next start.
            if replayed {
                ticket.mark_unsettled();
            }
            return Err(Refusal::ShuttingDown { spans });
        }
        queue.items.push_back(Item {
            request,
            spans,
            bytes,
            ticket: Arc::new(ticket),
        });
        drop(queue);
        self.metrics.add_queued(spans as i64, bytes as i64);
        self.wake.notify_one();
        Ok(())
    }

    /// Stops admitting; the dispatcher drains what is queued and then ends.
    pub fn close(&self) {
        lock(&self.queue).closed = true;
        self.wake.notify_one();
    }

    fn take_queued(&self) -> (Vec<Item>, bool) {
        let mut queue = lock(&self.queue);
        let items: Vec<Item> = queue.items.drain(..).collect();
        let (spans, bytes) = items
            .iter()
            .fold((0u64, 0usize), |(s, b), i| (s + i.spans, b + i.bytes));
        self.metrics.add_queued(-(spans as i64), -(bytes as i64));
        for exporter in &self.exporter_names {
            self.metrics.add_pending(exporter, spans as i64);
        }
        (items, queue.closed)
    }

    /// The dispatcher: batches queued items and hands each batch to every exporter, waiting
    /// for a free in-flight slot (back-pressure). Ends after [`Pipeline::close`] once the
    /// queue is drained and every delivery finished. `hard_stop` (the shutdown deadline)
    /// interrupts deliveries; what is left is retained in the spool or counted as dropped.
    pub async fn run_dispatcher(
        self: Arc<Self>,
        exporters: Vec<Arc<Exporter>>,
        limits: BatchLimits,
        hard_stop: CancellationToken,
    ) {
        let mut batcher = Batcher::new(limits);
        let mut deliveries = JoinSet::new();
        loop {
            let (items, closed) = self.take_queued();
            let now = Instant::now();
            for item in items {
                for batch in batcher.push(item, now) {
                    dispatch(batch, &exporters, &mut deliveries, &hard_stop).await;
                }
            }
            if (closed || batcher.is_due(now))
                && let Some(batch) = batcher.flush()
            {
                dispatch(batch, &exporters, &mut deliveries, &hard_stop).await;
            }
            while deliveries.try_join_next().is_some() {}
            if closed && lock(&self.queue).items.is_empty() {
                break;
            }
            let deadline = batcher.deadline();
            tokio::select! {
                () = self.wake.notified() => {}
                () = sleep_until_opt(deadline) => {}
            }
        }
        while deliveries.join_next().await.is_some() {}
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn dispatch(
    batch: batch::Batch,
    exporters: &[Arc<Exporter>],
    deliveries: &mut JoinSet<()>,
    hard_stop: &CancellationToken,
) {
    let ready = Arc::new(ReadyBatch::new(batch));
    for exporter in exporters {
        let permit = tokio::select! {
            biased;
            () = hard_stop.cancelled() => None,
            permit = exporter.acquire_slot() => permit,
        };
        match permit {
            Some(permit) => {
                let exporter = Arc::clone(exporter);
                let ready = Arc::clone(&ready);
                let hard_stop = hard_stop.clone();
                deliveries.spawn(async move { exporter.deliver(ready, permit, hard_stop).await });
            }
            None => exporter.abandon(&ready),
        }
    }
}

/// One warning per minute at most for drop-oldest evictions, naming the first few traces of
/// the evicted item.
fn warn_rate_limited(item: &batch::Item) {
    static LIMIT: crate::metrics::WarnLimiter = crate::metrics::WarnLimiter::new();
    if LIMIT.ready() {
        let ids = TraceIds::of(&item.request.resource_spans, WARN_TRACE_IDS);
        warn!(
            spans = item.spans,
            traces = ids.total(),
            trace_ids = %ids,
            "queue full: dropped the oldest queued spans (queue.full_policy = drop_oldest; \
             further drops are counted in meshtrace_shim_dropped_spans_total{{reason=\"queue_full\"}} \
             and logged at most once a minute)"
        );
    }
}

impl From<SpoolError> for Refusal {
    fn from(error: SpoolError) -> Self {
        Refusal::SpoolUnavailable {
            spans: 0,
            detail: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
