//! Spec section "Catalog Management": `GET /v2/catalog`.

use crate::support::*;
use serde_json::{json, Value};
use std::collections::HashSet;

fn catalog() -> Value {
    let system = start();
    let reply = osb(&system, "GET", "/v2/catalog", None);
    expect(&reply, 200)
}

fn services(catalog: &Value) -> &Vec<Value> {
    catalog["services"]
        .as_array()
        .expect("services is an array")
}

fn service<'a>(catalog: &'a Value, id: &str) -> &'a Value {
    services(catalog)
        .iter()
        .find(|service| service["id"] == id)
        .unwrap_or_else(|| panic!("service {id} is in the catalog"))
}

#[test]
fn catalog_returns_200_with_services_that_fit_the_schema() {
    // `osb` checked the body against the Catalog, Service, Plan, DashboardClient,
    // MaintenanceInfo and Schemas schemas; here the REQUIRED parts are asserted again.
    let catalog = catalog();
    let services = services(&catalog);
    assert!(!services.is_empty());
    for service in services {
        for field in ["name", "id", "description"] {
            assert!(
                service[field].as_str().is_some_and(|s| !s.is_empty()),
                "{field}: {service}"
            );
        }
        assert!(service["bindable"].is_boolean(), "{service}");
        let plans = service["plans"].as_array().expect("plans is an array");
        assert!(!plans.is_empty(), "at least one plan: {service}");
        for plan in plans {
            for field in ["id", "name", "description"] {
                assert!(
                    plan[field].as_str().is_some_and(|s| !s.is_empty()),
                    "{field}: {plan}"
                );
            }
        }
    }
}

#[test]
fn service_and_plan_ids_are_unique_and_names_unique_where_the_spec_says() {
    let catalog = catalog();
    let mut ids = HashSet::new();
    let mut service_names = HashSet::new();
    for service in services(&catalog) {
        assert!(ids.insert(service["id"].to_string()), "{}", service["id"]);
        assert!(service_names.insert(service["name"].to_string()));
        let mut plan_names = HashSet::new();
        for plan in service["plans"].as_array().into_iter().flatten() {
            assert!(ids.insert(plan["id"].to_string()), "{}", plan["id"]);
            assert!(plan_names.insert(plan["name"].to_string()));
        }
    }
}

#[test]
fn catalog_contains_no_null_anywhere() {
    fn walk(value: &Value, at: &str) {
        match value {
            Value::Null => panic!("{at} is null"),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &format!("{at}[{i}]"));
                }
            }
            Value::Object(object) => {
                for (key, item) in object {
                    walk(item, &format!("{at}.{key}"));
                }
            }
            _ => {}
        }
    }
    walk(&catalog(), "$");
}

#[test]
fn optional_fields_have_the_spec_types() {
    let catalog = catalog();
    for service in services(&catalog) {
        for flag in [
            "instances_retrievable",
            "bindings_retrievable",
            "plan_updateable",
            "allow_context_updates",
        ] {
            if let Some(value) = service.get(flag) {
                assert!(value.is_boolean(), "{flag}: {value}");
            }
        }
        if let Some(client) = service.get("dashboard_client") {
            for field in ["id", "secret", "redirect_uri"] {
                assert!(
                    client[field].is_string(),
                    "dashboard_client.{field}: {client}"
                );
            }
        }
        for plan in service["plans"].as_array().into_iter().flatten() {
            if let Some(free) = plan.get("free") {
                assert!(free.is_boolean(), "free: {plan}");
            }
            if let Some(info) = plan.get("maintenance_info") {
                assert!(info["version"].is_string(), "maintenance_info: {plan}");
            }
        }
    }
}

#[test]
fn both_services_declare_the_fetch_endpoints() {
    let catalog = catalog();
    for service in services(&catalog) {
        assert_eq!(service["instances_retrievable"], true, "{}", service["id"]);
        assert_eq!(service["bindings_retrievable"], true, "{}", service["id"]);
    }
}

