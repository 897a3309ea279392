//! Differential test of the trace-id ratio sampler against the OpenTelemetry SDKs.
//!
//! 1,000,000 pseudo-random trace ids (SplitMix64, fixed seed) plus crafted ids around each
//! SDK's decision boundary, at ratios 0, 0.0001, 0.01, 0.1, 0.5, 0.999 and 1, decided by
//! - ours: `meshtrace_filter::sampling::ratio::TraceIdRatio`;
//! - the Rust SDK: `opentelemetry_sdk::trace::Sampler::TraceIdRatioBased` (dev-dependency);
//! - the Python SDK: `opentelemetry.sdk.trace.sampling.TraceIdRatioBased` (opentelemetry-sdk
//!   from `tests/requirements.txt`, installed into `.venv` by `make pydeps`), run once as a
//!   subprocess over all ids while the Rust side computes.
//!
//! Ours must equal the Rust SDK on every id. Every disagreement with Python must be explained
//! by the one known difference (Python's `round(ratio·2⁶⁴)` bound against Go/Rust's
//! `2·trunc(ratio·2⁶³)`), and the table printed with `--nocapture` is the one in
//! `docs/sampling.md`.
//!
//! Run with: `cargo test -p meshtrace-filter --test ratio_differential -- --nocapture`
// Native only: it runs the Python SDK as a subprocess and reads files.
#![cfg(not(target_arch = "wasm32"))]

use meshtrace_filter::sampling::ratio::TraceIdRatio;
use meshtrace_filter::trace::TraceId;
use opentelemetry::trace::{SpanKind, TraceId as OtelTraceId};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample};
use std::path::PathBuf;
use std::process::Command;

const RANDOM_IDS: usize = 1_000_000;
const RATIOS: [f64; 7] = [0.0, 0.0001, 0.01, 0.1, 0.5, 0.999, 1.0];
const SEED: u64 = 0x6d65_7368_7472_6163; // "meshtrac"

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn id(high: u64, low: u64) -> [u8; 16] {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    bytes
}

/// Go/Rust bound on `low64 >> 1`, doubled into a bound on `low64` (`None`: ratio >= 1).
fn rust_bound(ratio: f64) -> Option<u128> {
    (ratio < 1.0).then(|| 2 * u128::from((ratio.max(0.0) * (1u64 << 63) as f64) as u64))
}

/// Python bound on `low64`: `round(ratio · 2⁶⁴)` (ties to even, like Python's `round`).
fn python_bound(ratio: f64) -> u128 {
    (ratio * 2f64.powi(64)).round_ties_even() as u128
}

