//! What the broker does with what it answered, beyond the OSB API: `src/broker.rs` hands
//! every answer here, with the name its router gave the route, and this file counts it for
//! `/metrics`, keeps it for the conversation page (`GET /`) and, with `LOG_LEVEL=debug`,
//! logs its bodies.
//!
//! Only what passed the broker's checks (credentials, API version, originating identity) is
//! kept or logged: a refusal is counted by status under the route `checks`, and its body,
//! which the server never even read, is never looked at.

use crate::conversation::{
    self, Conversation, Exchange, ShownRule, MAX_BODY_BYTES, MAX_HEADER_BYTES, MAX_URL_BYTES,
};
use crate::echo::api::REQUEST_IDENTITY_HEADER;
use crate::http::{self, HttpRequest, HttpResponse};
use crate::metrics::{self, RequestMetrics};
use crate::osb::{is_osb_call, ORIGINATING_IDENTITY_HEADER, VERSION_HEADER};
use crate::redact::{json_for_people, shown};
use crate::server::Answered;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A route as the broker's router names it: the handler's name in `src/broker.rs` and the
/// title of its section in the spec (empty for the routes beyond the OSB API).
pub type RouteName = (&'static str, &'static str);

/// What names the requests the router did not take (unknown paths, other methods).
const UNROUTED: RouteName = ("router", "Service Broker Errors");

/// The `route` label of the requests the checks refused.
const REFUSED: &str = "checks";

/// The echo service's failures by kind: 502 a bad answer, 503 unreachable, 504 too slow.
const BACKEND_FAILURE_KINDS: [(u16, &str); 3] =
    [(502, "bad_answer"), (503, "unavailable"), (504, "timeout")];

/// What one broker process saw.
pub struct Observer {
    conversation: Conversation,
    requests: RequestMetrics,
    backend_failures: [AtomicU64; 3],
    /// The catalog as the page shows it, made once: the catalog is the most frequent call.
    catalog_shown: Arc<str>,
}

impl Observer {
    pub fn new(catalog_json: &[u8]) -> Observer {
        Observer {
            conversation: Conversation::default(),
            requests: RequestMetrics::default(),
            backend_failures: Default::default(),
            catalog_shown: Arc::from(json_for_people(catalog_json, MAX_BODY_BYTES)),
        }
    }

    /// Counts an answer; keeps it for the page (and logs its bodies at debug) when it was an
    /// OSB call that passed the checks and a handler answered it. `route` is `None` when the
    /// router took none; `user` is the originating user the request names, as the broker's
    /// check of the header read it.
    pub fn observe(&self, answered: &Answered, route: Option<RouteName>, user: Option<String>) {
        let status = answered.response.status;
        if !answered.admitted {
            self.requests.record(REFUSED, status, answered.elapsed);
            return;
        }
        let (handler, spec_section) = route.unwrap_or(UNROUTED);
        self.requests.record(handler, status, answered.elapsed);
        if !answered.handled {
            // The server refused the body (too large, too slow): no handler ran.
            return;
        }
        // A handler's 502, 503 or 504 is always the echo service's failure.
        if let Some(kind) = BACKEND_FAILURE_KINDS
            .iter()
            .position(|(failure, _)| *failure == status)
        {
            self.backend_failures[kind].fetch_add(1, Ordering::Relaxed);
        }
        if !is_osb_call(answered.request) || self.repeats_newest_catalog_fetch(answered, handler) {
            return;
        }
        let exchange = self.exchange(answered, handler, spec_section, user);
        if log::log_enabled!(log::Level::Debug) {
            log::debug!(
                "{} {}: request body {} / response body {}",
                exchange.method,
                exchange.url,
                exchange.request_body,
                exchange.response_body
            );
        }
        self.conversation.record(exchange);
    }

    /// The exchange as the page keeps it: every part redacted and bounded here, once.
    fn exchange(
        &self,
        answered: &Answered,
        handler: &'static str,
        spec_section: &'static str,
        user: Option<String>,
    ) -> Exchange {
        let (request, response) = (answered.request, answered.response);
        let header = |name: &str| {
            request
                .header(name)
                .map(|value| shown(value, MAX_HEADER_BYTES))
        };
        let response_body = if handler == "catalog" && response.status == 200 {
            Arc::clone(&self.catalog_shown)
        } else {
            Arc::from(json_for_people(&response.body, MAX_BODY_BYTES))
        };
        Exchange {
            time: crate::logging::rfc3339(answered.at),
            repeats: 0,
            last_repeat: None,
            method: shown(&request.method, MAX_HEADER_BYTES),
            url: shown(&request.url, MAX_URL_BYTES),
            status: response.status,
            duration_ms: (answered.elapsed.as_secs_f64() * 10_000.0).round() / 10.0,
            api_version: header(VERSION_HEADER),
            request_identity: header(REQUEST_IDENTITY_HEADER),
            user: user.map(|user| shown(&user, MAX_HEADER_BYTES)),
            handler,
            spec_section: spec_link(spec_section),
            rule: response.rule.map(|rule| {
                let section = rule.section.unwrap_or(spec_section);
                ShownRule {
                    says: rule.says,
                    section,
                    link: spec_link(section),
                }
            }),
            instance_id: instance_id_of(request),
            request_body: Arc::from(json_for_people(&request.body, MAX_BODY_BYTES)),
            response_body,
        }
    }

