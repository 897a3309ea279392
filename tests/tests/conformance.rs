//! Differential conformance of the filter's propagation against the OpenTelemetry Python
//! propagators, natively and through real Envoy. See docs/propagation.md for the results and
//! the reason of every disagreement.

use meshtrace_filter::propagation::{self, Format};
use meshtrace_filter::sampling::Sampler;
use meshtrace_tests::conformance::{
    self, Answer, Case, FORMATS, INJECTED, Question, config_for, disagreements, injected_subset,
    ours,
};
use std::collections::BTreeMap;

/// Every expected disagreement: (format, class of value, aspect) and why. The test fails on a
/// disagreement that is not listed, and on a listed one that no longer happens.
#[rustfmt::skip]
const EXPECTED: &[(&str, &str, &str, &str)] = &[
    ("tracecontext", "bad_tracestate", "tracestate",
     "one invalid tracestate member: Python drops the whole tracestate, we drop only that member (W3C allows both)"),
    ("baggage", "encoded", "baggage",
     "a value that decodes to leading/trailing spaces (%20): Python strips them after decoding, we keep the decoded value exactly"),
    ("baggage", "plus", "baggage",
     "Python decodes values with unquote_plus (`+` becomes a space); W3C baggage only percent-decodes, so we keep `+`"),
    ("baggage", "two_lines", "baggage",
     "Python reads only the first baggage header line; W3C allows several, combined as one list (RFC 9110), which we do"),
    ("baggage", "too_long", "baggage",
     "baggage over 8192 bytes: Python drops the whole header, we keep the members that fit, never a partial one (W3C: MAY drop members)"),
    ("b3", "trace_span", "deferred",
     "b3 without a sampling state is deferred (B3 spec); Python records it as sampled, we leave the decision to our sampler"),
    ("b3", "bad_sampling", "accepted_by_reference_only",
     "b3 sampling state other than 0/1/d: Python takes the ids as not sampled, we reject the header (B3 defines only 0, 1, d)"),
    ("b3", "true_sampling", "accepted_by_reference_only",
     "`true`/`True` as b3 single sampling state: Python accepts it, the B3 single format only defines 0/1/d (true is multi-header legacy)"),
    ("b3", "bad_parent", "accepted_by_reference_only",
     "b3 with a malformed parent span id: Python ignores the fourth field, we reject the header"),
    ("b3multi", "ids_only", "deferred",
     "X-B3-Sampled absent means deferred (B3 spec); Python treats it as not sampled"),
    ("b3multi", "bad_sampled", "deferred",
     "X-B3-Sampled neither 0/1 nor true/false: Python treats it as not sampled, we ignore it (deferred) and count it"),
    ("jaeger", "debug_only", "sampled",
     "flags 0x02 (debug without sampled): Python reads only bit 0, we force sampled as the issue and Jaeger require for debug"),
    ("jaeger", "debug_only", "debug",
     "same header: our debug trace is not sampled for Python"),
    ("jaeger", "url_encoded", "accepted_by_us_only",
     "`%3A` separators (Jaeger clients accept URL-encoded uber-trace-id): Python splits on `:` only"),
    ("jaeger", "bad_flags", "accepted_by_reference_only",
     "flags of 3 or more hex digits: Python's int(x, 16) takes any length, Jaeger flags are one byte"),
    ("jaeger", "bad_parent", "accepted_by_reference_only",
     "malformed parent span id: Python never looks at the third field, we reject it"),
    ("jaeger", "hex_prefix", "accepted_by_reference_only",
     "`0x` before an id: accepted by Python's int(x, 16), not hex digits"),
    ("jaeger", "sign", "accepted_by_reference_only",
     "`+` before an id: accepted by Python's int(x, 16), not hex digits"),
    ("jaeger", "underscore", "accepted_by_reference_only",
     "`_` between digits: accepted by Python's int(x, 16) (PEP 515), not hex digits"),
    ("jaeger", "inner_space", "accepted_by_reference_only",
     "whitespace around an id inside the value: accepted by Python's int(x, 16), not hex digits"),
    ("gcp", "without_options", "deferred",
     "no `;o=`: Python reads not sampled, we defer to our sampler (the header then carries no decision)"),
    ("xray", "no_sampled", "deferred",
     "no `Sampled=`: Python reads not sampled, we defer (X-Ray: the decision was not made upstream)"),
    ("xray", "sampled_unknown", "accepted_by_us_only",
     "`Sampled=?` (X-Ray: the caller asks the receiver to decide): Python rejects the whole header, we defer"),
];

