//! The service broker: the Open Service Broker API v2.17 request path, top to bottom.
//!
//! Read this file in order and you have read the OSB API as a synchronous broker speaks it:
//! the version it speaks, where the backend is, the catalog, the errors, the checks every
//! request passes (basic auth, API version, originating identity), the router, and then one
//! handler per call in lifecycle order: catalog, provision, fetch, update, deprovision,
//! bind, fetch binding, unbind, last operation. Each handler's doc comment shows the
//! request it answers and its responses.
//!
//! The broker keeps no state of its own. The echo service is the source of truth (as in the
//! original), so several brokers can run behind one platform router; `echo_client.rs` holds
//! the HTTP calls to it.

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
// The broker: its catalog, its credentials, and where the backend is
// ---------------------------------------------------------------------------------------

/// What the broker needs to run.
pub struct BrokerConfig {
    pub catalog: Catalog,
    /// The basic-auth user and password the platform must send (the broker's own login).
    pub credentials: (String, String),
    /// The echo service, e.g. `http://127.0.0.1:8090` (the original's `service_base`).
    pub service_base: String,
    /// The echo service's management credentials, if it has any.
    pub echo_credentials: Option<(String, String)>,
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
            login: config.credentials,
            echo: EchoClient::new(
                &config.service_base,
                config.echo_credentials,
                &config.tls_roots,
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors: every failure is a value that knows its status and body
// ---------------------------------------------------------------------------------------

/// Why a request failed. Handlers return these; [`BrokerError::to_response`] is the one
/// place that turns them into HTTP. Every body has a `description`, and an `error` code
/// where the spec defines one.
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
    /// 502, 503 or 504: the echo service failed; nothing was recorded.
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
            // The spec's body for a 410 is `{}`.
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
    /// Basic auth, compared in constant time. A malformed header is simply not valid
    /// credentials.
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
    let expected = format!("send {VERSION_HEADER}: {API_MAJOR}.{OLDEST_API_MINOR} or later {API_MAJOR}.x (this broker implements 2.17)");
    let Some(value) = request.header(VERSION_HEADER) else {
        return Err(BrokerError::BadRequest(format!(
            "the {VERSION_HEADER} header is missing; {expected}"
        )));
    };
    let parsed = value
        .trim()
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?)));
    match parsed {
        Some((API_MAJOR, minor)) if minor >= OLDEST_API_MINOR => Ok(()),
        _ => Err(BrokerError::PreconditionFailed(format!(
            "API version '{value}' is not supported; {expected}"
        ))),
    }
}

/// `X-Broker-API-Originating-Identity: PLATFORM BASE64(JSON)`: who on the platform asked.
/// Returns the user it names (Cloud Foundry's `user_id`, Kubernetes' `username`), if any.
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
        let request = answered.request;
        let segments = request.path_segments().unwrap_or_default();
        let path: Vec<&str> = segments.iter().map(String::as_str).collect();
        let named = route(&request.method, &path).map(|route| (route.name, route.spec_section));
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
        if is_health_check(request) {
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
            to("update", "updating-a-service-instance", move |broker, request| broker.update(instance_id, request).map_err(BrokerError::update_failed)),
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

fn is_health_check(request: &HttpRequest) -> bool {
    request.method == "GET" && request.path() == "/health"
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
    /// 200 `{"services": [...]}`: the services and plans on offer (catalog.toml).
    fn catalog(&self) -> HttpResponse {
        HttpResponse::raw_json(200, self.catalog_json.clone())
    }
}

// ---------------------------------------------------------------------------------------
// Provisioning
// ---------------------------------------------------------------------------------------

/// The body of a provision request. Unknown fields are ignored (vendor extensions).
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
        // What the echo service stores and compares a repeat with. `non_empty` (from
        // `echo::api`, which both sides share) makes `{}` and `null` mean "absent", as
        // platforms send them, so `{}` repeats a request that sent nothing.
        let attributes = InstanceAttributes {
            service_id: body.service_id,
            plan_id: body.plan_id,
            organization_guid: body.organization_guid,
            space_guid: body.space_guid,
            context: non_empty(body.context.map(Value::Object)),
            parameters: non_empty(body.parameters.map(Value::Object)),
        };
        // The client (`echo_client`) answers in the backend's terms: `Provisioned::Created`,
        // or `AlreadyExists` with what it holds; this handler decides what the spec says.
        // Its failures (unreachable, slow, a bad answer) are `BrokerError::Backend` via `?`.
        match self.echo.provision(instance_id, &attributes)? {
            Provisioned::Created(view) => Ok(self.provisioned(201, instance_id, &view)),
            // `repeats`: identical attributes, or none stored (the original echo service).
            Provisioned::AlreadyExists(view) if repeats(view.attributes.as_ref(), &attributes) => {
                Ok(self.provisioned(200, instance_id, &view))
            }
            Provisioned::AlreadyExists(_) => Err(BrokerError::Conflict(format!(
                "instance '{instance_id}' already exists with other attributes"
            ))),
        }
    }

    fn provisioned(&self, status: u16, instance_id: &str, view: &InstanceView) -> HttpResponse {
        HttpResponse::json(
            status,
            &json!({ "dashboard_url": self.dashboard_url(instance_id, view) }),
        )
    }

    /// `{SERVICE_BASE}/echo/dashboard/{instance_id}?token=...`, the id percent-encoded.
    fn dashboard_url(&self, instance_id: &str, view: &InstanceView) -> String {
        let url = format!(
            "{}/echo/dashboard/{}",
            self.echo.base_url(),
            http::percent_encode(instance_id)
        );
        match &view.dashboard_token {
            Some(token) => format!("{url}?token={}", http::percent_encode(token)),
            None => url,
        }
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
    /// Not needed, but like every field of the spec's it must have the spec's type.
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
    /// Every error body carries `instance_usable` and `update_repeatable`; a failed update
    /// changes nothing.
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
    let current = service.plan(current_plan_id).unwrap_or(target);
    if service.plan_is_updateable(current) {
        Ok(())
    } else {
        Err(BrokerError::UnsupportedChange(format!(
            "plan '{current_plan_id}' does not allow plan changes (plan_updateable is false)"
        )))
    }
}

