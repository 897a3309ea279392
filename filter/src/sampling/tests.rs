//! Whole decisions: the pipeline order, reasons, rate limits under a controlled clock, `th`
//! handling end to end, metric names, and the statistical test of both ratio algorithms.

use super::rate_limit::tests::MemoryStore;
use super::rules::tests::Request;
use super::*;
use crate::config::FilterConfig;
use crate::propagation::tracestate::parse_tracestate;
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const SECOND: u64 = 1_000_000_000;
const SECRET: &str = "0123456789abcdef0123";

fn sampler(json: &str) -> Sampler {
    let config = FilterConfig::parse(Some(format!(r#"{{"sampling":{json}}}"#).as_bytes()));
    config.unwrap().sampling.build().unwrap()
}

fn trace_id(low: u64) -> TraceId {
    let mut bytes = [0x42; 16];
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    TraceId::from_bytes(bytes).unwrap()
}

/// A request on `path` with extra headers.
fn request(path: &str, extra: &[(&str, &str)]) -> Request {
    let mut pairs = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", "a.example"),
    ];
    pairs.extend_from_slice(extra);
    Request::new(&pairs)
}

struct Case<'a> {
    headers: &'a Request,
    remote_trace_id: bool,
    parent: Option<ParentSampling>,
    tracestate: Option<&'a str>,
    low: u64,
}

impl<'a> Case<'a> {
    fn root(headers: &'a Request) -> Self {
        Self {
            headers,
            remote_trace_id: false,
            parent: None,
            tracestate: None,
            low: u64::MAX,
        }
    }

    /// A remote parent context with this decision.
    fn parent(self, sampled: bool, debug: bool) -> Self {
        self.caller(Some(sampled), debug, true)
    }

    /// What the caller said: `sampled` (`None`: deferred), `debug`, and whether its trace id
    /// came along (`false`: a sampling-only header such as `b3: 0`).
    fn caller(mut self, sampled: Option<bool>, debug: bool, remote_trace_id: bool) -> Self {
        self.parent = Some(ParentSampling { sampled, debug });
        self.remote_trace_id = remote_trace_id;
        self
    }

    fn decide(&self, sampler: &Sampler, now: u64, store: &MemoryStore) -> Decision {
        let (tracestate, _) = parse_tracestate(self.tracestate.map(str::as_bytes));
        let input = SamplingInput {
            trace_id: trace_id(self.low),
            remote_trace_id: self.remote_trace_id,
            parent: self.parent,
            tracestate: &tracestate,
            headers: self.headers,
        };
        sampler.decide(&input, now, store)
    }
}

#[test]
fn default_sampler_is_parent_based_and_drops_probes() {
    let s = Sampler::default();
    let store = MemoryStore::default();
    let plain = request("/", &[]);
    let d = Case::root(&plain).decide(&s, 0, &store);
    assert_eq!(
        (d.sampled, d.reason, d.ot_member.as_deref()),
        (true, Reason::Root, Some("th:0"))
    );
    let d = Case::root(&plain).parent(true, false).decide(&s, 0, &store);
    assert_eq!(
        (d.sampled, d.reason, d.ot_changed),
        (true, Reason::ParentSampled, false)
    );
    let d = Case::root(&plain)
        .parent(false, false)
        .decide(&s, 0, &store);
    assert_eq!((d.sampled, d.reason), (false, Reason::ParentNotSampled));
    for probe in [
        request("/healthz", &[]),
        request("/readyz?verbose", &[]),
        request("/livez/ping", &[]),
        request("/", &[("user-agent", "kube-probe/1.30")]),
    ] {
        // Even a sampled parent does not get probes traced.
        let d = Case::root(&probe).parent(true, false).decide(&s, 0, &store);
        assert_eq!(
            (d.sampled, d.reason),
            (false, Reason::HealthProbe),
            "{:?}",
            probe.0
        );
    }
    let d = Case::root(&request("/healthzz", &[])).decide(&s, 0, &store);
    assert_eq!(d.reason, Reason::Root);
}

#[test]
fn default_rules_can_be_turned_off() {
    let s = sampler(r#"{"default_rules": false}"#);
    let d = Case::root(&request("/healthz", &[])).decide(&s, 0, &MemoryStore::default());
    assert_eq!((d.sampled, d.reason), (true, Reason::Root));
}

#[test]
fn forced_beats_everything_and_is_not_rate_limited() {
    let s = sampler(
        r#"{"root": "always_off", "rate_limit": {"traces_per_second": 1, "burst": 1},
            "forced": {"header": "x-force", "value": "yes"},
            "rules": [{"sample": "always_off", "scope": "all"}]}"#,
    );
    let store = MemoryStore::default();
    let forced = request("/healthz", &[("x-force", "yes")]);
    for _ in 0..5 {
        let d = Case::root(&forced)
            .parent(false, false)
            .decide(&s, 0, &store);
        assert_eq!((d.sampled, d.reason), (true, Reason::Forced));
        assert_eq!(d.ot_member.as_deref(), Some("th:0"));
        assert!(!d.forced_rejected);
    }
    let wrong = request("/", &[("x-force", "no")]);
    let d = Case::root(&wrong).decide(&s, 0, &store);
    assert_eq!(
        (d.sampled, d.reason, d.rule),
        (false, Reason::Rule, Some(0))
    );
    assert!(d.forced_rejected);
}

#[test]
fn hmac_forced_traces_need_the_incoming_trace_id() {
    let s = sampler(&format!(
        r#"{{"root": "always_off", "forced": {{"hmac": {{"secret": "{SECRET}"}}}}}}"#
    ));
    let store = MemoryStore::default();
    let tag = forced::sign(SECRET.as_bytes(), trace_id(7));
    let headers = request("/", &[("x-meshtrace-force", &tag)]);
    let mut case = Case::root(&headers).parent(false, false);
    case.low = 7;
    let d = case.decide(&s, 0, &store);
    assert_eq!((d.sampled, d.reason), (true, Reason::Forced));
    case.low = 8;
    let d = case.decide(&s, 0, &store);
    assert_eq!(
        (d.sampled, d.forced_rejected),
        (false, true),
        "tag of another trace"
    );
    let mut root = Case::root(&headers);
    root.low = 7;
    let d = root.decide(&s, 0, &store);
    assert_eq!(
        (d.sampled, d.forced_rejected),
        (false, true),
        "no incoming trace id"
    );
    // A sampling-only header (`b3: 0`) carries a decision but no trace id: ours is new.
    let mut sampling_only = Case::root(&headers).caller(Some(false), false, false);
    sampling_only.low = 7;
    let d = sampling_only.decide(&s, 0, &store);
    assert_eq!(
        (d.sampled, d.forced_rejected),
        (false, true),
        "no incoming trace id behind a sampling-only header"
    );
}

#[test]
fn debug_flags_force_sampling_unless_disabled() {
    let plain = request("/", &[]);
    let store = MemoryStore::default();
    let on = sampler(r#"{"remote_parent_not_sampled": "always_off"}"#);
    let d = Case::root(&plain)
        .parent(false, true)
        .decide(&on, 0, &store);
    assert_eq!((d.sampled, d.reason), (true, Reason::Debug));
    let off = sampler(r#"{"honor_debug_flag": false}"#);
    let d = Case::root(&plain)
        .parent(false, true)
        .decide(&off, 0, &store);
    assert_eq!((d.sampled, d.reason), (false, Reason::ParentNotSampled));
}

#[test]
fn a_deferred_parent_is_decided_like_a_new_trace() {
    let s = sampler(
        r#"{"root": {"ratio": 0.5}, "remote_parent_sampled": "always_off",
            "remote_parent_not_sampled": "always_off",
            "rules": [{"name": "api", "match": {"path": {"prefix": "/api/"}}, "sample": "always_on"}]}"#,
    );
    let store = MemoryStore::default();
    let plain = request("/", &[]);
    // The SDK's TraceIdRatioBased at 0.5 samples a low half of 0 and drops u64::MAX.
    let mut deferred = Case::root(&plain).caller(None, false, true);
    deferred.low = 0;
    let d = deferred.decide(&s, 0, &store);
    assert_eq!((d.sampled, d.reason), (true, Reason::ParentDeferred));
    deferred.low = u64::MAX;
    let d = deferred.decide(&s, 0, &store);
    assert_eq!((d.sampled, d.reason), (false, Reason::ParentDeferred));
    // Root-scoped rules apply to it, as to a new trace, but not to a decided parent.
    let api = request("/api/x", &[]);
    let d = Case::root(&api)
        .caller(None, false, true)
        .decide(&s, 0, &store);
    assert_eq!((d.sampled, d.reason, d.rule), (true, Reason::Rule, Some(0)));
    let d = Case::root(&api).parent(false, false).decide(&s, 0, &store);
    assert_eq!((d.sampled, d.reason), (false, Reason::ParentNotSampled));
}

#[test]
fn sampling_only_headers_decide_through_the_parent_slots() {
    let s = sampler(r#"{"root": "always_off", "remote_parent_sampled": "always_on"}"#);
    let store = MemoryStore::default();
    let plain = request("/", &[]);
    // `b3: 1`, `b3: 0`, `b3: d`: a decision without a parent span; the trace id is ours.
    let d = Case::root(&plain)
        .caller(Some(true), false, false)
        .decide(&s, 0, &store);
    assert_eq!((d.sampled, d.reason), (true, Reason::ParentSampled));
    let d = Case::root(&plain)
        .caller(Some(false), false, false)
        .decide(&s, 0, &store);
    assert_eq!((d.sampled, d.reason), (false, Reason::ParentNotSampled));
    let d = Case::root(&plain)
        .caller(Some(true), true, false)
        .decide(&s, 0, &store);
    assert_eq!((d.sampled, d.reason), (true, Reason::Debug));
    // With no trace id of the caller's, a tracestate is not read.
    let mut no_ids = Case::root(&plain).caller(Some(true), false, false);
    no_ids.tracestate = Some("ot=th:c");
    assert_eq!(no_ids.decide(&s, 0, &store).ot_member, None);
}

#[test]
fn rules_decide_before_parent_based_and_respect_scope() {
    let s = sampler(
        r#"{"root": "always_off", "rules": [
            {"name": "api", "match": {"path": {"prefix": "/api/"}}, "sample": "always_on"},
            {"name": "drop-static", "scope": "all", "match": {"path": {"glob": "/static/*"}}, "sample": "always_off"}
        ]}"#,
    );
    let store = MemoryStore::default();
    let api = request("/api/x", &[]);
    let d = Case::root(&api).decide(&s, 0, &store);
    assert_eq!((d.sampled, d.reason, d.rule), (true, Reason::Rule, Some(0)));
    assert_eq!(s.rule_name(0), Some("api"));
    // Root-scoped: a sampled parent is followed instead.
    let d = Case::root(&api).parent(false, false).decide(&s, 0, &store);
    assert_eq!(
        (d.sampled, d.reason, d.rule),
        (false, Reason::ParentNotSampled, None)
    );
    // All-scoped: overrides a sampled parent.
    let d = Case::root(&request("/static/app.js", &[]))
        .parent(true, false)
        .decide(&s, 0, &store);
    assert_eq!(
        (d.sampled, d.reason, d.rule),
        (false, Reason::Rule, Some(1))
    );
    let d = Case::root(&request("/other", &[])).decide(&s, 0, &store);
    assert_eq!((d.sampled, d.reason, d.rule), (false, Reason::Root, None));
}

#[test]
fn rule_rate_limit_with_a_controlled_clock() {
    let s = sampler(
        r#"{"rules": [{"match": {"path": {"exact": "/buy"}}, "sample": "always_on",
                       "rate_limit": {"traces_per_second": 2, "burst": 2}}]}"#,
    );
    let store = MemoryStore::default();
    let buy = request("/buy", &[]);
    let reasons: Vec<Reason> = (0..4)
        .map(|_| Case::root(&buy).decide(&s, 10 * SECOND, &store).reason)
        .collect();
    use Reason::{Rule, RuleRateLimited};
    assert_eq!(reasons, [Rule, Rule, RuleRateLimited, RuleRateLimited]);
    let d = Case::root(&buy).decide(&s, 10 * SECOND + SECOND / 2, &store);
    assert_eq!(
        (d.sampled, d.reason),
        (true, Rule),
        "one token per half second"
    );
    // Admitted spans lost their known probability: no `th`.
    assert_eq!(d.ot_member, None);
    let d = Case::root(&buy).decide(&s, 10 * SECOND + SECOND / 2, &store);
    assert_eq!(
        (d.sampled, d.reason, d.rule),
        (false, RuleRateLimited, Some(0))
    );
    // Other paths are not limited.
    let d = Case::root(&request("/", &[])).decide(&s, 10 * SECOND, &store);
    assert_eq!((d.sampled, d.reason), (true, Reason::Root));
}

