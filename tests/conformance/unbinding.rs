//! Spec section "Unbinding":
//! `DELETE /v2/service_instances/:instance_id/service_bindings/:binding_id?service_id=..&plan_id=..`.

use crate::common::{Reply, System};
use crate::support::*;
use serde_json::json;

fn unbind(system: &System, instance_id: &str, binding_id: &str, query: &str) -> Reply {
    let path = format!("{}{query}", binding_path(instance_id, binding_id));
    osb(system, "DELETE", &path, None)
}

#[test]
fn unbind_returns_200_empty_object_and_again_410_empty_object() {
    let system = start();
    provision_echo(&system, "ub-1");
    bind_echo(&system, "ub-1", "b");
    let first = unbind(&system, "ub-1", "b", &echo_query(""));
    assert_eq!((first.status, first.json()), (200, json!({})));
    let second = unbind(&system, "ub-1", "b", &echo_query(""));
    assert_eq!((second.status, second.json()), (410, json!({})));
}

#[test]
fn unbind_of_a_binding_that_never_existed_returns_410() {
    let system = start();
    provision_echo(&system, "ub-2");
    let reply = unbind(&system, "ub-2", "never", &echo_query(""));
    assert_eq!((reply.status, reply.json()), (410, json!({})));
}

#[test]
fn unbind_without_service_id_or_plan_id_returns_400_and_keeps_the_binding() {
    let system = start();
    provision_echo(&system, "ub-3");
    let credentials = bind_echo(&system, "ub-3", "b");
    for query in [
        "",
        "?service_id=echo_service",
        "?plan_id=big_0001",
        "?service_id=&plan_id=big_0001",
        "?service_id=echo_service&plan_id=",
    ] {
        let reply = unbind(&system, "ub-3", "b", query);
        assert_eq!(reply.status, 400, "{query}: {}", reply.text);
        expect_plain_error(&reply, 400);
    }
    expect(&fetch_binding(&system, "ub-3", "b"), 200);
    assert!(credentials_work(&uri_of(&credentials)));
}

#[test]
fn unbind_with_ids_that_are_not_the_instances_returns_400_and_keeps_the_binding() {
    let system = start();
    provision_echo(&system, "ub-4");
    let credentials = bind_echo(&system, "ub-4", "b");
    for query in [
        "?service_id=invert_service&plan_id=small_0001",
        "?service_id=echo_service&plan_id=small_0001",
        "?service_id=no_such&plan_id=big_0001",
        "?service_id=echo_service&plan_id=no_such",
    ] {
        let reply = unbind(&system, "ub-4", "b", query);
        assert_eq!(reply.status, 400, "{query}: {}", reply.text);
        expect_plain_error(&reply, 400);
    }
    expect(&fetch_binding(&system, "ub-4", "b"), 200);
    assert!(credentials_work(&uri_of(&credentials)));
}

#[test]
fn after_unbind_the_credentials_stop_working() {
    let system = start();
    provision_echo(&system, "ub-5");
    let credentials = bind_echo(&system, "ub-5", "b");
    let uri = uri_of(&credentials);
    assert!(credentials_work(&uri));
    expect(&unbind(&system, "ub-5", "b", &echo_query("")), 200);
    assert!(!credentials_work(&uri));
}

#[test]
fn unbind_removes_only_its_own_binding() {
    let system = start();
    provision_echo(&system, "ub-6");
    bind_echo(&system, "ub-6", "gone");
    let kept = bind_echo(&system, "ub-6", "kept");
    expect(&unbind(&system, "ub-6", "gone", &echo_query("")), 200);
    expect(&fetch_binding(&system, "ub-6", "kept"), 200);
    assert!(credentials_work(&uri_of(&kept)));
    expect(&fetch_instance(&system, "ub-6"), 200);
}

#[test]
fn unbind_ignores_accepts_incomplete_and_answers_synchronously() {
    let system = start();
    provision_echo(&system, "ub-7");
    bind_echo(&system, "ub-7", "b");
    let reply = unbind(
        &system,
        "ub-7",
        "b",
        &echo_query("&accepts_incomplete=true"),
    );
    assert_eq!((reply.status, reply.json()), (200, json!({})));
}

#[test]
fn a_binding_can_be_created_again_after_unbind() {
    let system = start();
    provision_echo(&system, "ub-8");
    let old = bind_echo(&system, "ub-8", "b");
    expect(&unbind(&system, "ub-8", "b", &echo_query("")), 200);
    let new = bind_echo(&system, "ub-8", "b");
    assert_ne!(old["password"], new["password"], "new credentials");
    assert!(!credentials_work(&uri_of(&old)));
    assert!(credentials_work(&uri_of(&new)));
}
