//! The two `tracestate` operations sampling needs: read our `ot` member and write it back.
//!
//! INTERIM: these are deliberately small so the full W3C `tracestate` module (being written on
//! the propagation branch) can replace them at merge; the sampler only produces the new `ot`
//! member value ([`super::Decision::ot_member`]).
//!
//! W3C rules applied here (<https://www.w3.org/TR/trace-context/#tracestate-header>): members
//! are comma-separated with optional spaces/tabs around them, a modified member moves to the
//! front, at most 32 members are kept (dropping from the right), and a header that is not
//! UTF-8 is discarded.

/// Most list members in a `tracestate` header.
pub const MAX_MEMBERS: usize = 32;
/// Longest `tracestate` we write; members are dropped from the right to stay under it.
pub const MAX_TRACESTATE_LEN: usize = 512;
/// The OpenTelemetry member key.
pub const OT_KEY: &str = "ot";

/// The value of the first `ot=` member of a `tracestate` header, if any.
pub fn ot_member(tracestate: &[u8]) -> Option<&str> {
    members(tracestate).find_map(|m| m.strip_prefix("ot="))
}

/// The `tracestate` to send upstream: `ot=<ot>` first (when given), then the incoming members
/// other than `ot`, within the W3C limits. `None` when no member is left.
pub fn with_ot_member(tracestate: Option<&[u8]>, ot: Option<&str>) -> Option<String> {
    let mut out: Vec<String> = ot.map(|v| format!("{OT_KEY}={v}")).into_iter().collect();
    let mut len = out.first().map_or(0, String::len);
    let others = tracestate
        .into_iter()
        .flat_map(members)
        .filter(|m| m.split_once('=').is_some_and(|(k, _)| k != OT_KEY));
    for member in others {
        let added = member.len() + usize::from(!out.is_empty());
        if out.len() == MAX_MEMBERS || len + added > MAX_TRACESTATE_LEN {
            break;
        }
        len += added;
        out.push(member.to_owned());
    }
    (!out.is_empty()).then(|| out.join(","))
}

fn members(tracestate: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(tracestate)
        .unwrap_or_default()
        .split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .filter(|m| !m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ot_member_is_found_among_others() {
        assert_eq!(
            ot_member(b"a=1, ot=th:8;rv:00000000000001 ,b=2"),
            Some("th:8;rv:00000000000001")
        );
        assert_eq!(ot_member(b"a=1"), None);
        assert_eq!(ot_member(b"\xff\xfe"), None);
    }

    #[test]
    fn our_member_moves_to_the_front_and_replaces_the_old_one() {
        let out = with_ot_member(Some(b"a=1,ot=th:8, b=2"), Some("th:c"));
        assert_eq!(out.as_deref(), Some("ot=th:c,a=1,b=2"));
        let erased = with_ot_member(Some(b"a=1,ot=th:8"), None);
        assert_eq!(erased.as_deref(), Some("a=1"));
        assert_eq!(with_ot_member(Some(b"ot=th:8"), None), None);
        assert_eq!(
            with_ot_member(None, Some("th:0")).as_deref(),
            Some("ot=th:0")
        );
    }

    #[test]
    fn limits_drop_members_from_the_right() {
        let many: Vec<String> = (0..40).map(|i| format!("k{i}=v")).collect();
        let out = with_ot_member(Some(many.join(",").as_bytes()), Some("th:0")).unwrap();
        assert_eq!(out.split(',').count(), MAX_MEMBERS);
        assert!(out.starts_with("ot=th:0,k0=v,"));
        let long: Vec<String> = (0..10)
            .map(|i| format!("k{i}={}", "x".repeat(100)))
            .collect();
        let out = with_ot_member(Some(long.join(",").as_bytes()), Some("th:0")).unwrap();
        assert!(out.len() <= MAX_TRACESTATE_LEN, "{}", out.len());
    }
}
