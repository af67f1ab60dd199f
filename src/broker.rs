//! The service broker: the Open Service Broker API v2.17 request path, top to bottom.
//!
//! Read it in order and you have read the OSB API as a synchronous broker speaks it: a map
//! of the protocol (every call, every status, the rule that decides it), one exchange as a
//! platform sends it, one handler per call in the order of a service's life (catalog,
//! provision, fetch, update, bind, rotate, fetch binding, unbind, deprovision, last
//! operation), then the checks every request passes first, the errors, the rules the
//! handlers share, and what the broker leaves out. Every rule it applies is here; what is
//! not the API is in `broker/routes.rs` (which handler answers which path),
//! `broker/serving.rs` (how the server calls this file), `broker/config.rs` (what a broker
//! is made from), `broker/original.rs` (what it accepts from the original Python programs)
//! and `echo_client.rs` (the echo service's calls, and which failure is a 502, 503 or 504).
//!
//! ## The protocol on one screen
//!
//! MUST, SHOULD and MAY are the spec's words for what it asks of a broker's answer; "this
//! broker's choice" marks an answer the spec leaves open. Sections are the spec's
//! (<https://github.com/openservicebrokerapi/servicebroker/blob/v2.17/spec.md>). In paths,
//! `I` is `/v2/service_instances/:instance_id` and `B` is `I/service_bindings/:binding_id`.
//! The conversation page (`GET /`) names, for every answer it shows, its rule in these words.
//!
//! | call | status | rule | spec section |
//! |---|---|---|---|
//! | every call | 401 | MUST: no valid credentials | Platform to Service Broker Authentication |
//! | | 400 | MAY: no API version header | API Version Header |
//! | | 412 | MAY: an API version this broker does not speak | API Version Header |
//! | | 400 | this broker's choice: a malformed originating identity | Originating Identity |
//! | | 400 | this broker's choice: an id over 255 bytes or with control characters | URL Properties |
//! | | 400 | this broker's choice: an id a proxy would read as a path step | URL Properties |
//! | | 502, 503, 504 | this broker's choice: the echo service failed | Service Broker Errors |
//! | any other path | 404 | this broker's choice: not a path of the API | Service Broker Errors |
//! | any other method | 405 | this broker's choice: a method the path does not answer | Service Broker Errors |
//! | catalog `GET /v2/catalog` | 200 | MUST: the catalog | Catalog Management |
//! | provision `PUT I` | 201 | MUST: created | Provisioning |
//! | | 200 | SHOULD: identical repeat | Provisioning |
//! | | 409 | MUST: exists with other attributes | Provisioning |
//! | | 400 | MUST: malformed or missing data | Provisioning |
//! | | 400 | MAY: invalid data | Provisioning |
//! | | 422 | MUST: maintenance_info.version is not the plan's | Provisioning |
//! | fetch instance `GET I` | 200 | MUST: found | Fetching a Service Instance |
//! | | 404 | MUST: does not exist | Fetching a Service Instance |
//! | update `PATCH I` | 200 | MUST: changes applied | Updating a Service Instance |
//! | | 400 | MUST: malformed or missing data | Updating a Service Instance |
//! | | 400 | MAY: invalid data | Updating a Service Instance |
//! | | 404 | this broker's choice: the instance does not exist | Updating a Service Instance |
//! | | 422 | MUST: a change the plan does not support | Updating a Service Instance |
//! | | 422 | MUST: maintenance_info.version is not the plan's | Updating a Service Instance |
//! | bind `PUT B` | 201 | MUST: created | Binding |
//! | | 200 | SHOULD: identical repeat | Binding |
//! | | 409 | MUST: exists with other attributes | Binding |
//! | | 409 | this broker's choice: exists but has expired | Binding |
//! | | 400 | MUST: malformed or missing data | Binding |
//! | | 400 | MAY: invalid data | Binding |
//! | | 400 | this broker's choice: a plan not in the catalog, the instance's own included | Binding |
//! | | 404 | this broker's choice: the instance does not exist | Binding |
//! | rotate `PUT B` with `predecessor_binding_id` | 201 | MUST: created | Binding |
//! | | 200 | SHOULD: identical repeat | Binding |
//! | | 409 | MUST: exists with other attributes | Binding |
//! | | 409 | this broker's choice: exists but has expired | Binding |
//! | | 400 | MUST: malformed or missing data | Binding |
//! | | 400 | MAY: no live predecessor of this instance, or a plan that does not rotate | Binding Rotation |
//! | | 400 | this broker's choice: a plan not in the catalog, the instance's own included | Binding |
//! | fetch binding `GET B` | 200 | MUST: found | Fetching a Service Binding |
//! | | 200 | this broker's choice: found, though expired | Fetching a Service Binding |
//! | | 404 | MUST: does not exist | Fetching a Service Binding |
//! | unbind `DELETE B` | 200 | MUST: deleted | Unbinding |
//! | | 410 | MUST: does not exist | Unbinding |
//! | | 400 | MUST: malformed or missing data | Unbinding |
//! | | 400 | MAY: invalid data | Unbinding |
//! | deprovision `DELETE I` | 200 | MUST: deleted | Deprovisioning |
//! | | 410 | MUST: does not exist | Deprovisioning |
//! | | 400 | MUST: malformed or missing data | Deprovisioning |
//! | | 400 | MAY: invalid data | Deprovisioning |
//! | instance last operation `GET I/last_operation` | 200 | MUST: succeeded | Polling Last Operation for Service Instances |
//! | | 404 | MUST: does not exist | Polling Last Operation for Service Instances |
//! | binding last operation `GET B/last_operation` | 200 | MUST: succeeded | Polling Last Operation for Service Bindings |
//! | | 404 | MUST: does not exist | Polling Last Operation for Service Bindings |
//!
//! Every answer, whatever its status, carries back the request's
//! `X-Broker-API-Request-Identity` (SHOULD, "Request Identity"). Before any of this, the HTTP
//! layer refuses what is not a request it can read (400, 408, 413, 431; `docs/http.md`).
//! `tests/system/protocol_table.rs` drives every row of the table through the running broker.
//!
//! ## One exchange, as a platform sends it
//!
//! `cf create-service "Echo Service" large my-echo` makes Cloud Foundry send this (the
//! originating identity is `{"user_id": "jane"}` in base64), and the broker, with its echo
//! service embedded on port 8090, answers:
//!
//! ```text
//! PUT /v2/service_instances/my-echo HTTP/1.1
//! Host: broker.example.com
//! Authorization: Basic dXNlcjpwYXNz
//! X-Broker-API-Version: 2.17
//! X-Broker-API-Originating-Identity: cloudfoundry eyJ1c2VyX2lkIjogImphbmUifQ==
//! X-Broker-API-Request-Identity: 7f3c9a52-1b4e-4d7a-9c1e-2a6f0b8d4e11
//! Content-Type: application/json
//! Content-Length: 157
//!
//! {"service_id":"echo_service","plan_id":"big_0001","organization_guid":"HP","space_guid":"IT","context":{"platform":"cloudfoundry","instance_name":"my-echo"}}
//!
//! HTTP/1.1 201 Created
//! Date: Mon, 07 Dec 2026 21:55:57 GMT
//! Content-Type: application/json
//! Content-Length: 287
//! X-Broker-API-Request-Identity: 7f3c9a52-1b4e-4d7a-9c1e-2a6f0b8d4e11
//!
//! {"dashboard_url":"http://127.0.0.1:8090/echo/dashboard/my-echo?token=88c1d7bf9bb83f5cdebf7ca5aa393bc1","metadata":{"attributes":{"dashboard_url":"http://127.0.0.1:8090/echo/dashboard/my-echo?token=88c1d7bf9bb83f5cdebf7ca5aa393bc1"},"labels":{"plan":"big_0001","service":"echo_service"}}}
//! ```

mod config;
mod original;
mod routes;
mod serving;

pub use config::BrokerConfig;

