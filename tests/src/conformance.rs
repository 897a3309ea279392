//! Differential conformance against the OpenTelemetry Python propagators (PyPI, pinned in
//! `tests/requirements.txt`), driven through `tests/conformance/propagators.py`.
//!
//! The script generates the corpus (every format, valid and invalid header sets, each labelled
//! with the class of value it exercises) and answers what the reference propagator of a format
//! extracts from a header set. This module runs the filter's own `propagation::extract` and
//! its whole request pipeline (`request::handle`: extract, sample, inject) on the same header
//! sets and compares, aspect by aspect.

use anyhow::{Context, anyhow, bail};
use meshtrace_filter::config::PropagationConfig;
use meshtrace_filter::ids::RandomIdGenerator;
use meshtrace_filter::propagation::{self, Extracted, Format, HeaderWrite};
use meshtrace_filter::request::{self, Handled};
use meshtrace_filter::sampling::{Sampler, SharedStore, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::repo_root;

/// Seed of the corpus: the same cases on every run.
pub const SEED: u64 = 4;
/// Valid and invalid cases generated per format.
pub const PER_KIND: usize = 1_000;
/// The formats the corpus covers, as the reference names them.
pub const FORMATS: [&str; 7] = [
    "tracecontext",
    "baggage",
    "b3",
    "b3multi",
    "jaeger",
    "gcp",
    "xray",
];
/// Formats we write (and so check by re-extracting in the reference).
pub const INJECTED: [Format; 5] = [
    Format::Tracecontext,
    Format::Baggage,
    Format::B3,
    Format::B3multi,
    Format::Jaeger,
];

/// One generated header set.
#[derive(Clone, Debug, Deserialize)]
pub struct Case {
    /// The format it exercises.
    pub format: String,
    /// `valid` or `invalid`.
    pub kind: String,
    /// What kind of value it is (`upper_hex`, `debug_only`, ...).
    pub class: String,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
}

/// A question to the reference: what does `format`'s propagator extract from `headers`?
#[derive(Clone, Debug, Serialize)]
pub struct Question {
    /// Format name.
    pub format: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
}

/// A span context as the reference extracted it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct RefContext {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// The sampled flag.
    pub sampled: bool,
}

/// The reference's answer.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Answer {
    /// The span context, if valid.
    pub ctx: Option<RefContext>,
    /// Baggage entries, if any.
    pub baggage: Option<BTreeMap<String, String>>,
    /// `tracestate` as the reference would write it.
    pub tracestate: Option<String>,
}

/// What the filter extracted, in the reference's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ours {
    /// Trace id, span id, decision (`None` = deferred) and debug.
    pub ctx: Option<(String, String, Option<bool>, bool)>,
    /// Baggage as key → decoded value followed by the raw properties (the reference keeps
    /// properties inside the value).
    pub baggage: BTreeMap<String, String>,
    /// `tracestate` as we would write it.
    pub tracestate: Option<String>,
}

/// The script, run with the project's virtualenv.
fn script() -> (PathBuf, PathBuf) {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `make pydeps` (the virtualenv with tests/requirements.txt)",
        python.display()
    );
    (python, repo_root().join("tests/conformance/propagators.py"))
}

