//! The synchronous core of the trace store: one SQLite connection, the bounds, and every read
//! and write as a plain method. It never blocks on anything but SQLite itself, and only the
//! store's writer thread calls it (see [`super::SpanStore`]); tests call it directly with
//! their own clock.
//!
//! Each [`TraceDb::insert`] is one transaction: the spans, their trace rows, and the evictions
//! that bring the store back within its bounds commit together or not at all.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params, params_from_iter};

use super::row::{self, SpanRow};
use super::schema::{self, OriginTable};
use super::search::{self, Cursor, RootSpan, TracePage, TraceQuery, TraceSummary};
use super::{InsertOutcome, TraceId};
use crate::config::StoreConfig;

/// The database file's name inside `store.data_dir`.
pub const DB_FILE: &str = "traces.sqlite3";
/// Bytes the write-ahead log file is truncated to after a checkpoint.
pub const WAL_SIZE_LIMIT: i64 = 8 * 1024 * 1024;
/// Most names [`TraceDb::services`] and [`TraceDb::span_names`] return.
pub const MAX_NAMES: usize = 1_000;
/// Most services listed in one trace summary.
const MAX_SUMMARY_SERVICES: usize = 50;

/// The store's bounds, in the units the database uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most stored spans.
    pub max_spans: u64,
    /// Most charged bytes (spans plus their resources and scopes).
    pub max_bytes: u64,
    /// Oldest receive time kept, as an age in nanoseconds.
    pub max_age_ns: i64,
}

/// Why the store could not open, read or write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `store.data_dir` could not be created.
    #[error("store.data_dir: cannot create {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The database file is locked by another process (another shim with the same data dir).
    #[error("store.data_dir: {path} is in use by another process")]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The database was written by a newer build with another layout.
    #[error(
        "store.data_dir: {path} has layout version {found}; this build reads version {}",
        schema::VERSION
    )]
    Version {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
    },
    /// A stored span, resource or scope no longer decodes (the file was damaged).
    #[error("stored data cannot be decoded: {0}")]
    Corrupt(#[from] prost::DecodeError),
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread could not be started.
    #[error("cannot start the trace store's writer thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Spans evicted, by the bound that evicted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evictions {
    /// Received longer ago than `max_age_secs`.
    pub age: u64,
    /// Over `max_spans`.
    pub spans: u64,
    /// Over `max_bytes` (including spans larger than the bound on their own).
    pub bytes: u64,
}

/// The store's SQLite database and its running totals.
#[derive(Debug)]
pub struct TraceDb {
    conn: Connection,
    limits: Limits,
    totals: Totals,
    /// Receive times never decrease, so arrival order (`seq`) is also age order.
    last_received_ns: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Totals {
    spans: u64,
    bytes: u64,
}

/// A resource or scope as stored: encoded once, deduplicated by value.
struct Origin {
    encoded: Option<Vec<u8>>,
    schema_url: String,
    charged_bytes: u64,
}

// === impl Limits ===

impl From<&StoreConfig> for Limits {
    fn from(config: &StoreConfig) -> Self {
        let age = Duration::from_secs(config.max_age_secs).as_nanos();
        Self {
            max_spans: config.max_spans as u64,
            max_bytes: config.max_bytes as u64,
            max_age_ns: i64::try_from(age).unwrap_or(i64::MAX),
        }
    }
}

// === impl Evictions ===

impl Evictions {
    /// All evicted spans.
    pub fn total(&self) -> u64 {
        self.age + self.spans + self.bytes
    }
}

// === impl TraceDb ===

impl TraceDb {
    /// Opens the store of `config`: `<data_dir>/traces.sqlite3` (created, with its directory,
    /// when missing, and held exclusively) or a private in-memory database. Data already on disk
    /// is kept; the bounds are applied at the first write or [`TraceDb::evict_expired`].
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let conn = match &config.data_dir {
            Some(dir) => open_file(dir)?,
            None => {
                let conn = Connection::open_in_memory()?;
                conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
                migrate(&conn, Path::new(":memory:"))?;
                conn
            }
        };
        let mut totals = Totals::default();
        let (spans, bytes, last_received_ns): (i64, i64, i64) = conn.query_row(
            "SELECT count(*), ifnull(sum(charged_bytes), 0), ifnull(max(received_ns), 0) \
             FROM spans",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
        totals.spans = to_u64(spans);
        totals.bytes = to_u64(bytes);
        for table in OriginTable::ALL {
            let origin_bytes: i64 =
                conn.query_row(table.total_bytes_sql(), [], |row| row.get(0))?;
            totals.bytes += to_u64(origin_bytes);
        }
        Ok(Self {
            conn,
            limits: Limits::from(config),
            totals,
            last_received_ns,
        })
    }

