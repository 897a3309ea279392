//! The filter's span accounting, read from Envoy's admin `/stats` in one request: every term of
//! the equation in `docs/export.md`,
//!
//! ```text
//! started = active + not_sampled + exported + Σ dropped_<reason> + buffered + in_flight
//! ```

use crate::envoy::Envoy;
use std::collections::BTreeMap;

const PREFIX: &str = "wasmcustom.meshtrace_";

/// One reading of the accounting metrics (summed over the VMs by Envoy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    /// `meshtrace_spans_started_total`.
    pub started: u64,
    /// `meshtrace_spans_active`.
    pub active: u64,
    /// `meshtrace_spans_not_sampled_total`.
    pub not_sampled: u64,
    /// `meshtrace_spans_exported_total`.
    pub exported: u64,
    /// `meshtrace_spans_dropped_<reason>_total`, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// `meshtrace_export_buffered_spans`.
    pub buffered: u64,
    /// `meshtrace_export_buffered_bytes`.
    pub buffered_bytes: u64,
    /// `meshtrace_export_in_flight_spans`.
    pub in_flight: u64,
    /// `meshtrace_export_calls_ok_total`.
    pub calls_ok: u64,
    /// `meshtrace_export_calls_failed_total`.
    pub calls_failed: u64,
    /// `meshtrace_export_calls_failed_<cause>_total`, by cause.
    pub calls_failed_by: BTreeMap<String, u64>,
    /// `meshtrace_export_batches_retried_total`.
    pub batches_retried: u64,
}

impl Accounting {
    /// Reads the terms from `envoy`'s `/stats`; a metric Envoy does not list fails.
    pub async fn read(envoy: &Envoy) -> anyhow::Result<Self> {
        let stats = envoy.stats().await?;
        let get = |name: &str| {
            stats
                .get(&format!("{PREFIX}{name}"))
                .copied()
                .ok_or_else(|| anyhow::anyhow!("{PREFIX}{name} is not in /stats"))
        };
        let family = |prefix: &str| {
            let full = format!("{PREFIX}{prefix}");
            stats
                .iter()
                .filter_map(|(name, value)| {
                    let reason = name.strip_prefix(&full)?.strip_suffix("_total")?;
                    Some((reason.to_owned(), *value))
                })
                .collect::<BTreeMap<_, _>>()
        };
        Ok(Self {
            started: get("spans_started_total")?,
            active: get("spans_active")?,
            not_sampled: get("spans_not_sampled_total")?,
            exported: get("spans_exported_total")?,
            dropped: family("spans_dropped_"),
            buffered: get("export_buffered_spans")?,
            buffered_bytes: get("export_buffered_bytes")?,
            in_flight: get("export_in_flight_spans")?,
            calls_ok: get("export_calls_ok_total")?,
            calls_failed: get("export_calls_failed_total")?,
            calls_failed_by: family("export_calls_failed_"),
            batches_retried: get("export_batches_retried_total")?,
        })
    }

    /// Spans dropped for `reason` (`buffer_full`, `retry_exhausted`, ...).
    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped.get(reason).copied().unwrap_or(0)
    }

    /// Spans dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// The right-hand side of the equation: every place a started span can be.
    pub fn accounted(&self) -> u64 {
        self.active
            + self.not_sampled
            + self.exported
            + self.dropped_total()
            + self.buffered
            + self.in_flight
    }

    /// Whether the equation holds.
    pub fn balanced(&self) -> bool {
        self.started == self.accounted()
    }

    /// Whether every span has settled: none open, buffered or in flight.
    pub fn settled(&self) -> bool {
        self.active == 0 && self.buffered == 0 && self.in_flight == 0
    }
}

/// Polls Envoy until the accounting has settled (every span exported or dropped) and returns
/// it, or the last reading after `limit`.
pub async fn settled(envoy: &Envoy, limit: std::time::Duration) -> anyhow::Result<Accounting> {
    let found = crate::eventually(limit, || async {
        let reading = Accounting::read(envoy).await.ok()?;
        reading.settled().then_some(reading)
    })
    .await;
    match found {
        Some(reading) => Ok(reading),
        None => Accounting::read(envoy).await,
    }
}