    /// Whether this answer is one more catalog fetch like the newest one kept (no request
    /// identity or user to tell them apart, the same answer), and was counted on it: a
    /// load test's thousands of fetches a second then cost the page one entry.
    fn repeats_newest_catalog_fetch(&self, answered: &Answered, handler: &str) -> bool {
        let request = answered.request;
        let anonymous = request.header(REQUEST_IDENTITY_HEADER).is_none()
            && request.header(ORIGINATING_IDENTITY_HEADER).is_none();
        if handler != "catalog" || !anonymous || log::log_enabled!(log::Level::Debug) {
            return false;
        }
        let api_version = request
            .header(VERSION_HEADER)
            .map(|value| shown(value, MAX_HEADER_BYTES));
        let same = |newest: &Exchange| {
            newest.handler == "catalog"
                && newest.status == answered.response.status
                && newest.request_identity.is_none()
                && newest.user.is_none()
                && newest.api_version == api_version
        };
        self.conversation.count_repeat(same, answered.at)
    }

    /// `GET /` (`?instance=ID` to filter, `?format=json` for tools): the conversation page.
    pub fn conversation_page(&self, request: &HttpRequest) -> HttpResponse {
        let instance_id = request.query("instance");
        let exchanges = self.conversation.recent(instance_id.as_deref());
        if request.query("format").as_deref() == Some("json") {
            return HttpResponse::json(200, &conversation::render_json(&exchanges));
        }
        let now = std::time::SystemTime::now();
        HttpResponse::page(conversation::render_html(
            &exchanges,
            instance_id.as_deref(),
            now,
        ))
    }

    /// `GET /metrics`: requests by route and status, latencies, and the echo service's
    /// failures by kind, in the Prometheus text format.
    pub fn metrics(&self) -> HttpResponse {
        let mut out = String::new();
        self.requests.render("echo_broker", &mut out);
        let name = "echo_broker_backend_failures_total";
        metrics::header(
            &mut out,
            name,
            "counter",
            "Failed calls to the echo service, by kind.",
        );
        for ((_, kind), count) in BACKEND_FAILURE_KINDS.iter().zip(&self.backend_failures) {
            let count = count.load(Ordering::Relaxed);
            out.push_str(&format!("{name}{{kind=\"{kind}\"}} {count}\n"));
        }
        HttpResponse {
            status: 200,
            content_type: metrics::CONTENT_TYPE,
            headers: Vec::new(),
            body: out.into_bytes(),
            rule: None,
        }
    }
}

/// The instance an OSB call is about, for the page's filter: none for an id no handler
/// would accept.
fn instance_id_of(request: &HttpRequest) -> Option<String> {
    let mut segments = request.path().split('/').filter(|s| !s.is_empty());
    match (segments.next(), segments.next(), segments.next()) {
        (Some("v2"), Some("service_instances"), Some(instance_id)) => {
            http::percent_decode(instance_id).filter(|id| http::id_problem(id).is_none())
        }
        _ => None,
    }
}

/// The address of a section of the spec, from its title, for the page's links.
fn spec_link(section: &str) -> String {
    const SPEC_URL: &str =
        "https://github.com/openservicebrokerapi/servicebroker/blob/v2.17/spec.md";
    if section.is_empty() {
        String::new()
    } else {
        format!("{SPEC_URL}#{}", anchor_of(section))
    }
}

/// The anchor GitHub gives a heading: `Fetching a Service Instance` is
/// `fetching-a-service-instance`.
fn anchor_of(title: &str) -> String {
    title
        .chars()
        .filter_map(|c| match c {
            ' ' | '-' => Some('-'),
            c if c.is_alphanumeric() || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::spec_link;

    #[test]
    fn a_sections_link_is_the_anchor_github_gives_its_title() {
        let link = spec_link("Polling Last Operation for Service Instances");
        assert!(link.ends_with("spec.md#polling-last-operation-for-service-instances"));
        assert!(spec_link("API Version Header").ends_with("#api-version-header"));
        assert_eq!(spec_link(""), "");
    }
}
