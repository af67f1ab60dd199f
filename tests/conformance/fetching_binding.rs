//! Spec section "Fetching a Service Binding":
//! `GET /v2/service_instances/:instance_id/service_bindings/:binding_id`.

use crate::support::*;
use serde_json::json;

#[test]
fn fetch_returns_200_with_the_binds_credentials_and_parameters() {
    let system = start();
    provision_echo(&system, "fb-1");
    let body = json!({"service_id": "echo_service", "plan_id": "big_0001",
        "app_guid": "app", "parameters": {"role": "reader"}});
    let reply = osb(
        &system,
        "PUT",
        &binding_path("fb-1", "b"),
        Some(&body.to_string()),
    );
    let bound = expect(&reply, 201);
    let fetched = expect(&fetch_binding(&system, "fb-1", "b"), 200);
    assert_eq!(fetched["credentials"], bound["credentials"]);
    assert_eq!(fetched["parameters"], json!({"role": "reader"}));
    assert!(credentials_work(&uri_of(&fetched["credentials"])));
}

#[test]
fn fetch_of_a_binding_without_parameters_returns_an_empty_parameters_object() {
    let system = start();
    provision_echo(&system, "fb-2");
    let credentials = bind_echo(&system, "fb-2", "b");
    let fetched = expect(&fetch_binding(&system, "fb-2", "b"), 200);
    assert_eq!(fetched["credentials"], credentials);
    assert_eq!(fetched["parameters"], json!({}));
}

#[test]
fn fetch_of_a_missing_binding_returns_404() {
    let system = start();
    provision_echo(&system, "fb-3");
    expect_plain_error(&fetch_binding(&system, "fb-3", "missing"), 404);
}

#[test]
fn fetch_of_a_binding_of_a_missing_instance_returns_404() {
    let system = start();
    expect_plain_error(&fetch_binding(&system, "fb-missing", "b"), 404);
}

#[test]
fn a_binding_belongs_to_its_own_instance_only() {
    let system = start();
    provision_echo(&system, "fb-4");
    provision_echo(&system, "fb-5");
    bind_echo(&system, "fb-4", "b");
    expect_plain_error(&fetch_binding(&system, "fb-5", "b"), 404);
}

#[test]
fn fetch_after_unbind_returns_404() {
    let system = start();
    provision_echo(&system, "fb-6");
    bind_echo(&system, "fb-6", "b");
    let path = format!("{}{}", binding_path("fb-6", "b"), echo_query(""));
    expect(&osb(&system, "DELETE", &path, None), 200);
    expect_plain_error(&fetch_binding(&system, "fb-6", "b"), 404);
}

#[test]
fn a_binding_of_an_instance_named_dashboard_can_be_fetched() {
    // The echo service's dashboard lives at /echo/dashboard/{instance}, the same shape as
    // binding {binding} of an instance named "dashboard".
    let system = start();
    provision_echo(&system, "dashboard");
    let credentials = bind_echo(&system, "dashboard", "b");
    let fetched = expect(&fetch_binding(&system, "dashboard", "b"), 200);
    assert_eq!(fetched["credentials"], credentials);
    expect_plain_error(&fetch_binding(&system, "dashboard", "missing"), 404);
}
