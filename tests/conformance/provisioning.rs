//! Spec section "Provisioning": `PUT /v2/service_instances/:instance_id`.

use crate::common::{System, PROVISION_ECHO, PROVISION_INVERT};
use crate::support::*;
use serde_json::{json, Value};

fn echo_body() -> Value {
    json!({
        "service_id": "echo_service",
        "plan_id": "big_0001",
        "organization_guid": "HP",
        "space_guid": "IT",
    })
}

fn put(system: &System, instance_id: &str, body: &str) -> crate::common::Reply {
    osb(system, "PUT", &instance_path(instance_id), Some(body))
}

/// The body with `field` set to `value` (or removed, for `Value::Null`).
fn with(mut body: Value, field: &str, value: Value) -> Value {
    let object = body.as_object_mut().expect("an object");
    if value.is_null() {
        object.remove(field);
    } else {
        object.insert(field.to_string(), value);
    }
    body
}

/// A provision that must be refused with `status`, and leave no instance behind.
fn refused(system: &System, instance_id: &str, body: &str, status: u16) -> Value {
    let reply = put(system, instance_id, body);
    assert_eq!(reply.status, status, "{body}: {}", reply.text);
    let error = expect_plain_error(&reply, status);
    assert_eq!(
        fetch_instance(system, instance_id).status,
        404,
        "a refused provision ({body}) creates nothing"
    );
    error
}

#[test]
fn provision_returns_201_with_a_dashboard_url() {
    let system = start();
    let body = expect(&put(&system, "prov-1", PROVISION_ECHO), 201);
    let url = body["dashboard_url"]
        .as_str()
        .expect("dashboard_url is a string");
    assert!(
        url.starts_with(&format!("{}/echo/dashboard/prov-1", system.echo_url)),
        "{url}"
    );
    assert_eq!(
        body["metadata"],
        json!({
            "labels": {"service": "echo_service", "plan": "big_0001"},
            "attributes": {"dashboard_url": url},
        }),
        "the broker's own metadata, nothing the platform sent: {body}"
    );
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(2),
        "only dashboard_url and metadata: {body}"
    );
    assert_eq!(instance(&system, "prov-1")["service_id"], "echo_service");
}

#[test]
fn provision_same_attributes_twice_returns_200_with_the_identical_body() {
    let system = start();
    let first = put(&system, "prov-twice", PROVISION_ECHO);
    let second = put(&system, "prov-twice", PROVISION_ECHO);
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(first.json(), second.json());
}

#[test]
fn provision_same_full_request_twice_returns_200() {
    let system = start();
    let body = json!({
        "service_id": "invert_service", "plan_id": "small_0001",
        "organization_guid": "org", "space_guid": "space",
        "parameters": {"size": 3, "nested": {"a": [1, "two"]}},
        "context": {"platform": "cloudfoundry", "instance_name": "inv"},
    });
    let first = put(&system, "prov-full", &body.to_string());
    let second = put(&system, "prov-full", &body.to_string());
    assert_eq!((first.status, second.status), (201, 200), "{}", second.text);
    assert_eq!(first.json(), second.json());
}

#[test]
fn provision_same_id_with_any_differing_attribute_returns_409() {
    let system = start();
    let original = json!({
        "service_id": "echo_service", "plan_id": "big_0001",
        "organization_guid": "HP", "space_guid": "IT",
        "parameters": {"a": 1}, "context": {"platform": "cloudfoundry"},
    });
    provision_with(&system, "prov-409", &original);
    for different in [
        with(
            with(original.clone(), "service_id", json!("invert_service")),
            "plan_id",
            json!("small_0001"),
        ),
        with(original.clone(), "organization_guid", json!("other-org")),
        with(original.clone(), "space_guid", json!("other-space")),
        with(original.clone(), "parameters", json!({"a": 2})),
        with(original.clone(), "parameters", Value::Null),
        with(
            original.clone(),
            "context",
            json!({"platform": "kubernetes"}),
        ),
        with(original.clone(), "context", Value::Null),
    ] {
        let reply = put(&system, "prov-409", &different.to_string());
        assert_eq!(reply.status, 409, "{different}: {}", reply.text);
        expect_plain_error(&reply, 409);
    }
    let fetched = instance(&system, "prov-409");
    assert_eq!(fetched["plan_id"], "big_0001");
    assert_eq!(fetched["parameters"], json!({"a": 1}));
    assert_eq!(put(&system, "prov-409", &original.to_string()).status, 200);
}

#[test]
fn empty_parameters_and_context_count_as_absent() {
    let system = start();
    provision_echo(&system, "prov-empty");
    for body in [
        with(echo_body(), "parameters", json!({})),
        with(echo_body(), "context", json!({})),
        with(
            with(echo_body(), "context", json!({})),
            "parameters",
            json!({}),
        ),
    ] {
        let reply = put(&system, "prov-empty", &body.to_string());
        assert_eq!(reply.status, 200, "{body}: {}", reply.text);
    }
    let body = with(echo_body(), "parameters", json!({}));
    provision_with(&system, "prov-empty-2", &body);
    assert_eq!(put(&system, "prov-empty-2", PROVISION_ECHO).status, 200);
}

