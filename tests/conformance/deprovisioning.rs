//! Spec section "Deprovisioning":
//! `DELETE /v2/service_instances/:instance_id?service_id=..&plan_id=..`, and "Orphan
//! Mitigation" (a platform deletes what it is unsure was created: a plain deprovision).

use crate::common::{Reply, System, PROVISION_INVERT};
use crate::support::*;
use serde_json::json;

fn deprovision(system: &System, instance_id: &str, query: &str) -> Reply {
    let path = format!("{}{query}", instance_path(instance_id));
    osb(system, "DELETE", &path, None)
}

#[test]
fn deprovision_returns_200_empty_object_and_again_410_empty_object() {
    let system = start();
    provision_echo(&system, "dp-1");
    let first = deprovision(&system, "dp-1", &echo_query(""));
    assert_eq!((first.status, first.json()), (200, json!({})));
    expect_plain_error(&fetch_instance(&system, "dp-1"), 404);
    let second = deprovision(&system, "dp-1", &echo_query(""));
    assert_eq!((second.status, second.json()), (410, json!({})));
}

#[test]
fn deprovision_of_an_instance_that_never_existed_returns_410() {
    let system = start();
    let reply = deprovision(&system, "dp-never", &echo_query(""));
    assert_eq!((reply.status, reply.json()), (410, json!({})));
}

#[test]
fn deprovision_without_service_id_or_plan_id_returns_400_and_keeps_the_instance() {
    let system = start();
    provision_echo(&system, "dp-2");
    for query in [
        "",
        "?service_id=echo_service",
        "?plan_id=big_0001",
        "?service_id=&plan_id=big_0001",
        "?service_id=echo_service&plan_id=",
    ] {
        let reply = deprovision(&system, "dp-2", query);
        assert_eq!(reply.status, 400, "{query}: {}", reply.text);
        reply.assert_error(400);
    }
    expect(&fetch_instance(&system, "dp-2"), 200);
}

#[test]
fn deprovision_with_ids_that_are_not_the_instances_returns_400_and_keeps_the_instance() {
    let system = start();
    provision_echo(&system, "dp-3");
    let credentials = bind_echo(&system, "dp-3", "b");
    for query in [
        "?service_id=invert_service&plan_id=small_0001",
        "?service_id=echo_service&plan_id=small_0001",
        "?service_id=no_such&plan_id=big_0001",
    ] {
        let reply = deprovision(&system, "dp-3", query);
        assert_eq!(reply.status, 400, "{query}: {}", reply.text);
        reply.assert_error(400);
    }
    expect(&fetch_instance(&system, "dp-3"), 200);
    assert!(credentials_work(&uri_of(&credentials)));
}

#[test]
fn deprovision_removes_the_instances_bindings_and_their_credentials_stop_working() {
    let system = start();
    provision_echo(&system, "dp-4");
    let one = bind_echo(&system, "dp-4", "one");
    let two = bind_echo(&system, "dp-4", "two");
    assert!(credentials_work(&uri_of(&one)) && credentials_work(&uri_of(&two)));
    expect(&deprovision(&system, "dp-4", &echo_query("")), 200);
    assert!(!credentials_work(&uri_of(&one)));
    assert!(!credentials_work(&uri_of(&two)));
    expect_plain_error(&fetch_binding(&system, "dp-4", "one"), 404);
}

#[test]
fn deprovision_removes_the_dashboard() {
    let system = start();
    let provisioned = provision_echo(&system, "dp-5");
    let url = provisioned["dashboard_url"]
        .as_str()
        .expect("dashboard_url");
    let call = |url: &str| crate::common::call("GET", url, &[], None).expect("echo answers");
    assert_eq!(call(url).status, 200);
    expect(&deprovision(&system, "dp-5", &echo_query("")), 200);
    assert_eq!(call(url).status, 404);
}

#[test]
fn deprovision_ignores_accepts_incomplete_and_answers_synchronously() {
    let system = start();
    provision_echo(&system, "dp-6");
    let reply = deprovision(&system, "dp-6", &echo_query("&accepts_incomplete=true"));
    assert_eq!((reply.status, reply.json()), (200, json!({})));
}

#[test]
fn orphan_mitigation_is_a_plain_deprovision_and_the_id_can_be_provisioned_again() {
    // A platform unsure whether a provision succeeded deletes the instance; whether it exists
    // or not, the answer is final (200 or 410), and the id is free afterwards.
    let system = start();
    provision_echo(&system, "dp-7");
    expect(&deprovision(&system, "dp-7", &echo_query("")), 200);
    let reply = osb(
        &system,
        "PUT",
        &instance_path("dp-7"),
        Some(PROVISION_INVERT),
    );
    expect(&reply, 201);
    let query = "?service_id=invert_service&plan_id=small_0001";
    expect(&deprovision(&system, "dp-7", query), 200);
    expect(&deprovision(&system, "dp-7", query), 410);
}

#[test]
fn deprovision_leaves_other_instances_alone() {
    let system = start();
    provision_echo(&system, "dp-8");
    provision_echo(&system, "dp-9");
    let credentials = bind_echo(&system, "dp-9", "b");
    expect(&deprovision(&system, "dp-8", &echo_query("")), 200);
    expect(&fetch_instance(&system, "dp-9"), 200);
    assert!(credentials_work(&uri_of(&credentials)));
}
