//! What every conformance module uses: requests as the platform sends them, each answer
//! checked against the spec's schema for its route and status before a test looks at it,
//! and short helpers for the lifecycle steps tests need as set-up.

use crate::common::{self, Reply, System};
use crate::schema::{self, Operation};
use serde_json::Value;

/// The broker with its embedded echo service; each test starts its own (tests run in
/// parallel and must not see each other's instances or log lines).
pub fn start() -> System {
    System::start()
}

/// A request with the platform's headers (the default credentials, API version 2.17).
pub fn osb(system: &System, method: &str, path: &str, body: Option<&str>) -> Reply {
    osb_with(system, method, path, &common::platform_headers(), body)
}

/// A request with exactly `headers`; the answer is checked like every other.
pub fn osb_with(
    system: &System,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let reply = common::call(method, &system.url(path), headers, body)
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
    check_reply(method, path, &reply);
    reply
}

/// The platform's headers plus `extra`, for tests of one header.
pub fn headers_plus<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut headers = common::platform_headers();
    headers.extend_from_slice(extra);
    headers
}

/// The platform's headers without any named `name`.
pub fn headers_without(name: &str) -> Vec<(&'static str, &'static str)> {
    common::platform_headers()
        .into_iter()
        .filter(|(key, _)| !key.eq_ignore_ascii_case(name))
        .collect()
}

/// The route a path belongs to, by the shape of its segments.
#[derive(Debug, PartialEq)]
enum Route {
    Health,
    Catalog,
    Instance,
    InstanceLastOperation,
    Binding,
    BindingLastOperation,
    Other,
}

fn route(path: &str) -> Route {
    let path = path.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["health"] => Route::Health,
        ["v2", "catalog"] => Route::Catalog,
        ["v2", "service_instances", _] => Route::Instance,
        ["v2", "service_instances", _, "last_operation"] => Route::InstanceLastOperation,
        ["v2", "service_instances", _, "service_bindings", _] => Route::Binding,
        ["v2", "service_instances", _, "service_bindings", _, "last_operation"] => {
            Route::BindingLastOperation
        }
        _ => Route::Other,
    }
}

/// Every answer: `Content-Type: application/json`, a JSON body, and the schema the spec
/// gives for this route, method and status. A synchronous broker never answers 202.
pub fn check_reply(method: &str, path: &str, reply: &Reply) {
    let context = format!("{method} {path} -> {} {}", reply.status, reply.text);
    assert_eq!(
        reply.header("Content-Type"),
        Some("application/json"),
        "every response is JSON: {context}"
    );
    assert_ne!(
        reply.status, 202,
        "a synchronous broker never answers 202: {context}"
    );
    let body: Value = serde_json::from_str(&reply.text)
        .unwrap_or_else(|_| panic!("the body is not JSON: {context}"));
    let route = route(path);
    let problems = match (reply.status, route, method) {
        (410, _, _) => {
            assert_eq!(body, serde_json::json!({}), "410's body is {{}}: {context}");
            Vec::new()
        }
        (400.., Route::Instance, "PATCH") => schema::check_error(&body, Operation::Update),
        (400.., Route::Instance, "DELETE") => schema::check_error(&body, Operation::Deprovision),
        (400.., _, _) => schema::check_error(&body, Operation::Other),
        (200, Route::Health, "GET") => {
            assert_eq!(body, serde_json::json!({"status": "ok"}), "{context}");
            Vec::new()
        }
        (200, Route::Catalog, "GET") => schema::check_catalog(&body),
        (200 | 201, Route::Instance, "PUT") => schema::check_provision_response(&body),
        (200, Route::Instance, "GET") => schema::check_instance_resource(&body),
        (200, Route::Instance, "PATCH") => schema::check_update_response(&body),
        (200, Route::Instance | Route::Binding, "DELETE") => schema::check_async_operation(&body),
        (200 | 201, Route::Binding, "PUT") => schema::check_binding_response(&body),
        (200, Route::Binding, "GET") => schema::check_binding_resource(&body),
        (200, Route::InstanceLastOperation | Route::BindingLastOperation, "GET") => {
            schema::check_last_operation(&body)
        }
        (status, route, method) => {
            panic!("no answer {status} is defined for {method} on {route:?}: {context}")
        }
    };
    assert!(
        problems.is_empty(),
        "the body does not fit the spec's schema: {problems:#?}\n{context}"
    );
}

/// The reply's status must be `status`; returns its JSON body (already schema-checked).
pub fn expect(reply: &Reply, status: u16) -> Value {
    assert_eq!(reply.status, status, "body: {}", reply.text);
    reply.json()
}

