//! The echo service: the backend the broker provisions and binds.
//!
//! It speaks the original echo service's wire API (same paths, same status codes) and adds
//! what a real service needs: it stores each instance's and binding's attributes so the
//! broker can answer repeated requests as the spec says, gives every binding its own
//! credentials, protects its management API, and keeps its state in a [`Store`]: a journal
//! on disk or a PostgreSQL database, the same service on either.
//!
//! | call | answer |
//! | --- | --- |
//! | `GET /echo` (management) | 200 `{"instances": N, "bindings": M}` |
//! | `PUT /echo/{instance_id}` (management) | 200 provisioned, 409 exists (with the stored record) |
//! | `GET /echo/{instance_id}` (management) | 200 the record, 404 |
//! | `PATCH /echo/{instance_id}` (management) | 200 the updated record, 404 |
//! | `DELETE /echo/{instance_id}` (management) | 200 with counts, 404 |
//! | `PUT /echo/{instance_id}/{binding_id}` (management) | 200 with credentials, 409 exists, 404 no instance |
//! | `GET /echo/{instance_id}/{binding_id}` (management) | 200 the binding, 404 |
//! | `DELETE /echo/{instance_id}/{binding_id}` (management) | 200, 404 |
//! | `POST /echo/{instance_id}/{binding_id}` (binding credentials) | 200 `{"response": ...}`, 401 (also for a binding that does not exist) |
//! | `GET /echo/dashboard/{instance_id}?token=...` | 200 HTML page, 404 |
//! | `GET /health` | 200 `{"status": "ok"}`; 503 while the store cannot take changes |
//!
//! A change the store cannot make durable is answered 503 with a description that names the
//! store (the journal's disk, or the database); nothing is answered before it is durable.

use super::api::{
    non_empty, BindBody, BindingAttributes, BindingLifetime, BindingView, InstanceAttributes,
    InstanceUpdate, InstanceView,
};
use super::dashboard::{self, Dashboard};
use super::store::{
    preview_of, BindingLookup, BindingRecord, Bound, ClaimedIds, DashboardRecord, Deprovisioned,
    FigureKind, InstanceRecord, NewBinding, NewInstance, Provisioned, Store, StoreError, Unbound,
};
use crate::http::{self, HttpRequest, HttpResponse};
use crate::metrics::{self, RequestMetrics};
use crate::server::{Answered, Handler};
use serde_json::json;

/// The service whose instances answer with the message reversed.
const INVERT_SERVICE_ID: &str = "invert_service";

/// A bound app whose message `admit` let in, its binding's credentials checked against the
/// store: `handle` takes it with the request rather than asking the store for the same
/// credentials a second time (a round trip to PostgreSQL).
pub struct AdmittedCaller {
    /// The service of the binding's instance.
    service_id: Option<String>,
}

/// The echo service: where its state lives, and who may manage it.
pub struct EchoService {
    store: Box<dyn Store>,
    /// The user and password the broker must send to the management API; `None` leaves it
    /// open, which start-up allows only on a loopback address.
    management_credentials: Option<(String, String)>,
    /// Requests answered, for `/metrics`.
    requests: RequestMetrics,
}

impl EchoService {
    pub fn new(
        store: Box<dyn Store>,
        management_credentials: Option<(String, String)>,
    ) -> EchoService {
        EchoService {
            store,
            management_credentials,
            requests: RequestMetrics::default(),
        }
    }

    /// How many instances are held (for the start-up log line).
    pub fn instance_count(&self) -> Result<u64, StoreError> {
        self.store.totals().map(|totals| totals.instances)
    }

    /// Answers one request on its own, a bound app's credentials checked here (the server
    /// checks them first, in `admit`, and hands the caller it admitted to `handle`).
    pub fn handle(&self, request: &HttpRequest) -> HttpResponse {
        self.answer(request, None)
    }

