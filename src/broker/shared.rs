//! What the handlers of `src/broker.rs` share, and a reader learning the OSB API can take
//! on trust: finding a service and plan in the catalog, fetching the echo service's
//! records, the rules every id and required query parameter follows, the URLs the broker
//! hands out, the lifetime of a binding from now, a rotation's look-ups, and the parsing of
//! the originating identity header. Each rule that matters to the API is named where it is
//! used, in the teaching file.

use super::{Broker, BrokerError, MaintenanceInfoRequest, Rotation};
use crate::catalog::{Plan, Service};
use crate::echo::api::{BindingLifetime, BindingView, InstanceView};
use crate::http::{self, HttpRequest};
use crate::osb::ORIGINATING_IDENTITY_HEADER;
use base64::Engine;
use serde_json::{json, Map, Value};

impl Broker {
    /// The instance's `metadata` (spec 2.17), answered on provision, update and fetch:
    /// `labels` a platform may show its users (here the instance's service and plan, as the
    /// catalog names them) and `attributes`, the broker's own facts about it (here its
    /// dashboard). Both are the broker's to say: nothing the platform sent is echoed here.
    pub(super) fn instance_metadata(&self, instance_id: &str, view: &InstanceView) -> Value {
        let labels = match &view.attributes {
            Some(attributes) => json!({
                "service": attributes.service_id,
                "plan": attributes.plan_id,
            }),
            None => json!({}),
        };
        let dashboard_url = self.dashboard_url(instance_id, view);
        json!({ "labels": labels, "attributes": { "dashboard_url": dashboard_url } })
    }

    pub(super) fn find_service(&self, service_id: &str) -> Result<&Service, BrokerError> {
        check_id("service_id", service_id)?;
        self.catalog.service(service_id).ok_or_else(|| {
            BrokerError::BadRequest(format!("service_id '{service_id}' is not in the catalog"))
        })
    }