/// An update's error: the status, a description, and the two flags only update errors carry.
pub fn expect_update_error(reply: &Reply, status: u16) -> Value {
    let body = reply.assert_error(status);
    assert!(
        body["instance_usable"].is_boolean(),
        "update errors carry instance_usable: {}",
        reply.text
    );
    assert!(
        body["update_repeatable"].is_boolean(),
        "update errors carry update_repeatable: {}",
        reply.text
    );
    body
}

/// An error of any operation but update and deprovision: no update flags.
pub fn expect_plain_error(reply: &Reply, status: u16) -> Value {
    let body = reply.assert_error(status);
    assert!(
        body.get("instance_usable").is_none() && body.get("update_repeatable").is_none(),
        "only update errors carry instance_usable and update_repeatable: {}",
        reply.text
    );
    body
}

/// Percent-encodes an id for a path segment, as the broker does in the URLs it builds.
pub fn encode(id: &str) -> String {
    echo_broker::http::percent_encode(id)
}

pub fn instance_path(instance_id: &str) -> String {
    format!("/v2/service_instances/{}", encode(instance_id))
}

pub fn binding_path(instance_id: &str, binding_id: &str) -> String {
    format!(
        "/v2/service_instances/{}/service_bindings/{}",
        encode(instance_id),
        encode(binding_id)
    )
}

/// Provisions an echo_service instance (201); returns the body.
pub fn provision_echo(system: &System, instance_id: &str) -> Value {
    let reply = osb(
        system,
        "PUT",
        &instance_path(instance_id),
        Some(common::PROVISION_ECHO),
    );
    expect(&reply, 201)
}

/// Provisions with `body` (201); returns the body.
pub fn provision_with(system: &System, instance_id: &str, body: &Value) -> Value {
    let reply = osb(
        system,
        "PUT",
        &instance_path(instance_id),
        Some(&body.to_string()),
    );
    expect(&reply, 201)
}

/// Binds the walk-through's app to an echo_service instance (201); returns the credentials.
pub fn bind_echo(system: &System, instance_id: &str, binding_id: &str) -> Value {
    let reply = osb(
        system,
        "PUT",
        &binding_path(instance_id, binding_id),
        Some(common::BIND_ECHO),
    );
    expect(&reply, 201)["credentials"].clone()
}

/// `GET` of an instance: its status and body.
pub fn fetch_instance(system: &System, instance_id: &str) -> Reply {
    osb(system, "GET", &instance_path(instance_id), None)
}

/// `GET` of a binding: its status and body.
pub fn fetch_binding(system: &System, instance_id: &str, binding_id: &str) -> Reply {
    osb(system, "GET", &binding_path(instance_id, binding_id), None)
}

/// The instance as fetched; panics unless it exists.
pub fn instance(system: &System, instance_id: &str) -> Value {
    expect(&fetch_instance(system, instance_id), 200)
}

/// `credentials.uri` of a bind or fetch body.
pub fn uri_of(credentials: &Value) -> String {
    credentials["uri"]
        .as_str()
        .unwrap_or_else(|| panic!("credentials.uri is a string: {credentials}"))
        .to_string()
}

/// Whether a binding's credentials let a bound app post a message.
pub fn credentials_work(uri: &str) -> bool {
    let reply = common::post_message(uri, "ping");
    match reply.status {
        200 => true,
        401 | 404 => false,
        other => panic!("posting to {uri}: unexpected {other} {}", reply.text),
    }
}

/// The embedded catalog's echo_service ids as a query string, with `extra` appended.
pub fn echo_query(extra: &str) -> String {
    format!("?{}{extra}", common::ECHO_IDS)
}

/// A catalog file of the test's own, in a temp dir that lives as long as the result.
pub fn catalog_file(toml: &str) -> (common::TempDir, String) {
    let dir = common::TempDir::new("catalog");
    let path = dir.path().join("catalog.toml");
    std::fs::write(&path, toml).expect("the catalog file is written");
    let path = path.display().to_string();
    (dir, path)
}

#[test]
fn routes_are_recognised_by_shape() {
    assert_eq!(route("/v2/catalog"), Route::Catalog);
    assert_eq!(route("/v2/service_instances/a%2Fb?x=1"), Route::Instance);
    assert_eq!(
        route("/v2/service_instances/a/last_operation"),
        Route::InstanceLastOperation
    );
    assert_eq!(
        route("/v2/service_instances/a/service_bindings/b"),
        Route::Binding
    );
    assert_eq!(
        route("/v2/service_instances/a/service_bindings/b/last_operation"),
        Route::BindingLastOperation
    );
    assert_eq!(route("/v2/nothing"), Route::Other);
    assert_eq!(encode("a b/ü~"), "a%20b%2F%C3%BC~");
}
