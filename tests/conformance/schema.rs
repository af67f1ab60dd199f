//! The response schemas of the OSB API v2.17 OpenAPI document (`components/schemas`), copied
//! here as code so the suite needs nothing outside this repository, plus the spec's prose
//! rules the document leaves out (non-empty error strings, the fields only update errors
//! carry, the catalog's REQUIRED non-empty strings).
//!
//! Each `check_*` function returns the problems it found, one line each, with the JSON path;
//! an empty list means the body fits. The OpenAPI document declares nothing `nullable`, so a
//! `null` where a typed field is expected is a problem too.

use serde_json::{Map, Value};

/// The JSON types the schemas use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    String,
    Boolean,
    Integer,
    Object,
    Array,
}

impl Kind {
    fn fits(self, value: &Value) -> bool {
        match self {
            Kind::String => value.is_string(),
            Kind::Boolean => value.is_boolean(),
            Kind::Integer => value.is_i64() || value.is_u64(),
            Kind::Object => value.is_object(),
            Kind::Array => value.is_array(),
        }
    }
}

/// Collects problems while walking a body.
#[derive(Default)]
pub struct Problems(pub Vec<String>);

impl Problems {
    fn add(&mut self, at: &str, problem: impl std::fmt::Display) {
        self.0.push(format!("{at}: {problem}"));
    }

    /// `value` as an object, or a problem.
    fn object<'a>(&mut self, value: &'a Value, at: &str) -> Option<&'a Map<String, Value>> {
        let object = value.as_object();
        if object.is_none() {
            self.add(at, format!("expected an object, got {value}"));
        }
        object
    }

    /// The field `name` of `object`, which must exist and be of `kind`.
    fn required<'a>(
        &mut self,
        object: &'a Map<String, Value>,
        name: &str,
        kind: Kind,
        at: &str,
    ) -> Option<&'a Value> {
        match object.get(name) {
            None => {
                self.add(&format!("{at}.{name}"), "is REQUIRED and missing");
                None
            }
            Some(value) => self.typed(value, kind, &format!("{at}.{name}")),
        }
    }

    /// The field `name` of `object` if present, which must then be of `kind`.
    fn optional<'a>(
        &mut self,
        object: &'a Map<String, Value>,
        name: &str,
        kind: Kind,
        at: &str,
    ) -> Option<&'a Value> {
        let value = object.get(name)?;
        self.typed(value, kind, &format!("{at}.{name}"))
    }

    fn typed<'a>(&mut self, value: &'a Value, kind: Kind, at: &str) -> Option<&'a Value> {
        if kind.fits(value) {
            Some(value)
        } else {
            self.add(at, format!("expected {kind:?}, got {value}"));
            None
        }
    }

    /// A string field that, when present, MUST be non-empty.
    fn non_empty(&mut self, value: Option<&Value>, at: &str) {
        if value.and_then(Value::as_str) == Some("") {
            self.add(at, "MUST be a non-empty string");
        }
    }

    /// An optional string field limited to `allowed`.
    fn one_of(
        &mut self,
        object: &Map<String, Value>,
        name: &str,
        allowed: &[&str],
        required: bool,
        at: &str,
    ) {
        let value = if required {
            self.required(object, name, Kind::String, at)
        } else {
            self.optional(object, name, Kind::String, at)
        };
        if let Some(text) = value.and_then(Value::as_str) {
            if !allowed.contains(&text) {
                self.add(
                    &format!("{at}.{name}"),
                    format!("'{text}' is not one of {allowed:?}"),
                );
            }
        }
    }

    /// An optional array whose items are checked by `item`.
    fn array_of(
        &mut self,
        object: &Map<String, Value>,
        name: &str,
        required: bool,
        at: &str,
        item: fn(&mut Problems, &Value, &str),
    ) {
        let value = if required {
            self.required(object, name, Kind::Array, at)
        } else {
            self.optional(object, name, Kind::Array, at)
        };
        for (i, element) in value
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            item(self, element, &format!("{at}.{name}[{i}]"));
        }
    }

    /// An optional object field whose content is checked by `inner`.
    fn nested(
        &mut self,
        object: &Map<String, Value>,
        name: &str,
        at: &str,
        inner: fn(&mut Problems, &Value, &str),
    ) {
        if let Some(value) = object.get(name) {
            inner(self, value, &format!("{at}.{name}"));
        }
    }
}

fn string_item(problems: &mut Problems, value: &Value, at: &str) {
    problems.typed(value, Kind::String, at);
}

