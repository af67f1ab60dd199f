//! Spec section "Binding": `PUT /v2/service_instances/:instance_id/service_bindings/:binding_id`.

use crate::common::{post_message, split_userinfo, Reply, System, BIND_ECHO};
use crate::support::*;
use serde_json::{json, Value};

fn bind_body() -> Value {
    json!({"service_id": "echo_service", "plan_id": "big_0001", "app_guid": "otherappid"})
}

fn put(system: &System, instance_id: &str, binding_id: &str, body: &str) -> Reply {
    osb(
        system,
        "PUT",
        &binding_path(instance_id, binding_id),
        Some(body),
    )
}

fn with(mut body: Value, field: &str, value: Value) -> Value {
    let object = body.as_object_mut().expect("an object");
    if value.is_null() {
        object.remove(field);
    } else {
        object.insert(field.to_string(), value);
    }
    body
}

/// A bind that must be refused with `status`, leaving no binding behind.
fn refused(system: &System, instance_id: &str, binding_id: &str, body: &str, status: u16) {
    let reply = put(system, instance_id, binding_id, body);
    assert_eq!(reply.status, status, "{body}: {}", reply.text);
    expect_plain_error(&reply, status);
    assert_eq!(
        fetch_binding(system, instance_id, binding_id).status,
        404,
        "a refused bind ({body}) creates nothing"
    );
}

#[test]
fn bind_returns_201_with_uri_username_and_password() {
    let system = start();
    provision_echo(&system, "bind-1");
    let reply = put(&system, "bind-1", "b-1", BIND_ECHO);
    let body = expect(&reply, 201);
    let credentials = body["credentials"].as_object().expect("credentials object");
    let uri = credentials["uri"].as_str().expect("uri is a string");
    assert!(uri.ends_with("/echo/bind-1/b-1"), "{uri}");
    assert!(uri.starts_with("http://"), "{uri}");
    let username = credentials["username"].as_str().expect("username");
    let password = credentials["password"].as_str().expect("password");
    assert!(!username.is_empty() && !password.is_empty());
    let (bare, _) = split_userinfo(uri);
    assert_eq!(bare, format!("{}/echo/bind-1/b-1", system.echo_url));
    assert!(
        uri.contains(&format!("{username}:{password}@")),
        "the uri carries the binding's user and password: {uri}"
    );
}

#[test]
fn bind_same_attributes_twice_returns_200_with_the_same_credentials() {
    let system = start();
    provision_echo(&system, "bind-2");
    let first = put(&system, "bind-2", "b", BIND_ECHO);
    let second = put(&system, "bind-2", "b", BIND_ECHO);
    assert_eq!((first.status, second.status), (201, 200), "{}", second.text);
    assert_eq!(first.json(), second.json());
    let full = json!({"service_id": "echo_service", "plan_id": "big_0001",
        "bind_resource": {"app_guid": "app-1"}, "parameters": {"p": [1, 2]},
        "context": {"platform": "cloudfoundry"}});
    let first = put(&system, "bind-2", "full", &full.to_string());
    let second = put(&system, "bind-2", "full", &full.to_string());
    assert_eq!((first.status, second.status), (201, 200), "{}", second.text);
    assert_eq!(first.json()["credentials"], second.json()["credentials"]);
}

#[test]
fn bind_same_id_with_differing_attributes_returns_409() {
    let system = start();
    provision_echo(&system, "bind-3");
    let original = with(bind_body(), "parameters", json!({"p": 1}));
    let original = with(original, "bind_resource", json!({"app_guid": "otherappid"}));
    let credentials = expect(&put(&system, "bind-3", "b", &original.to_string()), 201);
    for different in [
        with(original.clone(), "app_guid", json!("another-app")),
        with(original.clone(), "app_guid", Value::Null),
        with(original.clone(), "parameters", json!({"p": 2})),
        with(original.clone(), "parameters", Value::Null),
        with(
            original.clone(),
            "bind_resource",
            json!({"app_guid": "another-app"}),
        ),
        with(original.clone(), "bind_resource", Value::Null),
    ] {
        let reply = put(&system, "bind-3", "b", &different.to_string());
        assert_eq!(reply.status, 409, "{different}: {}", reply.text);
        expect_plain_error(&reply, 409);
    }
    let again = put(&system, "bind-3", "b", &original.to_string());
    assert_eq!(expect(&again, 200), credentials);
}

#[test]
fn empty_bind_resource_and_parameters_count_as_absent() {
    let system = start();
    provision_echo(&system, "bind-4");
    expect(&put(&system, "bind-4", "b", BIND_ECHO), 201);
    for body in [
        with(bind_body(), "bind_resource", json!({})),
        with(bind_body(), "parameters", json!({})),
    ] {
        let reply = put(&system, "bind-4", "b", &body.to_string());
        assert_eq!(reply.status, 200, "{body}: {}", reply.text);
    }
}

#[test]
fn bind_to_a_missing_instance_returns_404_with_description() {
    let system = start();
    let reply = put(&system, "bind-missing", "b", BIND_ECHO);
    expect_plain_error(&reply, 404);
}

