//! The `ParentBased` matrix: every slot × every policy × both algorithms.

use super::*;
use ThresholdUpdate::{Erase, Keep, Set};
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const SDK: Algorithm = Algorithm::TraceIdRatio;
const CONSISTENT: Algorithm = Algorithm::ConsistentProbability { precision: 4 };

/// A trace id whose low 64 bits are `low`: `LOW` is sampled by the SDK ratio 0.5 and not by
/// consistent 0.5 (R = 0 < 2⁵⁵); `HIGH` the other way round.
fn subject(low: u64) -> Subject {
    let mut bytes = [0x11; 16];
    bytes[8..].copy_from_slice(&low.to_be_bytes());
    let trace_id = TraceId::from_bytes(bytes).unwrap();
    Subject {
        trace_id,
        randomness: Randomness::from_trace_id(trace_id),
    }
}
const LOW: u64 = 0;
const HIGH: u64 = u64::MAX;

fn sampler(policy: Policy) -> ParentBased {
    ParentBased {
        root: policy.clone(),
        remote_parent_sampled: policy.clone(),
        remote_parent_not_sampled: policy,
    }
}

fn t(th: &str) -> ThresholdUpdate {
    Set(Threshold::parse(th).unwrap())
}

/// One row: policy in every slot, parent sampled?, algorithm, trace id low bits → sampled, th.
type Row<'a> = (
    &'a Policy,
    Option<bool>,
    Algorithm,
    u64,
    bool,
    ThresholdUpdate,
);

#[rustfmt::skip]
#[test]
fn matrix() {
    let on = Policy::AlwaysOn;
    let off = Policy::AlwaysOff;
    let half = Policy::Ratio(0.5);
    let one = Policy::Ratio(1.0);
    let zero = Policy::Ratio(0.0);
    let rows: Vec<Row> = vec![
        // Root: independent decisions.
        (&on,   None,        SDK,        LOW,  true,  t("0")),
        (&off,  None,        SDK,        LOW,  false, Erase),
        (&half, None,        SDK,        LOW,  true,  Erase),
        (&half, None,        SDK,        HIGH, false, Erase),
        (&half, None,        CONSISTENT, LOW,  false, Erase),
        (&half, None,        CONSISTENT, HIGH, true,  t("8")),
        (&one,  None,        SDK,        HIGH, true,  t("0")),
        (&one,  None,        CONSISTENT, LOW,  true,  t("0")),
        (&zero, None,        SDK,        LOW,  false, Erase),
        (&zero, None,        CONSISTENT, HIGH, false, Erase),
        // Sampled remote parent: always on follows the parent and keeps its threshold.
        (&on,   Some(true),  SDK,        LOW,  true,  Keep),
        (&on,   Some(true),  CONSISTENT, LOW,  true,  Keep),
        (&off,  Some(true),  SDK,        LOW,  false, Erase),
        (&half, Some(true),  SDK,        HIGH, false, Erase),
        (&half, Some(true),  CONSISTENT, HIGH, true,  t("8")),
        (&half, Some(true),  CONSISTENT, LOW,  false, Erase),
        // Unsampled remote parent: always off follows the parent; anything else is independent.
        (&off,  Some(false), SDK,        LOW,  false, Keep),
        (&off,  Some(false), CONSISTENT, HIGH, false, Keep),
        (&on,   Some(false), SDK,        LOW,  true,  t("0")),
        (&half, Some(false), SDK,        LOW,  true,  Erase),
        (&half, Some(false), CONSISTENT, HIGH, true,  t("8")),
    ];
    for (policy, parent, algorithm, low, want_sampled, want_th) in rows {
        let (verdict, case) = sampler(policy.clone()).decide(algorithm, parent, subject(low));
        let row = format!("{policy:?} parent={parent:?} {algorithm:?} low={low:#x}");
        assert_eq!(verdict.sampled, want_sampled, "{row}");
        assert_eq!(verdict.threshold, want_th, "{row}");
        let want_case = match parent {
            None => ParentCase::Root,
            Some(true) => ParentCase::RemoteParentSampled,
            Some(false) => ParentCase::RemoteParentNotSampled,
        };
        assert_eq!(case, want_case, "{row}");
    }
}

#[test]
fn each_slot_is_used_for_its_case_only() {
    let sampler = ParentBased {
        root: Policy::AlwaysOff,
        remote_parent_sampled: Policy::AlwaysOff,
        remote_parent_not_sampled: Policy::AlwaysOn,
    };
    let s = subject(LOW);
    assert!(!sampler.decide(SDK, None, s).0.sampled);
    assert!(!sampler.decide(SDK, Some(true), s).0.sampled);
    assert!(sampler.decide(SDK, Some(false), s).0.sampled);
}

#[test]
fn default_is_parentbased_always_on() {
    let sampler = ParentBased::default();
    let s = subject(HIGH);
    assert!(sampler.decide(SDK, None, s).0.sampled);
    assert!(sampler.decide(SDK, Some(true), s).0.sampled);
    assert!(!sampler.decide(SDK, Some(false), s).0.sampled);
}
