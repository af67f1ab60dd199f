//! Spec 2.17's "Binding Rotation" and binding metadata: credentials that expire (announced
//! and enforced), successors made from a predecessor, and instance metadata.

use crate::common::{self, System};
use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The embedded catalog with the Invert Service's bindings living `lifetime`.
fn system_with_lifetime(lifetime: &str) -> (System, common::TempDir) {
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/catalog.toml"))
        .expect("catalog.toml is read")
        .replace(
            "binding_lifetime = \"90d\"",
            &format!("binding_lifetime = \"{lifetime}\""),
        );
    let (dir, path) = catalog_file(&toml);
    (System::start_with(&[("CATALOG_PATH", &path)]), dir)
}

const PROVISION_INVERT: &str = common::PROVISION_INVERT;

fn bind_invert(system: &System, instance: &str, binding: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"service_id": "invert_service", "plan_id": "small_0001"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let reply = osb(
        system,
        "PUT",
        &binding_path(instance, binding),
        Some(&body.to_string()),
    );
    (reply.status, reply.json())
}

/// Seconds since the epoch of a timestamp in the spec's pattern `yyyy-mm-ddThh:mm:ss.sZ`.
fn seconds_of(timestamp: &Value) -> u64 {
    let text = timestamp.as_str().expect("a timestamp is a string");
    let pattern_ok = text.len() == 22
        && text.ends_with(".0Z")
        && text.as_bytes()[4] == b'-'
        && text.as_bytes()[10] == b'T';
    assert!(pattern_ok, "not yyyy-mm-ddThh:mm:ss.sZ: {text}");
    let number = |range: std::ops::Range<usize>| -> u64 { text[range].parse().expect("digits") };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    // Days from the civil date (Howard Hinnant's algorithm), for the test's own check.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era =
        (y - era * 400) * 365 + (y - era * 400) / 4 - (y - era * 400) / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    days * 86_400 + number(11..13) * 3_600 + number(14..16) * 60 + number(17..19)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

#[test]
fn a_binding_of_a_plan_with_a_lifetime_announces_its_expiry_on_bind_and_fetch() {
    let system = start();
    expect(
        &osb(
            &system,
            "PUT",
            &instance_path("life"),
            Some(PROVISION_INVERT),
        ),
        201,
    );
    let before = now();
    let (status, bound) = bind_invert(&system, "life", "b", json!({}));
    assert_eq!(status, 201, "{bound}");
    let expires_at = seconds_of(&bound["metadata"]["expires_at"]);
    let renew_before = seconds_of(&bound["metadata"]["renew_before"]);
    let ninety_days = 90 * 86_400;
    assert!(
        (before + ninety_days..=now() + ninety_days).contains(&expires_at),
        "{bound}"
    );
    assert_eq!(
        expires_at - renew_before,
        ninety_days / 5,
        "a fifth of the lifetime is left"
    );
    let fetched = expect(&fetch_binding(&system, "life", "b"), 200);
    assert_eq!(fetched["metadata"], bound["metadata"]);

    // A plan without a lifetime: its bindings never expire, and say nothing of it.
    provision_echo(&system, "forever");
    let reply = osb(
        &system,
        "PUT",
        &binding_path("forever", "b"),
        Some(common::BIND_ECHO),
    );
    assert_eq!(expect(&reply, 201)["metadata"], json!({}));
    assert_eq!(
        expect(&fetch_binding(&system, "forever", "b"), 200)["metadata"],
        json!({})
    );
}

#[test]
fn expired_credentials_are_refused_by_the_echo_service_and_the_binding_can_still_be_deleted() {
    let (system, _catalog) = system_with_lifetime("2s");
    expect(
        &osb(
            &system,
            "PUT",
            &instance_path("short"),
            Some(PROVISION_INVERT),
        ),
        201,
    );
    let (status, bound) = bind_invert(&system, "short", "b", json!({}));
    assert_eq!(status, 201, "{bound}");
    let uri = uri_of(&bound["credentials"]);
    assert!(credentials_work(&uri), "valid until it expires");
    let expires_at = seconds_of(&bound["metadata"]["expires_at"]);
    while now() <= expires_at {
        std::thread::sleep(Duration::from_millis(200));
    }
    let refused = common::post_message(&uri, "too late");
    assert_eq!(refused.status, 401, "{}", refused.text);
    assert_eq!(
        refused.json(),
        json!({"description": "use the binding's credentials", "error": "Unauthorized"}),
        "the same answer as for unknown credentials"
    );
    // The platform still sees it, expired, and can delete it.
    let fetched = expect(&fetch_binding(&system, "short", "b"), 200);
    assert_eq!(fetched["metadata"], bound["metadata"]);
    let query = "?service_id=invert_service&plan_id=small_0001";
    let path = format!("{}{query}", binding_path("short", "b"));
    assert_eq!(osb(&system, "DELETE", &path, None).status, 200);

    // An expired predecessor cannot be rotated.
    let (status, _) = bind_invert(&system, "short", "c", json!({}));
    assert_eq!(status, 201);
    std::thread::sleep(Duration::from_secs(3));
    let (status, refused) = bind_invert(
        &system,
        "short",
        "d",
        json!({"predecessor_binding_id": "c"}),
    );
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["description"]
            .as_str()
            .is_some_and(|d| d.contains("expired")),
        "{refused}"
    );
}