use crate::catalog::{Catalog, Plan, Service};
// What the platform asked for when it made an instance or a binding, which the echo service
// keeps in the `attributes` field of its records (its own word: the spec's
// `metadata.attributes` are something else, the broker's facts, made by `instance_metadata`).
use crate::echo::api::{
    non_empty, BindingAttributes as RequestedBinding, BindingLifetime, BindingView,
    InstanceAttributes as RequestedInstance, InstanceUpdate, InstanceView, REQUEST_IDENTITY_HEADER,
};
use crate::echo_client::{EchoClient, EchoError};
use crate::http::{self, HttpRequest, HttpResponse, Rule};
use crate::observer::Observer;
use crate::osb::{ORIGINATING_IDENTITY_HEADER, VERSION_HEADER};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// What a handler returns: the answer, or why the request did not do what it asked.
type Answer = Result<HttpResponse, BrokerError>;

// ---------------------------------------------------------------------------------------
// Catalog
// ---------------------------------------------------------------------------------------

impl Broker {
    /// `GET /v2/catalog`
    ///
    /// - 200 (MUST: the catalog) `{"services": [...]}`: the services and plans on offer, from
    ///   `catalog.toml`.
    ///
    /// Its fields are promises the handlers below keep: `bindable = true` (a plan's own value
    /// wins over its service's; a platform MUST NOT bind a plan that is not bindable),
    /// `plan_updateable = false` (a plan change is a 422), `instances_retrievable` and
    /// `bindings_retrievable = true` (the two fetch endpoints MUST then work for every
    /// plan), a plan's `binding_rotatable` (a platform MUST NOT rotate a binding of a plan
    /// without it), and each plan's `maintenance_info.version` (when it changes, a platform
    /// may offer an upgrade: an update that carries the new version). It does not declare
    /// `allow_context_updates` (see `update`).
    fn catalog(&self) -> Answer {
        let body = self.catalog_json.clone();
        Ok(HttpResponse::raw_json(200, body).with_rule(CATALOG))
    }
}

// The catalog may change while instances of it exist: an operator renames or removes a
// plan. The platform keeps those instances (Cloud Foundry marks the plan inactive) and goes
// on sending the old plan's id for them; the spec warns broker authors of this ("Catalog
// Management": platforms might have provisioned instances of a removed plan). So a call
// about what exists does not need the instance's plan in the catalog: fetch, an update that
// keeps the plan or moves to one of the catalog, unbind and deprovision. Were they refused,
// a platform could never delete such an instance, and its orphan mitigation would retry for
// ever. What makes something new names a plan of the current catalog: a provision, an
// update's new plan, and (this broker's choice, see `bind`) a bind or a rotation.

// ---------------------------------------------------------------------------------------
// Provisioning
// ---------------------------------------------------------------------------------------
//
// Why the protocol is shaped as it is: platforms retry.
//
// A platform that got a 5xx, or no answer in time, to a provision or a bind cannot know
// whether the resource now exists, so it sends DELETE until the broker answers success
// ("Orphan Mitigation"), and it may send the PUT again. Every call must therefore be safe
// to repeat: a PUT repeated with the same attributes SHOULD get 200 ("already done"), an id
// reused with other attributes MUST get 409, and a DELETE of what is not there MUST get 410
// Gone, which Cloud Foundry counts as a success (the work is already done; the spec says so
// only of a 410 while a platform polls an asynchronous delete). A 4xx MUST leave the
// broker's resources unchanged and a 5xx SHOULD ("Service Broker Errors"): a refused
// request changes nothing, so the platform may fix it and send it again. The source of
// truth is the platform: a broker must hold every instance and binding the platform knows
// of, and none other. This broker keeps no state of its own: it asks the echo service
// (`echo_client.rs`), so several brokers can run behind one platform.

/// The body of a provision request. Unknown fields are ignored (vendor extensions, which a
/// receiver MUST ignore). `organization_guid` and `space_guid` are deprecated in favour of
/// `context` but still required, so that old and new brokers both understand the request.
/// `context` is what the platform knows of where the instance lives: `context.platform`
/// names the platform (e.g. `cloudfoundry`), the other fields are that platform's own
/// (Cloud Foundry's organization and space ids, the instance's name). This broker acts on
/// none of it; it stores the `context` with the instance.
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
    /// - 201 (MUST: created) `{"dashboard_url": ".../echo/dashboard/{instance_id}?token=...",
    ///   "metadata": {"labels": {"service": .., "plan": ..}, "attributes": {"dashboard_url": ..}}}`.
    /// - 200 (SHOULD: identical repeat) with the same body: it exists, and the platform asks
    ///   for exactly what it asked for then (a retry).
    /// - 409 (MUST: exists with other attributes): an id reused for something else.
    /// - 400 (MUST: malformed or missing data): not a JSON object, a field missing or of the
    ///   wrong type, an empty organization or space.
    /// - 400 (MAY: invalid data): a service or plan not in the catalog, or a plan of another
    ///   service (the description lists the service's plans).
    /// - 422 `MaintenanceInfoConflict` (MUST): a `maintenance_info.version` that is not the
    ///   plan's in the catalog.
    fn provision(&self, instance_id: &str, request: &HttpRequest) -> Answer {
        check_id("instance_id", instance_id)?;
        let body: ProvisionRequest = parse_body(request, "provision")?;
        let (_, plan) = self.find_plan(&body.service_id, &body.plan_id, INVALID_DATA)?;
        check_maintenance_info(&body.plan_id, Some(plan), body.maintenance_info.as_ref())?;
        check_id("organization_guid", &body.organization_guid)?;
        check_id("space_guid", &body.space_guid)?;
        // What the echo service stores and a repeat is compared with (`{}` counts as
        // absent), and the plan's maintenance_info, which a fetch shows.
        let requested = RequestedInstance {
            service_id: body.service_id,
            plan_id: body.plan_id,
            organization_guid: body.organization_guid,
            space_guid: body.space_guid,
            context: non_empty(body.context.map(Value::Object)),
            parameters: non_empty(body.parameters.map(Value::Object)),
            maintenance_info: plan.maintenance_info.as_ref().map(|info| json!(info)),
        };
        // The echo service answers 200 when it made the instance, 409 with the stored one
        // when the id exists. Any other answer, or none (the `?`s), is a 502, 503 or 504.
        let reply = self.echo.provision(instance_id, &requested, request)?;
        match reply.status {
            200 => {
                let made = reply.instance(instance_id)?;
                Ok(self.provision_answer(201, CREATED, instance_id, &made))
            }
            409 => {
                let existing = reply.instance(instance_id)?;
                let asked_first = original::asked_first(existing.attributes.clone(), &requested);
                if asks_for_the_same_instance(&asked_first, &requested) {
                    Ok(self.provision_answer(200, IDENTICAL_REPEAT, instance_id, &existing))
                } else {
                    Err(BrokerError::Conflict(
                        OTHER_ATTRIBUTES,
                        format!("instance '{instance_id}' already exists with other attributes"),
                    ))
                }
            }
            _ => Err(BrokerError::EchoService(reply.unexpected())),
        }
    }

    fn provision_answer(
        &self,
        status: u16,
        rule: Rule,
        instance_id: &str,
        instance: &InstanceView,
    ) -> HttpResponse {
        let body = json!({
            "dashboard_url": self.dashboard_url(instance_id, instance),
            "metadata": self.instance_metadata(instance_id, instance),
        });
        respond(status, rule, &body)
    }
}

/// Whether a repeated provision asks for what the first one asked: every field the platform
/// sent. Not `maintenance_info`, which the broker takes from the catalog: an operator may
/// have raised the plan's version since, and a platform's retry is still the same request
/// (a version it sends was checked against the catalog of now).
fn asks_for_the_same_instance(first: &RequestedInstance, now: &RequestedInstance) -> bool {
    let sent_by_the_platform = |requested: &RequestedInstance| RequestedInstance {
        maintenance_info: None,
        ..requested.clone()
    };
    sent_by_the_platform(first) == sent_by_the_platform(now)
}

// ---------------------------------------------------------------------------------------
// Fetching a service instance
// ---------------------------------------------------------------------------------------