    /// Answers one request; `admitted` is the bound app `admit` let in, if it did.
    fn answer(&self, request: &HttpRequest, admitted: Option<AdmittedCaller>) -> HttpResponse {
        let Some(segments) = request.path_segments() else {
            return bad_request("the path is not valid percent-encoded UTF-8");
        };
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        if let Some(problem) = segments.iter().skip(1).find_map(|id| http::id_problem(id)) {
            return bad_request(&format!("an id in the path {problem}"));
        }
        let method = request.method.as_str();
        match (method, segments.as_slice()) {
            ("GET", ["health"]) => self.health(),
            // `/echo/dashboard/X` is also binding X of an instance named "dashboard": a
            // management caller without a token fetches that binding.
            ("GET", ["echo", "dashboard", instance_id])
                if request.query("token").is_some() || !self.may_manage(request) =>
            {
                self.dashboard(request, instance_id)
            }
            ("POST", ["echo", instance_id, binding_id]) => {
                self.echo(request, instance_id, binding_id, admitted)
            }
            (_, ["echo"] | ["echo", _] | ["echo", _, _] | ["metrics"])
                if !self.may_manage(request) =>
            {
                management_unauthorized()
            }
            ("GET", ["metrics"]) => self.metrics(),
            ("GET", ["echo"]) => self.totals(),
            ("PUT", ["echo", instance_id]) => self.provision(request, instance_id),
            ("GET", ["echo", instance_id]) => self.fetch_instance(instance_id),
            ("PATCH", ["echo", instance_id]) => self.update(request, instance_id),
            ("DELETE", ["echo", instance_id]) => self.deprovision(request, instance_id),
            ("PUT", ["echo", instance_id, binding_id]) => {
                self.bind(request, instance_id, binding_id)
            }
            ("GET", ["echo", instance_id, binding_id]) => {
                self.fetch_binding(instance_id, binding_id)
            }
            ("DELETE", ["echo", instance_id, binding_id]) => {
                self.unbind(request, instance_id, binding_id)
            }
            (
                _,
                ["health"] | ["echo"] | ["echo", "dashboard", _] | ["echo", _] | ["echo", _, _],
            ) => HttpResponse::error(
                405,
                "MethodNotAllowed",
                &format!("{method} is not allowed here"),
            ),
            _ => not_found("no such resource"),
        }
    }

    fn may_manage(&self, request: &HttpRequest) -> bool {
        match &self.management_credentials {
            None => true,
            Some((user, password)) => {
                http::credentials_match(request.header("Authorization"), user, password)
            }
        }
    }

    /// `GET /health`: 200, or 503 while the store cannot take changes, so that a platform
    /// stops routing to this instance or restarts it.
    fn health(&self) -> HttpResponse {
        match self.store.health() {
            Ok(()) => HttpResponse::json(200, &json!({"status": "ok"})),
            Err(error) => HttpResponse::json(
                503,
                &json!({"status": "unavailable", "description": error.description}),
            ),
        }
    }

    /// `GET /echo`: how many instances and bindings are held (for operators and load tests).
    fn totals(&self) -> HttpResponse {
        match self.store.totals() {
            Ok(totals) => HttpResponse::json(
                200,
                &json!({"instances": totals.instances, "bindings": totals.bindings}),
            ),
            Err(error) => store_unavailable(error),
        }
    }

    /// `GET /metrics` (management credentials): the Prometheus text format.
    fn metrics(&self) -> HttpResponse {
        let mut out = String::new();
        self.requests.render("echo_service", &mut out);
        if let Ok(totals) = self.store.totals() {
            let gauge = |out: &mut String, name, help, value| {
                metrics::single(out, name, "gauge", help, value);
            };
            gauge(
                &mut out,
                "echo_service_instances",
                "Instances held.",
                totals.instances,
            );
            gauge(
                &mut out,
                "echo_service_bindings",
                "Bindings held.",
                totals.bindings,
            );
            let help = "Messages echoed, over all instances held.";
            gauge(&mut out, "echo_service_messages", help, totals.messages);
        }
        for figure in self.store.figures() {
            let kind = match figure.kind {
                FigureKind::Gauge => "gauge",
                FigureKind::Counter => "counter",
            };
            metrics::single(&mut out, &figure.name, kind, figure.help, figure.value);
        }
        HttpResponse {
            status: 200,
            content_type: metrics::CONTENT_TYPE,
            headers: Vec::new(),
            body: out.into_bytes(),
            rule: None,
        }
    }