    /// Stores every span of `batch` received at `now_ns` (Unix nanoseconds), then evicts the
    /// oldest spans until every bound holds. A span charged more than `max_bytes` on its own
    /// (with its resource and scope) is counted as evicted without being stored. On error
    /// nothing of the batch is stored.
    pub fn insert(
        &mut self,
        batch: Vec<ResourceSpans>,
        now_ns: i64,
    ) -> Result<InsertOutcome, StoreError> {
        let received_ns = now_ns.max(self.last_received_ns);
        let limits = self.limits;
        let mut totals = self.totals;
        let tx = self.conn.transaction()?;
        let mut outcome = InsertOutcome::default();
        // (table, id, newest seq using it), raised after the spans are in.
        let mut touched: Vec<(OriginTable, i64, i64)> = Vec::new();
        for resource_spans in batch {
            let service = row::service_name(resource_spans.resource.as_ref()).to_owned();
            let resource = Origin::new(resource_spans.resource.as_ref(), resource_spans.schema_url);
            let mut resource_id = None;
            for scope_spans in resource_spans.scope_spans {
                let scope = Origin::new(scope_spans.scope.as_ref(), scope_spans.schema_url);
                let mut scope_id = None;
                for span in &scope_spans.spans {
                    let Some(row) = SpanRow::new(span, &service) else {
                        outcome.not_indexed += 1;
                        continue;
                    };
                    outcome.stored += 1;
                    let charged = row.charged_bytes() as u64;
                    if charged + resource.charged_bytes + scope.charged_bytes > limits.max_bytes {
                        outcome.evicted.bytes += 1;
                        continue;
                    }
                    let rid = match resource_id {
                        Some(id) => id,
                        None => {
                            let id = resource.find_or_insert(
                                &tx,
                                OriginTable::Resources,
                                &mut totals,
                            )?;
                            *resource_id.insert(id)
                        }
                    };
                    let sid = match scope_id {
                        Some(id) => id,
                        None => {
                            let id = scope.find_or_insert(&tx, OriginTable::Scopes, &mut totals)?;
                            *scope_id.insert(id)
                        }
                    };
                    let seq = insert_span(&tx, &row, received_ns, rid, sid, charged)?;
                    totals.spans += 1;
                    totals.bytes += charged;
                    touched.push((OriginTable::Resources, rid, seq));
                    touched.push((OriginTable::Scopes, sid, seq));
                }
            }
        }
        for (table, id, seq) in touched {
            tx.prepare_cached(table.touch_sql())?
                .execute(params![seq, id])?;
        }
        let evicted = enforce_bounds(&tx, &limits, &mut totals, received_ns)?;
        tx.commit()?;
        outcome.evicted.age += evicted.age;
        outcome.evicted.spans += evicted.spans;
        outcome.evicted.bytes += evicted.bytes;
        self.totals = totals;
        self.last_received_ns = received_ns;
        self.release_free_pages(evicted.total())?;
        Ok(outcome)
    }

    /// Evicts every span received longer than `max_age_secs` before `now_ns` (and enforces the
    /// other bounds, which only a change of configuration can break between writes).
    pub fn evict_expired(&mut self, now_ns: i64) -> Result<Evictions, StoreError> {
        let limits = self.limits;
        let mut totals = self.totals;
        let tx = self.conn.transaction()?;
        let evicted = enforce_bounds(&tx, &limits, &mut totals, now_ns)?;
        tx.commit()?;
        self.totals = totals;
        self.release_free_pages(evicted.total())?;
        Ok(evicted)
    }