#[test]
fn a_rotation_makes_a_successor_with_new_credentials_and_the_predecessors_parameters() {
    let system = start();
    expect(
        &osb(
            &system,
            "PUT",
            &instance_path("rot"),
            Some(PROVISION_INVERT),
        ),
        201,
    );
    let (status, first) = bind_invert(&system, "rot", "old", json!({"parameters": {"size": 3}}));
    assert_eq!(status, 201, "{first}");

    let rotate = json!({"predecessor_binding_id": "old"});
    let (status, second) = bind_invert(&system, "rot", "new", rotate.clone());
    assert_eq!(status, 201, "{second}");
    assert_ne!(
        second["credentials"]["password"],
        first["credentials"]["password"]
    );
    assert_ne!(
        second["credentials"]["username"],
        first["credentials"]["username"]
    );
    let fetched = expect(&fetch_binding(&system, "rot", "new"), 200);
    assert_eq!(fetched["parameters"], json!({"size": 3}), "inherited");
    // Both work side by side, each until it expires or is deleted.
    let (old_uri, new_uri) = (
        uri_of(&first["credentials"]),
        uri_of(&second["credentials"]),
    );
    assert!(credentials_work(&old_uri) && credentials_work(&new_uri));

    // The same rotation again: 200 with the same binding, before and after the
    // predecessor is deleted.
    let (status, again) = bind_invert(&system, "rot", "new", rotate.clone());
    assert_eq!(
        (status, &again["credentials"]),
        (200, &second["credentials"])
    );
    let query = "?service_id=invert_service&plan_id=small_0001";
    let path = format!("{}{query}", binding_path("rot", "old"));
    assert_eq!(osb(&system, "DELETE", &path, None).status, 200);
    assert!(!credentials_work(&old_uri) && credentials_work(&new_uri));
    let (status, again) = bind_invert(&system, "rot", "new", rotate);
    assert_eq!(
        (status, &again["credentials"]),
        (200, &second["credentials"])
    );
}

#[test]
fn a_rotation_needs_a_live_predecessor_of_the_same_instance_on_a_rotatable_plan() {
    let system = start();
    expect(
        &osb(
            &system,
            "PUT",
            &instance_path("one"),
            Some(PROVISION_INVERT),
        ),
        201,
    );
    expect(
        &osb(
            &system,
            "PUT",
            &instance_path("two"),
            Some(PROVISION_INVERT),
        ),
        201,
    );
    assert_eq!(bind_invert(&system, "two", "theirs", json!({})).0, 201);

    for (predecessor, why) in [("missing", "does not exist"), ("theirs", "does not exist")] {
        let (status, refused) = bind_invert(
            &system,
            "one",
            "successor",
            json!({"predecessor_binding_id": predecessor}),
        );
        assert_eq!(status, 400, "{refused}");
        let description = refused["description"].as_str().unwrap_or_default();
        assert!(description.contains(why), "{description}");
    }

    // The Echo Service's plan does not declare binding_rotatable.
    provision_echo(&system, "fixed");
    bind_echo(&system, "fixed", "b");
    let body =
        json!({"service_id": "echo_service", "plan_id": "big_0001", "predecessor_binding_id": "b"});
    let reply = osb(
        &system,
        "PUT",
        &binding_path("fixed", "c"),
        Some(&body.to_string()),
    );
    let refused = expect_plain_error(&reply, 400);
    assert!(refused["description"]
        .as_str()
        .is_some_and(|d| d.contains("binding_rotatable")));
}

