//! The bound app example (`examples/bound_app.rs`) against the real system: provision and
//! bind through the broker, hand the binding to the app as Cloud Foundry would (in
//! `VCAP_SERVICES`), and let the app send its message.

use crate::common::*;

// The example's own code, compiled into this test so its functions can be called directly.
#[allow(dead_code)]
#[path = "../../examples/bound_app.rs"]
mod example;

use serde_json::{json, Value};

/// Provisions `instance_id` and binds `binding_id` through the broker; returns the credentials.
fn provision_and_bind(
    system: &System,
    instance_id: &str,
    binding_id: &str,
    provision: &str,
) -> Value {
    let provision_body: Value = serde_json::from_str(provision).expect("provision body is JSON");
    let provisioned = platform(
        "PUT",
        &system.url(&format!("/v2/service_instances/{instance_id}")),
        Some(provision),
    );
    assert_eq!(provisioned.status, 201, "{}", provisioned.text);
    let bind = json!({
        "service_id": provision_body["service_id"],
        "plan_id": provision_body["plan_id"],
        "app_guid": "my-app-guid",
    })
    .to_string();
    let bound = platform(
        "PUT",
        &system.url(&format!(
            "/v2/service_instances/{instance_id}/service_bindings/{binding_id}"
        )),
        Some(&bind),
    );
    assert_eq!(bound.status, 201, "{}", bound.text);
    bound.json()["credentials"].clone()
}

/// A `VCAP_SERVICES` document as Cloud Foundry builds it, with another service beside ours.
fn vcap_services(label: &str, plan: &str, credentials: &Value) -> String {
    json!({
        "user-provided": [{
            "name": "some-other-service",
            "label": "user-provided",
            "credentials": {"uri": "http://elsewhere.invalid/", "username": "x", "password": "y"}
        }],
        label: [{
            "name": "my-echo",
            "instance_name": "my-echo",
            "binding_name": null,
            "label": label,
            "plan": plan,
            "provider": null,
            "tags": [],
            "volume_mounts": [],
            "syslog_drain_url": null,
            "credentials": credentials,
        }]
    })
    .to_string()
}

#[test]
fn bound_app_finds_its_echo_binding_in_vcap_services_and_gets_its_message_back() {
    let system = System::start();
    let credentials = provision_and_bind(&system, "my-echo-guid", "my-binding", PROVISION_ECHO);
    let vcap = vcap_services("Echo Service", "large", &credentials);

    let binding = example::find_echo_binding(&vcap).expect("the echo binding is found");
    assert_eq!(binding.name, "my-echo");
    assert_eq!(binding.label, "Echo Service");
    assert!(
        binding.url.ends_with("/echo/my-echo-guid/my-binding") && !binding.url.contains('@'),
        "{}",
        binding.url
    );
    assert_eq!(
        binding.username,
        credentials["username"].as_str().unwrap_or("?")
    );
    assert_eq!(
        binding.password,
        credentials["password"].as_str().unwrap_or("?")
    );

    let response = example::send_message(&binding, "hello from the bound app")
        .expect("the echo service answers");
    assert_eq!(response, "hello from the bound app");
}

#[test]
fn bound_app_uses_an_invert_binding_and_gets_the_message_reversed() {
    let system = System::start();
    let credentials = provision_and_bind(&system, "inv", "b", PROVISION_INVERT);
    let vcap = vcap_services("Invert Service", "small", &credentials);
    let binding = example::find_echo_binding(&vcap).expect("the invert binding is found");
    let response = example::send_message(&binding, "stressed").expect("an answer");
    assert_eq!(response, "desserts");
}

#[test]
fn bound_app_takes_the_user_and_password_from_the_uri_when_they_are_not_separate() {
    let system = System::start();
    let mut credentials = provision_and_bind(&system, "uri-only", "b", PROVISION_ECHO);
    if let Some(fields) = credentials.as_object_mut() {
        fields.remove("username");
        fields.remove("password");
    }
    let vcap = vcap_services("Echo Service", "large", &credentials);
    let binding = example::find_echo_binding(&vcap).expect("the binding is found");
    assert!(!binding.username.is_empty() && !binding.password.is_empty());
    let response = example::send_message(&binding, "uri only").expect("an answer");
    assert_eq!(response, "uri only");
}

#[test]
fn bound_app_explains_a_missing_binding_or_a_broken_vcap_services() {
    let other_only = r#"{"user-provided": [{"name": "x", "credentials": {}}]}"#;
    let problem = example::find_echo_binding(other_only).expect_err("no echo binding");
    assert!(problem.contains("cf bind-service"), "{problem}");
    let problem = example::find_echo_binding("{").expect_err("not JSON");
    assert!(problem.contains("VCAP_SERVICES is not JSON"), "{problem}");
}

#[test]
fn bound_app_says_an_unset_vcap_services_is_not_set() {
    for unset in [None, Some(String::new()), Some("  ".to_string())] {
        let problem = example::vcap_services_document(unset).expect_err("not set");
        assert!(problem.contains("VCAP_SERVICES is not set"), "{problem}");
        assert!(!problem.contains("not JSON"), "{problem}");
    }
}

#[test]
fn bound_app_reports_refused_credentials_instead_of_a_response() {
    let system = System::start();
    let credentials = provision_and_bind(&system, "refused", "b", PROVISION_ECHO);
    let vcap = vcap_services("Echo Service", "large", &credentials);
    let mut binding = example::find_echo_binding(&vcap).expect("the binding is found");
    binding.password = "not-the-password".into();
    let problem = example::send_message(&binding, "hi").expect_err("refused");
    assert!(problem.contains("401"), "{problem}");
}

#[test]
fn split_userinfo_separates_and_decodes_the_user_and_password() {
    assert_eq!(
        example::split_userinfo("http://app%2D1:p%40ss@echo.example.com:8090/echo/i/b"),
        (
            "http://echo.example.com:8090/echo/i/b".to_string(),
            Some(("app-1".to_string(), "p@ss".to_string()))
        )
    );
    assert_eq!(
        example::split_userinfo("http://echo.example.com/echo/a@b"),
        ("http://echo.example.com/echo/a@b".to_string(), None)
    );
}
