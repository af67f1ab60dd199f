//! Spec section "Updating a Service Instance": `PATCH /v2/service_instances/:instance_id`.
//!
//! Every service of the embedded catalog has one plan, so plan changes are tested against a
//! catalog of this module's own (`CATALOG_PATH`).

use crate::common::{Reply, System};
use crate::support::*;
use serde_json::{json, Value};

/// Services with two plans each: one whose plans are fixed, one whose plans may change
/// (with a maintenance_info version per plan), and one where a plan overrides its service.
const PLAN_CHANGE_CATALOG: &str = r#"
[[services]]
id = "fixed_service"
name = "fixed-service"
description = "Instances keep their plan"
bindable = true
instances_retrievable = true
bindings_retrievable = true
plan_updateable = false

[[services.plans]]
id = "fixed_small"
name = "small"
description = "Small"

[[services.plans]]
id = "fixed_large"
name = "large"
description = "Large"

[[services]]
id = "flexible_service"
name = "flexible-service"
description = "Instances may change plan"
bindable = true
instances_retrievable = true
bindings_retrievable = true
plan_updateable = true

[[services.plans]]
id = "flex_small"
name = "small"
description = "Small"

[services.plans.maintenance_info]
version = "1.0.0"

[[services.plans]]
id = "flex_large"
name = "large"
description = "Large"

[services.plans.maintenance_info]
version = "2.0.0"

[[services]]
id = "mixed_service"
name = "mixed-service"
description = "Only one plan may be left"
bindable = true
instances_retrievable = true
plan_updateable = false

[[services.plans]]
id = "mixed_open"
name = "open"
description = "Instances on this plan may move"
plan_updateable = true

[[services.plans]]
id = "mixed_closed"
name = "closed"
description = "Instances on this plan stay"
"#;

fn start_with_plan_changes() -> (System, crate::common::TempDir) {
    let (dir, path) = catalog_file(PLAN_CHANGE_CATALOG);
    (System::start_with(&[("CATALOG_PATH", &path)]), dir)
}

fn provision(system: &System, instance_id: &str, service_id: &str, plan_id: &str) {
    let body = json!({
        "service_id": service_id, "plan_id": plan_id,
        "organization_guid": "o", "space_guid": "s",
        "parameters": {"kept": true},
    });
    provision_with(system, instance_id, &body);
}

fn patch(system: &System, instance_id: &str, body: &Value) -> Reply {
    osb(
        system,
        "PATCH",
        &instance_path(instance_id),
        Some(&body.to_string()),
    )
}

/// A successful update: 200 with the instance's metadata only, labelled with the service
/// and plan it is on now.
fn updated(system: &System, instance_id: &str, body: &Value) {
    let reply = patch(system, instance_id, body);
    let answer = reply.json();
    let keys: Vec<&String> = answer
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(
        (reply.status, keys),
        (200, vec![&"metadata".to_string()]),
        "{body}: {answer}"
    );
    if let Some(plan_id) = body.get("plan_id") {
        assert_eq!(&answer["metadata"]["labels"]["plan"], plan_id, "{answer}");
    }
}

/// A refused update: `status`, both flags, and the instance exactly as before.
fn refused(system: &System, instance_id: &str, body: &Value, status: u16) -> Value {
    let before = fetch_instance(system, instance_id);
    let reply = patch(system, instance_id, body);
    assert_eq!(reply.status, status, "{body}: {}", reply.text);
    let error = expect_update_error(&reply, status);
    let after = fetch_instance(system, instance_id);
    assert_eq!(
        (before.status, before.text),
        (after.status, after.text),
        "a failed update ({body}) changes nothing"
    );
    error
}

#[test]
fn update_parameters_returns_200_empty_object_and_fetch_shows_them() {
    let system = start();
    provision_echo(&system, "upd-1");
    updated(
        &system,
        "upd-1",
        &json!({"service_id": "echo_service", "parameters": {"colour": "blue", "n": 3}}),
    );
    let fetched = instance(&system, "upd-1");
    assert_eq!(fetched["parameters"], json!({"colour": "blue", "n": 3}));
    assert_eq!(fetched["plan_id"], "big_0001");
    updated(
        &system,
        "upd-1",
        &json!({"service_id": "echo_service", "plan_id": "big_0001", "parameters": {"n": 4}}),
    );
    assert_eq!(instance(&system, "upd-1")["parameters"], json!({"n": 4}));
}

#[test]
fn update_without_parameters_leaves_them_unchanged() {
    let system = start();
    provision(&system, "upd-2", "echo_service", "big_0001");
    updated(&system, "upd-2", &json!({"service_id": "echo_service"}));
    updated(
        &system,
        "upd-2",
        &json!({"service_id": "echo_service", "context": {"platform": "cloudfoundry", "instance_name": "renamed"}}),
    );
    let fetched = instance(&system, "upd-2");
    assert_eq!(fetched["parameters"], json!({"kept": true}));
    assert_eq!(fetched["plan_id"], "big_0001");
}