impl Broker {
    /// `GET /v2/service_instances/{instance_id}`
    ///
    /// - 200 (MUST: found) `{"service_id", "plan_id", "dashboard_url", "metadata",
    ///   "parameters", "maintenance_info"}`: the catalog's `instances_retrievable` promises
    ///   this for every plan. Every field is optional in the spec, and only what the echo
    ///   service recorded is answered. `maintenance_info` is the one the instance was
    ///   provisioned or last updated with (see `update`), so a platform can tell whether an
    ///   upgrade the catalog offers was made.
    /// - 404 (MUST: does not exist).
    fn fetch_instance(&self, instance_id: &str, request: &HttpRequest) -> Answer {
        check_id("instance_id", instance_id)?;
        let instance = self.stored_instance(instance_id, DOES_NOT_EXIST, request)?;
        let requested = instance.attributes.as_ref();
        let mut body = Map::new();
        if let Some(requested) = requested {
            body.insert("service_id".into(), json!(requested.service_id));
            body.insert("plan_id".into(), json!(requested.plan_id));
        }
        let dashboard_url = self.dashboard_url(instance_id, &instance);
        body.insert("dashboard_url".into(), json!(dashboard_url));
        let metadata = self.instance_metadata(instance_id, &instance);
        body.insert("metadata".into(), metadata);
        let parameters = requested.and_then(|requested| requested.parameters.clone());
        body.insert("parameters".into(), parameters.unwrap_or_else(|| json!({})));
        if let Some(info) = requested.and_then(|requested| requested.maintenance_info.clone()) {
            body.insert("maintenance_info".into(), info);
        }
        Ok(respond(200, FOUND, &body))
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
    /// - 200 (MUST: changes applied) `{"metadata": {...}}`: parameters replaced, plan changed.
    /// - 400 (MUST: malformed or missing data): not a JSON object, no `service_id`.
    /// - 400 (MAY: invalid data): a service not in the catalog or not the instance's, a new
    ///   plan not in the catalog or of another service.
    /// - 404 (this broker's choice: the instance does not exist): the spec names no status.
    /// - 422 (MUST: a change the plan does not support): a plan change where the plan is not
    ///   `plan_updateable`.
    /// - 422 `MaintenanceInfoConflict` (MUST): a `maintenance_info.version` that is not the
    ///   catalog's for the plan the instance will be on.
    ///
    /// What is absent is kept: without `plan_id` the plan MUST NOT change, without
    /// `parameters` they MUST NOT. One that carries the catalog's newer
    /// `maintenance_info.version` is the upgrade the catalog announced (here, only a number).
    /// An instance whose plan has left the catalog may still be updated: its parameters, or
    /// a move to a plan of the catalog.
    ///
    /// `context`, when sent, is stored (replacing the one the instance had). A platform
    /// sends an update that carries only `context` when the instance's context changes (its
    /// name, say) only to a broker that declares `allow_context_updates` (MUST); this broker
    /// does not, so it gets none, and would answer one 200 all the same, storing the context.
    ///
    /// A failed update's body adds two flags ([`BrokerError::UpdateFailed`]), hence
    /// `update` around `apply_update`. A refusal (4xx) MUST change nothing, and none does:
    /// every check runs before the echo service is asked. A 5xx MUST NOT have applied the
    /// change either ("Updating a Service Instance"), and a 504 may break that: the echo
    /// service did not answer in time, and may have made the change after the broker
    /// stopped waiting, which the broker cannot know. What this broker does about it: the
    /// 5xx says `update_repeatable: true`, and an update sets values, never adds to them,
    /// so the same update sent again leaves the instance exactly as asked, whether or not
    /// the first one was made. ("Service Broker Errors" asks only SHOULD of a 5xx, for this
    /// reason.)
    fn update(&self, instance_id: &str, request: &HttpRequest) -> Answer {
        self.apply_update(instance_id, request)
            .map_err(BrokerError::update_failed)
    }

    fn apply_update(&self, instance_id: &str, request: &HttpRequest) -> Answer {
        check_id("instance_id", instance_id)?;
        let body: UpdateRequest = parse_body(request, "update")?;
        let service = self.find_service(&body.service_id, INVALID_DATA)?;
        let current_plan_id = self.current_plan_id(instance_id, service, request)?;
        let new_plan_id = body.plan_id.as_deref().filter(|id| *id != current_plan_id);
        // The plan the instance will be on: a new one must be in the catalog and allowed; the
        // current one may have left it (`None`).
        let plan = match new_plan_id {
            Some(new_plan_id) => {
                let (_, new_plan) = self.find_plan(&body.service_id, new_plan_id, INVALID_DATA)?;
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
        let reply = self.echo.update(instance_id, &update, request)?;
        match reply.status {
            // Changed; its answer is the instance as it is now.
            200 => {
                let updated = reply.instance(instance_id)?;
                let metadata = self.instance_metadata(instance_id, &updated);
                Ok(respond(200, UPDATED, &json!({ "metadata": metadata })))
            }
            404 => Err(no_instance(instance_id, NO_INSTANCE_TO_CHANGE)),
            _ => Err(BrokerError::EchoService(reply.unexpected())),
        }
    }

    /// The plan the instance is on now; 400 if the instance belongs to another service.
    fn current_plan_id(
        &self,
        instance_id: &str,
        service: &Service,
        request: &HttpRequest,
    ) -> Result<String, BrokerError> {
        let instance = self.stored_instance(instance_id, NO_INSTANCE_TO_CHANGE, request)?;
        match instance.attributes {
            Some(requested) if requested.service_id != service.id => Err(BrokerError::BadRequest(
                INVALID_DATA,
                format!(
                    "instance '{instance_id}' belongs to service '{}', not '{}'",
                    requested.service_id, service.id
                ),
            )),
            Some(requested) => Ok(requested.plan_id),
            None => Ok(original::first_plan_id(service)),
        }
    }
}

/// A move to another plan is allowed only where the instance's plan is `plan_updateable`
/// (the plan's flag wins over the service's); anything else is a 422 (MUST). An instance
/// whose plan has left the catalog may move to any plan of its service (this broker's
/// choice): the catalog no longer says what its plan allows, and a move is its way back to a
/// plan the broker offers.
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
// Binding
// ---------------------------------------------------------------------------------------

/// The body of a bind request. `bind_resource.app_guid` names the app to bind; the older
/// top-level `app_guid` is deprecated in its favour, and a platform may send either, or both.
#[derive(Deserialize)]
struct BindRequest {
    /// Required, but for a rotation, whose body may name only the predecessor.
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
    /// Set when the platform rotates a binding: see `rotate`.
    #[serde(default)]
    predecessor_binding_id: Option<String>,
    /// Where the binding lives (as a provision's `context`); this broker does not store it,
    /// but a value that is not an object is a malformed request, a 400.
    #[serde(default, rename = "context")]
    _context: Option<Map<String, Value>>,
}

impl Broker {
    /// `PUT /v2/service_instances/{instance_id}/service_bindings/{binding_id}`
    /// `{"service_id": "echo_service", "plan_id": "big_0001",
    ///   "bind_resource": {"app_guid": "myapp"}}`
    ///
    /// - 201 (MUST: created) `{"credentials": {"uri":
    ///   "http://USER:PASS@.../echo/{instance_id}/{binding_id}", "username": USER,
    ///   "password": PASS}, "metadata": {}}`: bound; the app posts to `uri`.
    /// - 200 (SHOULD: identical repeat) with the same credentials.
    /// - 409 (MUST: exists with other attributes).
    /// - 409 (this broker's choice: exists but has expired): the credentials of an identical
    ///   repeat would no longer work. A 200 would hand the app credentials the echo service
    ///   refuses; a 409 tells the platform why, and to bind anew (or unbind this one, which
    ///   succeeds as for any binding).
    /// - 400 (MUST: malformed or missing data): no `service_id` or `plan_id`.
    /// - 400 (MAY: invalid data): a plan that is not bindable, or a service and plan that
    ///   are not the instance's.
    /// - 400 (this broker's choice: a plan not in the catalog, the instance's own included).
    ///   The spec asks the platform for the instance's plan, which may have left the catalog;
    ///   this broker binds only plans it still offers, since only the catalog says whether a
    ///   plan is bindable, how long its bindings live and whether they rotate. The
    ///   consequence is this broker's decision too: once a plan is removed, its instances get
    ///   no new bindings, and a rotatable plan's credentials can no longer be renewed
    ///   (`rotate`); the existing bindings keep working until they expire, and can be
    ///   fetched and unbound.
    /// - 404 (this broker's choice: the instance does not exist): the spec names no status.
    ///
    /// This broker's bindings are of the spec's credentials kind. The spec says a broker
    /// SHOULD also answer `endpoints`, the hosts and ports the app connects to, so that a
    /// platform can open its network to them. This broker leaves them out (its choice): an
    /// app connects to one place, the echo service's address in the credentials' `uri`,
    /// the same for every binding of every instance, so the network is opened to it once,
    /// when the echo service is deployed, not binding by binding. A bind answer may also
    /// carry `syslog_drain_url` (a log drain), `route_service_url` (a route service, with
    /// `requires: ["route_forwarding"]` in the catalog) and `volume_mounts` (a volume
    /// service); none is this service's.
    ///
    /// **Credentials that expire.** A leaked password is good until its binding is deleted,
    /// unless the binding expires. A plan may give its bindings a lifetime (this broker's
    /// own `binding_lifetime` in `catalog.toml`, e.g. the Invert Service's 90 days): the
    /// answer then carries `metadata.expires_at` (the spec's binding metadata since 2.16),
    /// when the credentials stop working, and `metadata.renew_before` (since 2.17), when
    /// the platform should rotate them ([`lifetime_from_now`]). The echo service refuses
    /// expired credentials itself, so the expiry is enforced where the credentials are
    /// used, not only announced.
    fn bind(&self, instance_id: &str, binding_id: &str, request: &HttpRequest) -> Answer {
        check_id("instance_id", instance_id)?;
        check_id("binding_id", binding_id)?;
        let body: BindRequest = parse_body(request, "bind")?;
        if let Some(predecessor_id) = body.predecessor_binding_id.clone() {
            return self.rotate(instance_id, binding_id, &predecessor_id, body, request);
        }
        let (Some(service_id), Some(plan_id)) = (body.service_id, body.plan_id) else {
            let why = "service_id and plan_id are required";
            return Err(BrokerError::BadRequest(MALFORMED, why.into()));
        };
        let plan = self.plan_to_bind(&service_id, &plan_id)?;
        if let Some(app_guid) = &body.app_guid {
            check_id("app_guid", app_guid)?;
        }
        let requested = RequestedBinding {
            service_id,
            plan_id,
            app_guid: body.app_guid,
            bind_resource: non_empty(body.bind_resource.map(Value::Object)),
            parameters: non_empty(body.parameters.map(Value::Object)),
            predecessor_binding_id: None,
        };
        self.make_binding(instance_id, binding_id, plan, &requested, request)
    }

    /// The plan a bind or rotation names: in the catalog (this broker's choice, see `bind`),
    /// and bindable (a plan's own value wins over its service's).
    fn plan_to_bind(&self, service_id: &str, plan_id: &str) -> Result<&Plan, BrokerError> {
        let (service, plan) = self.find_plan(service_id, plan_id, NOT_IN_CATALOG_TO_BIND)?;
        if plan.bindable.unwrap_or(service.bindable) {
            Ok(plan)
        } else {
            let why = format!("plan '{}' is not bindable", plan.id);
            Err(BrokerError::BadRequest(INVALID_DATA, why))
        }
    }

    /// Asks the echo service for the binding, with a lifetime from now if the plan gives
    /// one, and answers as the spec says: 201 made, or, if the binding exists, as
    /// [`Broker::answer_repeated_bind`] says.
    fn make_binding(
        &self,
        instance_id: &str,
        binding_id: &str,
        plan: &Plan,
        requested: &RequestedBinding,
        request: &HttpRequest,
    ) -> Answer {
        let lifetime = plan.binding_lifetime_seconds().map(lifetime_from_now);
        let reply = self
            .echo
            .bind(instance_id, binding_id, requested, lifetime, request)?;
        match reply.status {
            200 => {
                let made = reply.binding(binding_id)?;
                Ok(self.binding_answer(201, CREATED, instance_id, binding_id, &made))
            }
            409 => {
                let existing = reply.binding(binding_id)?;
                self.answer_repeated_bind(instance_id, binding_id, &existing, requested)
            }
            404 => Err(no_instance(instance_id, NO_INSTANCE_TO_CHANGE)),
            // The echo service checks that the service and plan are the instance's.
            400 => Err(BrokerError::BadRequest(INVALID_DATA, reply.description())),
            _ => Err(BrokerError::EchoService(reply.unexpected())),
        }
    }

    /// A bind whose binding exists: 200 with it if the request asks for exactly what the
    /// first one asked (a retry; its lifetime is the one it was made with), 409 if it asks
    /// for something else, and 409 too if it has expired since (see `bind`).
    fn answer_repeated_bind(
        &self,
        instance_id: &str,
        binding_id: &str,
        existing: &BindingView,
        requested: &RequestedBinding,
    ) -> Answer {
        let asked_first = original::asked_first(existing.attributes.clone(), requested);
        if asked_first != *requested {
            return Err(BrokerError::Conflict(
                OTHER_ATTRIBUTES,
                format!("binding '{binding_id}' already exists with other attributes"),
            ));
        }
        if let Some(expired_at) = expiry_passed(existing) {
            return Err(BrokerError::Conflict(
                EXPIRED,
                format!(
                    "binding '{binding_id}' exists but expired at {expired_at}: its credentials no longer work; unbind it and bind anew"
                ),
            ));
        }
        Ok(self.binding_answer(200, IDENTICAL_REPEAT, instance_id, binding_id, existing))
    }

    fn binding_answer(
        &self,
        status: u16,
        rule: Rule,
        instance_id: &str,
        binding_id: &str,
        binding: &BindingView,
    ) -> HttpResponse {
        let body = json!({
            "credentials": self.binding_credentials(instance_id, binding_id, binding),
            "metadata": binding_metadata(binding),
        });
        respond(status, rule, &body)
    }
}

// ---------------------------------------------------------------------------------------
// Rotating a binding
// ---------------------------------------------------------------------------------------

impl Broker {
    /// `PUT /v2/service_instances/{instance_id}/service_bindings/{binding_id}`
    /// `{"predecessor_binding_id": "old"}` (spec 2.17, "Binding Rotation")
    ///
    /// A bind that names a predecessor makes a successor: a new binding with new
    /// credentials, a new lifetime, and the predecessor's parameters (parameters sent with
    /// it win), because the platform need not keep the parameters it once sent, so it
    /// cannot be asked to send them again. The body may name only the predecessor: its
    /// service and plan are then the predecessor's (the spec's rotation request shows no
    /// other field, while its schema requires `service_id` and `plan_id`). The platform hands
    /// the successor's credentials to the app and deletes the predecessor when it likes:
    /// until then both work (MUST), side by side, each until it expires or is deleted.
    ///
    /// - 201, 200, 409 and the 400 of a malformed body: as `bind`.
    /// - 200 (SHOULD: identical repeat): a repeat of a rotation that was made is answered
    ///   from the successor it made, whatever became of the predecessor since: deleted, or
    ///   expired.
    /// - 400 (MAY: no live predecessor of this instance, or a plan that does not rotate):
    ///   the platform MUST name a binding of the same instance that has not expired, and
    ///   MUST NOT rotate a plan without `binding_rotatable = true`.
    /// - 400 (this broker's choice: a plan not in the catalog, the instance's own included):
    ///   see `bind`. A removed plan's bindings are not renewed: the platform makes new ones
    ///   on a plan of the catalog.
    fn rotate(
        &self,
        instance_id: &str,
        binding_id: &str,
        predecessor_id: &str,
        body: BindRequest,
        request: &HttpRequest,
    ) -> Answer {
        check_id("predecessor_binding_id", predecessor_id)?;
        if predecessor_id == binding_id {
            let why = "predecessor_binding_id names the binding being made";
            return Err(BrokerError::BadRequest(ROTATION_REFUSED, why.into()));
        }
        if let Some(app_guid) = &body.app_guid {
            check_id("app_guid", app_guid)?;
        }
        let successor = self.successor_made_by(instance_id, binding_id, predecessor_id, request)?;
        if let Some(successor) = successor {
            let requested = rotation_request(body, successor.attributes.as_ref(), predecessor_id)?;
            return self.answer_repeated_bind(instance_id, binding_id, &successor, &requested);
        }
        let predecessor = self.live_predecessor(instance_id, predecessor_id, request)?;
        let requested = rotation_request(body, predecessor.attributes.as_ref(), predecessor_id)?;
        let plan = self.plan_to_bind(&requested.service_id, &requested.plan_id)?;
        if plan.binding_rotatable != Some(true) {
            return Err(BrokerError::BadRequest(
                ROTATION_REFUSED,
                format!(
                    "plan '{}' does not allow binding rotation (binding_rotatable is not true)",
                    plan.id
                ),
            ));
        }
        self.make_binding(instance_id, binding_id, plan, &requested, request)
    }

    /// The binding `binding_id`, if it exists and was made by rotating `predecessor_id`:
    /// then this request is a repeat of that rotation.
    fn successor_made_by(
        &self,
        instance_id: &str,
        binding_id: &str,
        predecessor_id: &str,
        request: &HttpRequest,
    ) -> Result<Option<BindingView>, BrokerError> {
        let successor = self.stored_binding(instance_id, binding_id, request)?;
        Ok(successor.filter(|successor| {
            let named = successor.attributes.as_ref();
            named.and_then(|requested| requested.predecessor_binding_id.as_deref())
                == Some(predecessor_id)
        }))
    }

    /// The predecessor a new rotation names: a binding of this instance that has not expired.
    fn live_predecessor(
        &self,
        instance_id: &str,
        predecessor_id: &str,
        request: &HttpRequest,
    ) -> Result<BindingView, BrokerError> {
        let Some(predecessor) = self.stored_binding(instance_id, predecessor_id, request)? else {
            return Err(BrokerError::BadRequest(
                ROTATION_REFUSED,
                format!(
                    "predecessor binding '{predecessor_id}' does not exist in instance '{instance_id}'"
                ),
            ));
        };
        if let Some(expired_at) = expiry_passed(&predecessor) {
            return Err(BrokerError::BadRequest(
                ROTATION_REFUSED,
                format!(
                    "predecessor binding '{predecessor_id}' has expired (at {expired_at}): make a new binding instead"
                ),
            ));
        }
        Ok(predecessor)
    }
}

/// What a rotation asks for: the request's fields, and where it names no service, plan or
/// parameters, those of `first` (the predecessor's, or for a repeat the successor's, which
/// took them from the predecessor).
fn rotation_request(
    body: BindRequest,
    first: Option<&RequestedBinding>,
    predecessor_id: &str,
) -> Result<RequestedBinding, BrokerError> {
    let ids = match (body.service_id, body.plan_id) {
        (Some(service_id), Some(plan_id)) => Some((service_id, plan_id)),
        (None, None) => first.map(|first| (first.service_id.clone(), first.plan_id.clone())),
        _ => None,
    };
    let Some((service_id, plan_id)) = ids else {
        return Err(BrokerError::BadRequest(
            MALFORMED,
            format!(
                "service_id and plan_id are required, both or neither: the predecessor binding '{predecessor_id}' has none to take"
            ),
        ));
    };
    let inherited = first.and_then(|first| first.parameters.clone());
    Ok(RequestedBinding {
        service_id,
        plan_id,
        app_guid: body.app_guid,
        bind_resource: non_empty(body.bind_resource.map(Value::Object)),
        parameters: non_empty(body.parameters.map(Value::Object)).or(inherited),
        predecessor_binding_id: Some(predecessor_id.to_string()),
    })
}

// ---------------------------------------------------------------------------------------
// Fetching a service binding
// ---------------------------------------------------------------------------------------

impl Broker {
    /// `GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}`
    ///
    /// - 200 (MUST: found) `{"credentials": {...}, "parameters": {...}, "metadata": {...}}`:
    ///   the catalog's `bindings_retrievable` promises this.
    /// - 200 (this broker's choice: found, though expired): its `metadata.expires_at` is in
    ///   the past and its credentials no longer work. The platform still holds it, and
    ///   deletes it with an unbind (200); a 404 would tell the platform it is gone, and hide
    ///   why the app's calls fail.
    /// - 404 (MUST: does not exist).
    fn fetch_binding(&self, instance_id: &str, binding_id: &str, request: &HttpRequest) -> Answer {
        check_id("instance_id", instance_id)?;
        check_id("binding_id", binding_id)?;
        let Some(binding) = self.stored_binding(instance_id, binding_id, request)? else {
            let why = format!("binding '{binding_id}' does not exist");
            return Err(BrokerError::NotFound(DOES_NOT_EXIST, why));
        };
        let parameters = binding
            .attributes
            .as_ref()
            .and_then(|requested| requested.parameters.clone());
        let body = json!({
            "credentials": self.binding_credentials(instance_id, binding_id, &binding),
            "parameters": parameters.unwrap_or_else(|| json!({})),
            "metadata": binding_metadata(&binding),
        });
        let rule = match expiry_passed(&binding) {
            Some(_) => FOUND_THOUGH_EXPIRED,
            None => FOUND,
        };
        Ok(respond(200, rule, &body))
    }
}

// ---------------------------------------------------------------------------------------
// Unbinding
// ---------------------------------------------------------------------------------------

impl Broker {
    /// `DELETE /v2/service_instances/{instance_id}/service_bindings/{binding_id}?service_id=..&plan_id=..`
    ///
    /// - 200 (MUST: deleted) `{}`: the binding's credentials stop working at once; an
    ///   expired binding is deleted like any other.
    /// - 410 (MUST: does not exist) `{}`: Cloud Foundry counts it a success.
    /// - 400 (MUST: malformed or missing data): `service_id` or `plan_id` missing.
    /// - 400 (MAY: invalid data): a `service_id` or `plan_id` that is not the binding's
    ///   instance's, whether or not the catalog still has them; the binding is kept. This
    ///   meets orphan mitigation: the platform's DELETEs carry the ids it made the binding
    ///   with, which are the ones the echo service stored (an echo service that stored none,
    ///   the original, takes any).
    fn unbind(&self, instance_id: &str, binding_id: &str, request: &HttpRequest) -> Answer {
        check_id("instance_id", instance_id)?;
        check_id("binding_id", binding_id)?;
        let (service_id, plan_id) = ids_from_query(request)?;
        let reply = self
            .echo
            .unbind(instance_id, binding_id, &service_id, &plan_id, request)?;
        match reply.status {
            200 => Ok(respond(200, DELETED, &json!({}))),
            404 => Err(BrokerError::Gone),
            400 => Err(BrokerError::BadRequest(INVALID_DATA, reply.description())),
            _ => Err(BrokerError::EchoService(reply.unexpected())),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Deprovisioning
// ---------------------------------------------------------------------------------------

impl Broker {
    /// `DELETE /v2/service_instances/{instance_id}?service_id=..&plan_id=..`
    ///
    /// - 200 (MUST: deleted) `{}`: deprovisioned, with its messages. (The platform MUST
    ///   unbind every binding first; the echo service removes any left over.)
    /// - 410 (MUST: does not exist) `{}`: Cloud Foundry counts it a success, a repeat of a
    ///   delete already done.
    /// - 400 (MUST: malformed or missing data): `service_id` or `plan_id` missing.
    /// - 400 (MAY: invalid data): a `service_id` or `plan_id` that is not the instance's,
    ///   whether or not the catalog still has them; the instance is kept. As for `unbind`,
    ///   this never refuses orphan mitigation: a platform deletes an instance with the ids it
    ///   provisioned it with.
    fn deprovision(&self, instance_id: &str, request: &HttpRequest) -> Answer {
        check_id("instance_id", instance_id)?;
        let (service_id, plan_id) = ids_from_query(request)?;
        let reply = self
            .echo
            .deprovision(instance_id, &service_id, &plan_id, request)?;
        match reply.status {
            200 => Ok(respond(200, DELETED, &json!({}))),
            404 => Err(BrokerError::Gone),
            400 => Err(BrokerError::BadRequest(INVALID_DATA, reply.description())),
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
    /// - 200 (MUST: succeeded) `{"state": "succeeded"}`: the instance exists, so the
    ///   operation that made or last changed it succeeded.
    /// - 404 (MUST: does not exist).
    fn instance_last_operation(&self, instance_id: &str, request: &HttpRequest) -> Answer {
        check_id("instance_id", instance_id)?;
        self.stored_instance(instance_id, DOES_NOT_EXIST, request)?;
        Ok(respond(200, SUCCEEDED, &json!({"state": "succeeded"})))
    }

    /// `GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation`
    ///
    /// - 200 (MUST: succeeded) `{"state": "succeeded"}`: the binding exists.
    /// - 404 (MUST: does not exist).
    fn binding_last_operation(
        &self,
        instance_id: &str,
        binding_id: &str,
        request: &HttpRequest,
    ) -> Answer {
        check_id("instance_id", instance_id)?;
        check_id("binding_id", binding_id)?;
        match self.stored_binding(instance_id, binding_id, request)? {
            Some(_) => Ok(respond(200, SUCCEEDED, &json!({"state": "succeeded"}))),
            None => Err(BrokerError::NotFound(
                DOES_NOT_EXIST,
                format!("binding '{binding_id}' does not exist"),
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The rules of the table at the top, as the answers name them
// ---------------------------------------------------------------------------------------

/// A rule stated in the section of the call it answers.
const fn of_the_call(says: &'static str) -> Rule {
    Rule {
        says,
        section: None,
    }
}

/// A rule stated in a section of its own.
const fn in_section(says: &'static str, section: &'static str) -> Rule {
    Rule {
        says,
        section: Some(section),
    }
}

const CREDENTIALS_REFUSED: Rule = in_section(
    "MUST: no valid credentials",
    "Platform to Service Broker Authentication",
);
const NO_API_VERSION: Rule = in_section("MAY: no API version header", "API Version Header");
const API_VERSION_REFUSED: Rule = in_section(
    "MAY: an API version this broker does not speak",
    "API Version Header",
);
const MALFORMED_IDENTITY: Rule = in_section(
    "this broker's choice: a malformed originating identity",
    "Originating Identity",
);
const ID_REFUSED: Rule = in_section(
    "this broker's choice: an id over 255 bytes or with control characters",
    "URL Properties",
);
const PATH_STEP_REFUSED: Rule = in_section(
    "this broker's choice: an id a proxy would read as a path step",
    "URL Properties",
);
const ECHO_SERVICE_FAILED: Rule = in_section(
    "this broker's choice: the echo service failed",
    "Service Broker Errors",
);
const NOT_THE_API: Rule = in_section(
    "this broker's choice: not a path of the API",
    "Service Broker Errors",
);
const METHOD_NOT_ANSWERED: Rule = in_section(
    "this broker's choice: a method the path does not answer",
    "Service Broker Errors",
);
const CATALOG: Rule = of_the_call("MUST: the catalog");
const CREATED: Rule = of_the_call("MUST: created");
const IDENTICAL_REPEAT: Rule = of_the_call("SHOULD: identical repeat");
const OTHER_ATTRIBUTES: Rule = of_the_call("MUST: exists with other attributes");
const EXPIRED: Rule = of_the_call("this broker's choice: exists but has expired");
const MALFORMED: Rule = of_the_call("MUST: malformed or missing data");
const INVALID_DATA: Rule = of_the_call("MAY: invalid data");
const MAINTENANCE_INFO_CONFLICT: Rule =
    of_the_call("MUST: maintenance_info.version is not the plan's");
const FOUND: Rule = of_the_call("MUST: found");
const FOUND_THOUGH_EXPIRED: Rule = of_the_call("this broker's choice: found, though expired");
const DOES_NOT_EXIST: Rule = of_the_call("MUST: does not exist");
const UPDATED: Rule = of_the_call("MUST: changes applied");
const NO_INSTANCE_TO_CHANGE: Rule =
    of_the_call("this broker's choice: the instance does not exist");
const PLAN_CHANGE_REFUSED: Rule = of_the_call("MUST: a change the plan does not support");
const NOT_IN_CATALOG_TO_BIND: Rule =
    of_the_call("this broker's choice: a plan not in the catalog, the instance's own included");
const ROTATION_REFUSED: Rule = in_section(
    "MAY: no live predecessor of this instance, or a plan that does not rotate",
    "Binding Rotation",
);
const DELETED: Rule = of_the_call("MUST: deleted");
const SUCCEEDED: Rule = of_the_call("MUST: succeeded");

/// A JSON answer with its status and the rule of the table that decided it.
fn respond(status: u16, rule: Rule, body: &impl Serialize) -> HttpResponse {
    HttpResponse::json(status, body).with_rule(rule)
}

// ---------------------------------------------------------------------------------------
// The checks every request passes, on its headers alone, before any handler
// ---------------------------------------------------------------------------------------

/// Every request carries `X-Broker-API-Version: MAJOR.MINOR`. This broker implements 2.17
/// and answers anything from 2.3 (the original's version) on: Cloud Controller sends 2.15,
/// Korifi 2.17. A platform that speaks an older 2.x ignores the fields it does not know.
const API_MAJOR: u32 = 2;
const OLDEST_API_MINOR: u32 = 3;

impl Broker {
    /// The checks of an OSB call, in this order, on the headers alone, so that no body is
    /// read for a client without credentials: basic auth, the API version, and the
    /// originating identity. (Which paths need which checks: `broker/serving.rs`.)
    fn check_headers(&self, request: &HttpRequest) -> Result<(), BrokerError> {
        self.check_credentials(request)?;
        check_api_version(request)?;
        // A malformed identity is a 400; the user it names is for the log and the page.
        originating_user(request)?;
        Ok(())
    }

    /// Basic auth, compared in constant time; a malformed header is wrong credentials. The
    /// spec: a broker that authenticates MUST answer 401 when it fails ("Platform to Service
    /// Broker Authentication"); the platform MUST send basic auth on every request.
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
        return Err(BrokerError::BadRequest(
            NO_API_VERSION,
            format!("the {VERSION_HEADER} header is missing; {expected}"),
        ));
    };
    let (major, minor) = value.trim().split_once('.').unwrap_or_default();
    match (major.parse::<u32>(), minor.parse::<u32>()) {
        (Ok(API_MAJOR), Ok(minor)) if minor >= OLDEST_API_MINOR => Ok(()),
        _ => Err(BrokerError::PreconditionFailed(format!(
            "API version '{value}' is not supported; {expected}"
        ))),
    }
}

/// `X-Broker-API-Originating-Identity: PLATFORM BASE64(JSON)` ("Originating Identity"): who
/// on the platform asked. A platform MAY send it, and when it does, MUST send it on every
/// request a user's action caused; PLATFORM MUST equal the body's `context.platform` when
/// the body carries `context`. Returns the user it names (Cloud Foundry's `user_id`,
/// Kubernetes' `username`), if any, for the log and the conversation page; this broker acts
/// on none of it. A value not of this form is a 400: the spec says what a platform MUST
/// send, the refusal is this broker's choice.
fn originating_user(request: &HttpRequest) -> Result<Option<String>, BrokerError> {
    let Some(value) = request.header(ORIGINATING_IDENTITY_HEADER) else {
        return Ok(None);
    };
    let malformed = |why: &str| {
        BrokerError::BadRequest(
            MALFORMED_IDENTITY,
            format!(
                "the {ORIGINATING_IDENTITY_HEADER} header must be 'PLATFORM BASE64-JSON-OBJECT': {why}"
            ),
        )
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

impl Broker {
    /// Answers a request that passed the checks: the router (`broker/routes.rs`) picks the
    /// handler of the call, and the answer goes back with the request's identity.
    ///
    /// `X-Broker-API-Request-Identity: VALUE` ("Request Identity"): a platform MAY name each
    /// request, and then MUST on every one. The broker SHOULD send it back on the answer,
    /// and MAY log it; this one logs it, and forwards it on every call to the echo service
    /// made for the request (its choice: each call is given the request), so one request can
    /// be followed through both servers' logs.
    fn answer_checked(&self, request: &HttpRequest) -> HttpResponse {
        let answer = routes::run(self, request);
        with_request_identity(request, answer.unwrap_or_else(|error| error.to_response()))
    }
}

/// The answer with the request's identity echoed. Platforms send a UUID; a value that could
/// forge a header (control characters, over 256 bytes) is never sent back.
fn with_request_identity(request: &HttpRequest, mut response: HttpResponse) -> HttpResponse {
    if let Some(identity) = http::safe_to_echo(request.header(REQUEST_IDENTITY_HEADER)) {
        response
            .headers
            .push((REQUEST_IDENTITY_HEADER, identity.to_string()));
    }
    response
}

// ---------------------------------------------------------------------------------------
// Errors: every failure is a value that knows its status, its body and its rule
// ---------------------------------------------------------------------------------------

/// Why a request did not do what it asked. Handlers return these; [`BrokerError::to_response`]
/// is the one place that turns them into HTTP: `{"error": WORD, "description": TEXT}`, the
/// text for people and the camel-case word for programs (all but `Gone`). Where the spec
/// names a status for a failure, it MUST be used; where it names none (an update or a bind
/// of an instance that does not exist, a path that is not the API's), the status is this
/// broker's choice, said at the rule. The spec fixes the word for four failures only
/// ("Error Codes"):
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
    /// 400, under the rule it names: malformed (MUST), invalid data (MAY), or one of this
    /// broker's own refusals.
    BadRequest(Rule, String),
    /// 401 (MUST): missing or wrong credentials. Never says which half was wrong.
    Unauthorized,
    /// 404, under the rule it names: the spec's for a fetch or a last operation; this
    /// broker's choice for an update or a bind, and for a path that is not the API's.
    NotFound(Rule, String),
    /// 405 (this broker's choice, HTTP's meaning): a known path with a method it does not
    /// answer, and the methods it does (`Allow`).
    MethodNotAllowed(String, String),
    /// 409, under the rule it names: other attributes (MUST), or expired (this broker's).
    Conflict(Rule, String),
    /// 410 (MUST): the resource to delete does not exist. The spec of 2.17 asks only for the
    /// status; the body is `{}`, which versions before it asked for, and platforms that
    /// speak them still expect.
    Gone,
    /// 412 (MAY): the platform speaks an API version this broker does not.
    PreconditionFailed(String),
    /// 422 with the spec's `MaintenanceInfoConflict` (MUST).
    MaintenanceInfoConflict(String),
    /// 422 (MUST): an update this service cannot make (a plan change where plans are fixed).
    UnsupportedChange(String),
    /// 502, 503 or 504 `EchoServiceFailed` (this broker's choice: the spec names no status
    /// for the broker's own failure, a 5xx): the echo service gave no answer a handler can
    /// use, and the status says how, as a gateway's does (which failure is which:
    /// [`EchoError`] in `echo_client.rs`). A provision or bind that timed out may still be
    /// done: the platform's DELETEs (orphan mitigation) undo it.
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
        self.response_with(Map::new()).with_rule(self.rule())
    }

    /// The rule of the table at the top that this failure answers by.
    fn rule(&self) -> Rule {
        match self {
            BrokerError::BadRequest(rule, _)
            | BrokerError::NotFound(rule, _)
            | BrokerError::Conflict(rule, _) => *rule,
            BrokerError::Unauthorized => CREDENTIALS_REFUSED,
            BrokerError::MethodNotAllowed(..) => METHOD_NOT_ANSWERED,
            BrokerError::Gone => DOES_NOT_EXIST,
            BrokerError::PreconditionFailed(_) => API_VERSION_REFUSED,
            BrokerError::MaintenanceInfoConflict(_) => MAINTENANCE_INFO_CONFLICT,
            BrokerError::UnsupportedChange(_) => PLAN_CHANGE_REFUSED,
            BrokerError::EchoService(_) => ECHO_SERVICE_FAILED,
            BrokerError::UpdateFailed(cause) => cause.rule(),
        }
    }

    /// The error body, plus `extra` fields (a failed update's flags).
    fn response_with(&self, extra: Map<String, Value>) -> HttpResponse {
        let (status, error, description) = match self {
            // The spec's error code.
            BrokerError::MaintenanceInfoConflict(text) => {
                (422, "MaintenanceInfoConflict", text.as_str())
            }
            // This broker's own words, named after the status.
            BrokerError::BadRequest(_, text) => (400, "BadRequest", text.as_str()),
            BrokerError::Unauthorized => (
                401,
                "Unauthorized",
                "this broker needs valid basic-auth credentials",
            ),
            BrokerError::NotFound(_, text) => (404, "NotFound", text.as_str()),
            BrokerError::MethodNotAllowed(text, _) => (405, "MethodNotAllowed", text.as_str()),
            BrokerError::Conflict(_, text) => (409, "Conflict", text.as_str()),
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
        let usable = !matches!(self, BrokerError::NotFound(..));
        let repeatable = matches!(self, BrokerError::EchoService(_));
        let mut flags = Map::new();
        flags.insert("instance_usable".into(), usable.into());
        flags.insert("update_repeatable".into(), repeatable.into());
        flags
    }

    fn update_failed(self) -> BrokerError {
        BrokerError::UpdateFailed(Box::new(self))
    }
}

// ---------------------------------------------------------------------------------------
// What the handlers share: the request's body and ids, the catalog, the echo service's
// records, and what the broker hands out
// ---------------------------------------------------------------------------------------

/// The broker: the catalog it offers, the login a platform must send, and the echo service
/// that holds every instance and binding. (Made from its configuration: `broker/config.rs`.)
pub struct Broker {
    catalog: Catalog,
    /// `GET /v2/catalog`'s body, made once: the catalog never changes while the broker runs.
    catalog_json: Vec<u8>,
    /// The user and password the platform logs in with. (What a bound app gets is its
    /// binding's credentials: [`Broker::binding_credentials`].)
    login: (String, String),
    echo: EchoClient,
    /// What this process answered, for the conversation page and `/metrics`.
    observer: Observer,
}

/// The JSON object body of `operation`, as `T`: anything else is malformed (MUST: 400).
fn parse_body<T: serde::de::DeserializeOwned>(
    request: &HttpRequest,
    operation: &str,
) -> Result<T, BrokerError> {
    http::parse_json_body(&request.body, operation)
        .map_err(|why| BrokerError::BadRequest(MALFORMED, why))
}

/// Ids must be non-empty (the spec: MUST), at most 255 bytes, and free of control
/// characters: this broker's own rule (the spec restricts no characters and sets no length;
/// it recommends RFC 3986's unreserved characters, "URL Properties"), so that an id fits
/// every store and log line. The broker puts every id it checks into a path to the echo
/// service, so it also refuses one that a proxy on the way would read as a path step (`.`,
/// `..`, or one with `/` or `\`): nginx decodes and normalises a path however it is
/// encoded, and would answer it 400 (a 502 here) or route it to another path.
fn check_id(name: &str, id: &str) -> Result<(), BrokerError> {
    if id.is_empty() {
        let why = format!("{name} must not be empty");
        return Err(BrokerError::BadRequest(MALFORMED, why));
    }
    if let Some(problem) = http::id_problem(id) {
        return Err(BrokerError::BadRequest(
            ID_REFUSED,
            format!("{name} {problem}"),
        ));
    }
    match http::path_step_problem(id) {
        Some(problem) => Err(BrokerError::BadRequest(
            PATH_STEP_REFUSED,
            format!("{name} '{id}' {problem}"),
        )),
        None => Ok(()),
    }
}

/// The `service_id` and `plan_id` query parameters that deprovision and unbind require (the
/// spec: MUST). They are not looked up in the catalog, which may no longer have them: the
/// echo service checks that they are the instance's.
fn ids_from_query(request: &HttpRequest) -> Result<(String, String), BrokerError> {
    let service_id = required_query(request, "service_id")?;
    let plan_id = required_query(request, "plan_id")?;
    Ok((service_id, plan_id))
}

fn required_query(request: &HttpRequest, name: &str) -> Result<String, BrokerError> {
    let value = request.query(name).ok_or_else(|| {
        let why = format!("the query parameter {name} is required");
        BrokerError::BadRequest(MALFORMED, why)
    })?;
    check_id(name, &value)?;
    Ok(value)
}

impl Broker {
    /// The service a request names; a 400 under `rule` if the catalog has none of that id.
    fn find_service(&self, service_id: &str, rule: Rule) -> Result<&Service, BrokerError> {
        check_id("service_id", service_id)?;
        self.catalog.service(service_id).ok_or_else(|| {
            let why = format!("service_id '{service_id}' is not in the catalog");
            BrokerError::BadRequest(rule, why)
        })
    }

    /// The service and plan a request names: the plan must be one of that service's in the
    /// catalog, else a 400 under `rule`.
    fn find_plan(
        &self,
        service_id: &str,
        plan_id: &str,
        rule: Rule,
    ) -> Result<(&Service, &Plan), BrokerError> {
        let service = self.find_service(service_id, rule)?;
        check_id("plan_id", plan_id)?;
        let plan = service.plan(plan_id).ok_or_else(|| {
            let why = format!(
                "plan_id '{plan_id}' is not a plan of service '{service_id}' (its plans: {})",
                service.plan_ids()
            );
            BrokerError::BadRequest(rule, why)
        })?;
        Ok((service, plan))
    }

    /// The instance, as the echo service has it; a 404 under `rule` if it has none.
    fn stored_instance(
        &self,
        instance_id: &str,
        rule: Rule,
        request: &HttpRequest,
    ) -> Result<InstanceView, BrokerError> {
        let reply = self.echo.fetch_instance(instance_id, request)?;
        match reply.status {
            200 => Ok(reply.instance(instance_id)?),
            404 => Err(no_instance(instance_id, rule)),
            _ => Err(BrokerError::EchoService(reply.unexpected())),
        }
    }

    /// The binding, as the echo service has it, if it has it.
    fn stored_binding(
        &self,
        instance_id: &str,
        binding_id: &str,
        request: &HttpRequest,
    ) -> Result<Option<BindingView>, BrokerError> {
        let reply = self.echo.fetch_binding(instance_id, binding_id, request)?;
        match reply.status {
            200 => Ok(Some(reply.binding(binding_id)?)),
            404 => Ok(None),
            _ => Err(BrokerError::EchoService(reply.unexpected())),
        }
    }

    /// What the bound app gets: the `uri` it posts to (the original's), and the binding's
    /// own user and password, also placed in the uri as userinfo (the usual form of a
    /// service URI). An echo service that gives a binding no user (the original) gives only
    /// the uri.
    fn binding_credentials(
        &self,
        instance_id: &str,
        binding_id: &str,
        binding: &BindingView,
    ) -> Value {
        let path = ["echo", instance_id, binding_id];
        match (&binding.username, &binding.password) {
            (Some(username), Some(password)) => json!({
                "uri": self.echo.url(&path, Some((username, password)), None),
                "username": username,
                "password": password,
            }),
            _ => json!({ "uri": self.echo.url(&path, None, None) }),
        }
    }

    /// `{SERVICE_BASE}/echo/dashboard/{instance_id}?token=...`: the dashboard of the
    /// instance, readable only with its token.
    fn dashboard_url(&self, instance_id: &str, instance: &InstanceView) -> String {
        let token = instance.dashboard_token.as_deref();
        self.echo
            .url(&["echo", "dashboard", instance_id], None, token)
    }

    /// The instance's `metadata`, answered on provision, update and fetch: `labels` a
    /// platform may show its users (since 2.16; here the instance's service and plan, as the
    /// catalog names them) and `attributes`, the broker's own facts about it (since 2.17;
    /// here its dashboard). Both are the broker's to say: nothing the platform sent is
    /// echoed here.
    fn instance_metadata(&self, instance_id: &str, instance: &InstanceView) -> Value {
        let labels = match &instance.attributes {
            Some(requested) => json!({
                "service": requested.service_id,
                "plan": requested.plan_id,
            }),
            None => json!({}),
        };
        let dashboard_url = self.dashboard_url(instance_id, instance);
        json!({ "labels": labels, "attributes": { "dashboard_url": dashboard_url } })
    }
}

/// The 404 of an instance the echo service does not have, under `rule`.
fn no_instance(instance_id: &str, rule: Rule) -> BrokerError {
    BrokerError::NotFound(rule, format!("instance '{instance_id}' does not exist"))
}

/// A platform may send the plan's `maintenance_info`; if it sends a version, it must be the
/// catalog's (the spec: MUST, else 422 `MaintenanceInfoConflict`). `{}` counts as absent.
/// `plan` is `None` when `plan_id` has left the catalog, which then has no version for it.
fn check_maintenance_info(
    plan_id: &str,
    plan: Option<&Plan>,
    requested: Option<&MaintenanceInfoRequest>,
) -> Result<(), BrokerError> {
    let Some(requested_version) = requested.and_then(|info| info.version.as_deref()) else {
        return Ok(());
    };
    let catalog_version = match plan.map(|plan| plan.maintenance_info.as_ref()) {
        Some(Some(info)) if info.version == requested_version => return Ok(()),
        Some(Some(info)) => format!("the catalog's is '{}'", info.version),
        Some(None) => "the catalog gives it none".to_string(),
        None => "it has left the catalog".to_string(),
    };
    Err(BrokerError::MaintenanceInfoConflict(format!(
        "maintenance_info.version '{requested_version}' is not the version of plan \
         '{plan_id}' ({catalog_version}); fetch the catalog again"
    )))
}

/// The instance's `maintenance_info` after an update that changes it: a new plan's (`{}`
/// when that plan has none, which clears it), or its plan's in the catalog when the platform
/// asks for that version (an upgrade; `check_maintenance_info` made sure it is the
/// catalog's). `None` keeps what the instance has.
fn updated_maintenance_info(
    plan: Option<&Plan>,
    plan_changes: bool,
    requested: Option<&MaintenanceInfoRequest>,
) -> Option<Value> {
    let upgrade = requested.is_some_and(|info| info.version.is_some());
    if !plan_changes && !upgrade {
        return None;
    }
    let info = plan.and_then(|plan| plan.maintenance_info.as_ref());
    Some(info.map_or_else(|| json!({}), |info| json!(info)))
}

/// A lifetime of `seconds` from now. The platform is asked to renew when a fifth of it is
/// left (18 days of 90): time for a rotation job that runs daily, fails, and runs again,
/// before the credentials stop working. The spec: `renew_before` MUST NOT be after
/// `expires_at`, and SHOULD leave time to make a successor; so the fifth is rounded up to a
/// whole second, and the window is never empty, whatever the lifetime (1 s of 4; a lifetime
/// of 1 s is to be renewed at once).
fn lifetime_from_now(seconds: u64) -> BindingLifetime {
    let expires_at = http::unix_now().saturating_add(seconds);
    BindingLifetime {
        expires_at,
        renew_before: expires_at - seconds.div_ceil(5),
    }
}

/// When the binding expired, if it has: its credentials no longer work.
fn expiry_passed(binding: &BindingView) -> Option<String> {
    binding
        .lifetime
        .filter(|lifetime| lifetime.expired_at(http::unix_now()))
        .map(|lifetime| http::osb_timestamp(lifetime.expires_at))
}

/// A binding's `metadata`: when it expires and when to renew it, if it does (`{}` if not).
fn binding_metadata(binding: &BindingView) -> Value {
    match binding.lifetime {
        Some(lifetime) => json!({
            "expires_at": http::osb_timestamp(lifetime.expires_at),
            "renew_before": http::osb_timestamp(lifetime.renew_before),
        }),
        None => json!({}),
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
// `accepts_incomplete` and `operation` (the spec allows a synchronous broker to). A
// platform may poll `last_operation` anyway, so the two handlers answer from what exists
// now: a resource that is there was made by an operation that succeeded, and one that is
// not is a 404. (The spec's 410 there reports an asynchronous deprovision that has
// finished; with nothing ever in flight, it does not apply.)
