//! The service broker: the Open Service Broker API v2.17 request path, top to bottom.
//!
//! Read this file in order and you have read the OSB API as a synchronous broker speaks it:
//! the version it speaks, where the echo service is, the catalog, the errors, the checks every
//! request passes (basic auth, API version, originating identity), the router, and then one
//! handler per call in lifecycle order: catalog, provision, fetch, update, deprovision,
//! bind, fetch binding, unbind, last operation. Each handler's doc comment shows the
//! request it answers and its responses. The file ends with what it leaves out: asynchronous
//! operations. (How the server calls it: `broker/serving.rs`.)
//!
//! "The original" below is the original Python broker and its echo service (2014, Service
//! Broker API v2.3), which this file re-implements: the same catalog, the same calls to the
//! echo service, in the same order. Where this broker differs from it, it follows the spec.
//! What the spec requires is said to be the spec's ("the spec: MUST ..."); where the spec
//! leaves a choice, the comment says that the choice is this broker's own.
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
//! 410 Gone (the spec: MUST). That a platform counts a DELETE's 410 as a success (the work
//! is already done) is Cloud Foundry's practice; the spec says it only of a 410 while the
//! platform polls an asynchronous delete (`last_operation`, at the end of this file). A 4xx
//! MUST leave the resources unchanged (a 5xx SHOULD): a refused request changes nothing, so
//! the platform may fix it and send it again.
//!
//! The catalog may change while instances of it exist: an operator renames or removes a
//! plan. The platform keeps those instances (Cloud Foundry marks the plan inactive) and goes
//! on sending the old plan's id for them; the spec warns broker authors of this ("URL
//! Properties": platforms might have provisioned instances of a removed plan). So only what
//! makes something new must name a plan of the current catalog, else 400: a provision, a
//! bind, an update's new plan. A call about what exists does not need the instance's plan
//! in the catalog: fetch, unbind and deprovision (the echo service checks that the ids are
//! the instance's), and an update that keeps the plan or moves the instance to a plan of the
//! catalog. Were they refused, a platform could never delete such an instance, and its
//! orphan mitigation would retry for ever.
//!
//! The bodies of provision, update and bind may carry `context`: what the platform knows of
//! where the resource lives. `context.platform` names the platform (e.g. `cloudfoundry`);
//! the other fields are that platform's own (Cloud Foundry's organization and space ids,
//! the instance's name). This broker acts on none of it; it stores the `context` of a
//! provision or update with the instance, and drops a bind's.

use crate::catalog::{Catalog, Plan, Service};
use crate::echo::api::{
    non_empty, BindingAttributes, BindingView, InstanceAttributes, InstanceUpdate, InstanceView,
};
use crate::echo_client::{EchoClient, EchoError};
use crate::http::{self, HttpRequest, HttpResponse};
use crate::observer::Observer;
use crate::osb::{is_osb_call, VERSION_HEADER};
use crate::settings::TlsRoots;
use serde::Deserialize;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------
// The API version this broker speaks
// ---------------------------------------------------------------------------------------

/// Every request carries `X-Broker-API-Version: MAJOR.MINOR`. This broker implements 2.17
/// and answers anything from 2.3 (the original's version) on: Cloud Controller sends 2.15,
/// Korifi 2.17. (The API's header names, `VERSION_HEADER` and the others, are in `osb.rs`,
/// which the conversation page shares.)
const API_MAJOR: u32 = 2;
const OLDEST_API_MINOR: u32 = 3;
const REQUEST_IDENTITY_HEADER: &str = crate::echo::api::REQUEST_IDENTITY_HEADER;

// ---------------------------------------------------------------------------------------
// The broker: its catalog, its login, and where the echo service is
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
    /// `GET /v2/catalog`'s body, made once: the catalog never changes while the broker runs.
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
        let mut catalog_json = config.catalog.to_json();
        // Ended like every other JSON answer (`HttpResponse::json`), here once for all.
        catalog_json.push(b'\n');
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