#[test]
fn unknown_service_returns_400() {
    let system = start();
    let body = with(echo_body(), "service_id", json!("no_such_service"));
    refused(&system, "prov-unknown", &body.to_string(), 400);
    let body = with(echo_body(), "plan_id", json!("no_such_plan"));
    refused(&system, "prov-unknown", &body.to_string(), 400);
}

#[test]
fn plan_of_another_service_returns_400_naming_the_services_plans() {
    // The original broker's own example: echo_service with invert_service's plan.
    let system = start();
    let body = with(echo_body(), "plan_id", json!("small_0001"));
    let error = refused(&system, "prov-other-plan", &body.to_string(), 400);
    let description = error["description"].as_str().unwrap_or("");
    assert!(description.contains("big_0001"), "{description}");
}

#[test]
fn missing_mandatory_fields_return_400() {
    let system = start();
    for field in ["service_id", "plan_id", "organization_guid", "space_guid"] {
        let body = with(echo_body(), field, Value::Null);
        refused(&system, "prov-missing", &body.to_string(), 400);
    }
}

#[test]
fn empty_string_ids_return_400() {
    let system = start();
    for field in ["service_id", "plan_id", "organization_guid", "space_guid"] {
        let body = with(echo_body(), field, json!(""));
        refused(&system, "prov-empty-id", &body.to_string(), 400);
    }
}

#[test]
fn malformed_json_returns_400() {
    let system = start();
    for body in [
        "",
        "{",
        "{\"service_id\": }",
        "not json",
        "{\"service_id\": \"echo_service\",}",
    ] {
        refused(&system, "prov-malformed", body, 400);
    }
}

#[test]
fn json_that_is_not_an_object_returns_400() {
    let system = start();
    for body in [
        "[]",
        "\"x\"",
        "1",
        "null",
        "true",
        &format!("[{PROVISION_ECHO}]"),
    ] {
        refused(&system, "prov-not-object", body, 400);
    }
}

#[test]
fn wrong_field_types_return_400() {
    let system = start();
    for (field, value) in [
        ("service_id", json!(5)),
        ("plan_id", json!(["big_0001"])),
        ("organization_guid", json!({"id": "HP"})),
        ("space_guid", json!(true)),
        ("parameters", json!("x")),
        ("parameters", json!([1])),
        ("context", json!(7)),
        ("maintenance_info", json!("1.0.0")),
    ] {
        let body = with(echo_body(), field, value);
        refused(&system, "prov-types", &body.to_string(), 400);
    }
}

#[test]
fn duplicate_json_keys_return_400() {
    let system = start();
    let body = r#"{"service_id": "echo_service", "service_id": "invert_service", "plan_id": "big_0001", "organization_guid": "HP", "space_guid": "IT"}"#;
    refused(&system, "prov-dup", body, 400);
}

#[test]
fn unknown_extra_fields_are_ignored() {
    let system = start();
    let body = with(
        with(
            echo_body(),
            "vendor_extension_x",
            json!({"anything": [1, 2]}),
        ),
        "another-one",
        json!("value"),
    );
    let body = with(body, "x-acme-flag", json!(true));
    let reply = put(&system, "prov-extra", &body.to_string());
    expect(&reply, 201);
    assert_eq!(put(&system, "prov-extra", PROVISION_ECHO).status, 200);
}

#[test]
fn maintenance_info_with_another_version_returns_422_maintenance_info_conflict() {
    let system = start();
    for version in ["2.0.0", "1.0.1", "0.0.1"] {
        let body = with(echo_body(), "maintenance_info", json!({"version": version}));
        let error = refused(&system, "prov-mi", &body.to_string(), 422);
        assert_eq!(error["error"], "MaintenanceInfoConflict", "{version}");
    }
}

#[test]
fn maintenance_info_with_the_catalogs_version_returns_201() {
    let system = start();
    let body = with(
        echo_body(),
        "maintenance_info",
        json!({"version": "1.0.0", "description": "ignored"}),
    );
    provision_with(&system, "prov-mi-ok", &body);
}

#[test]
fn empty_maintenance_info_counts_as_absent() {
    let system = start();
    let body = with(echo_body(), "maintenance_info", json!({}));
    provision_with(&system, "prov-mi-empty", &body);
}

#[test]
fn accepts_incomplete_is_accepted_and_the_answer_is_synchronous() {
    let system = start();
    for (id, query) in [
        ("prov-async-1", "?accepts_incomplete=true"),
        ("prov-async-2", "?accepts_incomplete=false"),
    ] {
        let path = format!("{}{query}", instance_path(id));
        let reply = osb(&system, "PUT", &path, Some(PROVISION_ECHO));
        let body = expect(&reply, 201);
        assert!(body.get("operation").is_none(), "{body}");
        let again = osb(&system, "PUT", &path, Some(PROVISION_ECHO));
        assert_eq!(again.status, 200);
    }
    assert_eq!(
        expect(
            &osb(
                &system,
                "GET",
                &format!("{}/last_operation", instance_path("prov-async-1")),
                None
            ),
            200
        )["state"],
        "succeeded"
    );
}