    /// `PUT /echo/{instance_id}` with the instance's attributes (or no body, as the
    /// original broker sent).
    fn provision(&self, request: &HttpRequest, instance_id: &str) -> HttpResponse {
        let attributes = match optional_body::<InstanceAttributes>(&request.body) {
            Ok(attributes) => attributes.map(normalise_instance),
            Err(response) => return response,
        };
        let Ok(dashboard_token) = http::random_token() else {
            return unavailable("no randomness available for the dashboard token");
        };
        let new = NewInstance {
            attributes,
            dashboard_token,
        };
        let with_dashboard = |view: InstanceView, instance: &InstanceRecord| {
            let mut body = serde_json::to_value(view).unwrap_or_default();
            body["dashboard_url"] = json!(dashboard_url(request, instance_id, instance));
            body
        };
        match self.store.provision(instance_id, new) {
            Ok(Provisioned::Made(instance)) => {
                let view = instance_view(instance_id, &instance, "provision_success");
                HttpResponse::json(200, &with_dashboard(view, &instance))
            }
            Ok(Provisioned::Exists(instance)) => {
                let view = instance_view(instance_id, &instance, "exists");
                let mut body = with_dashboard(view, &instance);
                body["error"] = json!("Conflict");
                body["description"] = json!(format!("instance '{instance_id}' already exists"));
                HttpResponse::json(409, &body)
            }
            Err(error) => store_unavailable(error),
        }
    }

    /// `GET /echo/{instance_id}`.
    fn fetch_instance(&self, instance_id: &str) -> HttpResponse {
        match self.store.instance(instance_id) {
            Ok(Some(instance)) => {
                HttpResponse::json(200, &instance_view(instance_id, &instance, "provisioned"))
            }
            Ok(None) => no_instance(instance_id),
            Err(error) => store_unavailable(error),
        }
    }

    /// `PATCH /echo/{instance_id}` with an [`InstanceUpdate`].
    fn update(&self, request: &HttpRequest, instance_id: &str) -> HttpResponse {
        let update = match optional_body::<InstanceUpdate>(&request.body) {
            Ok(update) => update.unwrap_or_default(),
            Err(response) => return response,
        };
        match self.store.update(instance_id, update) {
            Ok(Some(instance)) => HttpResponse::json(
                200,
                &instance_view(instance_id, &instance, "update_success"),
            ),
            Ok(None) => no_instance(instance_id),
            Err(error) => store_unavailable(error),
        }
    }

    /// `DELETE /echo/{instance_id}`: drops the instance with its bindings and messages.
    fn deprovision(&self, request: &HttpRequest, instance_id: &str) -> HttpResponse {
        match self.store.deprovision(instance_id, &ids_in_query(request)) {
            Ok(Deprovisioned::Removed(instance)) => HttpResponse::json(
                200,
                &json!({
                    "id": instance_id,
                    "state": "deprovision_success",
                    "bindings": instance.bindings,
                    "messages": instance.messages,
                }),
            ),
            Ok(Deprovisioned::NoInstance) => no_instance(instance_id),
            Ok(Deprovisioned::OtherIds(refusal)) => bad_request(&refusal.0),
            Err(error) => store_unavailable(error),
        }
    }

