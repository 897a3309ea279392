//! Route templates: the operator's low-cardinality names for request paths, which become
//! `http.route` (SERVER spans) or `url.template` (CLIENT spans) and the span name
//! `{method} {template}`. Envoy knows no route template, and the conventions forbid using the
//! raw path in its place
//! (<https://opentelemetry.io/docs/specs/semconv/http/http-spans/#name>), so without a
//! matching template the span name is just the method.
//!
//! A template is a path of `/`-separated segments, each either literal (compared exactly,
//! case-sensitively, with the raw path segment) or a parameter: `{name}` matches one non-empty
//! segment, `{name*}` (last segment only) matches the non-empty rest of the path, slashes
//! included. `/api/v1/users/{id}` matches `/api/v1/users/42` but not `/api/v1/users/42/`,
//! `/api/v1/users/` or `/api/v1/users/42/orders`. Templates are tried in order; the first match
//! wins. Matching is bounded: at most [`MAX_ROUTES`] templates of at most [`MAX_SEGMENTS`]
//! segments, and a path is split at most once per request.

use crate::config::ConfigError;

/// Most templates in `routes`.
pub const MAX_ROUTES: usize = 512;
/// Most segments in one template.
pub const MAX_SEGMENTS: usize = 32;
/// Longest template, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 512;
/// Longest parameter name.
const MAX_PARAM_LEN: usize = 64;

/// The compiled `routes`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteTable {
    templates: Vec<Template>,
}

#[derive(Clone, Debug, PartialEq)]
struct Template {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Literal(String),
    Param,
    Rest,
}

// === impl RouteTable ===

impl RouteTable {
    /// Compiles `routes`; an invalid template is reported as `routes[i]`.
    pub fn new(templates: &[String]) -> Result<Self, ConfigError> {
        if templates.len() > MAX_ROUTES {
            return Err(ConfigError::new(
                "routes",
                format!("at most {MAX_ROUTES} templates"),
            ));
        }
        let mut compiled: Vec<Template> = Vec::with_capacity(templates.len());
        for (i, text) in templates.iter().enumerate() {
            let field = format!("routes[{i}]");
            let template = Template::parse(text).map_err(|why| ConfigError::new(&field, why))?;
            if compiled.iter().any(|t| t.segments == template.segments) {
                return Err(ConfigError::new(
                    field,
                    format!("`{text}` matches the same paths as an earlier template"),
                ));
            }
            compiled.push(template);
        }
        Ok(Self {
            templates: compiled,
        })
    }

    /// Whether any template is configured.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// The first template matching `path` (no query string), if any.
    pub fn find(&self, path: &str) -> Option<&str> {
        if self.templates.is_empty() {
            return None;
        }
        let rest = path.strip_prefix('/')?;
        // One split per request, bounded: a path longer than every template can only match a
        // `{name*}` template, which needs the unsplit remainder anyway.
        let mut segments: Vec<&str> = Vec::with_capacity(8);
        let mut tail = Some(rest);
        while let Some(current) = tail {
            if segments.len() > MAX_SEGMENTS {
                break;
            }
            match current.split_once('/') {
                Some((segment, next)) => {
                    segments.push(segment);
                    tail = Some(next);
                }
                None => {
                    segments.push(current);
                    tail = None;
                }
            }
        }
        self.templates
            .iter()
            .find(|t| t.matches(rest, &segments))
            .map(|t| t.text.as_str())
    }
}

// === impl Template ===

impl Template {
    fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_TEMPLATE_LEN {
            return Err(format!("longer than {MAX_TEMPLATE_LEN} bytes"));
        }
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| format!("`{text}` does not start with `/`"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() > MAX_SEGMENTS {
            return Err(format!("more than {MAX_SEGMENTS} segments"));
        }
        let last = parts.len() - 1;
        let mut names: Vec<&str> = Vec::new();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(param) => {
                    let (name, rest) = match param.strip_suffix('*') {
                        Some(name) => (name, true),
                        None => (param, false),
                    };
                    if !is_param_name(name) {
                        return Err(format!(
                            "`{{{param}}}`: a parameter is `{{name}}` or `{{name*}}`, name made of \
                             ASCII letters, digits and `_` (1 to {MAX_PARAM_LEN})"
                        ));
                    }
                    if names.contains(&name) {
                        return Err(format!("parameter `{name}` appears twice"));
                    }
                    names.push(name);
                    if rest && i != last {
                        return Err(format!("`{{{name}*}}` must be the last segment"));
                    }
                    if rest { Segment::Rest } else { Segment::Param }
                }
                None if part.contains(['{', '}']) => {
                    return Err(format!(
                        "segment `{part}`: a segment is literal or one whole `{{parameter}}`"
                    ));
                }
                None if part.is_empty() && i != last => {
                    return Err("empty segment (`//`)".to_owned());
                }
                None if part
                    .bytes()
                    .any(|b| b <= b' ' || b == b'?' || b == b'#' || b == 0x7f) =>
                {
                    return Err(format!(
                        "segment `{part}` has whitespace, a control character, `?` or `#`"
                    ));
                }
                None => Segment::Literal((*part).to_owned()),
            };
            segments.push(segment);
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// Whether the template matches a path: `rest` is the path without its leading `/`,
    /// `segments` its first segments (possibly cut after [`MAX_SEGMENTS`] + 1).
    fn matches(&self, rest: &str, segments: &[&str]) -> bool {
        let mut consumed = 0;
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Rest => return rest.len() > consumed,
                Segment::Param | Segment::Literal(_) => {
                    let Some(part) = segments.get(i) else {
                        return false;
                    };
                    let ok = match segment {
                        Segment::Literal(literal) => literal == part,
                        _ => !part.is_empty(),
                    };
                    if !ok {
                        return false;
                    }
                    consumed += part.len() + 1;
                }
            }
        }
        // Every path segment consumed (a split cut short has more segments than any template).
        segments.len() == self.segments.len()
    }
}