#[test]
fn global_cap_is_shared_by_every_vm() {
    let config = r#"{"rate_limit": {"traces_per_second": 10, "burst": 5}}"#;
    // Two worker VMs: two samplers built from the same configuration, one shared store.
    let (vm1, vm2) = (sampler(config), sampler(config));
    let store = MemoryStore::default();
    let plain = request("/", &[]);
    let mut sampled = 0;
    // 100 requests per VM per second for 3 s, alternating VMs, on a 5 ms clock.
    for tick in 0..600u64 {
        let vm = if tick % 2 == 0 { &vm1 } else { &vm2 };
        let d = Case::root(&plain).decide(vm, tick * 5_000_000, &store);
        if d.sampled {
            sampled += 1;
        } else {
            assert_eq!(d.reason, Reason::GlobalRateLimited);
        }
    }
    assert!(sampled <= 5 + 10 * 3, "{sampled}");
    assert!(sampled >= 10 * 3 - 1, "{sampled}");
    // A broken store samples nothing, and says why.
    store.broken.set(true);
    let d = Case::root(&plain).decide(&vm1, 100 * SECOND, &store);
    assert_eq!((d.sampled, d.reason), (false, Reason::RateLimitUnavailable));
}

#[test]
fn consistent_mode_writes_and_propagates_thresholds() {
    let s = sampler(
        r#"{"algorithm": "consistent_probability", "root": {"ratio": 0.5},
            "remote_parent_not_sampled": {"ratio": 0.5}}"#,
    );
    let store = MemoryStore::default();
    let plain = request("/", &[]);
    let mut case = Case::root(&plain);
    // Root, R = 2⁵⁶−1 ≥ 2⁵⁵: sampled with th:8. R = 0: dropped, no th.
    let d = case.decide(&s, 0, &store);
    assert_eq!(
        (d.sampled, d.ot_member.as_deref(), d.ot_changed),
        (true, Some("th:8"), true)
    );
    case.low = 0;
    let d = case.decide(&s, 0, &store);
    assert_eq!((d.sampled, d.ot_member), (false, None));
    // A root ignores any incoming tracestate.
    case.tracestate = Some("ot=th:0;rv:ffffffffffffff");
    assert!(!case.decide(&s, 0, &store).sampled);

    // Sampled parent, always_on: its consistent th is kept, the header left alone.
    let mut child = Case::root(&plain).parent(true, false);
    child.low = 0;
    child.tracestate = Some("vendor=1,ot=th:c;rv:e0000000000000;x:1");
    let d = child.decide(&s, 0, &store);
    assert_eq!((d.sampled, d.ot_changed), (true, false));
    assert_eq!(d.ot_member.as_deref(), Some("th:c;rv:e0000000000000;x:1"));
    // ... an inconsistent one (rv below th, yet sampled) is erased, rv and x kept.
    child.tracestate = Some("ot=th:f;rv:e0000000000000;x:1");
    let d = child.decide(&s, 0, &store);
    assert_eq!((d.sampled, d.ot_changed), (true, true));
    assert_eq!(d.ot_member.as_deref(), Some("rv:e0000000000000;x:1"));
    // ... a malformed one is erased too.
    child.tracestate = Some("ot=th:xyz");
    let d = child.decide(&s, 0, &store);
    assert_eq!((d.ot_member, d.ot_changed), (None, true));

    // Unsampled parent with a ratio slot: rv (not the trace id) is the randomness.
    let mut unsampled = Case::root(&plain).parent(false, false);
    unsampled.low = 0; // trace-id randomness 0 would drop
    unsampled.tracestate = Some("ot=rv:ffffffffffffff");
    let d = unsampled.decide(&s, 0, &store);
    assert_eq!(
        (d.sampled, d.ot_member.as_deref()),
        (true, Some("th:8;rv:ffffffffffffff"))
    );
}