    /// `PUT /echo/{instance_id}/{binding_id}` with a [`BindBody`]: creates the binding and
    /// its credentials.
    fn bind(&self, request: &HttpRequest, instance_id: &str, binding_id: &str) -> HttpResponse {
        let (attributes, lifetime) = match optional_body::<BindBody>(&request.body) {
            Ok(Some(body)) => (Some(normalise_binding(body.attributes)), body.lifetime),
            Ok(None) => (None, None),
            Err(response) => return response,
        };
        if let Some(problem) = lifetime.and_then(lifetime_problem) {
            return bad_request(&problem);
        }
        let (Ok(user_token), Ok(password)) = (http::random_token(), http::random_token()) else {
            return unavailable("no randomness available for the binding's credentials");
        };
        let claimed = ClaimedIds {
            service_id: attributes.as_ref().map(|a| a.service_id.clone()),
            plan_id: attributes.as_ref().map(|a| a.plan_id.clone()),
        };
        let new = NewBinding {
            attributes,
            username: format!("app-{}", &user_token[..12]),
            password,
            lifetime,
        };
        match self.store.bind(instance_id, binding_id, &claimed, new) {
            Ok(Bound::Made(binding)) => {
                HttpResponse::json(200, &binding_view(binding_id, &binding, "bind_success"))
            }
            Ok(Bound::Exists(binding)) => {
                let mut body = serde_json::to_value(binding_view(binding_id, &binding, "exists"))
                    .unwrap_or_default();
                body["error"] = json!("Conflict");
                body["description"] = json!(format!("binding '{binding_id}' already exists"));
                HttpResponse::json(409, &body)
            }
            Ok(Bound::NoInstance) => no_instance(instance_id),
            Ok(Bound::OtherIds(refusal)) => bad_request(&refusal.0),
            Err(error) => store_unavailable(error),
        }
    }

    /// `GET /echo/{instance_id}/{binding_id}`.
    fn fetch_binding(&self, instance_id: &str, binding_id: &str) -> HttpResponse {
        match self.store.binding(instance_id, binding_id) {
            Ok(BindingLookup::Found(binding)) => {
                HttpResponse::json(200, &binding_view(binding_id, &binding, "bound"))
            }
            Ok(BindingLookup::NoInstance) => no_instance(instance_id),
            Ok(BindingLookup::NoBinding) => no_binding(instance_id, binding_id),
            Err(error) => store_unavailable(error),
        }
    }

    /// `DELETE /echo/{instance_id}/{binding_id}`: the binding's credentials stop working at once.
    fn unbind(&self, request: &HttpRequest, instance_id: &str, binding_id: &str) -> HttpResponse {
        match self
            .store
            .unbind(instance_id, binding_id, &ids_in_query(request))
        {
            Ok(Unbound::Removed(binding)) => HttpResponse::json(
                200,
                &json!({"id": binding_id, "app": app_of(&binding), "state": "unbind_success"}),
            ),
            Ok(Unbound::NoInstance) => no_instance(instance_id),
            Ok(Unbound::NoBinding) => no_binding(instance_id, binding_id),
            Ok(Unbound::OtherIds(refusal)) => bad_request(&refusal.0),
            Err(error) => store_unavailable(error),
        }
    }

    /// `POST /echo/{instance_id}/{binding_id}` with `{"message": "..."}`: what a bound app
    /// calls, with its binding's credentials. Instances of the invert service answer the
    /// message reversed.
    /// The body is parsed as JSON whatever its `Content-Type`, as the broker does (the
    /// original answered 415 without `application/json`; curl's `-d` sends a form type).
    fn echo(
        &self,
        request: &HttpRequest,
        instance_id: &str,
        binding_id: &str,
        admitted: Option<AdmittedCaller>,
    ) -> HttpResponse {
        let message = match http::parse_json_object(&request.body) {
            Ok(body) => match body.get("message") {
                Some(serde_json::Value::String(message)) => message.clone(),
                _ => return bad_request("the body needs a string field \"message\""),
            },
            Err(problem) => return bad_request(&problem),
        };
        let service_id = match admitted {
            // Checked by `admit` (the binding may have gone since: recording the message
            // checks that it is still there).
            Some(caller) => caller.service_id,
            None => match self.check_binding_caller(request, instance_id, binding_id) {
                Ok(service_id) => service_id,
                Err(refusal) => return refusal,
            },
        };
        let inverts = service_id.as_deref() == Some(INVERT_SERVICE_ID);
        match self
            .store
            .record_message(instance_id, binding_id, &preview_of(&message))
        {
            Ok(true) => {
                let response: String = if inverts {
                    message.chars().rev().collect()
                } else {
                    message
                };
                HttpResponse::json(200, &json!({ "response": response }))
            }
            Ok(false) => binding_unauthorized(),
            Err(error) => store_unavailable(error),
        }
    }

