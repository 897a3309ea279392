//! What a sampled span says: the HTTP conventions, the route template, the custom tags, under
//! the span limits. One [`Content`] per configuration; the glue calls it at each phase of a
//! sampled request, handing it only what that phase needs.
//!
//! ```text
//!  on_configure      Content::new(config) ─▶ resolve_static(env, node attributes)
//!  request headers   on_request: semconv::http::Request, route, request header + baggage tags
//!  response headers  on_response: response header tags (only if some are configured)
//!  on_log            on_end: End attributes (peer, protocol, ...) + attribute tags
//!                    finish ─▶ OTLP span (name, kind, status, attributes, dropped count)
//! ```
//!
//! Unsampled requests never reach this module: they cost nothing here.

use crate::attributes::{Attribute, Limits};
use crate::config::ConfigError;
use crate::host::{Environment, Properties};
use crate::propagation::Headers;
use crate::propagation::baggage::Baggage;
use crate::route::RouteTable;
use crate::semconv::http::{self, End, Kind, OptIn, Request, Settings};
use crate::span::{Finished, HttpSpan};
use crate::tags::{Evaluated, Phase, TagConfig, Tags};
use serde::Deserialize;

/// Most entries in `span.known_methods`, `span.redact_query_keys`, `span.sensitive_headers`.
pub const MAX_LIST_LEN: usize = 64;
/// Longest entry in those lists.
const MAX_ENTRY_LEN: usize = 128;

/// `span`: the span's kind and the conventions' options.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SpanConfig {
    /// `server` (inbound) or `client` (outbound).
    pub kind: Kind,
    /// Opt-in attributes to record (`client.port`, `http.request.body.size`, ...).
    pub opt_in: Vec<OptIn>,
    /// The methods recorded as they are; a full override of the conventions' list (others
    /// become `_OTHER`).
    pub known_methods: Option<Vec<String>>,
    /// Query keys whose values are `REDACTED`; a full override of the conventions' list
    /// (`AWSAccessKeyId`, `Signature`, `sig`, `X-Goog-Signature`).
    pub redact_query_keys: Option<Vec<String>>,
    /// Headers that are never tagged (besides `authorization`, `proxy-authorization`,
    /// `cookie`, `set-cookie`, `x-api-key`) unless a tag sets `allow_sensitive`.
    pub sensitive_headers: Vec<String>,
}

/// The compiled span content configuration of one filter.
#[derive(Clone, Debug, PartialEq)]
pub struct Content {
    /// How the conventions apply.
    pub settings: Settings,
    /// Route templates.
    pub routes: RouteTable,
    /// Custom tags.
    pub tags: Tags,
    /// Span limits.
    pub limits: Limits,
    static_tags: Vec<Attribute>,
    end_reads: bool,
}

// === impl SpanConfig ===

impl SpanConfig {
    /// The conventions' settings; errors name `span.<field>`.
    pub fn build(&self, limits: &Limits) -> Result<Settings, ConfigError> {
        for (i, opt_in) in self.opt_in.iter().enumerate() {
            if !opt_in.applies_to(self.kind) {
                return Err(ConfigError::new(
                    format!("span.opt_in[{i}]"),
                    format!(
                        "`{}` is not an opt-in attribute of {:?} spans",
                        opt_in.key(),
                        self.kind
                    ),
                ));
            }
        }
        let defaults = Settings::default();
        let known_methods = match &self.known_methods {
            Some(methods) => {
                list("span.known_methods", methods, |m| {
                    crate::propagation::is_token(m.as_bytes())
                })?;
                methods.clone()
            }
            None => defaults.known_methods,
        };
        let redact_query_keys = match &self.redact_query_keys {
            Some(keys) => {
                list("span.redact_query_keys", keys, |k| {
                    !k.is_empty() && !k.contains(['&', '='])
                })?;
                keys.clone()
            }
            None => defaults.redact_query_keys,
        };
        list("span.sensitive_headers", &self.sensitive_headers, |h| {
            crate::propagation::is_token(h.as_bytes())
        })?;
        Ok(Settings {
            kind: self.kind,
            opt_in: self.opt_in.clone(),
            known_methods,
            redact_query_keys,
            max_value_len: limits.value_len(),
        })
    }
}