fn is_param_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PARAM_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn table(templates: &[&str]) -> RouteTable {
        let templates: Vec<String> = templates.iter().map(|t| (*t).to_owned()).collect();
        RouteTable::new(&templates).unwrap()
    }

    #[test]
    fn literal_and_parameter_segments() {
        let routes = table(&[
            "/api/v1/users/{id}",
            "/api/v1/users/{id}/orders/{order}",
            "/api/v1/users",
            "/",
        ]);
        for (path, expected) in [
            ("/api/v1/users/42", Some("/api/v1/users/{id}")),
            (
                "/api/v1/users/42/orders/7",
                Some("/api/v1/users/{id}/orders/{order}"),
            ),
            ("/api/v1/users", Some("/api/v1/users")),
            ("/", Some("/")),
            ("/api/v1/users/", None),
            ("/api/v1/users/42/", None),
            ("/api/v1/users/42/orders", None),
            ("/api/v1/users/42/orders/7/x", None),
            ("/API/v1/users/42", None),
            ("/api/v1//42", None),
            ("api/v1/users/42", None),
            ("", None),
            ("*", None),
        ] {
            assert_eq!(routes.find(path), expected, "{path}");
        }
    }

    #[test]
    fn first_match_wins() {
        let routes = table(&["/items/new", "/items/{id}"]);
        assert_eq!(routes.find("/items/new"), Some("/items/new"));
        assert_eq!(routes.find("/items/9"), Some("/items/{id}"));
        let routes = table(&["/items/{id}", "/items/new"]);
        assert_eq!(routes.find("/items/new"), Some("/items/{id}"));
    }

    #[test]
    fn a_rest_parameter_takes_the_non_empty_remainder() {
        let routes = table(&["/static/{path*}", "/files/{dir}/{rest*}"]);
        assert_eq!(routes.find("/static/a.css"), Some("/static/{path*}"));
        assert_eq!(routes.find("/static/a/b/c.css"), Some("/static/{path*}"));
        assert_eq!(routes.find("/static/"), None);
        assert_eq!(routes.find("/static"), None);
        assert_eq!(routes.find("/files/x/y/z"), Some("/files/{dir}/{rest*}"));
        assert_eq!(routes.find("/files/x/"), None);
        let deep = format!("/static{}", "/a".repeat(200));
        assert_eq!(routes.find(&deep), Some("/static/{path*}"));
    }

    #[test]
    fn paths_deeper_than_any_template_do_not_match() {
        let routes = table(&["/a/{x}"]);
        let deep = format!("/a{}", "/b".repeat(100));
        assert_eq!(routes.find(&deep), None);
        let longest: String = (0..MAX_SEGMENTS).map(|i| format!("/s{i}")).collect();
        let routes = RouteTable::new(std::slice::from_ref(&longest)).unwrap();
        assert_eq!(routes.find(&longest), Some(longest.as_str()));
        assert_eq!(routes.find(&format!("{longest}/x")), None);
    }

    #[test]
    fn no_templates_match_nothing() {
        assert_eq!(RouteTable::default().find("/x"), None);
        assert!(RouteTable::default().is_empty());
    }

    #[test]
    fn invalid_templates_are_refused_naming_the_index() {
        for (template, why) in [
            ("api/v1", "does not start"),
            ("/a/{id", "literal or one whole"),
            ("/a/{}", "a parameter is"),
            ("/a/{i-d}", "a parameter is"),
            ("/a/{id}x", "literal or one whole"),
            ("/a/{rest*}/b", "must be the last"),
            ("/a/{id}/{id}", "appears twice"),
            ("/a//b", "empty segment"),
            ("/a b", "whitespace"),
            ("/a?x", "`?`"),
        ] {
            let err = RouteTable::new(&["/ok".to_owned(), template.to_owned()]).unwrap_err();
            assert_eq!(err.field, "routes[1]", "{template}");
            assert!(err.message.contains(why), "{template}: {}", err.message);
        }
        let err = RouteTable::new(&["/a/{x}".to_owned(), "/a/{y}".to_owned()]).unwrap_err();
        assert_eq!(err.field, "routes[1]");
        let too_long = format!("/{}", "a".repeat(MAX_TEMPLATE_LEN));
        assert!(RouteTable::new(&[too_long]).is_err());
        let too_deep = "/a".repeat(MAX_SEGMENTS + 1);
        assert!(RouteTable::new(&[too_deep]).is_err());
        let too_many: Vec<String> = (0..=MAX_ROUTES).map(|i| format!("/r{i}")).collect();
        assert_eq!(RouteTable::new(&too_many).unwrap_err().field, "routes");
    }
}