    /// `GET /echo/dashboard/{instance_id}?token=...`: a small HTML page. A wrong or missing
    /// token gets the same 404 as an instance that does not exist.
    fn dashboard(&self, request: &HttpRequest, instance_id: &str) -> HttpResponse {
        let token = request.query("token").unwrap_or_default();
        // No stored token has another shape: such a caller never reaches the store.
        let token_shaped = token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit());
        if !token_shaped {
            return no_dashboard(instance_id);
        }
        match self.store.dashboard(instance_id) {
            Ok(Some(shown))
                if http::constant_time_eq(
                    token.as_bytes(),
                    shown.instance.dashboard_token.as_bytes(),
                ) =>
            {
                HttpResponse::page(dashboard::render(&dashboard_of(instance_id, &shown)))
            }
            Err(error) => store_unavailable(error),
            _ => no_dashboard(instance_id),
        }
    }

    /// A bound app's call must carry its binding's credentials. A binding that does not
    /// exist (or no longer does) gets the same 401 as wrong credentials, after the same
    /// comparison: a caller without credentials learns nothing about which instances and
    /// bindings exist. Answers the instance's service.
    fn check_binding_caller(
        &self,
        request: &HttpRequest,
        instance_id: &str,
        binding_id: &str,
    ) -> Result<Option<String>, HttpResponse> {
        // Nothing the store could answer matches a caller without credentials or an id no
        // binding can have: such a caller never reaches the store.
        let no_binding_can_match = [instance_id, binding_id]
            .iter()
            .any(|id| http::id_problem(id).is_some());
        if no_binding_can_match
            || http::basic_credentials(request.header("Authorization")).is_none()
        {
            return Err(binding_unauthorized());
        }
        let caller = self
            .store
            .caller(instance_id, binding_id)
            .map_err(store_unavailable)?;
        let (username, password) = caller.as_ref().map_or(("", ""), |caller| {
            (caller.username.as_str(), caller.password.as_str())
        });
        let matches = http::credentials_match(request.header("Authorization"), username, password);
        // Expired credentials are refused where they are used, as unknown ones are: the
        // expiry the broker announced is a promise the service keeps.
        let expired = caller
            .as_ref()
            .and_then(|caller| caller.lifetime)
            .is_some_and(|lifetime| lifetime.expired_at(http::unix_now()));
        match caller {
            Some(caller) if matches && !expired => Ok(caller.service_id),
            _ => Err(binding_unauthorized()),
        }
    }
}

/// 404 for an instance that does not exist.
fn no_instance(instance_id: &str) -> HttpResponse {
    not_found(&format!("instance '{instance_id}' does not exist"))
}

/// 404 for a dashboard asked with a token that is not the instance's, or of an instance
/// that does not exist: the same answer, so the token is the only way in.
fn no_dashboard(instance_id: &str) -> HttpResponse {
    not_found(&format!(
        "no dashboard for instance '{instance_id}' with this token"
    ))
}

/// 404 for a binding that does not exist (of an instance that does).
fn no_binding(instance_id: &str, binding_id: &str) -> HttpResponse {
    not_found(&format!(
        "binding '{binding_id}' of instance '{instance_id}' does not exist"
    ))
}

