//! The service broker: the Open Service Broker API v2.17 request path, top to bottom.
//!
//! Read this file in order and you have read the OSB API as a synchronous broker speaks it:
//! the version it speaks, where the backend is, the catalog, the errors, the checks every
//! request passes (basic auth, API version, originating identity), the router, and then one
//! handler per call in lifecycle order: catalog, provision, fetch, update, deprovision,
//! bind, fetch binding, unbind, last operation. Each handler's doc comment shows the
//! request it answers and its responses.
//!
//! The broker keeps no state of its own: it asks the echo service (`echo_client.rs`), so
//! several brokers can run behind one platform router. The source of truth is the platform
//! (spec, "Orphan Mitigation"): a broker must hold every instance and binding the platform
//! knows of, and none other.
//!
//! Why the protocol is shaped as it is: platforms retry. A platform that got a 5xx, or no
//! answer in time, on provision or bind cannot know whether the resource now exists, so it
//! sends DELETE until the broker answers success (orphan mitigation). Every call must
//! therefore be safe to repeat: a PUT repeated with the same attributes is 200 ("already
//! done"), an id reused with other attributes is 409, and a DELETE of what is not there is
//! 410 ("already gone": a repeated DELETE learns that its work is done, and Cloud Foundry
//! counts it a success). A 4xx MUST leave the resources unchanged (a 5xx SHOULD): a refused
//! request changes nothing, so the platform may fix it and send it again.

use crate::catalog::{Catalog, Plan, Service};
use crate::echo::api::{
    non_empty, BindingAttributes, BindingView, InstanceAttributes, InstanceUpdate, InstanceView,
};
use crate::echo_client::{self, Bound, EchoClient, EchoError, Provisioned, Removed, TlsRoots};
use crate::http::{self, HttpRequest, HttpResponse};
use crate::logging::RequestContext;
use crate::observer::Observer;
use crate::server::{Answered, Handler};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------
// The API version this broker speaks
// ---------------------------------------------------------------------------------------

/// Every request carries `X-Broker-API-Version: MAJOR.MINOR`. This broker implements 2.17
/// and answers anything from 2.3 (the original's version) on: Cloud Controller sends 2.15,
/// Korifi 2.17.
const API_MAJOR: u32 = 2;
const OLDEST_API_MINOR: u32 = 3;
pub const VERSION_HEADER: &str = "X-Broker-API-Version";
pub const ORIGINATING_IDENTITY_HEADER: &str = "X-Broker-API-Originating-Identity";
const REQUEST_IDENTITY_HEADER: &str = crate::echo::api::REQUEST_IDENTITY_HEADER;

// ---------------------------------------------------------------------------------------
// The broker: its catalog, its login, and where the backend is
// ---------------------------------------------------------------------------------------

/// What the broker needs to run.
pub struct BrokerConfig {
    pub catalog: Catalog,
    /// The basic-auth user and password the platform must send (the broker's own login).
    pub login: (String, String),
    /// The echo service, e.g. `http://127.0.0.1:8090` (the original's `service_base`).
    pub service_base: String,
    /// The echo service's management login, if it has one.
    pub echo_login: Option<(String, String)>,
    /// The CAs an `https://` echo service's certificate must chain to.
    pub tls_roots: TlsRoots,
}

pub struct Broker {
    catalog: Catalog,
    /// `GET /v2/catalog`'s body, serialised once at start.
    catalog_json: Vec<u8>,
    /// The user and password the platform logs in with. (What a bound app gets is its
    /// binding's credentials: [`Broker::binding_credentials`].)
    login: (String, String),
    echo: EchoClient,
    /// What this process answered, for the conversation page and `/metrics`
    /// (`observer.rs`).
    observer: Observer,
}