#[test]
fn empty_previous_values_and_maintenance_info_count_as_absent() {
    let system = start();
    provision(&system, "upd-3", "echo_service", "big_0001");
    updated(
        &system,
        "upd-3",
        &json!({"service_id": "echo_service", "previous_values": {}, "maintenance_info": {}}),
    );
    updated(
        &system,
        "upd-3",
        &json!({
            "service_id": "echo_service",
            "previous_values": {"service_id": "echo_service", "plan_id": "big_0001",
                "organization_id": "o", "space_id": "s", "maintenance_info": {"version": "1.0.0"}},
        }),
    );
    assert_eq!(
        instance(&system, "upd-3")["parameters"],
        json!({"kept": true})
    );
}

#[test]
fn update_with_a_plan_of_another_service_returns_400() {
    let system = start();
    provision(&system, "upd-4", "echo_service", "big_0001");
    refused(
        &system,
        "upd-4",
        &json!({"service_id": "echo_service", "plan_id": "small_0001", "parameters": {"x": 1}}),
        400,
    );
    refused(
        &system,
        "upd-4",
        &json!({"service_id": "echo_service", "plan_id": "no_such_plan"}),
        400,
    );
}

#[test]
fn update_with_an_unknown_service_returns_400() {
    let system = start();
    provision(&system, "upd-5", "echo_service", "big_0001");
    refused(
        &system,
        "upd-5",
        &json!({"service_id": "no_such_service", "parameters": {"x": 1}}),
        400,
    );
}

#[test]
fn update_with_a_service_id_that_is_not_the_instances_returns_400() {
    let system = start();
    provision(&system, "upd-6", "echo_service", "big_0001");
    refused(
        &system,
        "upd-6",
        &json!({"service_id": "invert_service", "parameters": {"x": 1}}),
        400,
    );
    refused(
        &system,
        "upd-6",
        &json!({"service_id": "invert_service", "plan_id": "small_0001"}),
        400,
    );
}

#[test]
fn malformed_or_incomplete_updates_return_400_with_the_update_flags() {
    let system = start();
    provision(&system, "upd-7", "echo_service", "big_0001");
    for body in [
        json!({}),
        json!({"parameters": {"x": 1}}),
        json!({"service_id": ""}),
        json!({"service_id": 5}),
        json!({"service_id": "echo_service", "parameters": "x"}),
        json!({"service_id": "echo_service", "plan_id": ""}),
        json!({"service_id": "echo_service", "context": []}),
        json!({"service_id": "echo_service", "previous_values": "x"}),
        json!({"service_id": "echo_service", "maintenance_info": "1.0.0"}),
        json!([]),
    ] {
        refused(&system, "upd-7", &body, 400);
    }
    for text in [
        "{",
        "",
        r#"{"service_id":"echo_service","service_id":"echo_service"}"#,
    ] {
        let reply = osb(&system, "PATCH", &instance_path("upd-7"), Some(text));
        expect_update_error(&reply, 400);
    }
    assert_eq!(
        instance(&system, "upd-7")["parameters"],
        json!({"kept": true})
    );
}

#[test]
fn update_of_a_missing_instance_returns_404() {
    let system = start();
    let reply = patch(
        &system,
        "upd-missing",
        &json!({"service_id": "echo_service", "parameters": {"x": 1}}),
    );
    expect_update_error(&reply, 404);
    assert_eq!(fetch_instance(&system, "upd-missing").status, 404);
}

#[test]
fn maintenance_info_version_mismatch_returns_422_maintenance_info_conflict() {
    let system = start();
    provision(&system, "upd-8", "echo_service", "big_0001");
    let error = refused(
        &system,
        "upd-8",
        &json!({"service_id": "echo_service", "maintenance_info": {"version": "2.0.0"}, "parameters": {"x": 1}}),
        422,
    );
    assert_eq!(error["error"], "MaintenanceInfoConflict");
    updated(
        &system,
        "upd-8",
        &json!({"service_id": "echo_service", "maintenance_info": {"version": "1.0.0"}}),
    );
}

#[test]
fn plan_change_where_plan_updateable_is_false_returns_422_and_changes_nothing() {
    let (system, _dir) = start_with_plan_changes();
    provision(&system, "upd-fixed", "fixed_service", "fixed_small");
    let error = refused(
        &system,
        "upd-fixed",
        &json!({"service_id": "fixed_service", "plan_id": "fixed_large", "parameters": {"x": 1}}),
        422,
    );
    assert_eq!(
        error["update_repeatable"], false,
        "it will be refused again"
    );
    assert_eq!(error["instance_usable"], true, "the instance is as it was");
    let fetched = instance(&system, "upd-fixed");
    assert_eq!(fetched["plan_id"], "fixed_small");
    assert_eq!(fetched["parameters"], json!({"kept": true}));
    // Naming the plan it already has is no plan change.
    updated(
        &system,
        "upd-fixed",
        &json!({"service_id": "fixed_service", "plan_id": "fixed_small", "parameters": {"y": 2}}),
    );
    assert_eq!(
        instance(&system, "upd-fixed")["parameters"],
        json!({"y": 2})
    );
}

