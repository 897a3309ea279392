use super::*;
use proptest::prelude::*;
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";
const TRACE: &str = "5759e988bd862e3fe1be46a994272793";
const PARENT: &str = "53995c3f42cd8ad8";

#[rustfmt::skip]
#[test]
fn valid_values() {
    use Sampling::*;
    let cases = vec![
        (format!("Root={ROOT};Parent={PARENT};Sampled=1"), Accept),
        (format!("Root={ROOT};Parent={PARENT};Sampled=0"), Deny),
        (format!("Root={ROOT};Parent={PARENT};Sampled=?"), Deferred),
        (format!("Root={ROOT};Parent={PARENT}"), Deferred),
        (format!("Sampled=1;Parent={PARENT};Root={ROOT}"), Accept),           // any order
        (format!("Self=1-67891233-abcdef012345678912345678;Root={ROOT};Parent={PARENT};Sampled=1;Lineage=a87bd80c:1|68fd508a:5"), Accept),
        (format!("Root={ROOT}; Parent={PARENT} ;Sampled=1;"), Accept),        // OWS, trailing ;
        (format!("Root={};Parent={};Sampled=1", ROOT.to_uppercase(), PARENT.to_uppercase()), Accept),
    ];
    for (value, sampling) in cases {
        let parsed = parse_amzn_trace_id(value.as_bytes()).unwrap();
        assert_eq!(parsed.trace_id.to_hex(), TRACE, "{value}");
        assert_eq!(parsed.span_id.to_hex(), PARENT, "{value}");
        assert_eq!(parsed.sampling, sampling, "{value}");
    }
}

#[rustfmt::skip]
#[test]
fn invalid_values_carry_their_reason() {
    use XrayError::*;
    let cases: Vec<(String, XrayError)> = vec![
        (format!("Parent={PARENT};Sampled=1"), Root),                         // no Root
        (format!("Root={ROOT};Sampled=1"), Parent),                           // no Parent
        (format!("Root=2-5759e988-bd862e3fe1be46a994272793;Parent={PARENT}"), Root),
        (format!("Root=1-5759e988bd862e3fe1be46a994272793;Parent={PARENT}"), Root),
        (format!("Root=1-5759e98-8bd862e3fe1be46a994272793;Parent={PARENT}"), Root),
        (format!("Root=1-5759e988-bd862e3fe1be46a99427279;Parent={PARENT}"), Root),
        (format!("Root=1-5759e988-bd862e3fe1be46a99427279x;Parent={PARENT}"), Root),
        (format!("Root=1-00000000-000000000000000000000000;Parent={PARENT}"), Root),
        (format!("Root={ROOT};Parent=53995c3f42cd8ad"), Parent),
        (format!("Root={ROOT};Parent=0000000000000000"), Parent),
        (format!("Root={ROOT};Parent=+3995c3f42cd8ad8"), Parent),
        (format!("Root={ROOT};Parent={PARENT};Sampled=2"), Sampled),
        (format!("Root={ROOT};Parent={PARENT};Sampled="), Sampled),
        (format!("Root={ROOT};Parent={PARENT};garbage"), Field),
        (format!("root={ROOT};parent={PARENT}"), Root),                        // keys are case-sensitive
        (format!("Root={ROOT};Parent={PARENT};Lineage={}", "a".repeat(500)), TooLong),
    ];
    for (value, reason) in cases {
        assert_eq!(parse_amzn_trace_id(value.as_bytes()), Err(reason), "{value}");
    }
}

proptest! {
    #[test]
    fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_amzn_trace_id(&bytes);
    }

    #[test]
    fn parses_what_aws_writes(epoch in any::<u32>(), random in any::<u128>(), parent in any::<u64>(), sampled in any::<bool>()) {
        let random = random >> 32; // 96 bits
        prop_assume!((epoch != 0 || random != 0) && parent != 0);
        let value = format!("Root=1-{epoch:08x}-{random:024x};Parent={parent:016x};Sampled={}", u8::from(sampled));
        let parsed = parse_amzn_trace_id(value.as_bytes()).unwrap();
        prop_assert_eq!(parsed.trace_id.to_hex(), format!("{epoch:08x}{random:024x}"));
        prop_assert_eq!(parsed.span_id.to_u64(), parent);
        prop_assert_eq!(parsed.sampling.decision(), Some(sampled));
    }
}