#[test]
fn an_id_over_255_bytes_returns_400() {
    let system = start();
    let long = "x".repeat(256);
    let reply = put(&system, &long, PROVISION_ECHO);
    expect_plain_error(&reply, 400);
    let longest = "y".repeat(255);
    expect(&put(&system, &longest, PROVISION_ECHO), 201);
    let long_guid = json!("o".repeat(256));
    let body = with(echo_body(), "organization_guid", long_guid);
    refused(&system, "prov-long-org", &body.to_string(), 400);
}

#[test]
fn ids_with_special_characters_work_and_are_percent_encoded_in_the_dashboard_url() {
    let system = start();
    for (id, encoded) in [("a b", "a%20b"), ("ü", "%C3%BC"), ("a?b", "a%3Fb")] {
        let body = expect(&put(&system, id, PROVISION_ECHO), 201);
        let url = body["dashboard_url"].as_str().expect("dashboard_url");
        assert!(
            url.starts_with(&format!("{}/echo/dashboard/{encoded}?", system.echo_url)),
            "{id}: {url}"
        );
        assert_eq!(put(&system, id, PROVISION_ECHO).status, 200, "{id}");
        assert_eq!(instance(&system, id)["dashboard_url"], url, "{id}");
        let page = crate::common::call("GET", url, &[], None).expect("the dashboard answers");
        assert_eq!(page.status, 200, "{id}: the dashboard url works");
    }
    // `a%2Fb` in the path is the id "a/b", not a path of two segments: one that a proxy in
    // front of the echo service would read as two, so it is refused.
    let reply = osb(&system, "GET", "/v2/service_instances/a%2Fb", None);
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(fetch_instance(&system, "a").status, 404);
}

#[test]
fn provisions_of_both_services_create_independent_instances() {
    let system = start();
    expect(&put(&system, "prov-echo", PROVISION_ECHO), 201);
    expect(&put(&system, "prov-invert", PROVISION_INVERT), 201);
    assert_eq!(instance(&system, "prov-echo")["plan_id"], "big_0001");
    assert_eq!(instance(&system, "prov-invert")["plan_id"], "small_0001");
}

#[test]
fn provision_is_never_202() {
    // `osb` refuses any 202; this walks the provision outcomes once more with async allowed.
    let system = start();
    let path = format!(
        "{}?accepts_incomplete=true",
        instance_path("prov-never-202")
    );
    let statuses: Vec<u16> = [PROVISION_ECHO, PROVISION_ECHO, PROVISION_INVERT, "{"]
        .iter()
        .map(|body| osb(&system, "PUT", &path, Some(body)).status)
        .collect();
    assert_eq!(statuses, [201, 200, 409, 400]);
}

#[test]
fn provision_same_id_with_another_plan_of_the_same_service_returns_409() {
    let (_dir, path) = catalog_file(
        r#"
[[services]]
id = "two_plans"
name = "two-plans"
description = "A service with two plans"
bindable = true

[[services.plans]]
id = "plan_one"
name = "one"
description = "The first plan"

[[services.plans]]
id = "plan_two"
name = "two"
description = "The second plan"
"#,
    );
    let system = System::start_with(&[("CATALOG_PATH", &path)]);
    let one = json!({"service_id": "two_plans", "plan_id": "plan_one",
        "organization_guid": "o", "space_guid": "s"});
    provision_with(&system, "prov-plan", &one);
    let two = with(one.clone(), "plan_id", json!("plan_two"));
    expect_plain_error(&put(&system, "prov-plan", &two.to_string()), 409);
    assert_eq!(instance(&system, "prov-plan")["plan_id"], "plan_one");
    assert_eq!(put(&system, "prov-plan", &one.to_string()).status, 200);
}

#[test]
fn ids_that_look_like_paths_or_routes_work_through_the_whole_lifecycle() {
    let system = start();
    let ids = echo_query("");
    for id in [
        "...",
        ".x",
        "dashboard",
        "echo",
        "health",
        "last_operation",
        "%",
        "%2F",
        "?",
        "#",
        "+",
        "a+b",
        " ",
        "%2e%2e",
    ] {
        expect(&put(&system, id, PROVISION_ECHO), 201);
        let credentials = bind_echo(&system, id, id);
        let fetched = expect(&fetch_binding(&system, id, id), 200);
        assert_eq!(fetched["credentials"], credentials, "{id:?}");
        assert!(credentials_work(&uri_of(&credentials)), "{id:?}");
        let last = format!("{}/last_operation", binding_path(id, id));
        assert_eq!(
            expect(&osb(&system, "GET", &last, None), 200)["state"],
            "succeeded"
        );
        let unbind = format!("{}{ids}", binding_path(id, id));
        expect(&osb(&system, "DELETE", &unbind, None), 200);
        assert!(!credentials_work(&uri_of(&credentials)), "{id:?}");
        let deprovision = format!("{}{ids}", instance_path(id));
        expect(&osb(&system, "DELETE", &deprovision, None), 200);
        assert_eq!(fetch_instance(&system, id).status, 404, "{id:?}");
    }
}
