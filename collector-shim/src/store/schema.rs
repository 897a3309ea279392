//! The database layout, versioned with SQLite's `user_version`.
//!
//! ```text
//!  spans ─ one row per span, seq = arrival order ─┬─ resource_id ─► resources (deduplicated)
//!   indexed: trace_id, (service, name), received  └─ scope_id ────► scopes    (deduplicated)
//!  traces ─ one row per trace: earliest start, latest end (sort key of the trace list)
//! ```
//!
//! Eviction is always "every span with `seq <= cutoff`", so a resource or scope whose newest
//! span (`last_seq`) is at or below the cutoff has no span left and goes too.

/// The layout version this build writes and reads.
pub const VERSION: i64 = 1;

/// Creates every table and index of [`VERSION`] (on an empty database).
pub const CREATE: &str = "
CREATE TABLE resources (
    id          INTEGER PRIMARY KEY,
    encoded     BLOB,                -- protobuf Resource; NULL when the request had none
    schema_url  TEXT NOT NULL,
    last_seq    INTEGER NOT NULL,    -- newest span using it
    charged_bytes INTEGER NOT NULL   -- encoded length + schema URL length
);
CREATE INDEX resources_value ON resources (encoded, schema_url);
CREATE INDEX resources_last_seq ON resources (last_seq);

CREATE TABLE scopes (
    id          INTEGER PRIMARY KEY,
    encoded     BLOB,                -- protobuf InstrumentationScope; NULL when absent
    schema_url  TEXT NOT NULL,
    last_seq    INTEGER NOT NULL,
    charged_bytes INTEGER NOT NULL
);
CREATE INDEX scopes_value ON scopes (encoded, schema_url);
CREATE INDEX scopes_last_seq ON scopes (last_seq);

CREATE TABLE spans (
    seq             INTEGER PRIMARY KEY,  -- arrival order, oldest evicted first
    received_ns     INTEGER NOT NULL,     -- shim clock, never decreasing: the age bound
    trace_id        BLOB NOT NULL,
    span_id         BLOB NOT NULL,
    parent_span_id  BLOB,                 -- NULL for a root span
    service         TEXT NOT NULL,
    name            TEXT NOT NULL,
    kind            INTEGER NOT NULL,
    status_code     INTEGER NOT NULL,
    start_ns        INTEGER NOT NULL,
    end_ns          INTEGER NOT NULL,
    resource_id     INTEGER NOT NULL REFERENCES resources (id),
    scope_id        INTEGER NOT NULL REFERENCES scopes (id),
    span            BLOB NOT NULL,        -- protobuf Span, as received
    charged_bytes   INTEGER NOT NULL
);
CREATE INDEX spans_trace ON spans (trace_id, start_ns);
CREATE INDEX spans_service_name ON spans (service, name);
CREATE INDEX spans_received ON spans (received_ns);

CREATE TABLE traces (
    trace_id  BLOB PRIMARY KEY,
    start_ns  INTEGER NOT NULL,
    end_ns    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX traces_start ON traces (start_ns, trace_id);
";

/// The two deduplicated tables a span refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OriginTable {
    /// `resources`
    Resources,
    /// `scopes`
    Scopes,
}

impl OriginTable {
    /// Both tables.
    pub const ALL: [Self; 2] = [Self::Resources, Self::Scopes];

    /// Finds an equal row: `(encoded, schema_url)`.
    pub fn find_sql(self) -> &'static str {
        match self {
            Self::Resources => "SELECT id FROM resources WHERE encoded IS ?1 AND schema_url = ?2",
            Self::Scopes => "SELECT id FROM scopes WHERE encoded IS ?1 AND schema_url = ?2",
        }
    }

    /// Inserts a row: `(encoded, schema_url, last_seq, charged_bytes)`.
    pub fn insert_sql(self) -> &'static str {
        match self {
            Self::Resources => {
                "INSERT INTO resources (encoded, schema_url, last_seq, charged_bytes) \
                 VALUES (?1, ?2, ?3, ?4)"
            }
            Self::Scopes => {
                "INSERT INTO scopes (encoded, schema_url, last_seq, charged_bytes) \
                 VALUES (?1, ?2, ?3, ?4)"
            }
        }
    }

    /// Raises a row's `last_seq`: `(seq, id)`.
    pub fn touch_sql(self) -> &'static str {
        match self {
            Self::Resources => "UPDATE resources SET last_seq = max(last_seq, ?1) WHERE id = ?2",
            Self::Scopes => "UPDATE scopes SET last_seq = max(last_seq, ?1) WHERE id = ?2",
        }
    }

    /// Bytes charged to rows with `last_seq <= ?1`.
    pub fn unused_bytes_sql(self) -> &'static str {
        match self {
            Self::Resources => {
                "SELECT ifnull(sum(charged_bytes), 0) FROM resources WHERE last_seq <= ?1"
            }
            Self::Scopes => "SELECT ifnull(sum(charged_bytes), 0) FROM scopes WHERE last_seq <= ?1",
        }
    }

    /// Deletes rows with `last_seq <= ?1`.
    pub fn delete_unused_sql(self) -> &'static str {
        match self {
            Self::Resources => "DELETE FROM resources WHERE last_seq <= ?1",
            Self::Scopes => "DELETE FROM scopes WHERE last_seq <= ?1",
        }
    }

    /// Bytes charged to every row.
    pub fn total_bytes_sql(self) -> &'static str {
        match self {
            Self::Resources => "SELECT ifnull(sum(charged_bytes), 0) FROM resources",
            Self::Scopes => "SELECT ifnull(sum(charged_bytes), 0) FROM scopes",
        }
    }
}