#[test]
fn native_extraction_agrees_with_opentelemetry_python() {
    let cases = conformance::corpus().unwrap();
    for format in FORMATS {
        for kind in ["valid", "invalid"] {
            let n = cases
                .iter()
                .filter(|c| c.format == format && c.kind == kind)
                .count();
            assert!(n >= 1_000, "{n} {kind} cases of {format}");
        }
    }
    let questions: Vec<Question> = cases
        .iter()
        .map(|c| Question {
            format: c.format.clone(),
            headers: c.headers.clone(),
        })
        .collect();
    let answers = conformance::ask(&questions).unwrap();

    // Extraction, case by case.
    let mut tally: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    let mut seen: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut extracted_all = Vec::new();
    for (case, answer) in cases.iter().zip(&answers) {
        let extracted = conformance::extract(&case.headers, &config_for(&case.format));
        let ours = ours(&extracted);
        let differ = disagreements(&case.format, &ours, answer);
        let baggage_agreed = !differ.contains(&"baggage");
        let entry = tally
            .entry((case.format.clone(), case.kind.clone()))
            .or_default();
        entry.0 += 1;
        if differ.is_empty() {
            entry.1 += 1;
        }
        for aspect in differ {
            let key = (case.format.clone(), case.class.clone(), aspect.to_owned());
            let listed = EXPECTED.iter().any(|(f, c, a, _)| {
                (*f, *c, *a) == (key.0.as_str(), key.1.as_str(), key.2.as_str())
            });
            // Two examples of each unexplained class are enough to read.
            if !listed && seen.get(&key).copied().unwrap_or_default() < 2 {
                unexpected.push(format!(
                    "{key:?}\n  headers: {:?}\n  ours: {ours:?}\n  python: {answer:?}",
                    case.headers
                ));
            }
            *seen.entry(key).or_default() += 1;
        }
        // What an OpenTelemetry app read from the request in front of us, when we agree on it.
        let reference_baggage = baggage_agreed.then(|| answer.baggage.clone().unwrap_or_default());
        extracted_all.push((extracted, reference_baggage));
    }
    let report = report(&tally, &seen);
    println!("{report}");
    let dir = meshtrace_tests::repo_root().join("target/conformance");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("report.md"), &report).unwrap();
    assert!(
        unexpected.is_empty(),
        "unexplained disagreements:\n{}",
        unexpected.join("\n")
    );
    let stale: Vec<_> = EXPECTED
        .iter()
        .filter(|(f, c, a, _)| !seen.contains_key(&(f.to_string(), c.to_string(), a.to_string())))
        .collect();
    assert!(
        stale.is_empty(),
        "listed disagreements that no longer happen: {stale:?}"
    );

    // Injection: every header set the filter writes (extract, default sampler, inject)
    // extracts, in the reference, to our span and our decision.
    let sampler = Sampler::default();
    let mut checks = Vec::new();
    let mut questions = Vec::new();
    for (case, (extracted, reference_baggage)) in cases.iter().zip(&extracted_all) {
        let handled = conformance::handle(&case.headers, &config_for(&case.format), &sampler);
        let span = handled.span;
        for format in INJECTED {
            let headers = injected_subset(format, &handled.writes);
            if format == Format::Baggage && headers.is_empty() {
                continue;
            }
            questions.push(Question {
                format: format.name().to_owned(),
                headers,
            });
            checks.push((case, extracted, reference_baggage, span.context, format));
        }
    }
    let answers = conformance::ask(&questions).unwrap();
    let mut failures = Vec::new();
    for ((case, extracted, reference_baggage, span, format), answer) in checks.iter().zip(&answers)
    {
        if let Some(problem) = inject_problem(
            case,
            extracted,
            reference_baggage.as_ref(),
            span,
            *format,
            answer,
        ) && failures.len() < 20
        {
            failures.push(format!(
                "{} {} {:?} → {format:?}: {problem}",
                case.format, case.class, case.headers
            ));
        }
    }
    println!(
        "inject checks: {} header sets re-extracted by the reference",
        answers.len()
    );
    assert!(
        failures.is_empty(),
        "injected headers the reference reads differently:\n{}",
        failures.join("\n")
    );
}