/// The latest moment a binding's lifetime may name: the last second of the year 9999, the
/// end of the range a timestamp has on every store (and in the spec's date-time format).
pub const LATEST_EXPIRY: u64 = 253_402_300_799;

/// Why a binding's lifetime cannot be kept, if it cannot: it expires past
/// [`LATEST_EXPIRY`], or asks for renewal after it expires.
fn lifetime_problem(lifetime: BindingLifetime) -> Option<String> {
    if lifetime.expires_at > LATEST_EXPIRY {
        return Some(format!(
            "lifetime.expires_at {} is past the latest expiry a binding may have ({LATEST_EXPIRY}, the end of the year 9999)",
            lifetime.expires_at
        ));
    }
    if lifetime.renew_before > lifetime.expires_at {
        return Some("lifetime.renew_before is after lifetime.expires_at".into());
    }
    None
}

/// 503 for a store that cannot answer now; its description names the store.
fn store_unavailable(error: StoreError) -> HttpResponse {
    HttpResponse::error(503, "StorageUnavailable", &error.description)
}

/// The `service_id` and `plan_id` query parameters of a delete, if the caller sent them.
fn ids_in_query(request: &HttpRequest) -> ClaimedIds {
    ClaimedIds {
        service_id: request.query("service_id"),
        plan_id: request.query("plan_id"),
    }
}

fn normalise_instance(mut attributes: InstanceAttributes) -> InstanceAttributes {
    attributes.context = non_empty(attributes.context);
    attributes.parameters = non_empty(attributes.parameters);
    attributes.maintenance_info = non_empty(attributes.maintenance_info);
    attributes
}

fn normalise_binding(mut attributes: BindingAttributes) -> BindingAttributes {
    attributes.bind_resource = non_empty(attributes.bind_resource);
    attributes.parameters = non_empty(attributes.parameters);
    attributes
}

fn instance_view(instance_id: &str, instance: &InstanceRecord, state: &str) -> InstanceView {
    InstanceView {
        instance_id: instance_id.to_string(),
        state: Some(state.to_string()),
        attributes: instance.attributes.clone(),
        dashboard_token: Some(instance.dashboard_token.clone()),
        bindings: instance.bindings,
        messages: instance.messages,
    }
}

fn binding_view(binding_id: &str, binding: &BindingRecord, state: &str) -> BindingView {
    BindingView {
        id: binding_id.to_string(),
        lifetime: binding.lifetime,
        app: app_of(binding),
        state: Some(state.to_string()),
        attributes: binding.attributes.clone(),
        username: Some(binding.username.clone()),
        password: Some(binding.password.clone()),
    }
}

fn app_of(binding: &BindingRecord) -> Option<String> {
    binding.attributes.as_ref().and_then(|a| a.app_guid.clone())
}

/// What the dashboard page shows of an instance.
fn dashboard_of<'a>(instance_id: &'a str, shown: &'a DashboardRecord) -> Dashboard<'a> {
    let attributes = shown.instance.attributes.as_ref();
    Dashboard {
        instance_id,
        service_id: attributes.map(|attributes| attributes.service_id.as_str()),
        plan_id: attributes.map(|attributes| attributes.plan_id.as_str()),
        binding_ids: shown.binding_ids.iter().map(String::as_str).collect(),
        recent_messages: shown.recent_messages.iter().map(String::as_str).collect(),
        message_count: shown.instance.messages,
    }
}

/// The dashboard's address as seen by the caller, as the original echo service answered it.
fn dashboard_url(request: &HttpRequest, instance_id: &str, instance: &InstanceRecord) -> String {
    let host = request.header("Host").unwrap_or("localhost");
    format!(
        "http://{host}/echo/dashboard/{}?token={}",
        http::percent_encode(instance_id),
        instance.dashboard_token
    )
}