    /// The stored spans of `trace_id` as OTLP, regrouped by resource then scope in order of
    /// first arrival, spans in arrival order; `None` when no span of the trace is stored.
    pub fn get_trace(&self, trace_id: &TraceId) -> Result<Option<Vec<ResourceSpans>>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT s.resource_id, s.scope_id, s.span, r.encoded, r.schema_url, c.encoded, \
                    c.schema_url \
             FROM spans s JOIN resources r ON r.id = s.resource_id \
                          JOIN scopes c ON c.id = s.scope_id \
             WHERE s.trace_id = ?1 ORDER BY s.seq",
        )?;
        let mut rows = stmt.query([trace_id.as_slice()])?;
        let mut groups: Vec<ResourceSpans> = Vec::new();
        let mut resource_index: HashMap<i64, usize> = HashMap::new();
        let mut scope_index: HashMap<(i64, i64), usize> = HashMap::new();
        while let Some(row) = rows.next()? {
            let (rid, sid): (i64, i64) = (row.get(0)?, row.get(1)?);
            let span = Span::decode(row.get::<_, Vec<u8>>(2)?.as_slice())?;
            let resource_at = match resource_index.get(&rid) {
                Some(&at) => at,
                None => {
                    groups.push(ResourceSpans {
                        resource: decode_optional::<Resource>(row.get(3)?)?,
                        scope_spans: Vec::new(),
                        schema_url: row.get(4)?,
                    });
                    resource_index.insert(rid, groups.len() - 1);
                    groups.len() - 1
                }
            };
            let Some(group) = groups.get_mut(resource_at) else {
                continue;
            };
            let scope_at = match scope_index.get(&(rid, sid)) {
                Some(&at) => at,
                None => {
                    group.scope_spans.push(ScopeSpans {
                        scope: decode_optional::<InstrumentationScope>(row.get(5)?)?,
                        spans: Vec::new(),
                        schema_url: row.get(6)?,
                    });
                    scope_index.insert((rid, sid), group.scope_spans.len() - 1);
                    group.scope_spans.len() - 1
                }
            };
            if let Some(scope) = group.scope_spans.get_mut(scope_at) {
                scope.spans.push(span);
            }
        }
        Ok((!groups.is_empty()).then_some(groups))
    }

    /// One page of the traces matching `query`, newest start first (see [`search`]).
    pub fn search(&self, query: &TraceQuery) -> Result<TracePage, StoreError> {
        let (sql, sql_params) = search::page_sql(query);
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut page: Vec<(TraceId, i64)> = stmt
            .query_map(params_from_iter(sql_params), |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, row.get(1)?))
            })?
            .filter_map(|row| match row {
                Ok((id, start)) => TraceId::try_from(id.as_slice())
                    .ok()
                    .map(|id| Ok((id, start))),
                Err(error) => Some(Err(error)),
            })
            .collect::<Result<_, _>>()?;
        let limit = query.limit.clamp(1, search::MAX_LIMIT);
        let next_cursor = if page.len() > limit {
            page.truncate(limit);
            page.last()
                .map(|&(trace_id, start_ns)| Cursor { start_ns, trace_id })
        } else {
            None
        };
        let traces = page
            .iter()
            .filter_map(|(trace_id, _)| self.summary(trace_id).transpose())
            .collect::<Result<_, _>>()?;
        Ok(TracePage {
            traces,
            next_cursor,
        })
    }

    /// The summary of one trace, `None` when none of its spans is stored.
    pub fn summary(&self, trace_id: &TraceId) -> Result<Option<TraceSummary>, StoreError> {
        let id = trace_id.as_slice();
        let (span_count, error_count, start_ns, end_ns): (i64, i64, Option<i64>, Option<i64>) =
            self.conn
                .prepare_cached(
                    "SELECT count(*), ifnull(sum(status_code = 2), 0), min(start_ns), \
                            max(end_ns) \
                     FROM spans WHERE trace_id = ?1",
                )?
                .query_row([id], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })?;
        let (Some(start_ns), Some(end_ns)) = (start_ns, end_ns) else {
            return Ok(None);
        };
        let root = self
            .conn
            .prepare_cached(
                "SELECT span_id, name, service, parent_span_id IS NOT NULL FROM spans \
                 WHERE trace_id = ?1 \
                 ORDER BY parent_span_id IS NOT NULL, start_ns, seq LIMIT 1",
            )?
            .query_row([id], |row| {
                Ok(RootSpan {
                    span_id: row.get(0)?,
                    name: row.get(1)?,
                    service: row.get(2)?,
                    has_parent: row.get(3)?,
                })
            })?;
        let services = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT service FROM spans WHERE trace_id = ?1 ORDER BY service LIMIT ?2",
            )?
            .query_map(params![id, MAX_SUMMARY_SERVICES as i64], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(Some(TraceSummary {
            trace_id: *trace_id,
            start_ns,
            end_ns,
            span_count: to_u64(span_count),
            error_count: to_u64(error_count),
            services,
            root,
        }))
    }

    /// Distinct services of the stored spans, sorted, at most [`MAX_NAMES`]. A skip scan of
    /// the `(service, name)` index: one index lookup per service, however many spans.
    pub fn services(&self) -> Result<Vec<String>, StoreError> {
        let mut next = self
            .conn
            .prepare_cached("SELECT min(service) FROM spans WHERE service > ?1")?;
        let mut services: Vec<String> = Vec::new();
        // Every service name is non-empty (see `row::service_name`).
        let mut after = String::new();
        while services.len() < MAX_NAMES {
            let Some(service) = next.query_row([&after], |row| row.get::<_, Option<String>>(0))?
            else {
                break;
            };
            services.push(service.clone());
            after = service;
        }
        Ok(services)
    }

    /// Distinct span names, of one service when given, sorted, at most [`MAX_NAMES`]. Skip
    /// scans of the `(service, name)` index, at most [`MAX_NAMES`] lookups per service.
    pub fn span_names(&self, service: Option<&str>) -> Result<Vec<String>, StoreError> {
        let services = match service {
            Some(service) => vec![service.to_owned()],
            None => self.services()?,
        };
        let mut first = self
            .conn
            .prepare_cached("SELECT min(name) FROM spans WHERE service = ?1")?;
        let mut next = self
            .conn
            .prepare_cached("SELECT min(name) FROM spans WHERE service = ?1 AND name > ?2")?;
        let mut names = std::collections::BTreeSet::new();
        for service in &services {
            let mut found: Option<String> = first.query_row([service], |row| row.get(0))?;
            let mut lookups = 0;
            while let Some(name) = found {
                lookups += 1;
                if lookups > MAX_NAMES {
                    break;
                }
                found = next.query_row(params![service, &name], |row| row.get(0))?;
                names.insert(name);
            }
        }
        Ok(names.into_iter().take(MAX_NAMES).collect())
    }

    /// Stored spans.
    pub fn span_count(&self) -> u64 {
        self.totals.spans
    }

    /// Charged bytes (see [`super`] for what is counted).
    pub fn bytes(&self) -> u64 {
        self.totals.bytes
    }

    /// Bytes the database itself occupies (its pages in use), for comparing with [`Self::bytes`].
    pub fn database_bytes(&self) -> Result<u64, StoreError> {
        let used: i64 = self.conn.query_row(
            "SELECT (page_count - freelist_count) * page_size \
             FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()",
            [],
            |row| row.get(0),
        )?;
        Ok(to_u64(used))
    }

    /// Gives pages freed by evictions back (to the OS, or to the allocator in memory) once they
    /// are a quarter of the database, so the file shrinks after its bounds were lowered.
    fn release_free_pages(&self, evicted: u64) -> Result<(), StoreError> {
        if evicted == 0 {
            return Ok(());
        }
        let (free, pages): (i64, i64) = self.conn.query_row(
            "SELECT freelist_count, page_count FROM pragma_freelist_count(), pragma_page_count()",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        if free * 4 > pages {
            self.conn.execute_batch("PRAGMA incremental_vacuum")?;
        }
        Ok(())
    }
}