/// Why a request did not do what it asked. Handlers return these; [`BrokerError::to_response`]
/// is the one place that turns them into HTTP: `{"error": WORD, "description": TEXT}`, the
/// text for people and the camel-case word for programs (all but `Gone`, whose body is the
/// spec's `{}`). Where the spec names a status for a failure, it MUST be used; where it
/// names none (an update or a bind of an instance that does not exist, a path that is not
/// the API's), the status is this broker's choice, said at the variant. The spec fixes the
/// word for four failures only (spec, "Error Codes"):
///
/// - `AsyncRequired`: the broker can do the work only asynchronously, and the request
///   lacks `?accepts_incomplete=true` (the note at the end of this file);
/// - `ConcurrencyError`: another request that changes the same resource is in progress;
/// - `RequiresApp`: a bind whose body lacks `app_guid`, to a service that binds only to
///   apps;
/// - `MaintenanceInfoConflict`: the request's `maintenance_info.version` is not the
///   catalog's.
///
/// This broker sends only the last: it finishes every operation before it answers, and binds
/// with or without an app. Every other word, in the `match` of `response_with` below, is
/// this broker's own name for the failure (the spec asks only for one camel-case word).
#[derive(Debug, Clone, PartialEq)]
pub enum BrokerError {
    /// 400: the request is malformed or misses mandatory data.
    BadRequest(String),
    /// 401: missing or wrong credentials. Never says which half was wrong.
    Unauthorized,
    /// 404: no such resource. The spec's for a fetch or a `last_operation` of a missing
    /// instance or binding; this broker's choice for an update or a bind of a missing
    /// instance and for a path that is not the API's.
    NotFound(String),
    /// 405 (this broker's choice, HTTP's meaning): a known path with a method it does not
    /// answer, and the methods it does (`Allow`).
    MethodNotAllowed(String, String),
    /// 409: the resource exists with other attributes.
    Conflict(String),
    /// 410: the resource to delete does not exist (the spec: MUST, with the body `{}`).
    Gone,
    /// 412: the platform speaks an API version this broker does not (the spec: MAY).
    PreconditionFailed(String),
    /// 422 with the spec's `MaintenanceInfoConflict`: the request's maintenance_info is not
    /// the catalog's.
    MaintenanceInfoConflict(String),
    /// 422: an update this service cannot make (e.g. a plan change where plans are fixed).
    UnsupportedChange(String),
    /// 502, 503 or 504 `EchoServiceFailed` (this broker's choice: the spec names no status
    /// for what it calls the service broker's own error, a 5xx): the echo service gave no
    /// answer a handler can use, and the status says how, as a gateway's does:
    ///
    /// | the echo service                                             | answer                  |
    /// |--------------------------------------------------------------|-------------------------|
    /// | answered a status the handler has no arm for, or not HTTP    | 502 Bad Gateway         |
    /// | answered a body that is not what its status promises         | 502 Bad Gateway         |
    /// | failed the TLS handshake (its certificate is not trusted)    | 502 Bad Gateway         |
    /// | cannot be reached: refused, unknown host, connection lost    | 503 Service Unavailable |
    /// | answered 503 itself (say, a change it cannot make durable)   | 503 Service Unavailable |
    /// | did not answer in time (`echo_client::ECHO_SERVICE_TIMEOUT`) | 504 Gateway Timeout     |
    ///
    /// A provision or bind that timed out may still be done: the platform's DELETEs
    /// (orphan mitigation) undo it.
    EchoService(EchoError),
    /// An update failed: the cause's answer plus two flags that tell the platform what the
    /// failure left behind: `instance_usable`, may apps go on using the instance, and
    /// `update_repeatable`, may the same update succeed if sent again (both default to
    /// true). The spec allows `update_repeatable` on a failed update only, and
    /// `instance_usable` on a failed update or deprovision. An update refused here (4xx)
    /// changes nothing, so the instance stays usable unless it does not exist, and the same
    /// update would be refused again; one the echo service failed (5xx) may pass if sent
    /// again.
    UpdateFailed(Box<BrokerError>),
}

impl From<EchoError> for BrokerError {
    fn from(error: EchoError) -> BrokerError {
        BrokerError::EchoService(error)
    }
}

impl BrokerError {
    pub fn to_response(&self) -> HttpResponse {
        self.response_with(Map::new())
    }