/// Parses an optional JSON body: empty means `None` (the original broker sent none).
fn optional_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Option<T>, HttpResponse> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let object = http::parse_json_object(body).map_err(|problem| bad_request(&problem))?;
    serde_json::from_value(serde_json::Value::Object(object))
        .map(Some)
        .map_err(|error| bad_request(&format!("the body does not fit: {error}")))
}

fn bad_request(description: &str) -> HttpResponse {
    HttpResponse::error(400, "BadRequest", description)
}

fn not_found(description: &str) -> HttpResponse {
    HttpResponse::error(404, "NotFound", description)
}

fn unavailable(description: &str) -> HttpResponse {
    HttpResponse::error(503, "Unavailable", description)
}

fn binding_unauthorized() -> HttpResponse {
    HttpResponse::error(401, "Unauthorized", "use the binding's credentials")
        .with_header("WWW-Authenticate", "Basic realm=\"echo\"".into())
}

fn management_unauthorized() -> HttpResponse {
    HttpResponse::error(
        401,
        "Unauthorized",
        "the management API needs the broker's credentials",
    )
    .with_header("WWW-Authenticate", "Basic realm=\"echo-service\"".into())
}

/// The route a request took, for the `route` label of `/metrics`.
fn route_of(method: &str, segments: &[&str]) -> &'static str {
    match (method, segments) {
        ("GET", ["health"]) => "health",
        ("GET", ["metrics"]) => "metrics",
        ("GET", ["echo"]) => "totals",
        ("GET", ["echo", "dashboard", _]) => "dashboard",
        ("POST", ["echo", _, _]) => "message",
        ("PUT", ["echo", _]) => "provision",
        ("GET", ["echo", _]) => "fetch_instance",
        ("PATCH", ["echo", _]) => "update",
        ("DELETE", ["echo", _]) => "deprovision",
        ("PUT", ["echo", _, _]) => "bind",
        ("GET", ["echo", _, _]) => "fetch_binding",
        ("DELETE", ["echo", _, _]) => "unbind",
        _ => "other",
    }
}

/// How `server.rs` serves the echo service: a request that may carry a body is read only
/// from a caller with credentials (a bound app's message with its binding's, anything else
/// with the management API's); the route then checks again against the state it locks.
impl Handler for EchoService {
    /// The bound app whose message was admitted; `None` for every other request.
    type Admission = Option<AdmittedCaller>;

    fn admit(&self, head: &HttpRequest) -> Result<Option<AdmittedCaller>, HttpResponse> {
        let segments = head.path_segments().unwrap_or_default();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (head.method.as_str(), segments.as_slice()) {
            ("GET", _) => Ok(None),
            ("POST", ["echo", instance_id, binding_id]) => {
                let service_id = self.check_binding_caller(head, instance_id, binding_id)?;
                Ok(Some(AdmittedCaller { service_id }))
            }
            _ if self.may_manage(head) => Ok(None),
            _ => Err(management_unauthorized()),
        }
    }

    fn handle(&self, request: &HttpRequest, admitted: Option<AdmittedCaller>) -> HttpResponse {
        self.answer(request, admitted)
    }

    /// A request is one call to the store: on PostgreSQL bounded by its deadline, on the
    /// journal by an fsync (milliseconds).
    fn longest_handling(&self) -> std::time::Duration {
        self.store.longest_call()
    }

    /// The platform's request identity, which the broker forwards on its management calls,
    /// so one platform request can be followed through the broker's log and this one.
    fn observe(&self, answered: &Answered) {
        let request = answered.request;
        let segments = request.path_segments().unwrap_or_default();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let route = route_of(&request.method, &segments);
        self.requests
            .record(route, answered.response.status, answered.elapsed);
    }

    fn log_context(&self, request: &HttpRequest) -> crate::logging::RequestContext {
        crate::logging::RequestContext {
            request_identity: request
                .header(super::api::REQUEST_IDENTITY_HEADER)
                .map(str::to_string),
            user: None,
        }
    }
}
