//! Every condition kind, every string-match kind, scope and first-match order.

use super::*;
use std::collections::HashMap;
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Request headers for tests: a map of lower-case names to values.
pub(crate) struct Request(pub(crate) HashMap<String, Vec<u8>>);

impl Request {
    pub(crate) fn new(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        )
    }
}

impl Headers for Request {
    fn pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

fn get(path: &str) -> Request {
    Request::new(&[
        (":method", "GET"),
        (":path", path),
        (":authority", "shop.example"),
    ])
}

fn rule(conditions: Vec<Condition>) -> Rule {
    Rule {
        name: "r".to_owned(),
        scope: Scope::Root,
        conditions,
        policy: Policy::AlwaysOn,
        rate_limit: None,
    }
}

#[rustfmt::skip]
#[test]
fn string_matchers() {
    let exact = StringMatcher::Exact("/a".to_owned());
    let prefix = StringMatcher::Prefix("/api/".to_owned());
    let glob = StringMatcher::glob("/api/*/users/?").unwrap();
    let regex = StringMatcher::regex(r"^/v[0-9]+/").unwrap();
    let cases: [(&StringMatcher, &str, bool); 14] = [
        (&exact,  "/a",              true),
        (&exact,  "/a/",             false),
        (&exact,  "/A",              false),
        (&prefix, "/api/x",          true),
        (&prefix, "/api",            false),
        (&glob,   "/api/v1/users/7", true),
        (&glob,   "/api/a/b/users/7", true),   // `*` crosses `/`
        (&glob,   "/api/v1/users/77", false),  // `?` is one character
        (&glob,   "/api/v1/users/",  false),
        (&glob,   "x/api/v1/users/7", false),  // globs match the whole value
        (&regex,  "/v2/orders",      true),
        (&regex,  "/x/v2/orders",    false),
        (&regex,  "/v/orders",       false),
        (&regex,  "/v12/",           true),
    ];
    for (matcher, value, want) in cases {
        assert_eq!(matcher.matches(value.as_bytes()), want, "{matcher:?} on {value}");
    }
}

#[test]
fn glob_metacharacters_are_literal() {
    let glob = StringMatcher::glob("a.b+(c)[d]$^|\\").unwrap();
    assert!(glob.matches(b"a.b+(c)[d]$^|\\"));
    assert!(!glob.matches(b"aXb+(c)[d]$^|\\"));
    let unicode = StringMatcher::glob("caf?").unwrap();
    assert!(unicode.matches("café".as_bytes()));
}

#[test]
fn regex_matching_survives_non_utf8_and_bad_patterns_are_refused() {
    let regex = StringMatcher::regex("^caf").unwrap();
    assert!(regex.matches(b"caf\xe9\xff"));
    assert!(StringMatcher::regex("(unclosed").is_err());
    assert!(StringMatcher::regex("a{1000}{1000}").is_err(), "size limit");
}

#[test]
fn path_conditions_ignore_the_query_string() {
    let r = rule(vec![Condition::Path(StringMatcher::Exact(
        "/healthz".to_owned(),
    ))]);
    assert!(r.matches(&get("/healthz?verbose=1"), false));
    assert!(!r.matches(&get("/healthz/x"), false));
    assert!(!r.matches(&Request::new(&[]), false), "no :path");
}

#[test]
fn method_authority_user_agent_and_header_conditions() {
    let method = rule(vec![Condition::Method(vec![
        "POST".to_owned(),
        "PUT".to_owned(),
    ])]);
    assert!(!method.matches(&get("/"), false));
    let post = Request::new(&[(":method", "POST")]);
    assert!(method.matches(&post, false));
    assert!(!method.matches(&Request::new(&[(":method", "post")]), false));

    let authority = rule(vec![Condition::Authority(
        StringMatcher::glob("*.example").unwrap(),
    )]);
    assert!(authority.matches(&get("/"), false));
    assert!(!authority.matches(&Request::new(&[(":authority", "example.org")]), false));

    let ua = rule(vec![Condition::UserAgent(
        StringMatcher::glob("kube-probe/*").unwrap(),
    )]);
    assert!(ua.matches(&Request::new(&[("user-agent", "kube-probe/1.29")]), false));
    assert!(!ua.matches(&Request::new(&[("user-agent", "curl/8")]), false));
    assert!(
        !ua.matches(&get("/"), false),
        "absent User-Agent never matches"
    );

    let present = rule(vec![Condition::HeaderPresent("x-canary".to_owned())]);
    assert!(present.matches(&Request::new(&[("x-canary", "")]), false));
    assert!(!present.matches(&get("/"), false));

    let equals = rule(vec![Condition::Header(
        "x-tenant".to_owned(),
        StringMatcher::Exact("gold".to_owned()),
    )]);
    assert!(equals.matches(&Request::new(&[("x-tenant", "gold")]), false));
    assert!(!equals.matches(&Request::new(&[("x-tenant", "golden")]), false));
    assert!(!equals.matches(&get("/"), false));

    let matches = rule(vec![Condition::Header(
        "x-tenant".to_owned(),
        StringMatcher::regex("^(gold|silver)$").unwrap(),
    )]);
    assert!(matches.matches(&Request::new(&[("x-tenant", "silver")]), false));
    assert!(!matches.matches(&Request::new(&[("x-tenant", "bronze")]), false));
}

#[test]
fn all_conditions_must_hold_and_empty_conditions_match_everything() {
    let both = rule(vec![
        Condition::Method(vec!["GET".to_owned()]),
        Condition::Path(StringMatcher::Prefix("/api/".to_owned())),
    ]);
    assert!(both.matches(&get("/api/x"), false));
    assert!(!both.matches(&get("/web"), false));
    assert!(rule(vec![]).matches(&Request::new(&[]), false));
}

#[test]
fn scope_root_skips_requests_with_a_parent() {
    let mut r = rule(vec![]);
    assert!(r.matches(&get("/"), false));
    assert!(!r.matches(&get("/"), true));
    r.scope = Scope::All;
    assert!(r.matches(&get("/"), true));
}

#[test]
fn first_match_wins() {
    let rules = vec![
        rule(vec![Condition::Path(StringMatcher::Prefix(
            "/api/admin".to_owned(),
        ))]),
        rule(vec![Condition::Path(StringMatcher::Prefix(
            "/api/".to_owned(),
        ))]),
        rule(vec![]),
    ];
    assert_eq!(first_match(&rules, &get("/api/admin/x"), false), Some(0));
    assert_eq!(first_match(&rules, &get("/api/users"), false), Some(1));
    assert_eq!(first_match(&rules, &get("/"), false), Some(2));
    assert_eq!(first_match(&rules[..2], &get("/"), false), None);
}