#[test]
fn bind_with_a_service_and_plan_that_are_not_the_instances_returns_400() {
    let system = start();
    provision_echo(&system, "bind-5");
    let invert = r#"{"service_id": "invert_service", "plan_id": "small_0001", "app_guid": "a"}"#;
    refused(&system, "bind-5", "b", invert, 400);
    let other_plan = r#"{"service_id": "echo_service", "plan_id": "small_0001", "app_guid": "a"}"#;
    refused(&system, "bind-5", "b", other_plan, 400);
    let unknown = r#"{"service_id": "no_such", "plan_id": "big_0001", "app_guid": "a"}"#;
    refused(&system, "bind-5", "b", unknown, 400);
}

#[test]
fn bind_without_service_id_or_plan_id_returns_400() {
    let system = start();
    provision_echo(&system, "bind-6");
    for field in ["service_id", "plan_id"] {
        let body = with(bind_body(), field, Value::Null);
        refused(&system, "bind-6", "b", &body.to_string(), 400);
        let body = with(bind_body(), field, json!(""));
        refused(&system, "bind-6", "b", &body.to_string(), 400);
    }
}

#[test]
fn bind_with_an_empty_app_guid_returns_400() {
    let system = start();
    provision_echo(&system, "bind-7");
    let body = with(bind_body(), "app_guid", json!(""));
    refused(&system, "bind-7", "b", &body.to_string(), 400);
}

#[test]
fn malformed_bind_bodies_return_400() {
    let system = start();
    provision_echo(&system, "bind-8");
    for body in [
        "",
        "{",
        "[]",
        "\"x\"",
        r#"{"service_id": 5, "plan_id": "big_0001"}"#,
        r#"{"service_id": "echo_service", "plan_id": "big_0001", "parameters": "x"}"#,
        r#"{"service_id": "echo_service", "plan_id": "big_0001", "bind_resource": []}"#,
        r#"{"service_id": "echo_service", "plan_id": "big_0001", "app_guid": 7}"#,
        r#"{"service_id": "echo_service", "plan_id": "big_0001", "context": "x"}"#,
        r#"{"service_id": "echo_service", "plan_id": "big_0001", "plan_id": "big_0001"}"#,
    ] {
        refused(&system, "bind-8", "b", body, 400);
    }
}

#[test]
fn bind_without_app_guid_and_with_unknown_fields_returns_201() {
    let system = start();
    provision_echo(&system, "bind-9");
    let body = json!({"service_id": "echo_service", "plan_id": "big_0001", "x-vendor": 1});
    expect(&put(&system, "bind-9", "b", &body.to_string()), 201);
}

#[test]
fn the_credentials_work_and_a_wrong_password_gets_401() {
    let system = start();
    provision_echo(&system, "bind-10");
    let credentials = bind_echo(&system, "bind-10", "b");
    let uri = uri_of(&credentials);
    let echoed = post_message(&uri, "hello");
    assert_eq!(echoed.status, 200, "{}", echoed.text);
    assert_eq!(echoed.json()["response"], "hello");
    let password = credentials["password"].as_str().expect("password");
    let wrong = uri.replacen(&format!(":{password}@"), ":wrong@", 1);
    assert_ne!(wrong, uri);
    assert_eq!(post_message(&wrong, "hello").status, 401);
    let (bare, _) = split_userinfo(&uri);
    assert_eq!(post_message(&bare, "hello").status, 401);
}

#[test]
fn each_binding_has_its_own_credentials() {
    let system = start();
    provision_echo(&system, "bind-11");
    let one = bind_echo(&system, "bind-11", "one");
    let two = bind_echo(&system, "bind-11", "two");
    assert_ne!(one["password"], two["password"]);
    let uri_one = uri_of(&one);
    let password_two = two["password"].as_str().expect("password");
    let password_one = one["password"].as_str().expect("password");
    let crossed = uri_one.replacen(password_one, password_two, 1);
    assert_eq!(post_message(&crossed, "x").status, 401);
}

#[test]
fn ids_with_special_characters_are_percent_encoded_in_the_uri() {
    let system = start();
    provision_echo(&system, "a b");
    let credentials = bind_echo(&system, "a b", "c?d");
    let uri = uri_of(&credentials);
    assert!(uri.ends_with("/echo/a%20b/c%3Fd"), "{uri}");
    assert!(credentials_work(&uri));
}

#[test]
fn bind_ignores_accepts_incomplete_and_answers_synchronously() {
    let system = start();
    provision_echo(&system, "bind-async");
    let path = format!(
        "{}?accepts_incomplete=true",
        binding_path("bind-async", "b")
    );
    let body = expect(&osb(&system, "PUT", &path, Some(BIND_ECHO)), 201);
    assert!(body["credentials"].is_object() && body.get("operation").is_none());
}

#[test]
fn a_rotation_of_a_plan_that_is_not_binding_rotatable_is_refused_with_400() {
    // "Request (Rotating a Service Binding)": the body may be only predecessor_binding_id;
    // the Echo Service's plan does not declare binding_rotatable, so a platform must not
    // send one (the rotatable plan's rotations: rotation.rs).
    let system = start();
    provision_echo(&system, "bind-rotate");
    let old = bind_echo(&system, "bind-rotate", "old");
    refused(
        &system,
        "bind-rotate",
        "new",
        r#"{"predecessor_binding_id": "old"}"#,
        400,
    );
    assert!(credentials_work(&uri_of(&old)));
}