/// Why the reference's reading of what we injected in `format` is not our span (and, for
/// baggage, not what it read in front of us), if it is not.
fn inject_problem(
    case: &Case,
    extracted: &propagation::Extracted,
    reference_baggage: Option<&BTreeMap<String, String>>,
    span: &meshtrace_filter::trace::SpanContext,
    format: Format,
    answer: &Answer,
) -> Option<String> {
    if format == Format::Baggage {
        // Transparency: an OpenTelemetry app behind us reads the same baggage as one in front
        // of us would have (checked where our extraction agreed with the reference).
        let got = answer.baggage.clone().unwrap_or_default();
        return reference_baggage
            .filter(|expected| **expected != got)
            .map(|expected| format!("baggage {got:?} != {expected:?} read in front of us"));
    }
    let Some(ctx) = &answer.ctx else {
        return Some("no context".to_owned());
    };
    let expected = (
        span.trace_id.to_hex(),
        span.span_id.to_hex(),
        span.flags.is_sampled(),
    );
    if (ctx.trace_id.clone(), ctx.span_id.clone(), ctx.sampled) != expected {
        return Some(format!("{ctx:?} != {expected:?}"));
    }
    if format == Format::Jaeger && case.format == "jaeger" {
        // uberctx-* written from our baggage (lower-case keys only) reads back as our values.
        let ours: BTreeMap<String, String> = extracted
            .baggage
            .iter()
            .filter(|m| !m.key().bytes().any(|b| b.is_ascii_uppercase()))
            .map(|m| (m.key().to_owned(), m.value()))
            .collect();
        let got = answer.baggage.clone().unwrap_or_default();
        if got != ours {
            return Some(format!("uberctx {got:?} != ours {ours:?}"));
        }
    }
    None
}

fn report(
    tally: &BTreeMap<(String, String), (usize, usize)>,
    seen: &BTreeMap<(String, String, String), usize>,
) -> String {
    let mut out =
        String::from("| format | valid: agree / total | invalid: agree / total |\n|---|---|---|\n");
    for format in FORMATS {
        let cell = |kind: &str| {
            let (total, agree) = tally
                .get(&(format.to_owned(), kind.to_owned()))
                .copied()
                .unwrap_or_default();
            format!("{agree} / {total}")
        };
        out += &format!("| {format} | {} | {} |\n", cell("valid"), cell("invalid"));
    }
    out += "\n| format | class | aspect | cases | reason |\n|---|---|---|---|---|\n";
    for ((format, class, aspect), count) in seen {
        let reason = EXPECTED
            .iter()
            .find(|(f, c, a, _)| (*f, *c, *a) == (format.as_str(), class.as_str(), aspect.as_str()))
            .map_or("UNEXPLAINED", |e| e.3);
        out += &format!("| {format} | {class} | {aspect} | {count} | {reason} |\n");
    }
    out
}