    /// The error body, plus `extra` fields (a failed update's flags).
    fn response_with(&self, extra: Map<String, Value>) -> HttpResponse {
        let (status, error, description) = match self {
            // The spec's error code.
            BrokerError::MaintenanceInfoConflict(text) => {
                (422, "MaintenanceInfoConflict", text.as_str())
            }
            // This broker's own words, named after the status.
            BrokerError::BadRequest(text) => (400, "BadRequest", text.as_str()),
            BrokerError::Unauthorized => (
                401,
                "Unauthorized",
                "this broker needs valid basic-auth credentials",
            ),
            BrokerError::NotFound(text) => (404, "NotFound", text.as_str()),
            BrokerError::MethodNotAllowed(text, _) => (405, "MethodNotAllowed", text.as_str()),
            BrokerError::Conflict(text) => (409, "Conflict", text.as_str()),
            BrokerError::PreconditionFailed(text) => (412, "PreconditionFailed", text.as_str()),
            BrokerError::UnsupportedChange(text) => (422, "UnsupportedChange", text.as_str()),
            BrokerError::EchoService(error) => (
                error.status,
                "EchoServiceFailed",
                error.description.as_str(),
            ),
            BrokerError::Gone => return HttpResponse::json(410, &json!({})),
            BrokerError::UpdateFailed(cause) => return cause.response_with(cause.update_flags()),
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

    /// `instance_usable` and `update_repeatable` for an update that failed with this error.
    fn update_flags(&self) -> Map<String, Value> {
        let usable = !matches!(self, BrokerError::NotFound(_));
        let repeatable = matches!(self, BrokerError::EchoService(_));
        let mut flags = Map::new();
        flags.insert("instance_usable".into(), usable.into());
        flags.insert("update_repeatable".into(), repeatable.into());
        flags
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

/// `X-Broker-API-Version`: absent is 400; present but not `2.x` with x >= 3 is 412. The spec
/// requires platforms to send it and lets a broker refuse either way (MAY); this broker does.
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

impl Broker {
    /// The checks of this section, in order, on the headers alone: no body is read for a
    /// client without credentials. The platform's health check needs none; the pages for
    /// people (the conversation, `/metrics`) need only the credentials.
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
}

// ---------------------------------------------------------------------------------------
// The router: every route of the API on one screen
// ---------------------------------------------------------------------------------------

// How the server calls the checks, then this router (or a 404 or 405): `broker/serving.rs`.
mod serving;
use serving::{to, Route};

// What the handlers share and a reader can take on trust (catalog and echo service
// look-ups, id rules, the URLs handed out): `broker/shared.rs`.
mod shared;
pub use shared::originating_user;
use shared::{
    binding_metadata, check_id, check_maintenance_info, check_path_id, ids_from_query,
    lifetime_from_now, updated_maintenance_info,
};

/// Every route, in lifecycle order: the one table that picks a handler and names it: the
/// handler's own name (for `/metrics` and the conversation page) and the anchor of its
/// section in the spec (the page links each exchange there).
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
            to("update", "updating-a-service-instance", move |broker, request| broker.update(instance_id, request)),
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
    /// offer an upgrade: an update that carries the new version; a fetch of an instance
    /// shows the version it has).
    fn catalog(&self) -> HttpResponse {
        HttpResponse::raw_json(200, self.catalog_json.clone())
    }
}

// ---------------------------------------------------------------------------------------
// Provisioning
// ---------------------------------------------------------------------------------------

/// The body of a provision request. Unknown fields are ignored (vendor extensions).
/// `organization_guid` and `space_guid` are deprecated in favour of `context` but still
/// required, so that old and new brokers both understand the request.
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
    ///   "space_guid": "IT", "context": {"platform": "cloudfoundry"}, "parameters": {...}}`
    ///
    /// - 201 `{"dashboard_url": ".../echo/dashboard/{instance_id}?token=...", "metadata":
    ///   {"labels": {"service": .., "plan": ..}, "attributes": {"dashboard_url": ..}}}`.
    /// - 200 with the same body: it already exists with identical attributes.
    /// - 409: it already exists with other attributes.
    /// - 400: a missing field, an unknown service or plan, a plan of another service; an
    ///   `instance_id` that a proxy in front of the echo service would read as a path
    ///   (`..`, `a/b`), refused here as in every handler that sends an id on.
    /// - 422 `MaintenanceInfoConflict`: maintenance_info.version is not the plan's.
    fn provision(&self, instance_id: &str, request: &HttpRequest) -> Answer {
        check_path_id("instance_id", instance_id)?;
        let body: ProvisionRequest =
            http::parse_json_body(&request.body, "provision").map_err(BrokerError::BadRequest)?;
        let (_, plan) = self.find_plan(&body.service_id, &body.plan_id)?;
        check_maintenance_info(&body.plan_id, Some(plan), body.maintenance_info.as_ref())?;
        check_id("organization_guid", &body.organization_guid)?;
        check_id("space_guid", &body.space_guid)?;
        // What the echo service stores and compares a repeat with (`{}` counts as absent),
        // and the plan's maintenance_info, which a fetch shows.
        let attributes = InstanceAttributes {
            service_id: body.service_id,
            plan_id: body.plan_id,
            organization_guid: body.organization_guid,
            space_guid: body.space_guid,
            context: non_empty(body.context.map(Value::Object)),
            parameters: non_empty(body.parameters.map(Value::Object)),
            maintenance_info: plan.maintenance_info.as_ref().map(|info| json!(info)),
        };
        // The echo service's status, translated into the spec's as the original did it. Any
        // other answer, or none (the `?`s), is a 502-504: table at `BrokerError::EchoService`.
        let reply = self.echo.provision(instance_id, &attributes)?;
        match reply.status {
            // Made now (the original echo service says so with 200).
            200 | 201 => Ok(self.provisioned(201, instance_id, &reply.instance(instance_id)?)),
            // It exists: a platform's retry if it asks for what is stored, else a reused id.
            409 => {
                let stored = reply.instance(instance_id)?;
                if repeats(stored.attributes.as_ref(), &attributes) {
                    Ok(self.provisioned(200, instance_id, &stored))
                } else {
                    Err(BrokerError::Conflict(format!(
                        "instance '{instance_id}' already exists with other attributes"
                    )))
                }
            }
            _ => Err(BrokerError::EchoService(reply.unexpected())),
        }
    }
}

/// 200 or 409 for a provision or bind whose id exists: 200 only if it asks for exactly what
/// is stored (a platform's retry). The original echo service stored nothing
/// (`attributes: None`): every repeat is then a 200, as the original broker answered.
fn repeats<T: PartialEq>(stored: Option<&T>, requested: &T) -> bool {
    stored.is_none_or(|stored| stored == requested)
}

impl Broker {
    fn provisioned(&self, status: u16, instance_id: &str, view: &InstanceView) -> HttpResponse {
        HttpResponse::json(
            status,
            &json!({
                "dashboard_url": self.dashboard_url(instance_id, view),
                "metadata": self.instance_metadata(instance_id, view),
            }),
        )
    }
}

// ---------------------------------------------------------------------------------------
// Fetching a service instance
// ---------------------------------------------------------------------------------------

impl Broker {
    /// `GET /v2/service_instances/{instance_id}`
    ///
    /// - 200 `{"service_id", "plan_id", "dashboard_url", "metadata", "parameters", "maintenance_info"}`
    ///   (every field is optional in the spec: an echo service that recorded nothing, like
    ///   the original, gives no `service_id` or `plan_id`). `maintenance_info` is the one the
    ///   instance was provisioned or last updated with (see `update`), so a platform can
    ///   tell whether an upgrade the catalog offers was made.
    /// - 404: it does not exist.
    fn fetch_instance(&self, instance_id: &str) -> Answer {
        check_path_id("instance_id", instance_id)?;
        let view = self.existing_instance(instance_id)?;
        let attributes = view.attributes.as_ref();
        let mut body = Map::new();
        if let Some(attributes) = attributes {
            body.insert("service_id".into(), json!(attributes.service_id));
            body.insert("plan_id".into(), json!(attributes.plan_id));
        }
        body.insert(
            "dashboard_url".into(),
            json!(self.dashboard_url(instance_id, &view)),
        );
        body.insert(
            "metadata".into(),
            self.instance_metadata(instance_id, &view),
        );
        let parameters = attributes.and_then(|attributes| attributes.parameters.clone());
        body.insert("parameters".into(), parameters.unwrap_or_else(|| json!({})));
        if let Some(info) = attributes.and_then(|attributes| attributes.maintenance_info.clone()) {
            body.insert("maintenance_info".into(), info);
        }
        Ok(HttpResponse::json(200, &body))
    }
}

// ---------------------------------------------------------------------------------------
// Updating a service instance
// ---------------------------------------------------------------------------------------

/// The body of an update request.
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
    /// What the platform believes the instance was before (its plan, maintenance_info). The
    /// echo service knows, so this broker uses none of it; but a value that is not an
    /// object is a malformed request, a 400, like any field of the wrong type.
    #[serde(default, rename = "previous_values")]
    _previous_values: Option<Map<String, Value>>,
}

impl Broker {
    /// `PATCH /v2/service_instances/{instance_id}`
    /// `{"service_id": "echo_service", "plan_id": "big_0001", "parameters": {...}}`
    ///
    /// - 200 `{"metadata": {...}}`: the changes are applied (parameters replaced, plan changed).
    /// - 400: bad input, a new plan not in the catalog or of another service, a service_id
    ///   that is not the instance's.
    /// - 404: the instance does not exist (this broker's choice: the spec names no status
    ///   for it).
    /// - 422: a plan change the plan does not allow (`plan_updateable`), or a
    ///   maintenance_info that is not the catalog's.
    ///
    /// A failed update's body adds `instance_usable` and `update_repeatable`
    /// ([`BrokerError::UpdateFailed`]), hence `update` around `apply_update`. What is absent
    /// is kept: an update without `plan_id` and `parameters` changes neither. One that
    /// carries the catalog's newer `maintenance_info.version` is the upgrade the catalog
    /// announced (here, only a number). An instance whose plan has left the catalog may
    /// still be updated: its parameters, or a move to a plan of the catalog.
    fn update(&self, instance_id: &str, request: &HttpRequest) -> Answer {
        self.apply_update(instance_id, request)
            .map_err(BrokerError::update_failed)
    }

