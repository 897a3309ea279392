//! The embedded trace store behind the query API and the viewer: SQLite (through `rusqlite`,
//! compiled from source), on disk in `store.data_dir` or in memory, bounded by span count,
//! bytes and age.
//!
//! ```text
//!  AppState::accept ──try_insert──► bounded queue ──► writer thread ──► TraceDb (SQLite)
//!  (never blocks; full: refused        (commands,        one transaction     spans, traces,
//!   or counted, see below)              pending spans)   per request         resources, scopes
//!  admin ──read(closure)──────────┘ (same queue: a read sees every span acknowledged before it)
//! ```
//!
//! **Why SQLite.** The viewer filters by service, span name, status, duration and time, and
//! pages through results: secondary indexes and ad-hoc queries, which SQLite gives with one
//! file, transactions and crash safety (WAL), and no server. The `bundled` build pins the
//! SQLite version instead of depending on the system's.
//!
//! **Never blocking the runtime.** One dedicated thread owns the connection. Writes are queued
//! with `try_send` on a bounded channel ([`QUEUE_CAPACITY`] commands, at most
//! [`MAX_PENDING_SPANS`] spans waiting); when it is full the insert is refused at once. Reads
//! travel the same queue as closures (waiting up to [`READ_QUEUE_WAIT`] for room) and are
//! awaited through a oneshot channel, so they queue behind earlier writes: read-your-writes for
//! anything already acknowledged.
//!
//! Requests queued back to back are written in one transaction (at most
//! [`MAX_TRANSACTION_SPANS`]), which is what keeps up under load.
//!
//! **Bounds.** Every span gets a sequence number in arrival order and is evicted oldest first:
//! when received more than `max_age_secs` ago (checked at each write and every
//! [`SWEEP_INTERVAL`]), when over `max_spans`, and when over `max_bytes`. A span is charged its
//! protobuf encoding plus the indexed copies of its ids, service and name plus 64 bytes of
//! integer columns; each distinct resource and scope is stored once and charged once. The
//! SQLite file is larger than the charged bytes by its B-tree and index pages (see
//! `docs/viewer.md` for the measured ratio). Evictions are counted by bound in
//! `meshtrace_shim_store_evicted_spans_total{reason}`.

mod db;
mod row;
mod schema;
pub mod search;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use tokio::sync::oneshot;
use tracing::{error, warn};

pub use db::{DB_FILE, Evictions, Limits, MAX_NAMES, StoreError, TraceDb};
pub use row::{SERVICE_NAME, UNKNOWN_SERVICE};
pub use search::{Cursor, RootSpan, StatusFilter, TracePage, TraceQuery, TraceSummary};

use crate::config::StoreConfig;
use crate::metrics::{Metrics, store_dropped};
use crate::otlp::count_resource_spans;
use crate::trace_ids::{TraceIds, WARN_TRACE_IDS};

/// A 16-byte OTLP trace id.
pub type TraceId = [u8; 16];

/// Commands (writes and reads) that may wait for the writer thread.
pub const QUEUE_CAPACITY: usize = 1_024;
/// Spans that may wait for the writer thread; a request that would exceed it is refused
/// (unless nothing is waiting, so one large request always gets in).
pub const MAX_PENDING_SPANS: u64 = 65_536;
/// Most spans the writer puts in one transaction when several requests are queued.
pub const MAX_TRANSACTION_SPANS: u64 = 8_192;
/// How long a read waits for room in a full queue before it fails as busy.
pub const READ_QUEUE_WAIT: Duration = Duration::from_secs(1);
/// How often the writer evicts expired spans when it has nothing else to do.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// What one [`TraceDb::insert`] did. `stored + not_indexed` is every span offered; evictions
/// may hit spans of earlier calls or of this one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InsertOutcome {
    /// Spans accepted (some may have been evicted again by the same call).
    pub stored: u64,
    /// Spans skipped because their trace id is not 16 bytes.
    pub not_indexed: u64,
    /// Spans evicted by this call, by bound.
    pub evicted: Evictions,
}

/// Handle on the store: cheap to clone, usable from async code without blocking.
#[derive(Clone, Debug)]
pub struct SpanStore {
    commands: SyncSender<Command>,
    pending_spans: Arc<AtomicU64>,
    max_pending_spans: u64,
}