/// Opens (creating if needed) the database file in `dir`: WAL journal (a committed write
/// survives a crash of the process), `synchronous = NORMAL`, and an exclusive lock so a second
/// shim cannot share the file.
fn open_file(dir: &Path) -> Result<Connection, StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join(DB_FILE);
    let locked = |error: rusqlite::Error, path: &Path| match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked {
            path: path.to_owned(),
        },
        _ => StoreError::Sqlite(error),
    };
    let conn = Connection::open(&path)?;
    conn.busy_timeout(Duration::ZERO)?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
        .map_err(|e| locked(e, &path))?;
    // Only takes effect on a new file, before the first table exists.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(|e| locked(e, &path))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| locked(e, &path))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "the trace store could not switch to WAL; writes are slower");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // The WAL is reused after each checkpoint; this caps what it keeps on disk in between.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    migrate(&conn, &path).map_err(|error| match error {
        StoreError::Sqlite(e) => locked(e, &path),
        other => other,
    })?;
    Ok(conn)
}

/// Creates the layout on an empty database; accepts only [`schema::VERSION`] otherwise.
fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    match version {
        0 => {
            conn.execute_batch(&format!(
                "BEGIN; {} PRAGMA user_version = {}; COMMIT;",
                schema::CREATE,
                schema::VERSION
            ))?;
            Ok(())
        }
        schema::VERSION => Ok(()),
        found => Err(StoreError::Version {
            path: path.to_owned(),
            found,
        }),
    }
}