// ---------------------------------------------------------------------------------------
// Deprovisioning
// ---------------------------------------------------------------------------------------

impl Broker {
    /// `DELETE /v2/service_instances/{instance_id}?service_id=..&plan_id=..`
    ///
    /// - 200 `{}`: deprovisioned, with its bindings and messages.
    /// - 410 `{}`: it does not exist.
    /// - 400: service_id or plan_id missing, unknown, or not the instance's.
    fn deprovision(&self, instance_id: &str, request: &HttpRequest) -> Answer {
        check_id("instance_id", instance_id)?;
        let (service_id, plan_id) = self.ids_from_query(request)?;
        // `Removed`: the client's answer to a removal (of an instance here, of a binding in
        // `unbind`): removed, not there, or not of this service and plan (`Mismatch`, why).
        match self.echo.deprovision(instance_id, &service_id, &plan_id)? {
            Removed::Removed => Ok(HttpResponse::json(200, &json!({}))),
            Removed::NotFound => Err(BrokerError::Gone),
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

/// The body of a bind request.
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
    /// Not stored, but like every field of the spec's it must have the spec's type.
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
    fn bind(&self, instance_id: &str, binding_id: &str, request: &HttpRequest) -> Answer {
        check_id("instance_id", instance_id)?;
        check_id("binding_id", binding_id)?;
        let body: BindRequest =
            http::parse_json_body(&request.body, "bind").map_err(BrokerError::BadRequest)?;
        let (service, plan) = self.find_plan(&body.service_id, &body.plan_id)?;
        if !plan.bindable.unwrap_or(service.bindable) {
            return Err(BrokerError::BadRequest(format!(
                "plan '{}' is not bindable",
                plan.id
            )));
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
        // `Bound`, like `Provisioned`, plus what only a bind can meet: no such instance, or
        // an instance of another service or plan (`Mismatch`, why).
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

    /// What the bound app gets: the seed's `uri`, plus the binding's own user and password,
    /// also placed in the uri as userinfo (the usual form of a service URI).
    fn binding_credentials(
        &self,
        instance_id: &str,
        binding_id: &str,
        view: &BindingView,
    ) -> Value {
        let path = format!(
            "/echo/{}/{}",
            http::percent_encode(instance_id),
            http::percent_encode(binding_id)
        );
        let base = self.echo.base_url();
        match (&view.username, &view.password) {
            (Some(username), Some(password)) => {
                let (scheme, host) = base.split_once("://").unwrap_or(("http", base));
                let userinfo = format!(
                    "{}:{}",
                    http::percent_encode(username),
                    http::percent_encode(password)
                );
                json!({
                    "uri": format!("{scheme}://{userinfo}@{host}{path}"),
                    "username": username,
                    "password": password,
                })
            }
            _ => json!({ "uri": format!("{base}{path}") }),
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
        match self
            .echo
            .unbind(instance_id, binding_id, &service_id, &plan_id)?
        {
            Removed::Removed => Ok(HttpResponse::json(200, &json!({}))),
            Removed::NotFound => Err(BrokerError::Gone),
            Removed::Mismatch(why) => Err(BrokerError::BadRequest(why)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Last operation: every operation here completes before it is answered
// ---------------------------------------------------------------------------------------

// Why these answer as they do, and what an asynchronous broker would add: the end of this
// file.

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
// The original echo service: a backend that records nothing
// ---------------------------------------------------------------------------------------
//
// The 2014 echo service kept no attributes: its instances and bindings come back with
// `attributes: None`. The only two places where the handlers above answer differently for
// it are these, so a reader of the handlers meets them by name (tests/original_backend.rs).

/// A repeated provision or bind is answered 200 only if it asks for exactly what is stored.
/// A backend that stores nothing makes every repeat a 200, as the original broker answered.
fn repeats<T: PartialEq>(stored: Option<&T>, requested: &T) -> bool {
    stored.is_none_or(|stored| stored == requested)
}

/// The plan an update starts from when the backend did not record one: the service's first
/// plan (the original's services had one plan each).
fn unrecorded_plan_id(service: &Service) -> String {
    service
        .plans
        .first()
        .map(|plan| plan.id.clone())
        .unwrap_or_default()
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
    let catalog_version = plan
        .maintenance_info
        .as_ref()
        .map(|info| info.version.as_str());
    if catalog_version == Some(requested_version) {
        return Ok(());
    }
    Err(BrokerError::MaintenanceInfoConflict(format!(
        "maintenance_info.version '{requested_version}' is not plan '{}''s version ({}); fetch the catalog again",
        plan.id,
        catalog_version.unwrap_or("none")
    )))
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
