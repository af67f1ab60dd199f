//! Spec section "Service Broker Errors": error bodies, error codes, the fields only update
//! errors carry, and 4xx answers that change nothing.

use crate::common::PROVISION_INVERT;
use crate::support::*;
use serde_json::json;

/// One of each 4xx the broker answers, through `osb` (which checks each body against the
/// `Error` schema: an object, `description` a non-empty string, `error` non-empty if present).
#[test]
fn error_bodies_have_a_non_empty_description_and_error_code() {
    let system = start();
    provision_echo(&system, "err-1");
    let cases = [
        ("GET", "/v2/catalog".to_string(), None, 200),
        ("GET", "/v2/nowhere".to_string(), None, 404),
        ("POST", "/v2/catalog".to_string(), None, 405),
        ("PUT", instance_path("err-2"), Some("{"), 400),
        ("PUT", instance_path("err-1"), Some(PROVISION_INVERT), 409),
        (
            "PUT",
            instance_path("err-3"),
            Some(
                r#"{"service_id":"echo_service","plan_id":"big_0001","organization_guid":"o","space_guid":"s","maintenance_info":{"version":"9.9.9"}}"#,
            ),
            422,
        ),
        ("GET", instance_path("err-missing"), None, 404),
    ];
    for (method, path, body, status) in cases {
        let reply = osb(&system, method, &path, body);
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text);
        if status >= 400 {
            let body = reply.assert_error(status);
            let code = body["error"]
                .as_str()
                .expect("the broker names every error");
            assert!(!code.is_empty() && !code.contains(' '), "one word: {code}");
        }
    }
}

#[test]
fn maintenance_info_conflict_uses_the_error_code_maintenance_info_conflict() {
    let system = start();
    let provision = json!({
        "service_id": "echo_service", "plan_id": "big_0001",
        "organization_guid": "o", "space_guid": "s",
        "maintenance_info": {"version": "2.0.0"},
    });
    let reply = osb(
        &system,
        "PUT",
        &instance_path("mic-1"),
        Some(&provision.to_string()),
    );
    let body = expect_plain_error(&reply, 422);
    assert_eq!(body["error"], "MaintenanceInfoConflict");

    provision_echo(&system, "mic-2");
    let update = json!({"service_id": "echo_service", "maintenance_info": {"version": "0.9.0"}});
    let reply = osb(
        &system,
        "PATCH",
        &instance_path("mic-2"),
        Some(&update.to_string()),
    );
    let body = expect_update_error(&reply, 422);
    assert_eq!(body["error"], "MaintenanceInfoConflict");
}

#[test]
fn gone_answers_have_the_body_empty_object() {
    let system = start();
    let ids = echo_query("");
    for path in [
        format!("{}{ids}", instance_path("gone-1")),
        format!("{}{ids}", binding_path("gone-1", "b")),
    ] {
        let reply = osb(&system, "DELETE", &path, None);
        assert_eq!((reply.status, reply.json()), (410, json!({})), "{path}");
    }
}

#[test]
fn errors_of_other_operations_carry_no_update_flags() {
    let system = start();
    provision_echo(&system, "flags-1");
    bind_echo(&system, "flags-1", "b");
    let ids = echo_query("");
    let cases = [
        ("GET", "/v2/nowhere".to_string(), None, 404),
        ("PUT", instance_path("flags-2"), Some("[]"), 400),
        ("PUT", instance_path("flags-1"), Some(PROVISION_INVERT), 409),
        ("GET", instance_path("flags-missing"), None, 404),
        ("PUT", binding_path("flags-1", "b2"), Some("{}"), 400),
        (
            "PUT",
            binding_path("flags-missing", "b"),
            Some(crate::common::BIND_ECHO),
            404,
        ),
        ("GET", binding_path("flags-1", "missing"), None, 404),
        ("DELETE", binding_path("flags-1", "b"), None, 400),
        (
            "GET",
            format!("{}/last_operation", instance_path("flags-missing")),
            None,
            404,
        ),
        (
            "GET",
            format!("{}/last_operation", binding_path("flags-1", "missing")),
            None,
            404,
        ),
        (
            "DELETE",
            format!(
                "{}?service_id=invert_service&plan_id=small_0001",
                binding_path("flags-1", "b")
            ),
            None,
            400,
        ),
        (
            "DELETE",
            format!("{}{ids}", binding_path("flags-1", "x")),
            None,
            410,
        ),
    ];
    for (method, path, body, status) in cases {
        let reply = osb(&system, method, &path, body);
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text);
        if status != 410 {
            expect_plain_error(&reply, status);
        }
    }
}

#[test]
fn a_4xx_leaves_the_brokers_resources_unchanged() {
    let system = start();
    provision_echo(&system, "unchanged-1");
    let credentials = bind_echo(&system, "unchanged-1", "b");
    let before = instance(&system, "unchanged-1");
    for (method, path, body) in [
        ("PUT", instance_path("unchanged-1"), Some(PROVISION_INVERT)),
        (
            "PATCH",
            instance_path("unchanged-1"),
            Some(r#"{"service_id":"echo_service","plan_id":"small_0001","parameters":{"x":1}}"#),
        ),
        ("DELETE", instance_path("unchanged-1"), None),
        (
            "DELETE",
            format!(
                "{}?service_id=invert_service&plan_id=small_0001",
                instance_path("unchanged-1")
            ),
            None,
        ),
        (
            "PUT",
            binding_path("unchanged-1", "b"),
            Some(r#"{"service_id":"echo_service","plan_id":"big_0001","app_guid":"other"}"#),
        ),
        ("DELETE", binding_path("unchanged-1", "b"), None),
    ] {
        let reply = osb(&system, method, &path, body);
        assert!(
            (400..500).contains(&reply.status),
            "{method} {path}: {} {}",
            reply.status,
            reply.text
        );
    }
    assert_eq!(instance(&system, "unchanged-1"), before);
    let fetched = expect(&fetch_binding(&system, "unchanged-1", "b"), 200);
    assert_eq!(fetched["credentials"], credentials);
    assert!(credentials_work(&uri_of(&credentials)));
}