fn insert_span(
    conn: &Connection,
    row: &SpanRow,
    received_ns: i64,
    resource_id: i64,
    scope_id: i64,
    charged: u64,
) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO spans (received_ns, trace_id, span_id, parent_span_id, service, name, \
                            kind, status_code, start_ns, end_ns, resource_id, scope_id, span, \
                            charged_bytes) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        received_ns,
        row.trace_id.as_slice(),
        row.span_id,
        row.parent_span_id,
        row.service,
        row.name,
        row.kind,
        row.status_code,
        row.start_ns,
        row.end_ns,
        resource_id,
        scope_id,
        row.encoded,
        to_i64(charged),
    ])?;
    let seq = conn.last_insert_rowid();
    conn.prepare_cached(
        "INSERT INTO traces (trace_id, start_ns, end_ns) VALUES (?1, ?2, ?3) \
         ON CONFLICT (trace_id) DO UPDATE SET start_ns = min(start_ns, excluded.start_ns), \
                                              end_ns = max(end_ns, excluded.end_ns)",
    )?
    .execute(params![row.trace_id.as_slice(), row.start_ns, row.end_ns])?;
    Ok(seq)
}

/// Evicts, oldest first, what breaks a bound: spans received before `now_ns - max_age`, then
/// the oldest spans over `max_spans`, then the oldest spans until `max_bytes` holds.
fn enforce_bounds(
    conn: &Connection,
    limits: &Limits,
    totals: &mut Totals,
    now_ns: i64,
) -> Result<Evictions, StoreError> {
    let mut evicted = Evictions::default();
    let oldest_kept_ns = now_ns.saturating_sub(limits.max_age_ns);
    // Receive times never decrease with `seq`: the newest expired span is the last one in
    // `spans_received` order (a range search of the index, not a scan of the table).
    let expired: Option<i64> = conn
        .prepare_cached(
            "SELECT seq FROM spans INDEXED BY spans_received WHERE received_ns < ?1 \
             ORDER BY received_ns DESC, seq DESC LIMIT 1",
        )?
        .query_row([oldest_kept_ns], |row| row.get(0))
        .optional()?;
    if let Some(cutoff) = expired {
        evicted.age += evict_through(conn, cutoff, totals)?;
    }
    if totals.spans > limits.max_spans {
        let excess = totals.spans - limits.max_spans;
        let cutoff: Option<i64> = conn
            .prepare_cached("SELECT seq FROM spans ORDER BY seq LIMIT 1 OFFSET ?1")?
            .query_row([to_i64(excess - 1)], |row| row.get(0))
            .optional()?;
        if let Some(cutoff) = cutoff {
            evicted.spans += evict_through(conn, cutoff, totals)?;
        }
    }
    while totals.bytes > limits.max_bytes && totals.spans > 0 {
        let Some(cutoff) = oldest_covering(conn, totals.bytes - limits.max_bytes)? else {
            break;
        };
        evicted.bytes += evict_through(conn, cutoff, totals)?;
    }
    Ok(evicted)
}