/// Ids whose low 64 bits sit at and around both SDKs' boundaries, for every ratio.
fn crafted_ids(seed: &mut u64) -> Vec<[u8; 16]> {
    let mut lows: Vec<u128> = vec![0, 1, (1 << 63) - 1, 1 << 63, u128::from(u64::MAX)];
    for ratio in RATIOS {
        for bound in [rust_bound(ratio), Some(python_bound(ratio))]
            .into_iter()
            .flatten()
        {
            lows.extend(
                (bound.saturating_sub(3)..bound + 3).filter(|&l| l <= u128::from(u64::MAX)),
            );
        }
    }
    lows.sort();
    lows.dedup();
    lows.into_iter()
        .map(|low| id(splitmix(seed) | 1, low as u64))
        .collect()
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn python() -> PathBuf {
    let path = std::env::var_os("MESHTRACE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(
        path.is_file(),
        "{} is missing: run `make pydeps` (the OpenTelemetry Python SDK into .venv)",
        path.display()
    );
    path
}

/// One decision per id, 1 = sampled, by ours and by the Rust SDK.
fn decide_all(ids: &[[u8; 16]], ratio: f64) -> (Vec<u8>, Vec<u8>) {
    let ours = TraceIdRatio::new(ratio);
    let sdk = Sampler::TraceIdRatioBased(ratio);
    ids.iter()
        .map(|bytes| {
            let trace_id = TraceId::from_bytes(*bytes).expect("non-zero ids");
            let theirs = sdk.should_sample(
                None,
                OtelTraceId::from_bytes(*bytes),
                "span",
                &SpanKind::Server,
                &[],
                &[],
            );
            (
                u8::from(ours.should_sample(trace_id)),
                u8::from(theirs.decision == SamplingDecision::RecordAndSample),
            )
        })
        .unzip()
}

struct Counts {
    rust: usize,
    python: usize,
    python_explained: usize,
}

/// Disagreements of ours with each SDK, and how many of Python's fall in the rounding band.
fn compare(ids: &[[u8; 16]], ratio: f64, ours: &[u8], rust: &[u8], python: &[u8]) -> Counts {
    let (low_bound, high_bound) = {
        let r = rust_bound(ratio).unwrap_or(1 << 64);
        let p = python_bound(ratio);
        (r.min(p), r.max(p))
    };
    let mut counts = Counts {
        rust: 0,
        python: 0,
        python_explained: 0,
    };
    for (i, bytes) in ids.iter().enumerate() {
        counts.rust += usize::from(ours[i] != rust[i]);
        if ours[i] != python[i] {
            counts.python += 1;
            let low = u128::from(u64::from_be_bytes(bytes[8..].try_into().unwrap()));
            counts.python_explained += usize::from((low_bound..high_bound).contains(&low));
        }
    }
    counts
}

#[test]
fn trace_id_ratio_matches_the_rust_sdk_exactly_and_python_up_to_rounding() {
    let mut seed = SEED;
    let mut ids: Vec<[u8; 16]> = (0..RANDOM_IDS)
        .map(|_| id(splitmix(&mut seed), splitmix(&mut seed)))
        .filter(|bytes| bytes != &[0; 16])
        .collect();
    assert_eq!(ids.len(), RANDOM_IDS);
    let crafted = crafted_ids(&mut seed);
    ids.extend_from_slice(&crafted);

    let dir = tempfile_dir();
    let ids_file = dir.join("ids.bin");
    let out_file = dir.join("python.bin");
    std::fs::write(&ids_file, ids.concat()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python_sdk_ratio.py");
    let mut child = Command::new(python())
        .arg(&script)
        .arg(&ids_file)
        .arg(&out_file)
        .args(RATIOS.map(|r| format!("{r:?}")))
        .spawn()
        .expect("python starts");

    // While Python runs (a few seconds per ratio), decide everything on the Rust side.
    let rust_side: Vec<(Vec<u8>, Vec<u8>)> = RATIOS.iter().map(|&r| decide_all(&ids, r)).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "python SDK script failed: {status}");
    let python = std::fs::read(&out_file).unwrap();
    assert_eq!(
        python.len(),
        ids.len() * RATIOS.len(),
        "one answer per id and ratio"
    );
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "| ratio | random ids differing from Rust SDK | … from Python SDK | crafted ids | crafted differing from Rust SDK | … from Python SDK |"
    );
    println!("|---|---|---|---|---|---|");
    let (random, crafted_ids) = ids.split_at(RANDOM_IDS);
    for (i, (ratio, (ours, rust))) in RATIOS.into_iter().zip(&rust_side).enumerate() {
        let py = &python[i * ids.len()..(i + 1) * ids.len()];
        let n = RANDOM_IDS;
        let r = compare(random, ratio, &ours[..n], &rust[..n], &py[..n]);
        let c = compare(crafted_ids, ratio, &ours[n..], &rust[n..], &py[n..]);
        println!(
            "| {ratio} | {} | {} | {} | {} | {} |",
            r.rust,
            r.python,
            crafted_ids.len(),
            c.rust,
            c.python
        );
        assert_eq!(
            r.rust + c.rust,
            0,
            "ratio {ratio}: ours must equal the Rust SDK"
        );
        assert_eq!(
            r.python, r.python_explained,
            "ratio {ratio}: a random-id disagreement with Python outside the rounding band"
        );
        assert_eq!(
            c.python, c.python_explained,
            "ratio {ratio}: a crafted-id disagreement with Python outside the rounding band"
        );
        // The band is empty unless ratio·2⁶³ has a fraction (ratios below 2⁻¹¹ here).
        let band = python_bound(ratio).abs_diff(rust_bound(ratio).unwrap_or(1 << 64));
        if band == 0 {
            assert_eq!(r.python + c.python, 0, "ratio {ratio}");
        } else {
            assert!(
                c.python >= 1,
                "ratio {ratio}: the crafted ids must hit the band"
            );
        }
    }
}

/// A fresh directory under the system temp dir (no extra dev-dependency for this one test).
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "meshtrace-ratio-differential-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