#[test]
fn plan_change_where_plan_updateable_is_true_returns_200_and_fetch_shows_the_new_plan() {
    let (system, _dir) = start_with_plan_changes();
    provision(&system, "upd-flex", "flexible_service", "flex_small");
    updated(
        &system,
        "upd-flex",
        &json!({"service_id": "flexible_service", "plan_id": "flex_large",
            "previous_values": {"plan_id": "flex_small"}}),
    );
    let fetched = instance(&system, "upd-flex");
    assert_eq!(fetched["plan_id"], "flex_large");
    assert_eq!(fetched["parameters"], json!({"kept": true}));
    updated(
        &system,
        "upd-flex",
        &json!({"service_id": "flexible_service", "plan_id": "flex_small"}),
    );
    assert_eq!(instance(&system, "upd-flex")["plan_id"], "flex_small");
}

#[test]
fn a_plans_plan_updateable_overrides_its_services() {
    let (system, _dir) = start_with_plan_changes();
    provision(&system, "upd-open", "mixed_service", "mixed_open");
    provision(&system, "upd-closed", "mixed_service", "mixed_closed");
    refused(
        &system,
        "upd-closed",
        &json!({"service_id": "mixed_service", "plan_id": "mixed_open"}),
        422,
    );
    updated(
        &system,
        "upd-open",
        &json!({"service_id": "mixed_service", "plan_id": "mixed_closed"}),
    );
    assert_eq!(instance(&system, "upd-open")["plan_id"], "mixed_closed");
}

#[test]
fn plan_change_checks_maintenance_info_against_the_new_plan() {
    let (system, _dir) = start_with_plan_changes();
    provision(&system, "upd-mi", "flexible_service", "flex_small");
    let error = refused(
        &system,
        "upd-mi",
        &json!({"service_id": "flexible_service", "plan_id": "flex_large",
            "maintenance_info": {"version": "1.0.0"}}),
        422,
    );
    assert_eq!(error["error"], "MaintenanceInfoConflict");
    updated(
        &system,
        "upd-mi",
        &json!({"service_id": "flexible_service", "plan_id": "flex_large",
            "maintenance_info": {"version": "2.0.0"}}),
    );
    assert_eq!(instance(&system, "upd-mi")["plan_id"], "flex_large");
}

#[test]
fn a_plan_change_gives_the_instance_the_new_plans_maintenance_info() {
    let (system, _dir) = start_with_plan_changes();
    provision(&system, "upd-mi-2", "flexible_service", "flex_small");
    let version = |system: &System| instance(system, "upd-mi-2")["maintenance_info"].clone();
    assert_eq!(version(&system), json!({"version": "1.0.0"}));
    updated(
        &system,
        "upd-mi-2",
        &json!({"service_id": "flexible_service", "plan_id": "flex_large"}),
    );
    assert_eq!(version(&system), json!({"version": "2.0.0"}));
    updated(
        &system,
        "upd-mi-2",
        &json!({"service_id": "flexible_service", "parameters": {"p": 1}}),
    );
    assert_eq!(version(&system), json!({"version": "2.0.0"}), "kept");
    provision(&system, "upd-mi-3", "mixed_service", "mixed_open");
    assert!(instance(&system, "upd-mi-3")
        .get("maintenance_info")
        .is_none());
}

#[test]
fn update_ignores_accepts_incomplete_and_answers_synchronously() {
    let system = start();
    provision_echo(&system, "upd-async");
    let path = format!("{}?accepts_incomplete=true", instance_path("upd-async"));
    let reply = osb(
        &system,
        "PATCH",
        &path,
        Some(r#"{"service_id":"echo_service","parameters":{"a":1}}"#),
    );
    assert_eq!(
        (reply.status, reply.json().get("metadata").is_some()),
        (200, true)
    );
    assert_eq!(
        instance(&system, "upd-async")["parameters"],
        json!({"a": 1})
    );
}

#[test]
fn update_ignores_unknown_fields() {
    let system = start();
    provision_echo(&system, "upd-extra");
    updated(
        &system,
        "upd-extra",
        &json!({"service_id": "echo_service", "x-vendor": {"a": 1}, "parameters": {"b": 2}}),
    );
    assert_eq!(
        instance(&system, "upd-extra")["parameters"],
        json!({"b": 2})
    );
}

#[test]
fn an_updated_instance_is_still_bound_and_usable() {
    let system = start();
    provision_echo(&system, "upd-bound");
    let credentials = bind_echo(&system, "upd-bound", "b");
    updated(
        &system,
        "upd-bound",
        &json!({"service_id": "echo_service", "parameters": {"a": 1}}),
    );
    assert!(credentials_work(&uri_of(&credentials)));
}