#[test]
fn echo_service_keeps_the_original_fields_and_its_dashboard_client() {
    let catalog = catalog();
    let echo = service(&catalog, "echo_service");
    assert_eq!(echo["name"], "Echo Service");
    assert_eq!(echo["bindable"], true);
    let client = echo["dashboard_client"]
        .as_object()
        .expect("echo_service has a dashboard_client");
    assert_eq!(client["id"], "client-id-1");
    assert_eq!(client["secret"], "secret-1");
    assert_eq!(
        client["redirect_uri"],
        "http://localhost:8090/echo/dashboard"
    );
    let plans = echo["plans"].as_array().expect("plans");
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0]["id"], "big_0001");
    assert_eq!(plans[0]["name"], "large");
    assert_eq!(plans[0]["free"], false);
    assert_eq!(plans[0]["maintenance_info"]["version"], "1.0.0");
}

#[test]
fn invert_service_has_no_dashboard_client_key_and_its_plan_no_free_key() {
    let catalog = catalog();
    let invert = service(&catalog, "invert_service");
    assert_eq!(invert["name"], "Invert Service");
    assert!(
        invert.get("dashboard_client").is_none(),
        "absent, not null: {invert}"
    );
    let plans = invert["plans"].as_array().expect("plans");
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0]["id"], "small_0001");
    assert_eq!(plans[0]["name"], "small");
    assert!(
        plans[0].get("free").is_none(),
        "free is absent: {}",
        plans[0]
    );
    assert_eq!(plans[0]["maintenance_info"]["version"], "1.0.0");
}

/// The Invert Service's plan gives its bindings a lifetime and lets them be rotated; the
/// lifetime itself is the broker's own field, never served.
#[test]
fn binding_rotation_is_offered_where_bindings_expire() {
    let catalog = catalog();
    let rotatable: Vec<(&Value, Option<&Value>)> = services(&catalog)
        .iter()
        .flat_map(|service| service["plans"].as_array().into_iter().flatten())
        .map(|plan| (&plan["id"], plan.get("binding_rotatable")))
        .collect();
    assert_eq!(
        rotatable,
        [
            (&json!("big_0001"), None),
            (&json!("small_0001"), Some(&json!(true)))
        ]
    );
    assert!(
        !catalog.to_string().contains("binding_lifetime"),
        "{catalog}"
    );
}

#[test]
fn catalog_needs_credentials() {
    let system = start();
    let reply = osb_with(
        &system,
        "GET",
        "/v2/catalog",
        &headers_without("Authorization"),
        None,
    );
    expect_plain_error(&reply, 401);
}

#[test]
fn catalog_from_catalog_path_is_served_as_written() {
    let (_dir, path) = catalog_file(
        r#"
[[services]]
id = "svc-a"
name = "svc-a"
description = "A"
bindable = false
tags = ["t1", "t2"]

[[services.plans]]
id = "plan-a"
name = "plan-a"
description = "Plan A"
bindable = true
plan_updateable = true
maximum_polling_duration = 60
"#,
    );
    let system = crate::common::System::start_with(&[("CATALOG_PATH", &path)]);
    let catalog = expect(&osb(&system, "GET", "/v2/catalog", None), 200);
    let service = service(&catalog, "svc-a");
    assert_eq!(service["tags"], serde_json::json!(["t1", "t2"]));
    assert_eq!(service["bindable"], false);
    assert!(service.get("dashboard_client").is_none());
    assert!(service.get("instances_retrievable").is_none());
    let plan = &service["plans"][0];
    assert_eq!(plan["bindable"], true);
    assert_eq!(plan["plan_updateable"], true);
    assert_eq!(plan["maximum_polling_duration"], 60);
    assert!(plan.get("free").is_none() && plan.get("maintenance_info").is_none());
}