    fn apply_update(&self, instance_id: &str, request: &HttpRequest) -> Answer {
        check_path_id("instance_id", instance_id)?;
        let body: UpdateRequest =
            http::parse_json_body(&request.body, "update").map_err(BrokerError::BadRequest)?;
        let service = self.find_service(&body.service_id)?;
        let current_plan_id = self.current_plan_id(instance_id, service)?;
        let new_plan_id = body.plan_id.as_deref().filter(|id| *id != current_plan_id);
        // The plan the instance will be on: a new one must be in the catalog and allowed; the
        // current one may have left it (`None`).
        let plan = match new_plan_id {
            Some(new_plan_id) => {
                let (_, new_plan) = self.find_plan(&body.service_id, new_plan_id)?;
                check_plan_change(service, &current_plan_id)?;
                Some(new_plan)
            }
            None => service.plan(&current_plan_id),
        };
        let plan_id = new_plan_id.unwrap_or(&current_plan_id);
        let requested_info = body.maintenance_info.as_ref();
        check_maintenance_info(plan_id, plan, requested_info)?;
        let update = InstanceUpdate {
            plan_id: new_plan_id.map(str::to_string),
            parameters: body.parameters.map(Value::Object),
            context: body.context.map(Value::Object),
            maintenance_info: updated_maintenance_info(plan, new_plan_id.is_some(), requested_info),
        };
        let reply = self.echo.update(instance_id, &update)?;
        match reply.status {
            // Changed; its answer is the instance as it is now (anything else is a 502).
            200 => {
                let view = reply.instance(instance_id)?;
                let metadata = self.instance_metadata(instance_id, &view);
                Ok(HttpResponse::json(200, &json!({ "metadata": metadata })))
            }
            404 => Err(BrokerError::NotFound(format!(
                "instance '{instance_id}' does not exist"
            ))),
            _ => Err(BrokerError::EchoService(reply.unexpected())),
        }
    }
}

impl BrokerError {
    fn update_failed(self) -> BrokerError {
        BrokerError::UpdateFailed(Box::new(self))
    }
}

/// A move to another plan is allowed only where the instance's plan is `plan_updateable`
/// (the plan's flag wins over the service's); anything else is a 422. An instance whose plan
/// has left the catalog may move to any plan of its service (this broker's choice): the
/// catalog no longer says what its plan allows, and a move is its way back to a plan the
/// broker offers.
fn check_plan_change(service: &Service, current_plan_id: &str) -> Result<(), BrokerError> {
    let allowed = service
        .plan(current_plan_id)
        .is_none_or(|current| service.plan_is_updateable(current));
    if allowed {
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
    /// - 200 `{}`: deprovisioned, with its messages. (The platform MUST unbind every binding
    ///   first; the echo service removes any left over.)
    /// - 410 `{}`: it does not exist (the spec: MUST); Cloud Foundry counts this a success,
    ///   a repeat of a delete already done.
    /// - 400: service_id or plan_id missing, or not the instance's (whether or not the
    ///   catalog still has them: see "The catalog may change" at the top).
    fn deprovision(&self, instance_id: &str, request: &HttpRequest) -> Answer {
        check_path_id("instance_id", instance_id)?;
        let (service_id, plan_id) = ids_from_query(request)?;
        // The echo service's status, translated into the spec's.
        let reply = self.echo.deprovision(instance_id, &service_id, &plan_id)?;
        match reply.status {
            // Removed now (204 is the same, without a body).
            200 | 204 => Ok(HttpResponse::json(200, &json!({}))),
            // Already gone, which the spec says with 410 (as the original did).
            404 | 410 => Err(BrokerError::Gone),
            // The instance is of another service or plan.
            400 => Err(BrokerError::BadRequest(reply.description())),
            _ => Err(BrokerError::EchoService(reply.unexpected())),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Binding
// ---------------------------------------------------------------------------------------

/// The body of a bind request. `bind_resource.app_guid` names the app to bind; the older
/// top-level `app_guid` is deprecated in its favour, and a platform may send either, or both.
#[derive(Deserialize)]
struct BindRequest {
    /// Required, but for a rotation, whose body may name only the predecessor (see
    /// "Rotating a binding" below).
    #[serde(default)]
    service_id: Option<String>,
    #[serde(default)]
    plan_id: Option<String>,
    #[serde(default)]
    app_guid: Option<String>,
    #[serde(default)]
    bind_resource: Option<Map<String, Value>>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    /// Set when the platform rotates a binding: see "Rotating a binding" below.
    #[serde(default)]
    predecessor_binding_id: Option<String>,
    /// Where the binding lives (see `context` at the top); this broker does not store it,
    /// but a value that is not an object is a malformed request, a 400.
    #[serde(default, rename = "context")]
    _context: Option<Map<String, Value>>,
}

impl Broker {
    /// `PUT /v2/service_instances/{instance_id}/service_bindings/{binding_id}`
    /// `{"service_id": "echo_service", "plan_id": "big_0001",
    ///   "bind_resource": {"app_guid": "myapp"}}`
    ///
    /// - 201 `{"credentials": {"uri": "http://USER:PASS@.../echo/{instance_id}/{binding_id}",
    ///   "username": USER, "password": PASS}, "metadata": {}}`: bound; the app posts to `uri`.
    /// - 200 with the same credentials: it already exists with identical attributes.
    /// - 409: it already exists with other attributes.
    /// - 404: the instance does not exist (this broker's choice: the spec names no status
    ///   for it).
    /// - 400: a missing field, an unknown service or plan, or not the instance's.
    ///
    /// This broker's bindings are of the spec's credentials kind. A bind answer may also
    /// carry `syslog_drain_url` (a log drain), `route_service_url` (a route service, with
    /// `requires: ["route_forwarding"]` in the catalog), `volume_mounts` (a volume service),
    /// and `endpoints`, the hosts and ports an app connects to, for network configuration.
    ///
    /// **Credentials that expire.** A leaked password is good until its binding is deleted,
    /// unless the binding expires. A plan may give its bindings a lifetime (this broker's
    /// own `binding_lifetime` in `catalog.toml`, e.g. the Invert Service's 90 days): the
    /// answer then carries `metadata.expires_at`, when the credentials stop working, and
    /// `metadata.renew_before` (a fifth of the lifetime earlier), when the platform should
    /// rotate them (the spec's binding metadata, since 2.17). The echo service refuses expired credentials itself, so the
    /// expiry is enforced where the credentials are used, not only announced.
    fn bind(&self, instance_id: &str, binding_id: &str, request: &HttpRequest) -> Answer {
        check_path_id("instance_id", instance_id)?;
        check_path_id("binding_id", binding_id)?;
        let body: BindRequest =
            http::parse_json_body(&request.body, "bind").map_err(BrokerError::BadRequest)?;
        let (service_id, plan_id) = match (body.service_id, body.plan_id) {
            (Some(service_id), Some(plan_id)) => (service_id, plan_id),
            (None, None) if body.predecessor_binding_id.is_some() => {
                let predecessor_id = body.predecessor_binding_id.as_deref().unwrap_or_default();
                self.ids_of_predecessor(instance_id, binding_id, predecessor_id)?
            }
            _ => {
                return Err(BrokerError::BadRequest(
                    "service_id and plan_id are required".into(),
                ))
            }
        };
        let (service, plan) = self.find_plan(&service_id, &plan_id)?;
        if !plan.bindable.unwrap_or(service.bindable) {
            let why = format!("plan '{}' is not bindable", plan.id);
            return Err(BrokerError::BadRequest(why));
        }
        if let Some(app_guid) = &body.app_guid {
            check_id("app_guid", app_guid)?;
        }
        let mut attributes = BindingAttributes {
            service_id,
            plan_id,
            app_guid: body.app_guid,
            bind_resource: non_empty(body.bind_resource.map(Value::Object)),
            parameters: non_empty(body.parameters.map(Value::Object)),
            predecessor_binding_id: body.predecessor_binding_id,
        };
        if let Some(predecessor_id) = attributes.predecessor_binding_id.clone() {
            // Parameters sent with a rotation win; absent, the predecessor's are kept.
            match self.rotation(instance_id, binding_id, plan, &predecessor_id)? {
                Rotation::Inherit { parameters } => {
                    attributes.parameters = attributes.parameters.or(parameters);
                }
                Rotation::AlreadyDone(stored) => {
                    let inherited = stored
                        .attributes
                        .as_ref()
                        .and_then(|a| a.parameters.clone());
                    attributes.parameters = attributes.parameters.or(inherited);
                    return self.rebound(instance_id, binding_id, *stored, &attributes);
                }
            }
        }
        let lifetime = plan.binding_lifetime_seconds().map(lifetime_from_now);
        // The echo service's status, translated into the spec's, as in `provision`.
        let reply = self
            .echo
            .bind(instance_id, binding_id, &attributes, lifetime)?;
        match reply.status {
            // Made now.
            200 | 201 => Ok(self.bound(201, instance_id, binding_id, &reply.binding(binding_id)?)),
            // It exists: a platform's retry if it asks for what is stored, else a reused id.
            409 => self.rebound(
                instance_id,
                binding_id,
                reply.binding(binding_id)?,
                &attributes,
            ),
            // No such instance.
            404 => Err(BrokerError::NotFound(format!(
                "instance '{instance_id}' does not exist"
            ))),
            // The instance is of another service or plan.
            400 => Err(BrokerError::BadRequest(reply.description())),
            _ => Err(BrokerError::EchoService(reply.unexpected())),
        }
    }

    /// A bind whose binding exists: 200 with it if the request asks for exactly what is
    /// stored (a retry; its lifetime is the stored one), else 409.
    fn rebound(
        &self,
        instance_id: &str,
        binding_id: &str,
        stored: BindingView,
        requested: &BindingAttributes,
    ) -> Answer {
        if repeats(stored.attributes.as_ref(), requested) {
            Ok(self.bound(200, instance_id, binding_id, &stored))
        } else {
            Err(BrokerError::Conflict(format!(
                "binding '{binding_id}' already exists with other attributes"
            )))
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
            &json!({
                "credentials": self.binding_credentials(instance_id, binding_id, view),
                "metadata": binding_metadata(view),
            }),
        )
    }
}

// ---------------------------------------------------------------------------------------
// Rotating a binding
// ---------------------------------------------------------------------------------------

/// What a rotation request found.
enum Rotation {
    /// The predecessor's parameters, which the successor inherits.
    Inherit { parameters: Option<Value> },
    /// The successor exists already, made by this same rotation (a retry).
    AlreadyDone(Box<BindingView>),
}

impl Broker {
    /// A bind with `predecessor_binding_id` (spec 2.17, "Binding Rotation") makes a
    /// successor: a new binding with new credentials and the predecessor's parameters,
    /// because the platform need not keep the parameters it once sent, so it cannot be
    /// asked to send them again. The platform hands the successor's credentials to the app
    /// and deletes the predecessor when it likes: until then both work, side by side, each
    /// until it expires or is deleted.
    ///
    /// - 400: the plan does not say `binding_rotatable = true` (the platform must not
    ///   try), or the predecessor does not exist in this instance, or has expired.
    /// - A repeat of a rotation that was made is answered like any repeated bind, even once
    ///   the predecessor is gone.
    fn rotation(
        &self,
        instance_id: &str,
        binding_id: &str,
        plan: &Plan,
        predecessor_id: &str,
    ) -> Result<Rotation, BrokerError> {
        check_path_id("predecessor_binding_id", predecessor_id)?;
        if plan.binding_rotatable != Some(true) {
            return Err(BrokerError::BadRequest(format!(
                "plan '{}' does not allow binding rotation (binding_rotatable is not true)",
                plan.id
            )));
        }
        if predecessor_id == binding_id {
            let why = "predecessor_binding_id names the binding being made";
            return Err(BrokerError::BadRequest(why.into()));
        }
        let predecessor = match self.existing_binding(instance_id, predecessor_id) {
            Ok(predecessor) => predecessor,
            Err(BrokerError::NotFound(_)) => {
                return self.made_by_this_rotation(instance_id, binding_id, predecessor_id)
            }
            Err(error) => return Err(error),
        };
        let expired = predecessor
            .lifetime
            .is_some_and(|lifetime| lifetime.expired_at(http::unix_now()));
        if expired {
            return Err(BrokerError::BadRequest(format!(
                "predecessor binding '{predecessor_id}' has expired: make a new binding instead"
            )));
        }
        let parameters = predecessor
            .attributes
            .and_then(|attributes| attributes.parameters);
        Ok(Rotation::Inherit { parameters })
    }
}

// ---------------------------------------------------------------------------------------
// Fetching a service binding
// ---------------------------------------------------------------------------------------

impl Broker {
    /// `GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}`
    ///
    /// - 200 `{"credentials": {...}, "parameters": {...}, "metadata": {...}}`, also once the
    ///   binding has expired (the platform still holds it, and may delete it: 200).
    /// - 404: the binding does not exist.
    fn fetch_binding(&self, instance_id: &str, binding_id: &str) -> Answer {
        check_path_id("instance_id", instance_id)?;
        check_path_id("binding_id", binding_id)?;
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
                "metadata": binding_metadata(&view),
            }),
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Unbinding
// ---------------------------------------------------------------------------------------

impl Broker {
    /// `DELETE /v2/service_instances/{instance_id}/service_bindings/{binding_id}?service_id=..&plan_id=..`
    ///
    /// - 200 `{}`: unbound; the binding's credentials stop working at once.
    /// - 410 `{}`: the binding does not exist (the spec: MUST; a success for Cloud Foundry).
    /// - 400: service_id or plan_id missing, or not the instance's, in the catalog or not.
    fn unbind(&self, instance_id: &str, binding_id: &str, request: &HttpRequest) -> Answer {
        check_path_id("instance_id", instance_id)?;
        check_path_id("binding_id", binding_id)?;
        let (service_id, plan_id) = ids_from_query(request)?;
        // The echo service's status, translated as in `deprovision`.
        let reply = self
            .echo
            .unbind(instance_id, binding_id, &service_id, &plan_id)?;
        match reply.status {
            200 | 204 => Ok(HttpResponse::json(200, &json!({}))),
            404 | 410 => Err(BrokerError::Gone),
            400 => Err(BrokerError::BadRequest(reply.description())),
            _ => Err(BrokerError::EchoService(reply.unexpected())),
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
        check_path_id("instance_id", instance_id)?;
        self.existing_instance(instance_id)?;
        Ok(HttpResponse::json(200, &json!({"state": "succeeded"})))
    }

    /// `GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation`
    ///
    /// - 200 `{"state": "succeeded"}`: the binding exists.
    /// - 404: it does not exist.
    fn binding_last_operation(&self, instance_id: &str, binding_id: &str) -> Answer {
        check_path_id("instance_id", instance_id)?;
        check_path_id("binding_id", binding_id)?;
        self.existing_binding(instance_id, binding_id)?;
        Ok(HttpResponse::json(200, &json!({"state": "succeeded"})))
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
// request while it runs with 202 again, and may refuse another operation on the same
// resource with 422 `ConcurrencyError`. A polled update or deprovision that `failed` may
// say what it left behind with the flags a failed update carries here (`instance_usable`,
// and for an update `update_repeatable`: see `BrokerError::UpdateFailed`).
//
// The echo service does each change in one request that returns after an fsync, so this
// broker finishes every operation before it answers, never answers 202, and ignores
// `accepts_incomplete` and `operation`. A platform may poll `last_operation` anyway, so
// the two handlers answer from what exists now: a resource that is there was made by an
// operation that succeeded, and one that is not is a 404. (The spec's 410 there reports
// an asynchronous deprovision that has finished; with nothing ever in flight, it does not
// apply.)
