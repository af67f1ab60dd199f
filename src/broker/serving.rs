//! How the HTTP server (`server.rs`) runs the teaching file, `src/broker.rs`: a request's
//! headers pass its checks (`admit`), its answer is made (`handle`), and the answer goes to
//! the conversation page and the metrics (`observe`). None of this is the OSB API.

use super::{originating_user, routes, with_request_identity, Broker};
use crate::echo::api::REQUEST_IDENTITY_HEADER;
use crate::http::{HttpRequest, HttpResponse};
use crate::logging::RequestContext;
use crate::osb::is_osb_call;
use crate::server::{Answered, Handler};

/// How a request is answered, in this order (`server.rs` calls these): `admit` runs the
/// checks on the headers alone, so that no body is read for a client without credentials;
/// `handle` answers the request, body and all; `observe` hands the answer to the page and
/// the metrics.
impl Handler for Broker {
    /// The checks decide alone: `handle` needs nothing of them but the request.
    type Admission = ();

    /// The OSB API's calls pass every check of `src/broker.rs`; the platform's health check
    /// needs none, and the pages for people (the conversation, `/metrics`) only the
    /// credentials.
    fn admit(&self, head: &HttpRequest) -> Result<(), HttpResponse> {
        let checked = if head.method == "GET" && head.path() == "/health" {
            Ok(())
        } else if is_osb_call(head) {
            self.check_headers(head)
        } else {
            self.check_credentials(head)
        };
        checked.map_err(|refusal| with_request_identity(head, refusal.to_response()))
    }

    fn handle(&self, request: &HttpRequest, _admitted: ()) -> HttpResponse {
        self.answer_checked(request)
    }

    /// The time a call to the echo service gets to be answered: a stopping broker reads no
    /// request once it could not wait that long. (An update makes two calls, a rotation
    /// three; should they all be slow during a stop, the server answers 503 in the
    /// handler's place when its answers are due.)
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
        let named = routes::route(method, &path).map(|route| (route.name, route.spec_section));
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
