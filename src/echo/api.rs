//! The echo service's management API as both sides see it: the bodies the broker sends
//! and the records the echo service answers with. One set of types, so the two cannot drift.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The platform's identity for one request (OSB API "Request Identity"), forwarded on
/// every call the broker makes to the echo service while answering that request (the echo
/// service logs it, so one request can be followed through both).
pub const REQUEST_IDENTITY_HEADER: &str = "X-Broker-API-Request-Identity";

/// Everything the platform said when it provisioned an instance, and the plan's
/// `maintenance_info` it was made with. A repeated provision is answered 200 only if these
/// are identical, 409 otherwise (OSB API "Provisioning").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceAttributes {
    pub service_id: String,
    pub plan_id: String,
    pub organization_guid: String,
    pub space_guid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// The catalog's `maintenance_info` of the instance's plan when it was provisioned, or
    /// as the latest update left it (an upgrade, a new plan). Absent for an instance made
    /// before the echo service kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<Value>,
}

/// Everything the platform said when it created a binding; compared like [`InstanceAttributes`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingAttributes {
    pub service_id: String,
    pub plan_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_resource: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// The binding this one succeeds (OSB API "Binding Rotation").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predecessor_binding_id: Option<String>,
}

/// When a binding's credentials stop working, and from when the platform should replace
/// them, in seconds since the Unix epoch. Set by the broker from the plan's
/// `binding_lifetime` when the binding is made, kept with it, and enforced by the echo
/// service: it refuses expired credentials as it refuses unknown ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BindingLifetime {
    pub expires_at: u64,
    pub renew_before: u64,
}

impl BindingLifetime {
    /// Whether the credentials no longer work at `now` (seconds since the epoch).
    pub fn expired_at(&self, now: u64) -> bool {
        now >= self.expires_at
    }
}

/// The body of `PUT /echo/{instance_id}/{binding_id}`: the platform's attributes, and the
/// lifetime the broker gives the binding (not compared on a repeated bind: it is the
/// broker's, made anew each time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindBody {
    #[serde(flatten)]
    pub attributes: BindingAttributes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<BindingLifetime>,
}

/// A change to an existing instance (`PATCH /echo/{instance_id}`); absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<Value>,
}

/// An instance as the echo service reports it. The original echo service sent only
/// `instance_id`, `state` and `dashboard_url`, so everything else is optional when read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    pub instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<InstanceAttributes>,
    /// The secret part of the dashboard URL: the dashboard is not readable by id alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard_token: Option<String>,
    #[serde(default)]
    pub bindings: usize,
    #[serde(default)]
    pub messages: u64,
}

/// A binding as the echo service reports it, with the credentials the bound app uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingView {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BindingAttributes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<BindingLifetime>,
}

/// An empty JSON object means the same as an absent one (platforms and checkers send `{}`).
pub fn non_empty(value: Option<Value>) -> Option<Value> {
    match value {
        Some(Value::Object(map)) if map.is_empty() => None,
        Some(Value::Null) => None,
        other => other,
    }
}
