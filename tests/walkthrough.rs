//! The seed README's story end to end, through the real broker and its embedded echo
//! service: catalog, provision, bind, a bound app's message, the dashboard, unbind,
//! deprovision.

mod common;
use common::*;

#[test]
fn seed_walkthrough_runs_end_to_end_on_the_embedded_default() {
    let system = System::start();

    let catalog = platform("GET", &system.url("/v2/catalog"), None);
    assert_eq!(catalog.status, 200);
    let names: Vec<String> = catalog.json()["services"]
        .as_array()
        .expect("services is an array")
        .iter()
        .map(|service| service["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, ["Echo Service", "Invert Service"]);

    let provisioned = platform(
        "PUT",
        &system.url("/v2/service_instances/mynewinstance"),
        Some(PROVISION_ECHO),
    );
    assert_eq!(provisioned.status, 201, "{}", provisioned.text);
    let dashboard_url = provisioned.json()["dashboard_url"]
        .as_str()
        .expect("dashboard_url")
        .to_string();
    assert!(dashboard_url.starts_with(&format!(
        "{}/echo/dashboard/mynewinstance?token=",
        system.echo_url
    )));

    let bound = platform(
        "PUT",
        &system.url("/v2/service_instances/mynewinstance/service_bindings/myappid"),
        Some(BIND_ECHO),
    );
    assert_eq!(bound.status, 201, "{}", bound.text);
    let uri = bound.json()["credentials"]["uri"]
        .as_str()
        .expect("credentials.uri")
        .to_string();
    assert!(uri.ends_with("/echo/mynewinstance/myappid"), "{uri}");

    let echoed = post_message(&uri, "hello, broker");
    assert_eq!(echoed.status, 200, "{}", echoed.text);
    assert_eq!(echoed.json()["response"], "hello, broker");

    let dashboard = call("GET", &dashboard_url, &[], None).expect("dashboard answers");
    assert_eq!(dashboard.status, 200);
    assert_eq!(
        dashboard.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert!(dashboard.text.starts_with("<!DOCTYPE html>"));
    assert!(dashboard.text.contains("mynewinstance") && dashboard.text.contains("hello, broker"));

    let unbound = platform(
        "DELETE",
        &system.url(&format!(
            "/v2/service_instances/mynewinstance/service_bindings/myappid?{ECHO_IDS}"
        )),
        None,
    );
    assert_eq!(
        (unbound.status, unbound.json()),
        (200, serde_json::json!({}))
    );
    assert_eq!(post_message(&uri, "still there?").status, 401);

    let deprovisioned = platform(
        "DELETE",
        &system.url(&format!("/v2/service_instances/mynewinstance?{ECHO_IDS}")),
        None,
    );
    assert_eq!(
        (deprovisioned.status, deprovisioned.json()),
        (200, serde_json::json!({}))
    );
    assert_eq!(
        call("GET", &dashboard_url, &[], None)
            .expect("echo answers")
            .status,
        404
    );
}

#[test]
fn invert_service_answers_the_message_reversed_character_by_character() {
    let system = System::start();
    let provisioned = platform(
        "PUT",
        &system.url("/v2/service_instances/inv"),
        Some(PROVISION_INVERT),
    );
    assert_eq!(provisioned.status, 201);
    let bind = r#"{"service_id": "invert_service", "plan_id": "small_0001", "app_guid": "app"}"#;
    let bound = platform(
        "PUT",
        &system.url("/v2/service_instances/inv/service_bindings/b"),
        Some(bind),
    );
    let uri = bound.json()["credentials"]["uri"]
        .as_str()
        .expect("uri")
        .to_string();
    let echoed = post_message(&uri, "héllo wörld ✓");
    assert_eq!(echoed.json()["response"], "✓ dlröw olléh");
}