/// Every fifth case of the corpus goes through real Envoy with every format extracted and
/// every writable format injected. What the demo upstream received must be what the filter
/// computes natively for the same headers, every injected format must name the same span for
/// the reference propagators, and the malformed counters must count what native extraction
/// found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_envoy_the_filter_writes_what_it_computes_natively() {
    use meshtrace_filter::config::PropagationConfig;
    use meshtrace_filter::metrics::Metric;
    use meshtrace_tests::stack::{Stack, StackOptions};

    let cases: Vec<Case> = conformance::corpus()
        .unwrap()
        .into_iter()
        .step_by(5)
        .collect();
    let config = PropagationConfig {
        extract: Format::ALL.to_vec(),
        inject: INJECTED.to_vec(),
        ..PropagationConfig::default()
    };
    let plugin_config = serde_json::json!({
        "service_name": "meshtrace-conformance",
        "exporter": {"flush_interval_ms": 100},
        "propagation": {
            "extract": Format::ALL.map(Format::name),
            "inject": INJECTED.map(Format::name),
        }
    })
    .to_string();
    let stack = Stack::start(StackOptions {
        plugin_config,
        ..StackOptions::default()
    })
    .await
    .unwrap();

    let sampler = Sampler::default();
    let mut expected_counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut questions = Vec::new();
    let mut upstream_spans = Vec::new();
    let mut failures = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let handled = conformance::handle(&case.headers, &config, &sampler);
        let native = &handled.extracted;
        for finding in &native.malformed {
            let name = Metric::ContextMalformedBy(finding.part, finding.reason).name();
            *expected_counts.entry(name.into_owned()).or_default() += 1;
        }
        if let (Some(_), Some(format)) = (native.parent, native.format) {
            let name = Metric::ContextExtractedBy(format).name();
            *expected_counts.entry(name.into_owned()).or_default() += 1;
        }
        let headers: Vec<(&str, &[u8])> = case
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        let echo = stack
            .get(&format!("/conformance/{n}"), &headers)
            .await
            .unwrap();
        let upstream = echo.traceparent().unwrap();
        let received: Vec<(String, String)> = echo.body["headers"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(name, value)| match value {
                serde_json::Value::Array(values) => values
                    .iter()
                    .map(|v| (name.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect::<Vec<_>>(),
                v => vec![(name.clone(), v.as_str().unwrap_or_default().to_owned())],
            })
            .collect();
        let mut problems = Vec::new();
        if echo.status != 200 {
            problems.push(format!("status {}", echo.status));
        }
        match native.parent {
            Some(parent) if upstream.trace_id != parent.trace_id.to_hex() => {
                problems.push(format!(
                    "trace {} != parent's {}",
                    upstream.trace_id, parent.trace_id
                ))
            }
            None if case
                .headers
                .iter()
                .any(|(_, v)| v.contains(&upstream.trace_id)) =>
            {
                problems.push("a new trace reused an incoming id".to_owned())
            }
            _ => {}
        }
        if upstream.sampled() != handled.decision.sampled {
            problems.push(format!(
                "sampled {} for {:?}, native decision {:?}",
                upstream.sampled(),
                native.sampling,
                handled.decision
            ));
        }
        let got = |name: &str| echo.header(name).map(str::to_owned);
        if got("baggage") != native.baggage.to_header() {
            problems.push(format!(
                "baggage {:?} != native {:?}",
                got("baggage"),
                native.baggage.to_header()
            ));
        }
        if got("tracestate") != native.tracestate.to_header() {
            problems.push(format!(
                "tracestate {:?} != native {:?}",
                got("tracestate"),
                native.tracestate.to_header()
            ));
        }
        let uberctx: BTreeMap<String, String> = received
            .iter()
            .filter(|(k, _)| k.starts_with("uberctx-"))
            .cloned()
            .collect();
        let native_uberctx: BTreeMap<String, String> = native
            .baggage
            .iter()
            .filter(|m| !m.key().bytes().any(|b| b.is_ascii_uppercase()))
            .map(|m| (format!("uberctx-{}", m.key()), m.raw_value().to_owned()))
            .collect();
        if uberctx != native_uberctx {
            problems.push(format!("uberctx {uberctx:?} != native {native_uberctx:?}"));
        }
        for format in [
            Format::Tracecontext,
            Format::B3,
            Format::B3multi,
            Format::Jaeger,
        ] {
            let subset: Vec<(String, String)> = received
                .iter()
                .filter(|(name, _)| conformance::belongs_to(format, name))
                .cloned()
                .collect();
            questions.push(Question {
                format: format.name().to_owned(),
                headers: subset,
            });
            upstream_spans.push((n, format, upstream.clone()));
        }
        if !problems.is_empty() && failures.len() < 20 {
            failures.push(format!(
                "{} {} {:?}: {}",
                case.format,
                case.class,
                case.headers,
                problems.join("; ")
            ));
        }
    }
    // Every format Envoy sent upstream names the same span, for the reference propagators.
    let answers = conformance::ask(&questions).unwrap();
    for ((n, format, upstream), answer) in upstream_spans.iter().zip(&answers) {
        let expected = (
            upstream.trace_id.clone(),
            upstream.parent_id.clone(),
            upstream.sampled(),
        );
        let got = answer
            .ctx
            .as_ref()
            .map(|c| (c.trace_id.clone(), c.span_id.clone(), c.sampled));
        if got.as_ref() != Some(&expected) && failures.len() < 20 {
            failures.push(format!(
                "case {n}: {format:?} upstream reads {got:?}, traceparent says {expected:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // The malformed and extracted counters count exactly what native extraction found.
    let stats = reqwest::get(format!("http://{}/stats", stack.envoy.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted: BTreeMap<String, u64> = stats
        .lines()
        .filter_map(|line| line.strip_prefix("wasmcustom."))
        .filter(|line| {
            line.starts_with("meshtrace_context_malformed_")
                || line.starts_with("meshtrace_context_extracted_")
        })
        .filter_map(|line| line.split_once(": "))
        .filter(|(name, _)| {
            !matches!(
                *name,
                "meshtrace_context_malformed_total" | "meshtrace_context_extracted_total"
            )
        })
        .map(|(name, value)| (name.to_owned(), value.trim().parse().unwrap_or(u64::MAX)))
        .filter(|(_, value)| *value > 0)
        .collect();
    assert_eq!(counted, expected_counts);
    println!(
        "{} requests through Envoy; {} header sets re-extracted by the reference; counters: {counted:?}",
        cases.len(),
        answers.len()
    );
}