impl Broker {
    pub fn new(config: BrokerConfig) -> Broker {
        let catalog_json = config.catalog.to_json();
        Broker {
            observer: Observer::new(&catalog_json),
            catalog_json,
            catalog: config.catalog,
            login: config.login,
            echo: EchoClient::new(&config.service_base, config.echo_login, &config.tls_roots),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors: every failure is a value that knows its status and body
// ---------------------------------------------------------------------------------------

/// Why a request failed. Handlers return these; [`BrokerError::to_response`] is the one
/// place that turns them into HTTP. Every body has a `description` for people and an
/// `error` word for programs. The spec defines four `error` codes (`AsyncRequired`,
/// `ConcurrencyError`, `RequiresApp`, `MaintenanceInfoConflict`), for the cases it names;
/// the other words below are this broker's own, which the spec allows.
#[derive(Debug, Clone, PartialEq)]
pub enum BrokerError {
    /// 400: the request is malformed or misses mandatory data.
    BadRequest(String),
    /// 401: missing or wrong credentials. Never says which half was wrong.
    Unauthorized,
    /// 404: no such resource (fetch, bind to a missing instance, unknown path).
    NotFound(String),
    /// 405: a known path with a method it does not answer, and the methods it does (`Allow`).
    MethodNotAllowed(String, String),
    /// 409: the resource exists with other attributes.
    Conflict(String),
    /// 410: the resource to delete does not exist. The spec's body is `{}`.
    Gone,
    /// 412: the platform speaks an API version this broker does not.
    PreconditionFailed(String),
    /// 422 `MaintenanceInfoConflict`: the platform's maintenance_info is not the catalog's.
    MaintenanceInfoConflict(String),
    /// 422: an update this service cannot make (e.g. a plan change where plans are fixed).
    UnsupportedChange(String),
    /// 502, 503 or 504: the echo service failed, or did not answer in time. A provision or
    /// bind that timed out may still be done: the platform's DELETEs (orphan mitigation)
    /// undo it.
    Backend(EchoError),
    /// An update failed: the inner error's answer, plus `instance_usable` and
    /// `update_repeatable` as the spec defines them for updates only.
    UpdateFailed(Box<BrokerError>),
}

impl From<EchoError> for BrokerError {
    fn from(error: EchoError) -> BrokerError {
        BrokerError::Backend(error)
    }
}

impl BrokerError {
    fn update_failed(self) -> BrokerError {
        BrokerError::UpdateFailed(Box::new(self))
    }

    pub fn to_response(&self) -> HttpResponse {
        self.response_with(Map::new())
    }

    /// The spec: a failed update leaves the instance as it was, so it stays usable unless it
    /// does not exist; an update refused for what it asks will be refused again.
    fn update_failure_response(&self) -> HttpResponse {
        let mut flags = Map::new();
        let usable = !matches!(self, BrokerError::NotFound(_));
        let repeatable = matches!(self, BrokerError::Backend(_));
        flags.insert("instance_usable".into(), usable.into());
        flags.insert("update_repeatable".into(), repeatable.into());
        self.response_with(flags)
    }

    /// `{"error": ..., "description": ...}` with the fields of `extra` (an update's flags),
    /// serialised once.
    fn response_with(&self, extra: Map<String, Value>) -> HttpResponse {
        let (status, error, description) = match self {
            BrokerError::BadRequest(text) => (400, "BadRequest", text.as_str()),
            BrokerError::Unauthorized => (
                401,
                "Unauthorized",
                "this broker needs valid basic-auth credentials",
            ),
            BrokerError::NotFound(text) => (404, "NotFound", text.as_str()),
            BrokerError::MethodNotAllowed(text, _) => (405, "MethodNotAllowed", text.as_str()),
            BrokerError::Conflict(text) => (409, "Conflict", text.as_str()),
            BrokerError::Gone => return HttpResponse::json(410, &extra),
            BrokerError::PreconditionFailed(text) => (412, "PreconditionFailed", text.as_str()),
            BrokerError::MaintenanceInfoConflict(text) => {
                (422, "MaintenanceInfoConflict", text.as_str())
            }
            BrokerError::UnsupportedChange(text) => (422, "UnsupportedChange", text.as_str()),
            BrokerError::Backend(error) => {
                (error.status, "BackendFailed", error.description.as_str())
            }
            BrokerError::UpdateFailed(inner) => return inner.update_failure_response(),
        };
        let mut body = Map::new();
        body.insert("error".into(), error.into());
        body.insert("description".into(), description.into());
        body.extend(extra);
        let response = HttpResponse::json(status, &body);
        match self {
            BrokerError::Unauthorized => {
                response.with_header("WWW-Authenticate", "Basic realm=\"echo-broker\"".into())
            }
            BrokerError::MethodNotAllowed(_, allow) => response.with_header("Allow", allow.clone()),
            _ => response,
        }
    }
}

type Answer = Result<HttpResponse, BrokerError>;

// ---------------------------------------------------------------------------------------
// The checks every request passes, before anyone looks at its body
// ---------------------------------------------------------------------------------------

impl Broker {
    /// Basic auth, compared in constant time; a malformed header is wrong credentials.
    fn check_credentials(&self, request: &HttpRequest) -> Result<(), BrokerError> {
        let (user, password) = &self.login;
        if http::credentials_match(request.header("Authorization"), user, password) {
            Ok(())
        } else {
            Err(BrokerError::Unauthorized)
        }
    }
}

/// `X-Broker-API-Version`: absent is 400; present but not `2.x` with x >= 3 is 412.
fn check_api_version(request: &HttpRequest) -> Result<(), BrokerError> {
    let expected =
        format!("send {VERSION_HEADER}: {API_MAJOR}.{OLDEST_API_MINOR} or a later {API_MAJOR}.x");
    let Some(value) = request.header(VERSION_HEADER) else {
        return Err(BrokerError::BadRequest(format!(
            "the {VERSION_HEADER} header is missing; {expected}"
        )));
    };
    let (major, minor) = value.trim().split_once('.').unwrap_or_default();
    match (major.parse::<u32>(), minor.parse::<u32>()) {
        (Ok(API_MAJOR), Ok(minor)) if minor >= OLDEST_API_MINOR => Ok(()),
        _ => Err(BrokerError::PreconditionFailed(format!(
            "API version '{value}' is not supported; {expected}"
        ))),
    }
}

/// `X-Broker-API-Originating-Identity: PLATFORM BASE64(JSON)`: who on the platform asked.
/// Returns the user it names (Cloud Foundry's `user_id`, Kubernetes' `username`), if any.
/// PLATFORM MUST equal `context.platform` when a body carries `context`; this broker only
/// reads the user, for the log and the conversation page.
pub fn originating_user(request: &HttpRequest) -> Result<Option<String>, BrokerError> {
    let Some(value) = request.header(ORIGINATING_IDENTITY_HEADER) else {
        return Ok(None);
    };
    let malformed = |why: &str| {
        BrokerError::BadRequest(format!(
            "the {ORIGINATING_IDENTITY_HEADER} header must be 'PLATFORM BASE64-JSON-OBJECT': {why}"
        ))
    };
    let (platform, encoded) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| malformed("there is no space between platform and value"))?;
    if platform.is_empty() {
        return Err(malformed("the platform is empty"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed("the value is not base64"))?;
    let identity: Map<String, Value> = serde_json::from_slice(&decoded)
        .map_err(|_| malformed("the value is not a JSON object"))?;
    let user = identity
        .get("user_id")
        .or_else(|| identity.get("username"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(Some(user.unwrap_or_else(|| format!("({platform} user)"))))
}

// ---------------------------------------------------------------------------------------
// The router: every route of the API on one screen
// ---------------------------------------------------------------------------------------

/// Every route, in lifecycle order: the one table that picks a handler and names it.
#[rustfmt::skip]
fn route<'p>(method: &str, path: &'p [&'p str]) -> Option<Route<'p>> {
    match (method, path) {
        ("GET", ["v2", "catalog"]) =>
            to("catalog", "catalog-management", |broker, _| Ok(broker.catalog())),
        ("PUT", ["v2", "service_instances", instance_id]) =>
            to("provision", "provisioning", move |broker, request| broker.provision(instance_id, request)),
        ("GET", ["v2", "service_instances", instance_id]) =>
            to("fetch_instance", "fetching-a-service-instance", move |broker, _| broker.fetch_instance(instance_id)),
        ("PATCH", ["v2", "service_instances", instance_id]) =>
            to("update", "updating-a-service-instance",
               move |broker, request| broker.update(instance_id, request).map_err(BrokerError::update_failed)),
        ("DELETE", ["v2", "service_instances", instance_id]) =>
            to("deprovision", "deprovisioning", move |broker, request| broker.deprovision(instance_id, request)),
        ("PUT", ["v2", "service_instances", instance_id, "service_bindings", binding_id]) =>
            to("bind", "binding", move |broker, request| broker.bind(instance_id, binding_id, request)),
        ("GET", ["v2", "service_instances", instance_id, "service_bindings", binding_id]) =>
            to("fetch_binding", "fetching-a-service-binding", move |broker, _| broker.fetch_binding(instance_id, binding_id)),
        ("DELETE", ["v2", "service_instances", instance_id, "service_bindings", binding_id]) =>
            to("unbind", "unbinding", move |broker, request| broker.unbind(instance_id, binding_id, request)),
        ("GET", ["v2", "service_instances", instance_id, "last_operation"]) =>
            to("instance_last_operation", "polling-last-operation-for-service-instances",
               move |broker, _| broker.instance_last_operation(instance_id)),
        ("GET", ["v2", "service_instances", instance_id, "service_bindings", binding_id, "last_operation"]) =>
            to("binding_last_operation", "polling-last-operation-for-service-bindings",
               move |broker, _| broker.binding_last_operation(instance_id, binding_id)),
        // Beyond the OSB API: the platform's health check, and for people and monitoring
        // what this process answered (`observer.rs`).
        ("GET", ["health"]) => to("health", "", |_, _| Ok(HttpResponse::json(200, &json!({"status": "ok"})))),
        ("GET", []) => to("conversation_page", "", |broker, request| Ok(broker.observer.conversation_page(request))),
        ("GET", ["metrics"]) => to("metrics", "", |broker, _| Ok(broker.observer.metrics())),
        _ => None,
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

/// A route: the handler of this file that answers it, and its name and section of the spec
/// (for the conversation page and the `route` label of `/metrics`, in `observer.rs`).
struct Route<'p> {
    name: &'static str,
    spec_section: &'static str,
    handler: Box<RouteHandler<'p>>,
}

/// A handler with the route's ids in hand, waiting for the request.
type RouteHandler<'p> = dyn FnOnce(&Broker, &HttpRequest) -> Answer + 'p;

fn to<'p>(
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

    /// The answer, with the name the router gives its route.
    fn observe(&self, answered: &Answered) {
        let Some(segments) = answered.request.path_segments() else {
            return self.observer.observe(answered, None); // a path no route can match
        };
        let path: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = &answered.request.method;
        let named = route(method, &path).map(|route| (route.name, route.spec_section));
        self.observer.observe(answered, named);
    }

    /// The platform's request identity and the originating user, for the log line.
    fn log_context(&self, request: &HttpRequest) -> RequestContext {
        RequestContext {
            request_identity: request.header(REQUEST_IDENTITY_HEADER).map(str::to_string),
            user: originating_user(request).ok().flatten(),
        }
    }
}

impl Broker {
    /// The checks of the section above, in order. The platform's health check needs none;
    /// the pages for people (the conversation, `/metrics`) need only the credentials.
    fn checks(&self, request: &HttpRequest) -> Result<(), BrokerError> {
        if request.method == "GET" && request.path() == "/health" {
            return Ok(());
        }
        self.check_credentials(request)?;
        if !is_osb_call(request) {
            return Ok(());
        }
        check_api_version(request)?;
        // A malformed identity is a 400; the user it names is for the log and the page.
        originating_user(request)?;
        Ok(())
    }

    /// Finds the request's route and runs its handler. Every call to the echo service on
    /// the platform's behalf carries its request identity, for as long as `_forwarded`
    /// lives: to the end of this function.
    fn answer(&self, request: &HttpRequest) -> Answer {
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

fn is_osb_call(request: &HttpRequest) -> bool {
    request.path() == "/v2" || request.path().starts_with("/v2/")
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

// ---------------------------------------------------------------------------------------
// Catalog
// ---------------------------------------------------------------------------------------

impl Broker {
    /// `GET /v2/catalog`
    ///
    /// 200 `{"services": [...]}`: the services and plans on offer, from `catalog.toml`. Its
    /// fields are promises the handlers below keep: `bindable = true` (a plan's own value
    /// wins over its service's; a platform MUST NOT bind a plan that is not bindable),
    /// `plan_updateable = false` (a plan change is a 422), `instances_retrievable` and
    /// `bindings_retrievable = true` (a promise that the two fetch endpoints work for every
    /// plan), and each plan's `maintenance_info.version` (when it changes, a platform may
    /// offer an upgrade: an update that carries the new version).
    fn catalog(&self) -> HttpResponse {
        HttpResponse::raw_json(200, self.catalog_json.clone())
    }
}

// ---------------------------------------------------------------------------------------
// Provisioning
// ---------------------------------------------------------------------------------------

/// The body of a provision request. Unknown fields are ignored (vendor extensions).
/// `context` (with `context.platform`, e.g. `cloudfoundry`) is where a platform says where
/// the instance lives; `organization_guid` and `space_guid` are deprecated in its favour
/// but still required, so that old and new brokers both understand the request.
#[derive(Deserialize)]
struct ProvisionRequest {
    service_id: String,
    plan_id: String,
    organization_guid: String,
    space_guid: String,
    #[serde(default)]
    context: Option<Map<String, Value>>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    maintenance_info: Option<MaintenanceInfoRequest>,
}

/// `maintenance_info` as a platform sends it; `{}` counts as absent.
#[derive(Deserialize)]
struct MaintenanceInfoRequest {
    #[serde(default)]
    version: Option<String>,
}

impl Broker {
    /// `PUT /v2/service_instances/{instance_id}`
    /// `{"service_id": "echo_service", "plan_id": "big_0001", "organization_guid": "HP",
    ///   "space_guid": "IT", "parameters": {...}, "context": {...}}`
    ///
    /// - 201 `{"dashboard_url": ".../echo/dashboard/{instance_id}?token=..."}`: provisioned.
    /// - 200 with the same body: it already exists with identical attributes.
    /// - 409: it already exists with other attributes.
    /// - 400: a missing field, an unknown service or plan, a plan of another service.
    /// - 422 `MaintenanceInfoConflict`: maintenance_info.version is not the plan's.
    fn provision(&self, instance_id: &str, request: &HttpRequest) -> Answer {
        check_id("instance_id", instance_id)?;
        let body: ProvisionRequest =
            http::parse_json_body(&request.body, "provision").map_err(BrokerError::BadRequest)?;
        let (_, plan) = self.find_plan(&body.service_id, &body.plan_id)?;
        check_maintenance_info(plan, body.maintenance_info.as_ref())?;
        check_id("organization_guid", &body.organization_guid)?;
        check_id("space_guid", &body.space_guid)?;
        // What the echo service stores and compares a repeat with (`{}` counts as absent).
        let attributes = InstanceAttributes {
            service_id: body.service_id,
            plan_id: body.plan_id,
            organization_guid: body.organization_guid,
            space_guid: body.space_guid,
            context: non_empty(body.context.map(Value::Object)),
            parameters: non_empty(body.parameters.map(Value::Object)),
        };
        // The echo service's answer, translated into the spec's, as the original Python
        // broker did it. Its failures (unreachable, slow, a bad answer) are 502-504 via `?`.
        match self.echo.provision(instance_id, &attributes)? {
            // echo 201: made now.
            Provisioned::Created(view) => Ok(self.provisioned(201, instance_id, &view)),
            // echo 409 with the same attributes: a platform's retry, already done.
            Provisioned::AlreadyExists(view) if repeats(view.attributes.as_ref(), &attributes) => {
                Ok(self.provisioned(200, instance_id, &view))
            }
            // echo 409 with other attributes: the id is reused.
            Provisioned::AlreadyExists(_) => Err(BrokerError::Conflict(format!(
                "instance '{instance_id}' already exists with other attributes"
            ))),
        }
    }
}

/// 200 or 409 for a provision or bind whose id exists: 200 only if it asks for exactly what
/// is stored (a platform's retry). The original echo service stored nothing
/// (`attributes: None`, tests/original_backend.rs): every repeat is then a 200, as the
/// original broker answered.
fn repeats<T: PartialEq>(stored: Option<&T>, requested: &T) -> bool {
    stored.is_none_or(|stored| stored == requested)
}

impl Broker {
    fn provisioned(&self, status: u16, instance_id: &str, view: &InstanceView) -> HttpResponse {
        HttpResponse::json(
            status,
            &json!({ "dashboard_url": self.dashboard_url(instance_id, view) }),
        )
    }

    /// `{SERVICE_BASE}/echo/dashboard/{instance_id}?token=...`.
    fn dashboard_url(&self, instance_id: &str, view: &InstanceView) -> String {
        let token = view.dashboard_token.as_deref();
        self.echo
            .url(&["echo", "dashboard", instance_id], None, token)
    }
}

// ---------------------------------------------------------------------------------------
// Fetching a service instance
// ---------------------------------------------------------------------------------------

impl Broker {
    /// `GET /v2/service_instances/{instance_id}`
    ///
    /// - 200 `{"service_id", "plan_id", "dashboard_url", "parameters"}`
    /// - 404: it does not exist.
    fn fetch_instance(&self, instance_id: &str) -> Answer {
        check_id("instance_id", instance_id)?;
        let view = self.existing_instance(instance_id)?;
        let mut body = Map::new();
        if let Some(attributes) = &view.attributes {
            body.insert("service_id".into(), json!(attributes.service_id));
            body.insert("plan_id".into(), json!(attributes.plan_id));
        }
        body.insert(
            "dashboard_url".into(),
            json!(self.dashboard_url(instance_id, &view)),
        );
        let parameters = view.attributes.and_then(|attributes| attributes.parameters);
        body.insert("parameters".into(), parameters.unwrap_or_else(|| json!({})));
        Ok(HttpResponse::json(200, &body))
    }

    fn existing_instance(&self, instance_id: &str) -> Result<InstanceView, BrokerError> {
        self.echo.fetch_instance(instance_id)?.ok_or_else(|| {
            BrokerError::NotFound(format!("instance '{instance_id}' does not exist"))
        })
    }
}

// ---------------------------------------------------------------------------------------
// Updating a service instance
// ---------------------------------------------------------------------------------------

/// The body of an update request. `previous_values` is accepted and not needed: the echo
/// service knows the current values.
#[derive(Deserialize)]
struct UpdateRequest {
    service_id: String,
    #[serde(default)]
    plan_id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    context: Option<Map<String, Value>>,
    #[serde(default)]
    maintenance_info: Option<MaintenanceInfoRequest>,
    /// Not needed (the echo service knows the current values), but read so that, like
    /// every field of the spec's, it must have the spec's type; hence the `_`.
    #[serde(default, rename = "previous_values")]
    _previous_values: Option<Map<String, Value>>,
}

impl Broker {
    /// `PATCH /v2/service_instances/{instance_id}`
    /// `{"service_id": "echo_service", "plan_id": "big_0001", "parameters": {...}}`
    ///
    /// - 200 `{}`: the changes are applied (parameters replaced, plan changed).
    /// - 400: bad input, a plan of another service, a service_id that is not the instance's.
    /// - 404: the instance does not exist.
    /// - 422: a plan change the plan does not allow (`plan_updateable`), or a
    ///   maintenance_info that is not the catalog's.
    ///
    /// A failed update changes nothing; its body adds `instance_usable` and `update_repeatable`
    /// (the router wraps its errors for that). What is absent is kept: an update without
    /// `plan_id` and `parameters` changes neither. One that carries the catalog's newer
    /// `maintenance_info.version` is the upgrade the catalog announced (here, only a number).
    fn update(&self, instance_id: &str, request: &HttpRequest) -> Answer {
        check_id("instance_id", instance_id)?;
        let body: UpdateRequest =
            http::parse_json_body(&request.body, "update").map_err(BrokerError::BadRequest)?;
        let service = self.find_service(&body.service_id)?;
        let current_plan_id = self.current_plan_id(instance_id, service)?;
        let target_plan_id = body.plan_id.as_deref().unwrap_or(&current_plan_id);
        let (_, target_plan) = self.find_plan(&body.service_id, target_plan_id)?;
        check_plan_change(service, &current_plan_id, target_plan)?;
        check_maintenance_info(target_plan, body.maintenance_info.as_ref())?;
        let update = InstanceUpdate {
            plan_id: body.plan_id,
            parameters: body.parameters.map(Value::Object),
            context: body.context.map(Value::Object),
        };
        self.echo.update(instance_id, &update)?.ok_or_else(|| {
            BrokerError::NotFound(format!("instance '{instance_id}' does not exist"))
        })?;
        Ok(HttpResponse::json(200, &json!({})))
    }

    /// The plan the instance is on now; 400 if the instance belongs to another service. (A
    /// backend that recorded none: [`unrecorded_plan_id`], with the original echo service.)
    fn current_plan_id(&self, instance_id: &str, service: &Service) -> Result<String, BrokerError> {
        match self.existing_instance(instance_id)?.attributes {
            Some(attributes) if attributes.service_id != service.id => {
                Err(BrokerError::BadRequest(format!(
                    "instance '{instance_id}' belongs to service '{}', not '{}'",
                    attributes.service_id, service.id
                )))
            }
            Some(attributes) => Ok(attributes.plan_id),
            None => Ok(unrecorded_plan_id(service)),
        }
    }
}

/// A plan change is allowed only where the instance's plan is `plan_updateable` (the
/// plan's flag wins over the service's); anything else is a 422.
fn check_plan_change(
    service: &Service,
    current_plan_id: &str,
    target: &Plan,
) -> Result<(), BrokerError> {
    if target.id == current_plan_id {
        return Ok(());
    }
    // A current plan gone from the catalog is judged by the target plan's flag.
    let current = service.plan(current_plan_id).unwrap_or(target);
    if service.plan_is_updateable(current) {
        Ok(())
    } else {
        Err(BrokerError::UnsupportedChange(format!(
            "plan '{current_plan_id}' does not allow plan changes (plan_updateable is false)"
        )))
    }
}

/// The plan an update starts from when the backend did not record one: the service's first
/// plan (the original's services had one plan each).
fn unrecorded_plan_id(service: &Service) -> String {
    service
        .plans
        .first()
        .map_or_else(String::new, |plan| plan.id.clone())
}

// ---------------------------------------------------------------------------------------
// Deprovisioning
// ---------------------------------------------------------------------------------------

impl Broker {
    /// `DELETE /v2/service_instances/{instance_id}?service_id=..&plan_id=..`
    ///
    /// - 200 `{}`: deprovisioned, with its messages. (The platform MUST unbind every binding
    ///   first; the echo service removes any left over.)
    /// - 410 `{}`: it does not exist; the platform takes this as success (a repeat).
    /// - 400: service_id or plan_id missing, unknown, or not the instance's.
    fn deprovision(&self, instance_id: &str, request: &HttpRequest) -> Answer {
        check_id("instance_id", instance_id)?;
        let (service_id, plan_id) = self.ids_from_query(request)?;
        // The echo service's answer, translated into the spec's.
        match self.echo.deprovision(instance_id, &service_id, &plan_id)? {
            // echo 200: removed now.
            Removed::Removed => Ok(HttpResponse::json(200, &json!({}))),
            // echo 404: already gone, which the spec says with 410.
            Removed::NotFound => Err(BrokerError::Gone),
            // echo 400: the instance is of another service or plan.
            Removed::Mismatch(why) => Err(BrokerError::BadRequest(why)),
        }
    }

    /// The `service_id` and `plan_id` query parameters that deprovision and unbind require.
    fn ids_from_query(&self, request: &HttpRequest) -> Result<(String, String), BrokerError> {
        let service_id = required_query(request, "service_id")?;
        let plan_id = required_query(request, "plan_id")?;
        self.find_plan(&service_id, &plan_id)?;
        Ok((service_id, plan_id))
    }
}

// ---------------------------------------------------------------------------------------
// Binding
// ---------------------------------------------------------------------------------------

/// The body of a bind request. `app_guid` is deprecated in favour of
/// `bind_resource.app_guid`; a platform may send either, or both.
#[derive(Deserialize)]
struct BindRequest {
    service_id: String,
    plan_id: String,
    #[serde(default)]
    app_guid: Option<String>,
    #[serde(default)]
    bind_resource: Option<Map<String, Value>>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    /// Not stored, but read so that, like every field of the spec's, it must have the
    /// spec's type; hence the `_`.
    #[serde(default, rename = "context")]
    _context: Option<Map<String, Value>>,
}

impl Broker {
    /// `PUT /v2/service_instances/{instance_id}/service_bindings/{binding_id}`
    /// `{"service_id": "echo_service", "plan_id": "big_0001", "app_guid": "myapp"}`
    ///
    /// - 201 `{"credentials": {"uri": "http://USER:PASS@.../echo/{instance_id}/{binding_id}",
    ///   "username": USER, "password": PASS}}`: bound; the app posts messages to `uri`.
    /// - 200 with the same credentials: it already exists with identical attributes.
    /// - 409: it already exists with other attributes.
    /// - 404: the instance does not exist.
    /// - 400: a missing field, an unknown service or plan, or not the instance's.
    ///
    /// This broker's bindings are of the spec's credentials kind. A bind answer may also
    /// carry `syslog_drain_url` (a log drain), `route_service_url` (a route service, with
    /// `requires: ["route_forwarding"]` in the catalog), `volume_mounts` (a volume service),
    /// and `endpoints`, the hosts and ports an app connects to, for network configuration.
    fn bind(&self, instance_id: &str, binding_id: &str, request: &HttpRequest) -> Answer {
        check_id("instance_id", instance_id)?;
        check_id("binding_id", binding_id)?;
        let body: BindRequest =
            http::parse_json_body(&request.body, "bind").map_err(BrokerError::BadRequest)?;
        let (service, plan) = self.find_plan(&body.service_id, &body.plan_id)?;
        if !plan.bindable.unwrap_or(service.bindable) {
            let why = format!("plan '{}' is not bindable", plan.id);
            return Err(BrokerError::BadRequest(why));
        }
        if let Some(app_guid) = &body.app_guid {
            check_id("app_guid", app_guid)?;
        }
        let attributes = BindingAttributes {
            service_id: body.service_id,
            plan_id: body.plan_id,
            app_guid: body.app_guid,
            bind_resource: non_empty(body.bind_resource.map(Value::Object)),
            parameters: non_empty(body.parameters.map(Value::Object)),
        };
        // The echo service's answer, translated into the spec's, as in `provision`: echo
        // 201 is 201, 409 is 200 or 409, 404 (no such instance) 404, 400 (another service) 400.
        match self.echo.bind(instance_id, binding_id, &attributes)? {
            Bound::Created(view) => Ok(self.bound(201, instance_id, binding_id, &view)),
            Bound::AlreadyExists(view) if repeats(view.attributes.as_ref(), &attributes) => {
                Ok(self.bound(200, instance_id, binding_id, &view))
            }
            Bound::AlreadyExists(_) => Err(BrokerError::Conflict(format!(
                "binding '{binding_id}' already exists with other attributes"
            ))),
            Bound::NoSuchInstance => Err(BrokerError::NotFound(format!(
                "instance '{instance_id}' does not exist"
            ))),
            Bound::Mismatch(why) => Err(BrokerError::BadRequest(why)),
        }
    }

    fn bound(
        &self,
        status: u16,
        instance_id: &str,
        binding_id: &str,
        view: &BindingView,
    ) -> HttpResponse {
        HttpResponse::json(
            status,
            &json!({ "credentials": self.binding_credentials(instance_id, binding_id, view) }),
        )
    }

    /// What the bound app gets: the original's `uri`, plus the binding's own user and
    /// password, also placed in the uri as userinfo (the usual form of a service URI).
    fn binding_credentials(
        &self,
        instance_id: &str,
        binding_id: &str,
        view: &BindingView,
    ) -> Value {
        let path = ["echo", instance_id, binding_id];
        match (&view.username, &view.password) {
            (Some(username), Some(password)) => json!({
                "uri": self.echo.url(&path, Some((username, password)), None),
                "username": username,
                "password": password,
            }),
            _ => json!({ "uri": self.echo.url(&path, None, None) }),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Fetching a service binding
// ---------------------------------------------------------------------------------------

impl Broker {
    /// `GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}`
    ///
    /// - 200 `{"credentials": {...}, "parameters": {...}}`
    /// - 404: the binding does not exist.
    fn fetch_binding(&self, instance_id: &str, binding_id: &str) -> Answer {
        check_id("instance_id", instance_id)?;
        check_id("binding_id", binding_id)?;
        let view = self.existing_binding(instance_id, binding_id)?;
        let parameters = view
            .attributes
            .as_ref()
            .and_then(|attributes| attributes.parameters.clone());
        Ok(HttpResponse::json(
            200,
            &json!({
                "credentials": self.binding_credentials(instance_id, binding_id, &view),
                "parameters": parameters.unwrap_or_else(|| json!({})),
            }),
        ))
    }

    fn existing_binding(
        &self,
        instance_id: &str,
        binding_id: &str,
    ) -> Result<BindingView, BrokerError> {
        self.echo
            .fetch_binding(instance_id, binding_id)?
            .ok_or_else(|| BrokerError::NotFound(format!("binding '{binding_id}' does not exist")))
    }
}

// ---------------------------------------------------------------------------------------
// Unbinding
// ---------------------------------------------------------------------------------------

impl Broker {
    /// `DELETE /v2/service_instances/{instance_id}/service_bindings/{binding_id}?service_id=..&plan_id=..`
    ///
    /// - 200 `{}`: unbound; the binding's credentials stop working at once.
    /// - 410 `{}`: the binding does not exist.
    /// - 400: service_id or plan_id missing, unknown, or not the instance's.
    fn unbind(&self, instance_id: &str, binding_id: &str, request: &HttpRequest) -> Answer {
        check_id("instance_id", instance_id)?;
        check_id("binding_id", binding_id)?;
        let (service_id, plan_id) = self.ids_from_query(request)?;
        let removed = self
            .echo
            .unbind(instance_id, binding_id, &service_id, &plan_id)?;
        // The echo service's answer, translated as in `deprovision`: 200, 404 is 410, 400.
        match removed {
            Removed::Removed => Ok(HttpResponse::json(200, &json!({}))),
            Removed::NotFound => Err(BrokerError::Gone),
            Removed::Mismatch(why) => Err(BrokerError::BadRequest(why)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Last operation: every operation here completes before it is answered (why, and what an
// asynchronous broker would add: the end of this file)
// ---------------------------------------------------------------------------------------

impl Broker {
    /// `GET /v2/service_instances/{instance_id}/last_operation`
    ///
    /// - 200 `{"state": "succeeded"}`: the instance exists, so its last operation succeeded.
    /// - 404: it does not exist.
    fn instance_last_operation(&self, instance_id: &str) -> Answer {
        check_id("instance_id", instance_id)?;
        self.existing_instance(instance_id)?;
        Ok(HttpResponse::json(200, &json!({"state": "succeeded"})))
    }

    /// `GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation`
    ///
    /// - 200 `{"state": "succeeded"}`: the binding exists.
    /// - 404: it does not exist.
    fn binding_last_operation(&self, instance_id: &str, binding_id: &str) -> Answer {
        check_id("instance_id", instance_id)?;
        check_id("binding_id", binding_id)?;
        self.existing_binding(instance_id, binding_id)?;
        Ok(HttpResponse::json(200, &json!({"state": "succeeded"})))
    }
}

// ---------------------------------------------------------------------------------------
// Request checks the handlers share
// ---------------------------------------------------------------------------------------

impl Broker {
    fn find_service(&self, service_id: &str) -> Result<&Service, BrokerError> {
        check_id("service_id", service_id)?;
        self.catalog.service(service_id).ok_or_else(|| {
            BrokerError::BadRequest(format!("service_id '{service_id}' is not in the catalog"))
        })
    }

    /// The service and plan named by a request: the plan must be one of that service's.
    fn find_plan(&self, service_id: &str, plan_id: &str) -> Result<(&Service, &Plan), BrokerError> {
        let service = self.find_service(service_id)?;
        check_id("plan_id", plan_id)?;
        let plan = service.plan(plan_id).ok_or_else(|| {
            BrokerError::BadRequest(format!(
                "plan_id '{plan_id}' is not a plan of service '{service_id}' (its plans: {})",
                service.plan_ids()
            ))
        })?;
        Ok((service, plan))
    }
}

/// Ids must be non-empty, at most 255 bytes, and free of control characters.
fn check_id(name: &str, id: &str) -> Result<(), BrokerError> {
    match http::id_problem(id) {
        Some(problem) => Err(BrokerError::BadRequest(format!("{name} {problem}"))),
        None => Ok(()),
    }
}

fn required_query(request: &HttpRequest, name: &str) -> Result<String, BrokerError> {
    let value = request.query(name).ok_or_else(|| {
        BrokerError::BadRequest(format!("the query parameter {name} is required"))
    })?;
    check_id(name, &value)?;
    Ok(value)
}

/// A platform may send the plan's `maintenance_info`; if it sends a version, it must be the
/// catalog's. `{}` counts as absent.
fn check_maintenance_info(
    plan: &Plan,
    requested: Option<&MaintenanceInfoRequest>,
) -> Result<(), BrokerError> {
    let Some(requested_version) = requested.and_then(|info| info.version.as_deref()) else {
        return Ok(());
    };
    match &plan.maintenance_info {
        Some(info) if info.version == requested_version => Ok(()),
        info => Err(BrokerError::MaintenanceInfoConflict(format!(
            "maintenance_info.version '{requested_version}' is not plan '{}''s version ({}); \
             fetch the catalog again",
            plan.id,
            info.as_ref().map_or("none", |info| info.version.as_str())
        ))),
    }
}

// ---------------------------------------------------------------------------------------
// What this broker leaves out: asynchronous operations
// ---------------------------------------------------------------------------------------
//
// The spec lets a broker answer provision, update, deprovision, bind and unbind with 202
// Accepted when the work takes longer than a platform waits (Cloud Foundry: 60 seconds),
// but only if the request said `?accepts_incomplete=true`; one that did not gets 422
// `AsyncRequired`. The 202's body may carry an `operation` string, which the platform
// hands back on `GET .../last_operation?operation=...` while it polls, until the state is
// `succeeded` or `failed` (with a `description` for people); a `Retry-After` header sets
// the pace. Such a broker must also remember each operation in flight, answer a repeated
// request while it runs (202 again, or 422 `ConcurrencyError` for a different one) and
// say what a failed operation left behind (`instance_usable`, `update_repeatable`).
//
// The echo service does each change in one request that returns after an fsync, so this
// broker finishes every operation before it answers, never answers 202, and ignores
// `accepts_incomplete` and `operation`. A platform may poll `last_operation` anyway, so
// the two handlers answer from what exists now: a resource that is there was made by an
// operation that succeeded, and one that is not is a 404. (The spec's 410 there reports
// an asynchronous deprovision that has finished; with nothing ever in flight, it does not
// apply.)