fn list(field: &str, entries: &[String], valid: impl Fn(&str) -> bool) -> Result<(), ConfigError> {
    if entries.len() > MAX_LIST_LEN {
        return Err(ConfigError::new(
            field,
            format!("at most {MAX_LIST_LEN} entries"),
        ));
    }
    for (i, entry) in entries.iter().enumerate() {
        if entry.len() > MAX_ENTRY_LEN || !valid(entry) {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                format!("`{entry}` is not valid here"),
            ));
        }
    }
    Ok(())
}

// === impl Content ===

impl Content {
    /// Compiles the span content sections of the configuration (`span`, `routes`, `tags`,
    /// `limits`); errors name the field.
    pub fn new(
        span: &SpanConfig,
        routes: &[String],
        tags: &[TagConfig],
        limits: &Limits,
    ) -> Result<Self, ConfigError> {
        limits.validate()?;
        let settings = span.build(limits)?;
        let routes = RouteTable::new(routes)?;
        let tags = Tags::new(tags, &span.sensitive_headers, http::is_written)?;
        let end_reads = tags.has(Phase::End) || !settings.end_properties().is_empty();
        Ok(Self {
            settings,
            routes,
            tags,
            limits: *limits,
            static_tags: Vec::new(),
            end_reads,
        })
    }

    /// Evaluates the tags read once (literals, environment, node attributes); returns what
    /// they gave, for the caller to count.
    pub fn resolve_static(&mut self, env: &dyn Environment, host: &dyn Properties) -> Evaluated {
        let evaluated = self.tags.evaluate_static(env, host);
        self.static_tags = evaluated.attributes.clone();
        evaluated
    }

    /// The request phase of a sampled span: the request summary, the route, the request
    /// header and baggage tags.
    pub fn on_request<H: Headers + ?Sized>(
        &self,
        span: &mut HttpSpan,
        headers: &H,
        baggage: &Baggage,
    ) {
        span.request = Request::from_headers(headers, &self.settings);
        if !self.routes.is_empty() {
            let path = headers.get(":path").unwrap_or_default();
            let path = String::from_utf8_lossy(path);
            let path = path.split('?').next().unwrap_or_default();
            span.route = self.routes.find(path).map(str::to_owned);
        }
        span.header_budget = usize::try_from(self.limits.max_header_bytes).unwrap_or(usize::MAX);
        if self.tags.has(Phase::Request) {
            let evaluated = self
                .tags
                .evaluate_request(headers, baggage, &mut span.header_budget);
            span.add_tags(evaluated);
        }
    }

    /// Whether the response phase reads anything (response header tags).
    pub fn reads_response_headers(&self) -> bool {
        self.tags.has(Phase::Response)
    }

    /// The response phase of a sampled span: the response header tags.
    pub fn on_response<H: Headers + ?Sized>(&self, span: &mut HttpSpan, headers: &H) {
        let evaluated = self
            .tags
            .evaluate_response(headers, &mut span.header_budget);
        span.add_tags(evaluated);
    }

    /// The end of a sampled span's stream: Envoy attributes for the conventions and the
    /// attribute tags.
    pub fn on_end(&self, span: &mut HttpSpan, host: &dyn Properties) {
        if !self.end_reads && span.status_code.is_some() {
            return;
        }
        span.end = End::read(&self.settings, host, span.status_code.is_some());
        if self.tags.has(Phase::End) {
            span.add_tags(self.tags.evaluate_end(host));
        }
    }

    /// The OTLP span, under the limits.
    pub fn finish(&self, span: HttpSpan) -> Finished {
        span.finish(&self.settings, &self.static_tags, &self.limits)
    }
}

#[cfg(test)]
mod tests;
