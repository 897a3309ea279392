use super::*;
use proptest::prelude::*;
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn parse(lines: &[&str]) -> (TraceState, Vec<TracestateError>) {
    parse_tracestate(lines.iter().map(|l| l.as_bytes()))
}

fn header(lines: &[&str]) -> Option<String> {
    parse(lines).0.to_header()
}

#[rustfmt::skip]
#[test]
fn valid_lists() {
    let cases: Vec<(Vec<&str>, Option<&str>)> = vec![
        (vec!["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"], Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")),
        (vec!["rojo=1", "congo=2"], Some("rojo=1,congo=2")),                      // lines combined
        (vec!["  rojo=1 ,\t, congo=2  ,"], Some("rojo=1,congo=2")),               // OWS, empty members
        (vec![""], None),
        (vec![",,"], None),
        (vec!["tenant@system=x"], Some("tenant@system=x")),
        (vec!["0tenant@s=x"], Some("0tenant@s=x")),                               // tenant may start with a digit
        (vec!["k=v with spaces"], Some("k=v with spaces")),
        (vec!["k= leading"], Some("k= leading")),
        (vec!["a-b_c*d/e=!~"], Some("a-b_c*d/e=!~")),
    ];
    for (lines, expected) in cases {
        let (state, problems) = parse(&lines);
        assert_eq!(state.to_header().as_deref(), expected, "{lines:?}");
        assert!(problems.is_empty(), "{lines:?}: {problems:?}");
    }
}

#[rustfmt::skip]
#[test]
fn invalid_members_are_dropped_with_their_reason() {
    use TracestateError::*;
    let long_key = format!("{}=1", "k".repeat(257));
    let long_value = format!("k={}", "v".repeat(257));
    let cases: Vec<(Vec<&str>, Option<&str>, TracestateError)> = vec![
        (vec!["Rojo=1,congo=2"], Some("congo=2"), InvalidMember),                 // upper-case key
        (vec!["1rojo=1,congo=2"], Some("congo=2"), InvalidMember),                // simple key starts with a letter
        (vec!["rojo,congo=2"], Some("congo=2"), InvalidMember),                   // no =
        (vec!["rojo=,congo=2"], Some("congo=2"), InvalidMember),                  // empty value
        (vec!["rojo=a=b,congo=2"], Some("congo=2"), InvalidMember),               // = in value
        (vec!["rojo=x\u{7f},congo=2"], Some("congo=2"), InvalidMember),        // DEL in value
        (vec!["t@Sys=1,congo=2"], Some("congo=2"), InvalidMember),
        (vec!["t@s12345678901234=1,congo=2"], Some("congo=2"), InvalidMember),   // system id > 14
        (vec!["@s=1,congo=2"], Some("congo=2"), InvalidMember),
        (vec!["rojo =1,congo=2"], Some("congo=2"), InvalidMember),                // no OWS around =
        (vec![long_key.as_str(), "congo=2"], Some("congo=2"), InvalidMember),
        (vec![long_value.as_str(), "congo=2"], Some("congo=2"), InvalidMember),
        (vec!["rojo=1,rojo=2,congo=3"], Some("rojo=1,congo=3"), DuplicateKey),
        (vec!["rojo=1", "rojo=2"], Some("rojo=1"), DuplicateKey),
    ];
    for (lines, expected, reason) in cases {
        let (state, problems) = parse(&lines);
        assert_eq!(state.to_header().as_deref(), expected, "{lines:?}");
        assert_eq!(problems, vec![reason], "{lines:?}");
    }
}

#[test]
fn trailing_space_in_a_value_is_trimmed_as_ows() {
    // Members are trimmed before the grammar applies, so `v ` arrives as `v`.
    assert_eq!(
        header(&["rojo=v ,congo=2"]).as_deref(),
        Some("rojo=v,congo=2")
    );
}

#[test]
fn at_most_32_members_are_kept() {
    let members: Vec<String> = (0..40).map(|i| format!("k{i}=v")).collect();
    let joined = members.join(",");
    let (state, problems) = parse(&[&joined]);
    assert_eq!(state.len(), MAX_MEMBERS);
    assert_eq!(state.iter().last(), Some(("k31", "v")));
    assert_eq!(problems, vec![TracestateError::TooManyMembers]);
}

#[test]
fn truncation_removes_large_entries_first_then_from_the_right() {
    // 32 members of 256 bytes and 31 commas > 8192 bytes.
    let big: Vec<String> = (0..32)
        .map(|i| format!("k{i:02}={}", "v".repeat(252)))
        .collect();
    let (state, problems) = parse(&[&big.join(",")]);
    assert_eq!(problems, vec![TracestateError::Truncated]);
    assert!(state.to_header().unwrap().len() <= MAX_LEN);
    assert_eq!(state.len(), 31, "the right-most large entry went");
    // With small entries in the list, the large ones still go first, right to left.
    let mut mixed: Vec<String> = (0..30)
        .map(|i| format!("big{i:02}{}={}", "k".repeat(100), "v".repeat(256)))
        .collect();
    mixed.insert(0, "small=1".to_owned());
    mixed.push("tail=2".to_owned());
    let (state, _) = parse(&[&mixed.join(",")]);
    let keys: Vec<_> = state.iter().map(|(k, _)| k.to_owned()).collect();
    assert_eq!(keys.first().map(String::as_str), Some("small"));
    assert_eq!(keys.last().map(String::as_str), Some("tail"));
    assert!(state.to_header().unwrap().len() <= MAX_LEN);
}

#[test]
fn set_moves_our_member_first_and_keeps_the_limits() {
    let (mut state, _) = parse(&["rojo=1,ot=th:8,congo=2"]);
    state.set("ot", "th:0").unwrap();
    assert_eq!(state.to_header().as_deref(), Some("ot=th:0,rojo=1,congo=2"));
    assert_eq!(state.get("ot"), Some("th:0"));
    assert_eq!(state.set("OT", "x"), Err(TracestateError::InvalidMember));
    assert_eq!(state.set("ot", "a,b"), Err(TracestateError::InvalidMember));
    let full: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
    let (mut state, _) = parse(&[&full.join(",")]);
    state.set("ot", "th:0").unwrap();
    assert_eq!(state.len(), MAX_MEMBERS);
    assert_eq!(state.iter().next(), Some(("ot", "th:0")));
    assert_eq!(state.get("k31"), None, "the right-most member made room");
    state.remove("ot");
    assert_eq!(state.get("ot"), None);
}

proptest! {
    #[test]
    fn any_bytes_never_panic_and_stay_bounded(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..4)) {
        let (state, _) = parse_tracestate(lines.iter().map(Vec::as_slice));
        prop_assert!(state.len() <= MAX_MEMBERS);
        prop_assert!(state.to_header().map_or(0, |h| h.len()) <= MAX_LEN);
    }

    #[test]
    fn format_parse_round_trips(members in proptest::collection::vec(("[a-z][a-z0-9_*/-]{0,20}", "[!-+--<>-~][ -+--<>-~]{0,30}[!-+--<>-~]"), 0..40)) {
        let header = members.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let (state, _) = parse_tracestate([header.as_bytes()]);
        if let Some(value) = state.to_header() {
            let (again, problems) = parse_tracestate([value.as_bytes()]);
            prop_assert_eq!(again.to_header(), Some(value));
            prop_assert!(problems.is_empty());
        }
    }
}