#[test]
fn trace_id_ratio_mode_erases_thresholds_of_ratio_decisions() {
    let s = sampler(r#"{"root": {"ratio": 0.5}}"#);
    let plain = request("/", &[]);
    let mut case = Case::root(&plain);
    case.low = 0; // SDK: sampled
    let d = case.decide(&s, 0, &MemoryStore::default());
    assert_eq!((d.sampled, d.ot_member), (true, None));
}

/// SplitMix64: deterministic, well-mixed test ids.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn observed_rates_are_within_four_standard_deviations() {
    const N: u64 = 100_000;
    for algorithm in ["trace_id_ratio", "consistent_probability"] {
        for ratio in [0.01, 0.1, 0.5] {
            let s = sampler(&format!(
                r#"{{"algorithm": "{algorithm}", "root": {{"ratio": {ratio}}}}}"#
            ));
            let store = MemoryStore::default();
            let plain = request("/", &[]);
            let mut seed = 0x5eed;
            let sampled = (0..N)
                .filter(|_| {
                    let mut case = Case::root(&plain);
                    case.low = splitmix(&mut seed);
                    case.decide(&s, 0, &store).sampled
                })
                .count() as f64;
            let expected = N as f64 * ratio;
            let sigma = (N as f64 * ratio * (1.0 - ratio)).sqrt();
            assert!(
                (sampled - expected).abs() <= 4.0 * sigma,
                "{algorithm} {ratio}: {sampled} sampled, expected {expected} ± {}",
                4.0 * sigma
            );
        }
    }
}
