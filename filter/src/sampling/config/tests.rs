//! The `sampling` section through the whole plugin-configuration parser, as Envoy feeds it.

use crate::config::{ConfigError, FilterConfig};
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn parse(sampling: &str) -> Result<FilterConfig, ConfigError> {
    FilterConfig::parse(Some(format!(r#"{{"sampling":{sampling}}}"#).as_bytes()))
}

fn error(sampling: &str) -> ConfigError {
    match parse(sampling) {
        Ok(config) => panic!("{sampling} should be rejected, got {config:?}"),
        Err(e) => e,
    }
}

#[test]
fn a_full_configuration_is_accepted() {
    let json = r#"{
        "algorithm": "consistent_probability",
        "threshold_precision": 5,
        "root": {"ratio": 0.25},
        "remote_parent_sampled": "always_on",
        "remote_parent_not_sampled": {"ratio": 0.01},
        "default_rules": false,
        "rate_limit": {"traces_per_second": 100, "burst": 200},
        "forced": {"header": "X-Debug-Trace", "hmac": {"secret": "0123456789abcdef"}},
        "honor_debug_flag": false,
        "rules": [
            {"name": "admin", "match": {"path": {"prefix": "/admin/"}, "method": ["POST"]},
             "sample": "always_on", "rate_limit": {"traces_per_second": 0.5}},
            {"match": {"authority": {"glob": "*.internal"}, "user_agent": {"regex": "^Go-http"},
                       "headers": [{"name": "x-canary", "present": true},
                                   {"name": "x-tenant", "exact": "gold"},
                                   {"name": "x-tier", "regex": "^(a|b)$"}]},
             "scope": "all", "sample": {"ratio": 0.5}},
            {"sample": "always_off"}
        ]
    }"#;
    let config = parse(json).unwrap();
    let sampler = config.sampling.build().unwrap();
    assert_eq!(sampler.rules().len(), 3);
    assert_eq!(sampler.rule_name(0), Some("admin"));
    assert_eq!(sampler.rule_name(1), Some("rule_1"));
    assert_eq!(sampler.rule_name(3), None);
}

#[test]
fn defaults_are_parentbased_always_on_with_probe_rules() {
    let config = FilterConfig::parse(None).unwrap();
    assert_eq!(config.sampling, super::SamplingConfig::default());
    assert!(config.sampling.default_rules);
    assert!(parse("{}").is_ok());
}

#[rustfmt::skip]
#[test]
fn every_error_names_its_field() {
    let cases = [
        (r#"{"root": {"ratio": 1.5}}"#,                      "sampling.root.ratio", "must be between 0 and 1, got 1.5"),
        (r#"{"remote_parent_not_sampled": {"ratio": -0.1}}"#, "sampling.remote_parent_not_sampled.ratio", "got -0.1"),
        (r#"{"root": "sometimes"}"#,                         "sampling.root", "unknown variant `sometimes`"),
        (r#"{"algorithm": "random"}"#,                       "sampling.algorithm", "unknown variant"),
        (r#"{"threshold_precision": 0}"#,                    "sampling.threshold_precision", "between 1 and 12"),
        (r#"{"threshold_precision": 13}"#,                   "sampling.threshold_precision", "between 1 and 12"),
        (r#"{"rules": [{"sample": {"ratio": 2}}]}"#,         "sampling.rules[0].sample.ratio", "got 2"),
        (r#"{"rules": [{"match": {}}]}"#,                    "sampling.rules[0]", "missing field `sample`"),
        (r#"{"rules": [{"sample": "always_on", "match": {"path": {"regex": "(unclosed"}}}]}"#,
                                                              "sampling.rules[0].match.path.regex", "invalid pattern"),
        (r#"{"rules": [{"sample": "always_on"}, {"sample": "always_on", "match": {"user_agent": {"regex": "a{1000}{1000}"}}}]}"#,
                                                              "sampling.rules[1].match.user_agent.regex", "invalid pattern"),
        (r#"{"rules": [{"sample": "always_on", "match": {"path": {}}}]}"#,
                                                              "sampling.rules[0].match.path", "set one of"),
        (r#"{"rules": [{"sample": "always_on", "match": {"path": {"exact": "/a", "prefix": "/b"}}}]}"#,
                                                              "sampling.rules[0].match.path", "only one"),
        (r#"{"rules": [{"sample": "always_on", "match": {"path": {"exakt": "/a"}}}]}"#,
                                                              "sampling.rules[0].match.path.exakt", "unknown field"),
        (r#"{"rules": [{"sample": "always_on", "match": {"method": []}}]}"#,
                                                              "sampling.rules[0].match.method", "non-empty"),
        (r#"{"rules": [{"sample": "always_on", "match": {"method": ["GET POST"]}}]}"#,
                                                              "sampling.rules[0].match.method", "method names"),
        (r#"{"rules": [{"sample": "always_on", "match": {"headers": [{"name": "x"}]}}]}"#,
                                                              "sampling.rules[0].match.headers[0]", "exactly one"),
        (r#"{"rules": [{"sample": "always_on", "match": {"headers": [{"name": "x", "present": true, "exact": "1"}]}}]}"#,
                                                              "sampling.rules[0].match.headers[0]", "exactly one"),
        (r#"{"rules": [{"sample": "always_on", "match": {"headers": [{"name": "bad name", "present": true}]}}]}"#,
                                                              "sampling.rules[0].match.headers[0].name", "header name"),
        (r#"{"rules": [{"name": "", "sample": "always_on"}]}"#, "sampling.rules[0].name", "1 to 64"),
        (r#"{"rules": [{"sample": "always_on", "rate_limit": {"traces_per_second": 0}}]}"#,
                                                              "sampling.rules[0].rate_limit.traces_per_second", "must be between"),
        (r#"{"rate_limit": {"traces_per_second": 5, "burst": 0}}"#, "sampling.rate_limit.burst", "between 1"),
        (r#"{"rate_limit": {"burst": 5}}"#,                  "sampling.rate_limit", "missing field `traces_per_second`"),
        (r#"{"forced": {"header": "x-force", "hmac": {}}}"#, "sampling.forced.hmac.secret", "must be set"),
        (r#"{"forced": {"hmac": {"secret": "short"}}}"#,     "sampling.forced.hmac.secret", "at least 16 bytes"),
        (r#"{"forced": {"header": "x-force"}}"#,             "sampling.forced", "exactly one of value, hmac"),
        (r#"{"forced": {"value": "1", "hmac": {"secret": "0123456789abcdef"}}}"#,
                                                              "sampling.forced", "exactly one of value, hmac"),
        (r#"{"forced": {"value": ""}}"#,                     "sampling.forced.value", "must not be empty"),
        (r#"{"forced": {"header": "", "value": "1"}}"#,      "sampling.forced.header", "header name"),
        (r#"{"default_rule": false}"#,                       "sampling.default_rule", "unknown field"),
    ];
    for (json, field, message) in cases {
        let e = error(json);
        assert_eq!(e.field, field, "{json}: {e}");
        assert!(e.message.contains(message), "{json}: {e}");
    }
    let long = format!(
        r#"{{"rules": [{{"sample": "always_on", "match": {{"headers": [{{"name": "x", "glob": "{}"}}]}}}}]}}"#,
        "*".repeat(super::MAX_PATTERN_LEN + 1)
    );
    let e = error(&long);
    assert_eq!(e.field, "sampling.rules[0].match.headers[0].glob", "{e}");
    assert!(e.message.contains("longer than 1024 bytes"), "{e}");
    // Globs have no syntax errors: every character but `*` and `?` is literal.
    assert!(parse(r#"{"rules": [{"sample": "always_on", "match": {"path": {"glob": "[a"}}}]}"#).is_ok());
}

#[test]
fn secrets_never_appear_in_errors_or_debug_output() {
    let secret = "s3cr3t-s3cr3t-s3cr3t";
    let config = parse(&format!(
        r#"{{"forced": {{"hmac": {{"secret": "{secret}"}}}}}}"#
    ))
    .unwrap();
    assert!(!format!("{config:?}").contains(secret));
    assert!(!format!("{:?}", config.sampling.build().unwrap()).contains(secret));
    let e = error(&format!(
        r#"{{"forced": {{"value": "{secret}", "hmac": {{"secret": "{secret}"}}}}}}"#
    ));
    assert!(!e.to_string().contains(secret), "{e}");
}