fn requires_item(problems: &mut Problems, value: &Value, at: &str) {
    const ALLOWED: [&str; 3] = ["syslog_drain", "route_forwarding", "volume_mount"];
    if let Some(text) = problems
        .typed(value, Kind::String, at)
        .and_then(Value::as_str)
    {
        if !ALLOWED.contains(&text) {
            problems.add(at, format!("'{text}' is not one of {ALLOWED:?}"));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Catalog: Catalog, Service, DashboardClient, Plan, Schemas, MaintenanceInfo
// ---------------------------------------------------------------------------------------

/// `Catalog`: `{"services": [Service]}`; the spec makes `services` REQUIRED.
pub fn check_catalog(body: &Value) -> Vec<String> {
    let mut problems = Problems::default();
    if let Some(object) = problems.object(body, "$") {
        problems.array_of(object, "services", true, "$", service);
    }
    no_nulls(body, "$", &mut problems);
    problems.0
}

/// `Service`: REQUIRED name, id, description (non-empty strings), bindable, plans (at
/// least one).
fn service(problems: &mut Problems, value: &Value, at: &str) {
    let Some(object) = problems.object(value, at) else {
        return;
    };
    for name in ["name", "id", "description"] {
        let field = problems.required(object, name, Kind::String, at);
        problems.non_empty(field, &format!("{at}.{name}"));
    }
    problems.required(object, "bindable", Kind::Boolean, at);
    problems.array_of(object, "tags", false, at, string_item);
    problems.array_of(object, "requires", false, at, requires_item);
    for name in [
        "instances_retrievable",
        "bindings_retrievable",
        "allow_context_updates",
        "plan_updateable",
        "binding_rotatable",
    ] {
        problems.optional(object, name, Kind::Boolean, at);
    }
    problems.optional(object, "metadata", Kind::Object, at);
    problems.nested(object, "dashboard_client", at, dashboard_client);
    problems.array_of(object, "plans", true, at, plan);
    if object
        .get("plans")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        problems.add(&format!("{at}.plans"), "MUST contain at least one plan");
    }
}

/// `DashboardClient` (Cloud Foundry's profile): id and secret, redirect_uri, all strings.
fn dashboard_client(problems: &mut Problems, value: &Value, at: &str) {
    let Some(object) = problems.object(value, at) else {
        return;
    };
    for name in ["id", "secret"] {
        let field = problems.required(object, name, Kind::String, at);
        problems.non_empty(field, &format!("{at}.{name}"));
    }
    problems.optional(object, "redirect_uri", Kind::String, at);
}

/// `Plan`: REQUIRED id, name, description (non-empty strings).
fn plan(problems: &mut Problems, value: &Value, at: &str) {
    let Some(object) = problems.object(value, at) else {
        return;
    };
    for name in ["id", "name", "description"] {
        let field = problems.required(object, name, Kind::String, at);
        problems.non_empty(field, &format!("{at}.{name}"));
    }
    problems.optional(object, "metadata", Kind::Object, at);
    problems.nested(object, "maintenance_info", at, maintenance_info);
    for name in ["free", "bindable", "plan_updateable", "binding_rotatable"] {
        problems.optional(object, name, Kind::Boolean, at);
    }
    problems.nested(object, "schemas", at, plan_schemas);
    problems.optional(object, "maximum_polling_duration", Kind::Integer, at);
}

/// `Schemas`: service_instance {create, update} and service_binding {create}, each
/// `{"parameters": object}`.
fn plan_schemas(problems: &mut Problems, value: &Value, at: &str) {
    let Some(object) = problems.object(value, at) else {
        return;
    };
    for (name, actions) in [
        ("service_instance", &["create", "update"][..]),
        ("service_binding", &["create"][..]),
    ] {
        let Some(inner) = problems
            .optional(object, name, Kind::Object, at)
            .and_then(Value::as_object)
        else {
            continue;
        };
        for action in actions {
            let at = format!("{at}.{name}");
            if let Some(schema) = problems
                .optional(inner, action, Kind::Object, &at)
                .and_then(Value::as_object)
            {
                problems.optional(
                    schema,
                    "parameters",
                    Kind::Object,
                    &format!("{at}.{action}"),
                );
            }
        }
    }
}

/// `MaintenanceInfo`: REQUIRED version, optional description, both strings.
fn maintenance_info(problems: &mut Problems, value: &Value, at: &str) {
    let Some(object) = problems.object(value, at) else {
        return;
    };
    problems.required(object, "version", Kind::String, at);
    problems.optional(object, "description", Kind::String, at);
}

/// Every `null` in `value`, wherever it is.
fn no_nulls(value: &Value, at: &str, problems: &mut Problems) {
    match value {
        Value::Null => problems.add(at, "is null"),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                no_nulls(item, &format!("{at}[{i}]"), problems);
            }
        }
        Value::Object(object) => {
            for (key, item) in object {
                no_nulls(item, &format!("{at}.{key}"), problems);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Service instances
// ---------------------------------------------------------------------------------------

/// `ServiceInstanceMetadata`: labels and attributes, objects.
fn instance_metadata(problems: &mut Problems, value: &Value, at: &str) {
    let Some(object) = problems.object(value, at) else {
        return;
    };
    problems.optional(object, "labels", Kind::Object, at);
    problems.optional(object, "attributes", Kind::Object, at);
}

/// `ServiceInstanceProvisionResponse` (200/201 of a provision): dashboard_url, metadata.
pub fn check_provision_response(body: &Value) -> Vec<String> {
    let mut problems = Problems::default();
    if let Some(object) = problems.object(body, "$") {
        problems.optional(object, "dashboard_url", Kind::String, "$");
        problems.nested(object, "metadata", "$", instance_metadata);
    }
    problems.0
}

/// `ServiceInstanceResource` (200 of a fetch): service_id, plan_id, dashboard_url,
/// parameters, maintenance_info, metadata.
pub fn check_instance_resource(body: &Value) -> Vec<String> {
    let mut problems = Problems::default();
    if let Some(object) = problems.object(body, "$") {
        for name in ["service_id", "plan_id", "dashboard_url"] {
            problems.optional(object, name, Kind::String, "$");
        }
        problems.optional(object, "parameters", Kind::Object, "$");
        problems.nested(object, "maintenance_info", "$", maintenance_info);
        problems.nested(object, "metadata", "$", instance_metadata);
    }
    problems.0
}

/// The 200 of an update (spec, "Updating a Service Instance", Body): dashboard_url,
/// operation (non-empty), metadata. A synchronous broker answers `{}`.
pub fn check_update_response(body: &Value) -> Vec<String> {
    let mut problems = Problems::default();
    if let Some(object) = problems.object(body, "$") {
        problems.optional(object, "dashboard_url", Kind::String, "$");
        let operation = problems.optional(object, "operation", Kind::String, "$");
        problems.non_empty(operation, "$.operation");
        problems.nested(object, "metadata", "$", instance_metadata);
    }
    problems.0
}

/// `AsyncOperation` (200 of a deprovision or unbind): operation, a string.
pub fn check_async_operation(body: &Value) -> Vec<String> {
    let mut problems = Problems::default();
    if let Some(object) = problems.object(body, "$") {
        problems.optional(object, "operation", Kind::String, "$");
    }
    problems.0
}

/// `LastOperationResource`: REQUIRED state, one of the spec's three values.
pub fn check_last_operation(body: &Value) -> Vec<String> {
    let mut problems = Problems::default();
    if let Some(object) = problems.object(body, "$") {
        problems.one_of(
            object,
            "state",
            &["in progress", "succeeded", "failed"],
            true,
            "$",
        );
        let description = problems.optional(object, "description", Kind::String, "$");
        problems.non_empty(description, "$.description");
        problems.optional(object, "instance_usable", Kind::Boolean, "$");
        problems.optional(object, "update_repeatable", Kind::Boolean, "$");
    }
    problems.0
}

// ---------------------------------------------------------------------------------------
// Service bindings
// ---------------------------------------------------------------------------------------

/// `ServiceBindingMetadata`: expires_at, renew_before, strings.
fn binding_metadata(problems: &mut Problems, value: &Value, at: &str) {
    let Some(object) = problems.object(value, at) else {
        return;
    };
    problems.optional(object, "expires_at", Kind::String, at);
    problems.optional(object, "renew_before", Kind::String, at);
}

/// `ServiceBindingEndpoint`: REQUIRED host and ports (strings), protocol tcp/udp/all.
fn endpoint(problems: &mut Problems, value: &Value, at: &str) {
    let Some(object) = problems.object(value, at) else {
        return;
    };
    problems.required(object, "host", Kind::String, at);
    problems.array_of(object, "ports", true, at, string_item);
    problems.one_of(object, "protocol", &["tcp", "udp", "all"], false, at);
}

/// `ServiceBindingVolumeMount`: REQUIRED driver, container_dir, mode (r/rw), device_type
/// (shared), device {volume_id, mount_config}.
fn volume_mount(problems: &mut Problems, value: &Value, at: &str) {
    let Some(object) = problems.object(value, at) else {
        return;
    };
    problems.required(object, "driver", Kind::String, at);
    problems.required(object, "container_dir", Kind::String, at);
    problems.one_of(object, "mode", &["r", "rw"], true, at);
    problems.one_of(object, "device_type", &["shared"], true, at);
    if let Some(device) = problems
        .required(object, "device", Kind::Object, at)
        .and_then(Value::as_object)
    {
        let at = format!("{at}.device");
        problems.required(device, "volume_id", Kind::String, &at);
        problems.optional(device, "mount_config", Kind::Object, &at);
    }
}

fn binding_fields(problems: &mut Problems, object: &Map<String, Value>) {
    problems.nested(object, "metadata", "$", binding_metadata);
    problems.optional(object, "credentials", Kind::Object, "$");
    problems.optional(object, "syslog_drain_url", Kind::String, "$");
    problems.optional(object, "route_service_url", Kind::String, "$");
    problems.array_of(object, "volume_mounts", false, "$", volume_mount);
    problems.array_of(object, "endpoints", false, "$", endpoint);
}

/// `ServiceBindingResponse` (200/201 of a bind).
pub fn check_binding_response(body: &Value) -> Vec<String> {
    let mut problems = Problems::default();
    if let Some(object) = problems.object(body, "$") {
        binding_fields(&mut problems, object);
    }
    problems.0
}

/// `ServiceBindingResource` (200 of a fetch): the bind response plus parameters.
pub fn check_binding_resource(body: &Value) -> Vec<String> {
    let mut problems = Problems::default();
    if let Some(object) = problems.object(body, "$") {
        binding_fields(&mut problems, object);
        problems.optional(object, "parameters", Kind::Object, "$");
    }
    problems.0
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Which operation an error answers: the spec lets only update errors carry
/// `update_repeatable`, and only update and deprovision errors carry `instance_usable`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Operation {
    Update,
    Deprovision,
    Other,
}

/// `Error`, with the spec's prose: `error` and `description` are non-empty strings when
/// present (this suite requires a description: the broker always explains), and the two
/// update flags only where the spec allows them.
pub fn check_error(body: &Value, operation: Operation) -> Vec<String> {
    let mut problems = Problems::default();
    let Some(object) = problems.object(body, "$") else {
        return problems.0;
    };
    let error = problems.optional(object, "error", Kind::String, "$");
    problems.non_empty(error, "$.error");
    let description = problems.required(object, "description", Kind::String, "$");
    problems.non_empty(description, "$.description");
    problems.optional(object, "instance_usable", Kind::Boolean, "$");
    problems.optional(object, "update_repeatable", Kind::Boolean, "$");
    if operation != Operation::Update && object.contains_key("update_repeatable") {
        problems.add(
            "$.update_repeatable",
            "MUST NOT be present for errors of operations other than update",
        );
    }
    if operation == Operation::Other && object.contains_key("instance_usable") {
        problems.add(
            "$.instance_usable",
            "MUST NOT be present for errors of operations other than update and deprovision",
        );
    }
    problems.0
}

#[test]
fn the_schema_checks_find_what_they_should() {
    use serde_json::json;
    assert!(check_catalog(&json!({"services": []})).is_empty());
    let bad = json!({"services": [{"id": "", "name": "n", "bindable": "yes", "plans": [],
        "dashboard_client": null}]});
    let problems = check_catalog(&bad);
    for expected in [
        "$.services[0].id: MUST be",
        "$.services[0].description: is REQUIRED",
        "$.services[0].bindable: expected Boolean",
        "$.services[0].plans: MUST contain",
        "$.services[0].dashboard_client: is null",
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected} not in {problems:?}"
        );
    }
    assert!(!check_last_operation(&json!({"state": "done"})).is_empty());
    assert!(!check_last_operation(&json!({})).is_empty());
    assert!(check_last_operation(&json!({"state": "in progress"})).is_empty());
    assert!(!check_error(&json!({"description": ""}), Operation::Other).is_empty());
    assert!(!check_error(&json!({"error": "", "description": "x"}), Operation::Other).is_empty());
    assert!(!check_error(
        &json!({"description": "x", "instance_usable": true}),
        Operation::Other
    )
    .is_empty());
    assert!(check_error(
        &json!({"description": "x", "instance_usable": true}),
        Operation::Deprovision
    )
    .is_empty());
    assert!(!check_binding_response(&json!({"credentials": "x"})).is_empty());
    assert!(
        !check_binding_response(&json!({"endpoints": [{"host": "h", "ports": [1]}]})).is_empty()
    );
    assert!(!check_instance_resource(&json!({"parameters": []})).is_empty());
}