    /// The service and plan named by a request: the plan must be one of that service's.
    pub(super) fn find_plan(
        &self,
        service_id: &str,
        plan_id: &str,
    ) -> Result<(&Service, &Plan), BrokerError> {
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

    /// The instance, if the echo service has it.
    pub(super) fn existing_instance(&self, instance_id: &str) -> Result<InstanceView, BrokerError> {
        let reply = self.echo.fetch_instance(instance_id)?;
        match reply.status {
            200 => Ok(reply.instance(instance_id)?),
            404 | 410 => Err(BrokerError::NotFound(format!(
                "instance '{instance_id}' does not exist"
            ))),
            _ => Err(BrokerError::EchoService(reply.unexpected())),
        }
    }

    /// The binding, if the echo service has it.
    pub(super) fn existing_binding(
        &self,
        instance_id: &str,
        binding_id: &str,
    ) -> Result<BindingView, BrokerError> {
        let reply = self.echo.fetch_binding(instance_id, binding_id)?;
        match reply.status {
            200 => Ok(reply.binding(binding_id)?),
            404 | 410 => Err(BrokerError::NotFound(format!(
                "binding '{binding_id}' does not exist"
            ))),
            _ => Err(BrokerError::EchoService(reply.unexpected())),
        }
    }

    /// The plan the instance is on now; 400 if the instance belongs to another service. (An
    /// echo service that recorded none, like the original: [`unrecorded_plan_id`].)
    pub(super) fn current_plan_id(
        &self,
        instance_id: &str,
        service: &Service,
    ) -> Result<String, BrokerError> {
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

    /// What the bound app gets: the original's `uri`, plus the binding's own user and
    /// password, also placed in the uri as userinfo (the usual form of a service URI).
    pub(super) fn binding_credentials(
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

    /// `{SERVICE_BASE}/echo/dashboard/{instance_id}?token=...`.
    pub(super) fn dashboard_url(&self, instance_id: &str, view: &InstanceView) -> String {
        let token = view.dashboard_token.as_deref();
        self.echo
            .url(&["echo", "dashboard", instance_id], None, token)
    }

    /// The service and plan of a rotation that names only its predecessor: the
    /// predecessor's (the spec's rotation request needs no more), or, once it is gone, those
    /// of the successor this same rotation made.
    pub(super) fn ids_of_predecessor(
        &self,
        instance_id: &str,
        binding_id: &str,
        predecessor_id: &str,
    ) -> Result<(String, String), BrokerError> {
        check_path_id("predecessor_binding_id", predecessor_id)?;
        let attributes = match self.existing_binding(instance_id, predecessor_id) {
            Ok(predecessor) => predecessor.attributes,
            Err(BrokerError::NotFound(_)) => {
                match self.made_by_this_rotation(instance_id, binding_id, predecessor_id)? {
                    Rotation::AlreadyDone(successor) => successor.attributes,
                    Rotation::Inherit { .. } => None,
                }
            }
            Err(error) => return Err(error),
        };
        attributes
            .map(|attributes| (attributes.service_id, attributes.plan_id))
            .ok_or_else(|| {
                BrokerError::BadRequest(format!(
                    "service_id and plan_id are required: the predecessor binding '{predecessor_id}' has none to take"
                ))
            })
    }

    /// With its predecessor gone, a rotation is either a retry of one that was made (the
    /// successor exists and names this predecessor) or a 400.
    pub(super) fn made_by_this_rotation(
        &self,
        instance_id: &str,
        binding_id: &str,
        predecessor_id: &str,
    ) -> Result<Rotation, BrokerError> {
        let missing = || {
            BrokerError::BadRequest(format!(
                "predecessor binding '{predecessor_id}' does not exist in instance '{instance_id}'"
            ))
        };
        match self.existing_binding(instance_id, binding_id) {
            Ok(successor) => {
                let named = successor
                    .attributes
                    .as_ref()
                    .and_then(|attributes| attributes.predecessor_binding_id.as_deref());
                if named == Some(predecessor_id) {
                    Ok(Rotation::AlreadyDone(Box::new(successor)))
                } else {
                    Err(missing())
                }
            }
            Err(BrokerError::NotFound(_)) => Err(missing()),
            Err(error) => Err(error),
        }
    }
}

/// The plan an update starts from when the echo service did not record one: the service's
/// first plan (the original's services had one plan each).
pub(super) fn unrecorded_plan_id(service: &Service) -> String {
    service
        .plans
        .first()
        .map_or_else(String::new, |plan| plan.id.clone())
}

/// Ids must be non-empty, at most 255 bytes, and free of control characters: this broker's
/// own rule (the spec restricts no characters and sets no length; it recommends RFC 3986's
/// unreserved characters, "URL Properties"), so that an id fits every store and log line.
pub(super) fn check_id(name: &str, id: &str) -> Result<(), BrokerError> {
    match http::id_problem(id) {
        Some(problem) => Err(BrokerError::BadRequest(format!("{name} {problem}"))),
        None => Ok(()),
    }
}

/// [`check_id`] for an id the broker puts in a path to the echo service (an instance's or a
/// binding's), which also must not be one a proxy on the way reads as a path step
/// ([`http::path_step_problem`]): refused with a 400 that says why, before any call, however
/// the echo service is reached.
pub(super) fn check_path_id(name: &str, id: &str) -> Result<(), BrokerError> {
    check_id(name, id)?;
    match http::path_step_problem(id) {
        Some(problem) => Err(BrokerError::BadRequest(format!("{name} '{id}' {problem}"))),
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
/// catalog's (the spec: MUST, else 422). `{}` counts as absent. `plan` is `None` when
/// `plan_id` has left the catalog, which then has no version for it.
pub(super) fn check_maintenance_info(
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

/// A lifetime of `seconds` from now. The platform is asked to renew when a fifth of it is
/// left (18 days of 90; 2 s of 10): time for a rotation job that runs daily, fails, and
/// runs again, before the credentials stop working.
pub(super) fn lifetime_from_now(seconds: u64) -> BindingLifetime {
    let expires_at = http::unix_now().saturating_add(seconds);
    BindingLifetime {
        expires_at,
        renew_before: expires_at - seconds / 5,
    }
}

/// `X-Broker-API-Originating-Identity: PLATFORM BASE64(JSON)`: who on the platform asked.
/// Returns the user it names (Cloud Foundry's `user_id`, Kubernetes' `username`), if any.
/// PLATFORM MUST equal the body's `context.platform` when it carries `context`; this broker
/// only reads the user, for the log and the conversation page. A value not of this form is
/// a 400: the spec says what a platform MUST send, the refusal is this broker's choice.
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

/// A binding's `metadata`: when it expires and when to renew it, if it does (`{}` if not).
pub(super) fn binding_metadata(view: &BindingView) -> Value {
    match view.lifetime {
        Some(lifetime) => json!({
            "expires_at": http::osb_timestamp(lifetime.expires_at),
            "renew_before": http::osb_timestamp(lifetime.renew_before),
        }),
        None => json!({}),
    }
}

/// The instance's `maintenance_info` after an update that changes it: a new plan's (`{}`
/// when that plan has none, which clears it), or its plan's in the catalog when the platform
/// asks for that version (an upgrade; `check_maintenance_info` made sure it is the
/// catalog's). `None` keeps what the instance has.
pub(super) fn updated_maintenance_info(
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

/// The `service_id` and `plan_id` query parameters that deprovision and unbind require (the
/// spec: MUST). They are not looked up in the catalog, which may no longer have them: the
/// echo service checks that they are the instance's.
pub(super) fn ids_from_query(request: &HttpRequest) -> Result<(String, String), BrokerError> {
    let service_id = required_query(request, "service_id")?;
    let plan_id = required_query(request, "plan_id")?;
    Ok((service_id, plan_id))
}
