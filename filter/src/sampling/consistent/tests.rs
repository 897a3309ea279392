//! The spec's own examples, row by row.

use super::*;
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// The table in tracestate-probability-sampling.md, "Converting floating-point probability to
/// threshold value": input probability, then `th` at precision 3, 4 and 5.
#[rustfmt::skip]
const SPEC_TABLE: [(f64, [&str; 3]); 13] = [
    (1.0,                ["0", "0", "0"]),
    (0.5,                ["8", "8", "8"]),
    (0.3333333333333333, ["aab", "aaab", "aaaab"]),
    (0.25,               ["c", "c", "c"]),
    (0.2,                ["ccd", "cccd", "ccccd"]),
    (0.125,              ["e", "e", "e"]),
    (0.1,                ["e66", "e666", "e6666"]),
    (0.0625,             ["f", "f", "f"]),
    (0.01,               ["fd71", "fd70a", "fd70a4"]),
    (0.001,              ["ffbe7", "ffbe77", "ffbe76d"]),
    (0.0001,             ["fff972", "fff9724", "fff97247"]),
    (0.00001,            ["ffff584", "ffff583a", "ffff583a5"]),
    (0.000001,           ["ffffef4", "ffffef39", "ffffef391"]),
];

#[test]
fn probability_to_threshold_matches_the_spec_table() {
    for (p, expected) in SPEC_TABLE {
        for (precision, th) in [3, 4, 5].into_iter().zip(expected) {
            let got = Threshold::from_probability(p, precision).map(Threshold::to_th);
            assert_eq!(got.as_deref(), Some(th), "p={p} precision={precision}");
        }
    }
}

#[test]
fn one_percent_example() {
    // "(1-0.01) * 2^56 ≈ 71337018784743424 = 0xfd70a400000000", `th` "fd70a4".
    let t = Threshold::from_probability(0.01, 5).unwrap();
    assert_eq!(t.value(), 71_337_018_784_743_424);
    assert_eq!(t.value(), 0xfd70a400000000);
    assert_eq!(t.to_th(), "fd70a4");
    assert_eq!(Threshold::parse("fd70a4"), Some(t));
}

#[test]
fn hundred_percent_is_th_0_and_never_is_not_probability_sampling() {
    assert_eq!(Threshold::from_probability(1.0, 4), Some(Threshold::ALWAYS));
    assert_eq!(Threshold::ALWAYS.to_th(), "0");
    assert_eq!(Threshold::parse("0"), Some(Threshold::ALWAYS));
    for p in [0.0, -1.0, f64::NAN, 1e-20] {
        assert_eq!(Threshold::from_probability(p, 4), None, "{p}");
    }
    // 2⁻⁵⁶ is the smallest probability: threshold 2⁵⁶ − 1, i.e. only R = 0xff…ff is kept.
    let tiny = Threshold::from_probability(MIN_PROBABILITY, 4).unwrap();
    assert!(tiny.value() < MAX_ADJUSTED_COUNT);
}

#[test]
fn threshold_parsing() {
    assert_eq!(Threshold::parse("8").map(Threshold::value), Some(1 << 55));
    assert_eq!(
        Threshold::parse("ffffffffffffff").map(Threshold::value),
        Some(MAX_ADJUSTED_COUNT - 1)
    );
    assert_eq!(
        Threshold::parse("C").map(Threshold::to_th).as_deref(),
        Some("c")
    );
    for bad in ["", "fffffffffffffff", "xyz", "+1", " 1", "-1"] {
        assert_eq!(Threshold::parse(bad), None, "{bad:?}");
    }
    assert_eq!(Threshold::parse("8").map(Threshold::probability), Some(0.5));
}

#[test]
fn rv_example_from_tracestate_handling() {
    // `ot=rv:6e6d1a75832a2f`: kept at every threshold from 0x6e6d1a75832a2f down to 0.
    // (The spec's prose calls this "41.1% through 100%"; by its own formula the lowest
    // probability is 1 − 0x6e6d1a75832a2f/2⁵⁶ ≈ 56.9 %.)
    let r = Randomness::parse_rv("6e6d1a75832a2f").unwrap();
    let at = Threshold::parse("6e6d1a75832a2f").unwrap();
    let above = Threshold::parse("6e6d1a75832a30").unwrap();
    assert!(at.samples(r));
    assert!(Threshold::ALWAYS.samples(r));
    assert!(!above.samples(r));
    // The same decision as a trace id ending in those 56 bits.
    let id =
        TraceId::from_bytes(*b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x6e\x6d\x1a\x75\x83\x2a\x2f")
            .unwrap();
    assert_eq!(Randomness::from_trace_id(id), r);
}

#[test]
fn rv_must_be_exactly_14_lower_case_hex_digits() {
    for bad in [
        "6e6d1a75832a2",
        "6e6d1a75832a2f0",
        "6E6D1A75832A2F",
        "6e6d1a75832a2g",
        "",
    ] {
        assert_eq!(Randomness::parse_rv(bad), None, "{bad:?}");
    }
}

#[test]
fn ot_value_updates_keep_other_sub_keys() {
    // tracestate-handling.md "Setting values": `ot=p:8;r:62` + k1:13 keeps p and r.
    let ot = OtValue::parse("p:8;r:62");
    assert_eq!(ot.get("r"), Some("62"));
    let updated = ot.with_threshold(Threshold::parse("c"));
    assert_eq!(updated.encode().as_deref(), Some("th:c;p:8;r:62"));
    let replaced = OtValue::parse("rv:6e6d1a75832a2f;th:8").with_threshold(Threshold::parse("c"));
    assert_eq!(replaced.encode().as_deref(), Some("th:c;rv:6e6d1a75832a2f"));
    let erased = OtValue::parse("th:8").with_threshold(None);
    assert_eq!(erased.encode(), None);
}

#[test]
fn ot_value_parsing_drops_malformed_entries_and_oversized_values() {
    let ot = OtValue::parse("th:8;BAD:1;novalue;x:a b;rv:6e6d1a75832a2f");
    assert_eq!(ot.encode().as_deref(), Some("th:8;rv:6e6d1a75832a2f"));
    assert_eq!(ot.threshold(), Some(Threshold::parse("8")));
    assert_eq!(OtValue::parse("th:zz").threshold(), Some(None));
    assert!(ot.randomness().is_some());
    let long = format!("x:{}", "a".repeat(MAX_OT_VALUE_LEN));
    assert_eq!(OtValue::parse(&long).encode(), None);
    // A `th` that would overflow 256 characters is not written.
    let full = format!("x:{}", "a".repeat(MAX_OT_VALUE_LEN - 4));
    let updated = OtValue::parse(&full).with_threshold(Threshold::parse("fd70a4"));
    assert_eq!(updated.encode(), Some(full));
}
