//! How the server runs the teaching file, `src/broker.rs`: a request's headers pass its
//! checks (`admit`), its router picks the handler that answers (`handle`), and the answer
//! goes to the conversation page and the metrics (`observe`). None of this is the OSB API:
//! it is what joins that file to the HTTP server (`server.rs`).

use super::{originating_user, route, Answer, Broker, BrokerError, REQUEST_IDENTITY_HEADER};
use crate::echo_client;
use crate::http::{self, HttpRequest, HttpResponse};
use crate::logging::RequestContext;
use crate::server::{Answered, Handler};

/// A route: the handler of `broker.rs` that answers it, and its name and section of the spec
/// (for the conversation page and the `route` label of `/metrics`, in `observer.rs`).
pub(super) struct Route<'p> {
    name: &'static str,
    spec_section: &'static str,
    handler: Box<RouteHandler<'p>>,
}

/// A handler with the route's ids in hand, waiting for the request.
type RouteHandler<'p> = dyn FnOnce(&Broker, &HttpRequest) -> Answer + 'p;

pub(super) fn to<'p>(
    name: &'static str,
    spec_section: &'static str,
    handler: impl FnOnce(&Broker, &HttpRequest) -> Answer + 'p,
) -> Option<Route<'p>> {
    Some(Route {
        name,
        spec_section,
        handler: Box::new(handler),
    })
}

/// How a request is answered, in this order (`server.rs` calls these): `admit` runs the
/// checks on the headers alone, so that no body is read for a client without credentials;
/// `handle` routes the request, body and all; `observe` hands the answer to the page and
/// the metrics. Every answer echoes the platform's `X-Broker-API-Request-Identity`, and
/// every call to the echo service on its behalf carries it, so one request can be followed
/// through both servers' logs.
impl Handler for Broker {
    fn admit(&self, head: &HttpRequest) -> Result<(), HttpResponse> {
        self.checks(head)
            .map_err(|refusal| respond(head, Err(refusal)))
    }

    fn handle(&self, request: &HttpRequest) -> HttpResponse {
        respond(request, self.answer(request))
    }

    /// The time a call to the echo service gets to be answered: a stopping broker reads no
    /// request once it could not wait that long. (An update makes two calls; should both be
    /// slow during a stop, the server answers 503 in its place when its answers are due.)
    fn longest_handling(&self) -> std::time::Duration {
        crate::echo_client::ECHO_SERVICE_TIMEOUT
    }

    /// The answer, with the name the router gives its route and the originating user.
    fn observe(&self, answered: &Answered) {
        let user = originating_user(answered.request).ok().flatten();
        let Some(segments) = answered.request.path_segments() else {
            return self.observer.observe(answered, None, user); // a path no route can match
        };
        let path: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = &answered.request.method;
        let named = route(method, &path).map(|route| (route.name, route.spec_section));
        self.observer.observe(answered, named, user);
    }

    /// The platform's request identity and the originating user, for the log line, as the
    /// conversation page shows them (redacted, at most 256 bytes).
    fn log_context(&self, request: &HttpRequest) -> RequestContext {
        let shown =
            |value: &str| crate::redact::shown(value, crate::conversation::MAX_HEADER_BYTES);
        RequestContext {
            request_identity: request.header(REQUEST_IDENTITY_HEADER).map(shown),
            user: originating_user(request)
                .ok()
                .flatten()
                .as_deref()
                .map(shown),
        }
    }
}

impl Broker {
    /// Finds the request's route and runs its handler.
    fn answer(&self, request: &HttpRequest) -> Answer {
        // Until `_forwarded` is dropped at the end of this function, every call this thread
        // makes to the echo service carries the platform's request identity.
        let identity = request.header(REQUEST_IDENTITY_HEADER);
        let _forwarded = echo_client::forward_request_identity(identity);
        let segments = request.path_segments().ok_or_else(|| {
            BrokerError::BadRequest("the path is not valid percent-encoded UTF-8".into())
        })?;
        let path: Vec<&str> = segments.iter().map(String::as_str).collect();
        let answer = match route(&request.method, &path) {
            Some(route) => (route.handler)(self, request),
            None => Err(not_routed(&request.method, &path, request.path())),
        };
        answer
    }
}

/// No route: a 405 with the methods the path does answer (`Allow`), or a 404.
fn not_routed(method: &str, path: &[&str], raw_path: &str) -> BrokerError {
    let allowed: Vec<&str> = ["GET", "PUT", "PATCH", "DELETE"]
        .into_iter()
        .filter(|method| route(method, path).is_some())
        .collect();
    if allowed.is_empty() {
        BrokerError::NotFound(format!("{raw_path} is not part of the API"))
    } else {
        BrokerError::MethodNotAllowed(
            format!("{method} is not part of the API at {raw_path}"),
            allowed.join(", "),
        )
    }
}

/// The answer as HTTP, with the request identity echoed.
fn respond(request: &HttpRequest, answer: Answer) -> HttpResponse {
    let mut response = answer.unwrap_or_else(|error| error.to_response());
    // Platforms send a UUID; a value that could forge a header is never sent back.
    if let Some(identity) = http::safe_to_echo(request.header(REQUEST_IDENTITY_HEADER)) {
        response
            .headers
            .push((REQUEST_IDENTITY_HEADER, identity.to_string()));
    }
    response
}