/// Why spans were not queued for the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InsertRefused {
    /// The queue is full; retry later.
    #[error("the trace store is busy")]
    Full {
        /// Spans refused.
        spans: u64,
    },
    /// The store has been closed (shutting down).
    #[error("the trace store is closed")]
    Closed {
        /// Spans refused.
        spans: u64,
    },
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The queue is full; retry later.
    #[error("the trace store is busy, retry later")]
    Busy,
    /// The store has been closed.
    #[error("the trace store is closed")]
    Closed,
    /// SQLite or decoding failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Read = Box<dyn FnOnce(&TraceDb) + Send>;

enum Command {
    Insert {
        batch: Vec<ResourceSpans>,
        spans: u64,
    },
    Read(Read),
    Close(oneshot::Sender<()>),
}

// === impl SpanStore ===

impl SpanStore {
    /// Opens the database of `config` (see [`TraceDb::open`]), evicts what expired while the
    /// shim was down, and starts the writer thread, which reports to `metrics`.
    pub fn open(config: &StoreConfig, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        Self::open_with_queue(config, metrics, QUEUE_CAPACITY, MAX_PENDING_SPANS)
    }

    /// [`SpanStore::open`] with other queue bounds (tests use small ones).
    fn open_with_queue(
        config: &StoreConfig,
        metrics: Arc<Metrics>,
        capacity: usize,
        max_pending_spans: u64,
    ) -> Result<Self, StoreError> {
        let mut db = TraceDb::open(config)?;
        let evicted = db.evict_expired(now_ns())?;
        metrics.record_store(db.span_count(), db.bytes(), &evicted);
        let (commands, receiver) = mpsc::sync_channel(capacity);
        let pending_spans = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            db,
            metrics,
            pending_spans: Arc::clone(&pending_spans),
        };
        std::thread::Builder::new()
            .name("meshtrace-store".to_owned())
            .spawn(move || writer.run(receiver))
            .map_err(StoreError::Spawn)?;
        Ok(Self {
            commands,
            pending_spans,
            max_pending_spans,
        })
    }

    /// Queues `batch` for storage without waiting. Refused when the queue is full or closed;
    /// the caller decides whether that refuses the whole request (see
    /// [`crate::AppState::accept`]).
    pub fn try_insert(&self, batch: Vec<ResourceSpans>) -> Result<(), InsertRefused> {
        let spans = count_resource_spans(&batch);
        if spans == 0 {
            return Ok(());
        }
        let waiting = self.pending_spans.fetch_add(spans, Ordering::SeqCst);
        if waiting > 0 && waiting + spans > self.max_pending_spans {
            self.pending_spans.fetch_sub(spans, Ordering::SeqCst);
            return Err(InsertRefused::Full { spans });
        }
        self.commands
            .try_send(Command::Insert { batch, spans })
            .map_err(|error| {
                self.pending_spans.fetch_sub(spans, Ordering::SeqCst);
                match error {
                    TrySendError::Full(_) => InsertRefused::Full { spans },
                    TrySendError::Disconnected(_) => InsertRefused::Closed { spans },
                }
            })
    }

    /// Runs `read` on the writer thread after every command queued before it, and returns its
    /// result. Never blocks the runtime; fails with [`ReadError::Busy`] when the queue stays
    /// full for [`READ_QUEUE_WAIT`].
    pub async fn read<T, F>(&self, read: F) -> Result<T, ReadError>
    where
        T: Send + 'static,
        F: FnOnce(&TraceDb) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        let command = Command::Read(Box::new(move |db| {
            // The reader may have gone away (client disconnected): nothing to do then.
            let _ = reply.send(read(db));
        }));
        self.send_waiting(command, READ_QUEUE_WAIT).await?;
        Ok(result.await.map_err(|_| ReadError::Closed)??)
    }

    /// The stored spans of one trace (see [`TraceDb::get_trace`]).
    pub async fn get_trace(
        &self,
        trace_id: TraceId,
    ) -> Result<Option<Vec<ResourceSpans>>, ReadError> {
        self.read(move |db| db.get_trace(&trace_id)).await
    }

    /// Writes everything queued so far, then closes the database (releasing the data
    /// directory's lock) and stops the writer. Waits at most `timeout`; later inserts are
    /// refused as [`InsertRefused::Closed`].
    pub async fn close(&self, timeout: Duration) {
        let (done, closed) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + timeout;
        match self.send_waiting(Command::Close(done), timeout).await {
            Ok(()) => {}
            Err(ReadError::Busy) => {
                warn!("the trace store did not drain in time; it closes when the shim exits");
                return;
            }
            Err(_) => return,
        }
        if tokio::time::timeout_at(deadline, closed).await.is_err() {
            warn!("the trace store did not close in time");
        }
    }

    /// Queues `command`, retrying every few milliseconds while the queue is full, for at most
    /// `wait`.
    async fn send_waiting(&self, mut command: Command, wait: Duration) -> Result<(), ReadError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.commands.try_send(command) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(ReadError::Closed),
                Err(TrySendError::Full(returned)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ReadError::Busy);
                    }
                    command = returned;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
}