#[test]
fn instance_metadata_is_the_brokers_own_on_provision_update_and_fetch() {
    let system = start();
    let body = json!({"service_id": "echo_service", "plan_id": "big_0001",
        "organization_guid": "o", "space_guid": "s",
        "parameters": {"labels": {"team": "x"}}, "context": {"platform": "cloudfoundry", "labels": {"a": "b"}}});
    let provisioned = provision_with(&system, "meta", &body);
    let expected = json!({
        "labels": {"service": "echo_service", "plan": "big_0001"},
        "attributes": {"dashboard_url": provisioned["dashboard_url"]},
    });
    assert_eq!(provisioned["metadata"], expected);
    assert_eq!(instance(&system, "meta")["metadata"], expected);
    let update = json!({"service_id": "echo_service", "parameters": {"labels": {"team": "y"}}});
    let reply = osb(
        &system,
        "PATCH",
        &instance_path("meta"),
        Some(&update.to_string()),
    );
    assert_eq!(
        expect(&reply, 200)["metadata"],
        expected,
        "nothing the platform sent"
    );
}

/// Waits until `timestamp` (an `expires_at`) has passed.
fn wait_until_past(timestamp: &Value) {
    let moment = seconds_of(timestamp);
    while now() <= moment {
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_repeated_rotation_whose_predecessor_expired_since_is_200_with_the_same_binding() {
    // Ten seconds of life: the successor is made halfway through its predecessor's, so it
    // has five seconds left when the predecessor expires (slack for a loaded machine).
    let (system, _catalog) = system_with_lifetime("10s");
    expect(
        &osb(
            &system,
            "PUT",
            &instance_path("renewed"),
            Some(PROVISION_INVERT),
        ),
        201,
    );
    let (status, predecessor) = bind_invert(&system, "renewed", "c", json!({}));
    assert_eq!(status, 201, "{predecessor}");
    std::thread::sleep(Duration::from_secs(5));
    let rotate = json!({"predecessor_binding_id": "c"});
    let (status, successor) = bind_invert(&system, "renewed", "d", rotate.clone());
    assert_eq!(status, 201, "{successor}");

    wait_until_past(&predecessor["metadata"]["expires_at"]);
    let (status, again) = bind_invert(&system, "renewed", "d", rotate);
    assert!(
        now() < seconds_of(&successor["metadata"]["expires_at"]),
        "the successor outlived its predecessor: the machine was too slow to tell"
    );
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["credentials"], successor["credentials"]);
    assert_eq!(again["metadata"], successor["metadata"]);
}

#[test]
fn a_repeated_bind_of_a_binding_that_has_expired_is_409_saying_so() {
    let (system, _catalog) = system_with_lifetime("2s");
    expect(
        &osb(
            &system,
            "PUT",
            &instance_path("stale"),
            Some(PROVISION_INVERT),
        ),
        201,
    );
    let (status, bound) = bind_invert(&system, "stale", "b", json!({}));
    assert_eq!(status, 201, "{bound}");
    let (status, _) = bind_invert(&system, "stale", "b", json!({}));
    assert_eq!(status, 200, "an identical repeat while it lives");

    wait_until_past(&bound["metadata"]["expires_at"]);
    let body = json!({"service_id": "invert_service", "plan_id": "small_0001"});
    let reply = osb(
        &system,
        "PUT",
        &binding_path("stale", "b"),
        Some(&body.to_string()),
    );
    let refused = expect_plain_error(&reply, 409);
    assert!(
        refused["description"]
            .as_str()
            .is_some_and(|d| d.contains("expired")),
        "{refused}"
    );
    // The platform can still delete it, and bind anew under another id.
    let query = "?service_id=invert_service&plan_id=small_0001";
    let path = format!("{}{query}", binding_path("stale", "b"));
    assert_eq!(osb(&system, "DELETE", &path, None).status, 200);
    assert_eq!(bind_invert(&system, "stale", "b2", json!({})).0, 201);
}

#[test]
fn the_renewal_window_is_never_empty_even_for_a_lifetime_of_seconds() {
    for lifetime in ["1s", "4s"] {
        let (system, _catalog) = system_with_lifetime(lifetime);
        expect(
            &osb(
                &system,
                "PUT",
                &instance_path("brief"),
                Some(PROVISION_INVERT),
            ),
            201,
        );
        let (status, bound) = bind_invert(&system, "brief", "b", json!({}));
        assert_eq!(status, 201, "{bound}");
        let expires_at = seconds_of(&bound["metadata"]["expires_at"]);
        let renew_before = seconds_of(&bound["metadata"]["renew_before"]);
        assert!(
            renew_before < expires_at,
            "{lifetime}: renew_before is not before expires_at: {bound}"
        );
    }
}
