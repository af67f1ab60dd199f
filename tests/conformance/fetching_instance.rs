//! Spec section "Fetching a Service Instance": `GET /v2/service_instances/:instance_id`.

use crate::support::*;
use serde_json::json;

#[test]
fn fetch_returns_200_with_ids_dashboard_url_and_parameters() {
    let system = start();
    let body = json!({
        "service_id": "echo_service", "plan_id": "big_0001",
        "organization_guid": "HP", "space_guid": "IT",
        "parameters": {"greeting": "hi", "count": 2},
    });
    let provisioned = provision_with(&system, "fetch-1", &body);
    let fetched = instance(&system, "fetch-1");
    assert_eq!(fetched["service_id"], "echo_service");
    assert_eq!(fetched["plan_id"], "big_0001");
    assert_eq!(fetched["dashboard_url"], provisioned["dashboard_url"]);
    assert!(fetched["dashboard_url"].is_string());
    assert_eq!(fetched["parameters"], json!({"greeting": "hi", "count": 2}));
}

#[test]
fn fetch_of_an_instance_without_parameters_returns_an_empty_parameters_object() {
    let system = start();
    provision_echo(&system, "fetch-2");
    let fetched = instance(&system, "fetch-2");
    assert!(fetched["parameters"].is_object(), "{fetched}");
    assert_eq!(fetched["parameters"], json!({}));
}

#[test]
fn fetch_of_an_invert_instance_reports_its_service_and_plan() {
    let system = start();
    let reply = osb(
        &system,
        "PUT",
        &instance_path("fetch-3"),
        Some(crate::common::PROVISION_INVERT),
    );
    expect(&reply, 201);
    let fetched = instance(&system, "fetch-3");
    assert_eq!(
        (&fetched["service_id"], &fetched["plan_id"]),
        (&json!("invert_service"), &json!("small_0001"))
    );
}

#[test]
fn fetch_returns_the_maintenance_info_the_instance_was_provisioned_with() {
    let system = start();
    provision_echo(&system, "fetch-4");
    let fetched = instance(&system, "fetch-4");
    assert_eq!(
        fetched["maintenance_info"],
        json!({"version": "1.0.0", "description": "First release of the echo service"})
    );
}

#[test]
fn fetch_of_an_instance_whose_plan_has_no_maintenance_info_has_none() {
    let info = "[services.plans.maintenance_info]\nversion = \"1.0.0\"\n\
                description = \"First release of the echo service\"\n";
    let embedded = echo_broker::catalog::EMBEDDED_CATALOG;
    assert!(embedded.contains(info));
    let catalog = embedded.replace(info, "");
    let (_dir, path) = catalog_file(&catalog);
    let system = crate::common::System::start_with(&[("CATALOG_PATH", &path)]);
    provision_echo(&system, "fetch-5");
    let fetched = instance(&system, "fetch-5");
    assert!(fetched.get("maintenance_info").is_none(), "{fetched}");
}

#[test]
fn fetch_of_a_missing_instance_returns_404_with_description() {
    let system = start();
    expect_plain_error(&fetch_instance(&system, "fetch-missing"), 404);
}

#[test]
fn fetch_after_deprovision_returns_404() {
    let system = start();
    provision_echo(&system, "fetch-gone");
    let path = format!("{}{}", instance_path("fetch-gone"), echo_query(""));
    expect(&osb(&system, "DELETE", &path, None), 200);
    expect_plain_error(&fetch_instance(&system, "fetch-gone"), 404);
}

#[test]
fn fetch_accepts_the_optional_service_and_plan_query_hints() {
    let system = start();
    provision_echo(&system, "fetch-hints");
    let path = format!("{}{}", instance_path("fetch-hints"), echo_query(""));
    let fetched = expect(&osb(&system, "GET", &path, None), 200);
    assert_eq!(fetched["service_id"], "echo_service");
}