// === Writer ===

/// The thread that owns the database.
struct Writer {
    db: TraceDb,
    metrics: Arc<Metrics>,
    pending_spans: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, commands: Receiver<Command>) {
        let closed = self.serve(&commands);
        let (metrics, pending) = (Arc::clone(&self.metrics), Arc::clone(&self.pending_spans));
        // Closes the database (and releases the data directory) before anyone is told.
        drop(self);
        if let Some(done) = closed {
            let _ = done.send(());
            refuse_rest(&commands, &metrics, &pending);
        }
    }

    /// Handles commands until the queue is closed (`None`) or a close is asked (its reply).
    fn serve(&mut self, commands: &Receiver<Command>) -> Option<oneshot::Sender<()>> {
        let mut next_sweep = Instant::now() + SWEEP_INTERVAL;
        let mut queued = None;
        loop {
            let wait = next_sweep.saturating_duration_since(Instant::now());
            let command = match queued.take() {
                Some(command) => Ok(command),
                None => commands.recv_timeout(wait),
            };
            match command {
                Ok(Command::Insert { batch, spans }) => {
                    let (batch, spans, after) = coalesce(batch, spans, commands);
                    self.insert(batch, spans);
                    queued = after;
                }
                Ok(Command::Read(read)) => read(&self.db),
                Ok(Command::Close(done)) => return Some(done),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
            if Instant::now() >= next_sweep {
                self.sweep();
                next_sweep = Instant::now() + SWEEP_INTERVAL;
            }
        }
    }

    fn insert(&mut self, batch: Vec<ResourceSpans>, spans: u64) {
        // Named should the write fail (the insert consumes the batch); far cheaper than it.
        let ids = TraceIds::of(&batch, WARN_TRACE_IDS);
        let result = self.db.insert(batch, now_ns());
        self.pending_spans.fetch_sub(spans, Ordering::SeqCst);
        match result {
            Ok(outcome) => {
                self.metrics
                    .record_store(self.db.span_count(), self.db.bytes(), &outcome.evicted);
            }
            Err(error) => {
                error!(
                    %error,
                    spans,
                    traces = ids.total(),
                    trace_ids = %ids,
                    "the trace store could not write spans; they are dropped"
                );
                self.metrics
                    .record_store_dropped(store_dropped::WRITE_ERROR, spans);
            }
        }
    }

    fn sweep(&mut self) {
        match self.db.evict_expired(now_ns()) {
            Ok(evicted) => {
                self.metrics
                    .record_store(self.db.span_count(), self.db.bytes(), &evicted);
            }
            Err(error) => error!(%error, "the trace store could not evict expired spans"),
        }
    }
}

/// Appends the inserts queued right behind `batch` (up to [`MAX_TRANSACTION_SPANS`]) so they
/// share one transaction; returns the first other command met, to run next.
fn coalesce(
    mut batch: Vec<ResourceSpans>,
    mut spans: u64,
    commands: &Receiver<Command>,
) -> (Vec<ResourceSpans>, u64, Option<Command>) {
    while spans < MAX_TRANSACTION_SPANS {
        match commands.try_recv() {
            Ok(Command::Insert {
                batch: more,
                spans: more_spans,
            }) => {
                batch.extend(more);
                spans += more_spans;
            }
            Ok(other) => return (batch, spans, Some(other)),
            Err(_) => break,
        }
    }
    (batch, spans, None)
}

/// Counts inserts still queued behind a close as dropped.
fn refuse_rest(commands: &Receiver<Command>, metrics: &Metrics, pending: &AtomicU64) {
    while let Ok(command) = commands.try_recv() {
        if let Command::Insert { spans, .. } = command {
            pending.fetch_sub(spans, Ordering::SeqCst);
            metrics.record_store_dropped(store_dropped::SHUTTING_DOWN, spans);
        }
    }
}

/// The shim's clock, Unix nanoseconds.
fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests;
