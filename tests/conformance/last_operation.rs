//! Spec sections "Polling Last Operation for Service Instances" and "... for Service
//! Bindings". Every operation of this broker completes before it is answered, so the last
//! operation of anything that exists succeeded.

use crate::common::System;
use crate::support::*;
use serde_json::json;

const STATES: [&str; 3] = ["in progress", "succeeded", "failed"];

fn instance_last_operation(
    system: &System,
    instance_id: &str,
    query: &str,
) -> crate::common::Reply {
    let path = format!("{}/last_operation{query}", instance_path(instance_id));
    osb(system, "GET", &path, None)
}

fn binding_last_operation(
    system: &System,
    instance_id: &str,
    binding_id: &str,
    query: &str,
) -> crate::common::Reply {
    let path = format!(
        "{}/last_operation{query}",
        binding_path(instance_id, binding_id)
    );
    osb(system, "GET", &path, None)
}

#[test]
fn instance_last_operation_returns_200_succeeded_when_it_exists() {
    let system = start();
    provision_echo(&system, "lo-1");
    let body = expect(&instance_last_operation(&system, "lo-1", ""), 200);
    assert_eq!(body["state"], "succeeded");
    assert!(STATES.contains(&body["state"].as_str().unwrap_or("")));
}

#[test]
fn instance_last_operation_accepts_the_query_hints() {
    let system = start();
    provision_echo(&system, "lo-2");
    let query = echo_query("&operation=provision");
    let body = expect(&instance_last_operation(&system, "lo-2", &query), 200);
    assert_eq!(body, json!({"state": "succeeded"}));
}

#[test]
fn instance_last_operation_returns_404_when_it_does_not_exist() {
    let system = start();
    expect_plain_error(&instance_last_operation(&system, "lo-missing", ""), 404);
    provision_echo(&system, "lo-3");
    let path = format!("{}{}", instance_path("lo-3"), echo_query(""));
    expect(&osb(&system, "DELETE", &path, None), 200);
    expect_plain_error(&instance_last_operation(&system, "lo-3", ""), 404);
}

#[test]
fn instance_last_operation_after_an_update_succeeded() {
    let system = start();
    provision_echo(&system, "lo-4");
    let reply = osb(
        &system,
        "PATCH",
        &instance_path("lo-4"),
        Some(r#"{"service_id":"echo_service","parameters":{"a":1}}"#),
    );
    expect(&reply, 200);
    let body = expect(&instance_last_operation(&system, "lo-4", ""), 200);
    assert_eq!(body["state"], "succeeded");
}

#[test]
fn binding_last_operation_returns_200_succeeded_when_it_exists() {
    let system = start();
    provision_echo(&system, "lo-5");
    bind_echo(&system, "lo-5", "b");
    let body = expect(&binding_last_operation(&system, "lo-5", "b", ""), 200);
    assert_eq!(body["state"], "succeeded");
    assert!(STATES.contains(&body["state"].as_str().unwrap_or("")));
    let query = echo_query("&operation=bind");
    let body = expect(&binding_last_operation(&system, "lo-5", "b", &query), 200);
    assert_eq!(body, json!({"state": "succeeded"}));
}

#[test]
fn binding_last_operation_returns_404_when_it_does_not_exist() {
    let system = start();
    expect_plain_error(&binding_last_operation(&system, "lo-missing", "b", ""), 404);
    provision_echo(&system, "lo-6");
    expect_plain_error(&binding_last_operation(&system, "lo-6", "missing", ""), 404);
    bind_echo(&system, "lo-6", "b");
    let path = format!("{}{}", binding_path("lo-6", "b"), echo_query(""));
    expect(&osb(&system, "DELETE", &path, None), 200);
    expect_plain_error(&binding_last_operation(&system, "lo-6", "b", ""), 404);
}