/// The `seq` of the newest span among the fewest oldest spans charged `bytes` in all.
fn oldest_covering(conn: &Connection, bytes: u64) -> Result<Option<i64>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT seq, charged_bytes FROM spans ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let mut covered = 0u64;
    let mut cutoff = None;
    while let Some(row) = rows.next()? {
        cutoff = Some(row.get(0)?);
        covered += to_u64(row.get(1)?);
        if covered >= bytes {
            break;
        }
    }
    Ok(cutoff)
}

/// Deletes every span with `seq <= cutoff`, updates or removes their traces' rows and the
/// resources and scopes no span uses any more; returns the number of spans deleted.
fn evict_through(conn: &Connection, cutoff: i64, totals: &mut Totals) -> Result<u64, StoreError> {
    let affected: Vec<Vec<u8>> = conn
        // NOT INDEXED: a range of the table by `seq`, not a scan of the trace id index.
        .prepare_cached("SELECT DISTINCT trace_id FROM spans NOT INDEXED WHERE seq <= ?1")?
        .query_map([cutoff], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let (count, bytes): (i64, i64) = conn
        .prepare_cached(
            "SELECT count(*), ifnull(sum(charged_bytes), 0) FROM spans WHERE seq <= ?1",
        )?
        .query_row([cutoff], |row| Ok((row.get(0)?, row.get(1)?)))?;
    conn.prepare_cached("DELETE FROM spans WHERE seq <= ?1")?
        .execute([cutoff])?;
    for trace_id in &affected {
        refresh_trace(conn, trace_id)?;
    }
    let mut freed = to_u64(bytes);
    for table in OriginTable::ALL {
        let origin_bytes: i64 = conn
            .prepare_cached(table.unused_bytes_sql())?
            .query_row([cutoff], |row| row.get(0))?;
        conn.prepare_cached(table.delete_unused_sql())?
            .execute([cutoff])?;
        freed += to_u64(origin_bytes);
    }
    totals.spans = totals.spans.saturating_sub(to_u64(count));
    totals.bytes = totals.bytes.saturating_sub(freed);
    Ok(to_u64(count))
}

/// Recomputes a trace's start and end from its remaining spans, or drops it when none is left.
fn refresh_trace(conn: &Connection, trace_id: &[u8]) -> Result<(), StoreError> {
    let (start, end): (Option<i64>, Option<i64>) = conn
        .prepare_cached("SELECT min(start_ns), max(end_ns) FROM spans WHERE trace_id = ?1")?
        .query_row([trace_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    match (start, end) {
        (Some(start), Some(end)) => conn
            .prepare_cached("UPDATE traces SET start_ns = ?2, end_ns = ?3 WHERE trace_id = ?1")?
            .execute(params![trace_id, start, end])?,
        _ => conn
            .prepare_cached("DELETE FROM traces WHERE trace_id = ?1")?
            .execute([trace_id])?,
    };
    Ok(())
}

// === impl Origin ===

impl Origin {
    fn new<T: Message>(value: Option<&T>, schema_url: String) -> Self {
        let encoded = value.map(Message::encode_to_vec);
        let charged_bytes = (encoded.as_ref().map_or(0, Vec::len) + schema_url.len()) as u64;
        Self {
            encoded,
            schema_url,
            charged_bytes,
        }
    }

    /// The id of the equal stored row, inserting (and charging) it when there is none.
    fn find_or_insert(
        &self,
        conn: &Connection,
        table: OriginTable,
        totals: &mut Totals,
    ) -> Result<i64, StoreError> {
        let found: Option<i64> = conn
            .prepare_cached(table.find_sql())?
            .query_row(params![self.encoded, self.schema_url], |row| row.get(0))
            .optional()?;
        if let Some(id) = found {
            return Ok(id);
        }
        conn.prepare_cached(table.insert_sql())?.execute(params![
            self.encoded,
            self.schema_url,
            0,
            to_i64(self.charged_bytes)
        ])?;
        totals.bytes += self.charged_bytes;
        Ok(conn.last_insert_rowid())
    }
}

fn decode_optional<T: Message + Default>(
    encoded: Option<Vec<u8>>,
) -> Result<Option<T>, StoreError> {
    encoded
        .map(|bytes| T::decode(bytes.as_slice()))
        .transpose()
        .map_err(StoreError::from)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