fn run_script(args: &[&str], stdin: Option<&[u8]>) -> anyhow::Result<Vec<u8>> {
    let (python, script) = script();
    let mut child = Command::new(&python)
        .arg(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", python.display()))?;
    let mut pipe = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
    let input = stdin.unwrap_or_default().to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&input));
    let output = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow!("stdin writer panicked"))??;
    if !output.status.success() {
        bail!(
            "propagators.py {args:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output.stdout)
}

/// The corpus for [`SEED`] and [`PER_KIND`].
pub fn corpus() -> anyhow::Result<Vec<Case>> {
    let seed = SEED.to_string();
    let per_kind = PER_KIND.to_string();
    let out = run_script(&["corpus", "--seed", &seed, "--per-kind", &per_kind], None)?;
    Ok(serde_json::from_slice(&out)?)
}

/// The reference's answers, in order.
pub fn ask(questions: &[Question]) -> anyhow::Result<Vec<Answer>> {
    let input = serde_json::to_vec(questions)?;
    let out = run_script(&["extract"], Some(&input))?;
    let answers: Vec<Answer> = serde_json::from_slice(&out)?;
    if answers.len() != questions.len() {
        bail!(
            "{} answers for {} questions",
            answers.len(),
            questions.len()
        );
    }
    Ok(answers)
}

/// The filter configuration that reads only `format` (W3C baggage for `baggage`; Jaeger reads
/// its `uberctx-*` baggage itself).
pub fn config_for(format: &str) -> PropagationConfig {
    let format = match format {
        "tracecontext" => Format::Tracecontext,
        "baggage" => Format::Baggage,
        "b3" => Format::B3,
        "b3multi" => Format::B3multi,
        "jaeger" => Format::Jaeger,
        "gcp" => Format::Gcp,
        _ => Format::Xray,
    };
    PropagationConfig {
        extract: vec![format],
        inject: INJECTED.to_vec(),
        ..PropagationConfig::default()
    }
}

/// What we extracted, in the reference's terms.
pub fn ours(extracted: &Extracted) -> Ours {
    Ours {
        ctx: extracted.parent.map(|p| {
            (
                p.trace_id.to_hex(),
                p.span_id.to_hex(),
                extracted.sampling.decision(),
                extracted.sampling.is_debug(),
            )
        }),
        baggage: extracted
            .baggage
            .iter()
            .map(|m| {
                (
                    m.key().to_owned(),
                    format!("{}{}", m.value(), m.properties()),
                )
            })
            .collect(),
        tracestate: extracted.tracestate.to_header(),
    }
}

/// The aspects on which we and the reference disagree for one header set of `format`.
pub fn disagreements(format: &str, ours: &Ours, reference: &Answer) -> Vec<&'static str> {
    let mut out = Vec::new();
    match (&ours.ctx, &reference.ctx) {
        (None, None) => {}
        (Some((trace, span, decision, debug)), Some(r)) => {
            if (trace, span) != (&r.trace_id, &r.span_id) {
                out.push("ids");
            }
            match decision {
                None => out.push("deferred"),
                Some(sampled) if *sampled != r.sampled => out.push("sampled"),
                Some(_) => {}
            }
            if *debug && !r.sampled {
                out.push("debug");
            }
        }
        (Some(_), None) => out.push("accepted_by_us_only"),
        (None, Some(_)) => out.push("accepted_by_reference_only"),
    }
    if matches!(format, "baggage" | "jaeger")
        && ours.baggage != reference.baggage.clone().unwrap_or_default()
    {
        out.push("baggage");
    }
    if format == "tracecontext"
        && ours.ctx.is_some()
        && reference.ctx.is_some()
        && ours.tracestate.clone().unwrap_or_default()
            != reference.tracestate.clone().unwrap_or_default()
    {
        out.push("tracestate");
    }
    out
}

/// The injected headers of one format, as a reader of only that format would see them.
pub fn injected_subset(format: Format, writes: &[HeaderWrite]) -> Vec<(String, String)> {
    writes
        .iter()
        .filter_map(|w| match w {
            HeaderWrite::Set(name, value) => Some((name.to_string(), value.clone())),
            HeaderWrite::Remove(_) => None,
        })
        .filter(|(name, _)| belongs_to(format, name))
        .collect()
}

/// Whether header `name` is one of `format`'s.
pub fn belongs_to(format: Format, name: &str) -> bool {
    match format {
        Format::Tracecontext => name == "traceparent" || name == "tracestate",
        Format::Baggage => name == "baggage",
        Format::B3 => name == "b3",
        Format::B3multi => name.starts_with("x-b3-"),
        Format::Jaeger => name == "uber-trace-id" || name.starts_with("uberctx-"),
        Format::Xray | Format::Gcp => false,
    }
}

/// `propagation::extract` over string headers.
pub fn extract(headers: &[(String, String)], config: &PropagationConfig) -> Extracted {
    propagation::extract(headers, config)
}

/// What the filter does for a request with these headers, as Envoy runs it: extract, sample
/// with `sampler`, inject.
pub fn handle(
    headers: &[(String, String)],
    config: &PropagationConfig,
    sampler: &Sampler,
) -> Handled {
    request::handle(
        headers,
        config,
        sampler,
        &NoSharedData,
        &mut RandomIdGenerator,
        0,
    )
}

/// Shared data for [`handle`]: the conformance tests sample with the default sampler, which
/// has no rate limits and so never reads it. Were it to, every read would fail and the
/// decisions (`rate_limit_unavailable`, not sampled) would disagree with Envoy's, loudly.
struct NoSharedData;

impl SharedStore for NoSharedData {
    fn get(&self, _key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        Err(StoreError::Unavailable)
    }

    fn set(&self, _key: &str, _value: &[u8], _cas: Option<u32>) -> Result<(), StoreError> {
        Err(StoreError::Unavailable)
    }
}
