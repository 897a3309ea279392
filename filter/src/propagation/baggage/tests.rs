use super::*;
use proptest::prelude::*;
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn parse(lines: &[&str]) -> (Baggage, Vec<BaggageError>) {
    Baggage::parse(lines.iter().map(|l| l.as_bytes()))
}

/// Key, decoded value, properties.
type Entry = (String, String, String);

fn pairs(baggage: &Baggage) -> Vec<Entry> {
    baggage
        .iter()
        .map(|m| (m.key().to_owned(), m.value(), m.properties().to_owned()))
        .collect()
}

#[rustfmt::skip]
#[test]
fn valid_lists() {
    let p = |k: &str, v: &str, props: &str| (k.to_owned(), v.to_owned(), props.to_owned());
    let cases: Vec<(Vec<&str>, Vec<Entry>, Option<&str>)> = vec![
        (vec!["userId=alice,serverNode=DF%2028,isProduction=false"],
         vec![p("userId", "alice", ""), p("serverNode", "DF 28", ""), p("isProduction", "false", "")],
         Some("userId=alice,serverNode=DF%2028,isProduction=false")),
        (vec![" k1 = v1 ; p1 ; p2 = x ,\tk2=v2 "],
         vec![p("k1", "v1", ";p1;p2=x"), p("k2", "v2", "")],
         Some("k1=v1;p1;p2=x,k2=v2")),
        (vec!["a=1", "b=2"], vec![p("a", "1", ""), p("b", "2", "")], Some("a=1,b=2")),  // lines combined
        (vec!["empty="], vec![p("empty", "", "")], Some("empty=")),
        (vec!["k=%E2%9C%93"], vec![p("k", "✓", "")], Some("k=%E2%9C%93")),
        (vec!["k=%FF"], vec![p("k", "\u{fffd}", "")], Some("k=%FF")),               // bad UTF-8 → U+FFFD
        (vec!["k=a+b"], vec![p("k", "a+b", "")], Some("k=a+b")),                   // + is not a space
        (vec!["k=%zz"], vec![p("k", "%zz", "")], Some("k=%zz")),
        (vec!["k=1,k=2,j=3"], vec![p("k", "2", ""), p("j", "3", "")], Some("k=2,j=3")),  // last value, first place
        (vec![",,"], vec![], None),
    ];
    for (lines, expected, header) in cases {
        let (baggage, problems) = parse(&lines);
        assert_eq!(pairs(&baggage), expected, "{lines:?}");
        assert_eq!(baggage.to_header().as_deref(), header, "{lines:?}");
        assert!(problems.is_empty(), "{lines:?}: {problems:?}");
    }
}

#[rustfmt::skip]
#[test]
fn invalid_members_are_dropped_with_their_reason() {
    let cases: Vec<(&str, &str)> = vec![
        ("nokey,k=v", "k=v"),
        ("=v,k=v", "k=v"),
        ("k v=1,k=v", "k=v"),                    // space in key
        ("k(=1,k=v", "k=v"),                     // separator in key
        ("a=b c,k=v", "k=v"),                    // space in value
        ("a=\"q\",k=v", "k=v"),                  // DQUOTE
        ("a=x\\y,k=v", "k=v"),                   // backslash
        ("a=1;,k=v", "k=v"),                     // empty property
        ("a=1;p=\"x\",k=v", "k=v"),              // bad property value
        ("a=1;=x,k=v", "k=v"),                   // property without key
        ("a=é,k=v", "k=v"),                      // non-ASCII
    ];
    for (line, kept) in cases {
        let (baggage, problems) = parse(&[line]);
        assert_eq!(baggage.to_header().as_deref(), Some(kept), "{line}");
        assert_eq!(problems, vec![BaggageError::InvalidMember], "{line}");
    }
}

#[test]
fn limits_drop_whole_members() {
    let long = format!("big={}", "v".repeat(MAX_MEMBER_LEN));
    let (baggage, problems) = parse(&[&format!("a=1,{long},b=2")]);
    assert_eq!(baggage.to_header().as_deref(), Some("a=1,b=2"));
    assert_eq!(problems, vec![BaggageError::MemberTooLong]);

    let many: Vec<String> = (0..200).map(|i| format!("k{i}=v")).collect();
    let (baggage, problems) = parse(&[&many.join(",")]);
    assert_eq!(baggage.len(), MAX_MEMBERS);
    assert_eq!(problems, vec![BaggageError::TooManyMembers]);

    // Three members of 4000 bytes: the third would pass 8192 bytes.
    let big: Vec<String> = (0..3)
        .map(|i| format!("k{i}={}", "v".repeat(3997)))
        .collect();
    let (baggage, problems) = parse(&[&big.join(",")]);
    assert_eq!(baggage.len(), 2);
    assert_eq!(problems, vec![BaggageError::TooLong]);
    assert!(baggage.to_header().unwrap().len() <= MAX_LEN);
    // The spec's minimum: 64 members within 8192 bytes always go through.
    let minimum: Vec<String> = (0..64)
        .map(|i| format!("key{i:02}={}", "v".repeat(120)))
        .collect();
    let (baggage, problems) = parse(&[&minimum.join(",")]);
    assert_eq!((baggage.len(), problems.len()), (64, 0));
}

#[test]
fn decoded_values_are_encoded_on_insert() {
    let mut baggage = Baggage::default();
    baggage.insert_decoded("user", "a b,c;d%e\"f\\✓").unwrap();
    let member = baggage.get("user").unwrap();
    assert_eq!(member.raw_value(), "a%20b%2Cc%3Bd%25e%22f%5C%E2%9C%93");
    assert_eq!(member.value(), "a b,c;d%e\"f\\✓");
    assert_eq!(
        baggage.insert_decoded("bad key", "x"),
        Err(BaggageError::InvalidMember)
    );
    baggage.insert_decoded("user", "other").unwrap();
    assert_eq!(
        baggage.get("user").unwrap().value(),
        "a b,c;d%e\"f\\✓",
        "first source wins"
    );
    let (reparsed, problems) = Baggage::parse([baggage.to_header().unwrap().as_bytes()]);
    assert_eq!(reparsed, baggage);
    assert!(problems.is_empty());
}

proptest! {
    #[test]
    fn any_bytes_never_panic_and_stay_bounded(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 0..4)) {
        let (baggage, _) = Baggage::parse(lines.iter().map(Vec::as_slice));
        prop_assert!(baggage.len() <= MAX_MEMBERS);
        prop_assert!(baggage.to_header().map_or(0, |h| h.len()) <= MAX_LEN);
        prop_assert!(baggage.iter().all(|m| m.serialized_len() <= MAX_MEMBER_LEN));
    }

    #[test]
    fn decoded_values_round_trip(entries in proptest::collection::vec(("[A-Za-z0-9_.-]{1,12}", any::<String>()), 0..20)) {
        let mut baggage = Baggage::default();
        for (key, value) in &entries {
            let _ = baggage.insert_decoded(key, value);
        }
        for member in baggage.iter() {
            let original = entries.iter().find(|(k, _)| k == member.key()).map(|(_, v)| v.clone());
            prop_assert_eq!(Some(member.value()), original);
        }
        let (reparsed, problems) = Baggage::parse(baggage.to_header().as_deref().map(str::as_bytes));
        prop_assert_eq!(reparsed, baggage);
        prop_assert!(problems.is_empty());
    }
}
