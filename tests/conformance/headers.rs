//! Spec sections "Headers" (API Version Header, Originating Identity, Request Identity),
//! "Platform to Service Broker Authentication" and "Content Type", plus the routing answers
//! every endpoint shares (404 unknown path, 405 wrong method) and the health check.

use crate::common::{self, System, PROVISION_ECHO};
use crate::support::*;
use base64::Engine;

const VERSION: &str = "X-Broker-API-Version";
const ORIGINATING_IDENTITY: &str = "X-Broker-API-Originating-Identity";
const REQUEST_IDENTITY: &str = "X-Broker-API-Request-Identity";

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The broker's log line for the request that carried `request_identity`.
fn log_line_of(system: &System, request_identity: &str) -> String {
    let log = system.broker.log();
    // The embedded echo service logs the forwarded identity too: take the broker's line.
    log.lines()
        .find(|line| line.contains(request_identity) && line.contains("[broker]"))
        .unwrap_or_else(|| panic!("no log line has {request_identity}; the log:\n{log}"))
        .to_string()
}

// --- API Version Header ------------------------------------------------------------------

#[test]
fn missing_version_header_returns_400_with_description() {
    let system = start();
    for (method, path) in [
        ("GET", "/v2/catalog".to_string()),
        ("GET", instance_path("v-missing")),
    ] {
        let reply = osb_with(&system, method, &path, &headers_without(VERSION), None);
        let body = expect_plain_error(&reply, 400);
        assert!(
            body["description"].as_str().unwrap_or("").contains(VERSION),
            "the description names the header: {}",
            reply.text
        );
    }
}

#[test]
fn empty_unparseable_or_unsupported_versions_return_412() {
    let system = start();
    for version in ["", "abc", "2", "2.x", "1.0", "2.2", "3.0", "3.17"] {
        let mut headers = headers_without(VERSION);
        headers.push((VERSION, version));
        let reply = osb_with(&system, "GET", "/v2/catalog", &headers, None);
        assert_eq!(reply.status, 412, "version '{version}': {}", reply.text);
        expect_plain_error(&reply, 412);
    }
}

#[test]
fn versions_from_2_3_on_are_accepted() {
    let system = start();
    for version in ["2.3", "2.15", "2.17", "2.99"] {
        let mut headers = headers_without(VERSION);
        headers.push((VERSION, version));
        let reply = osb_with(&system, "GET", "/v2/catalog", &headers, None);
        assert_eq!(reply.status, 200, "version '{version}': {}", reply.text);
    }
}

#[test]
fn version_header_is_checked_before_the_body() {
    let system = start();
    let reply = osb_with(
        &system,
        "PUT",
        &instance_path("v-before-body"),
        &headers_without(VERSION),
        Some("{not json"),
    );
    let body = expect_plain_error(&reply, 400);
    assert!(
        body["description"].as_str().unwrap_or("").contains(VERSION),
        "the 400 is about the header, not the body: {}",
        reply.text
    );
    let mut old = headers_without(VERSION);
    old.push((VERSION, "1.0"));
    let reply = osb_with(
        &system,
        "PUT",
        &instance_path("v-before-body"),
        &old,
        Some("{not json"),
    );
    expect_plain_error(&reply, 412);
    assert_eq!(fetch_instance(&system, "v-before-body").status, 404);
}

// --- Platform to Service Broker Authentication ---------------------------------------------

#[test]
fn missing_credentials_return_401_with_www_authenticate_basic() {
    let system = start();
    let reply = osb_with(
        &system,
        "GET",
        "/v2/catalog",
        &headers_without("Authorization"),
        None,
    );
    expect_plain_error(&reply, 401);
    let challenge = reply.header("WWW-Authenticate").unwrap_or("");
    assert!(
        challenge.starts_with("Basic "),
        "WWW-Authenticate: {challenge}"
    );
}

#[test]
fn wrong_user_and_wrong_password_get_the_same_401() {
    let system = start();
    let answer = |authorization: Option<String>| {
        let mut headers = headers_without("Authorization");
        if let Some(value) = &authorization {
            headers.push(("Authorization", value.as_str()));
        }
        let reply = osb_with(&system, "GET", "/v2/catalog", &headers, None);
        expect_plain_error(&reply, 401);
        assert!(reply
            .header("WWW-Authenticate")
            .is_some_and(|v| v.starts_with("Basic ")));
        reply.text
    };
    let wrong_user = answer(Some(format!("Basic {}", b64("someone:pass"))));
    let wrong_password = answer(Some(format!("Basic {}", b64("user:wrong"))));
    let both_wrong = answer(Some(format!("Basic {}", b64("someone:wrong"))));
    let missing = answer(None);
    assert_eq!(
        wrong_user, wrong_password,
        "the body says nothing of which half was wrong"
    );
    assert_eq!(wrong_user, both_wrong);
    assert_eq!(wrong_user, missing);
}

#[test]
fn malformed_authorization_returns_401() {
    let system = start();
    for authorization in [
        "Basic !!!not-base64!!!".to_string(),
        format!("Basic {}", b64("userpass")), // no colon
        "Basic /w==".to_string(),             // not UTF-8
        "Basic".to_string(),
        format!("Bearer {}", b64("user:pass")),
        "dXNlcjpwYXNz".to_string(),
    ] {
        let mut headers = headers_without("Authorization");
        headers.push(("Authorization", authorization.as_str()));
        let reply = osb_with(&system, "GET", "/v2/catalog", &headers, None);
        assert_eq!(reply.status, 401, "{authorization}: {}", reply.text);
        expect_plain_error(&reply, 401);
    }
}

#[test]
fn credentials_are_checked_before_the_body() {
    let system = start();
    let mut headers = headers_without("Authorization");
    let wrong = format!("Basic {}", b64("user:wrong"));
    headers.push(("Authorization", wrong.as_str()));
    let reply = osb_with(
        &system,
        "PUT",
        &instance_path("auth-before-body"),
        &headers,
        Some("{not json"),
    );
    expect_plain_error(&reply, 401);
    let reply = osb_with(
        &system,
        "PUT",
        &instance_path("auth-before-body"),
        &headers,
        Some(PROVISION_ECHO),
    );
    expect_plain_error(&reply, 401);
    assert_eq!(
        fetch_instance(&system, "auth-before-body").status,
        404,
        "a refused request provisions nothing"
    );
}

// --- Originating Identity ----------------------------------------------------------------

#[test]
fn originating_identity_is_accepted_and_its_user_is_logged() {
    let system = start();
    let user_id = "683ea748-3092-4ff4-b656-39cacc4d5360";
    let identity = format!(
        "cloudfoundry {}",
        b64(&format!(r#"{{"user_id":"{user_id}"}}"#))
    );
    let request_identity = "req-originating-identity-1";
    let headers = headers_plus(&[
        (ORIGINATING_IDENTITY, identity.as_str()),
        (REQUEST_IDENTITY, request_identity),
    ]);
    let reply = osb_with(
        &system,
        "PUT",
        &instance_path("oi-1"),
        &headers,
        Some(PROVISION_ECHO),
    );
    expect(&reply, 201);
    let line = log_line_of(&system, request_identity);
    assert!(
        line.contains(user_id),
        "the log line names the user: {line}"
    );
}

#[test]
fn originating_identity_of_other_platforms_is_accepted() {
    let system = start();
    let identity = format!(
        "kubernetes {}",
        b64(r#"{"username":"duke","uid":"c2dde242"}"#)
    );
    let headers = headers_plus(&[(ORIGINATING_IDENTITY, identity.as_str())]);
    let reply = osb_with(&system, "GET", "/v2/catalog", &headers, None);
    expect(&reply, 200);
}

#[test]
fn malformed_originating_identity_returns_400_with_description() {
    let system = start();
    let object = b64(r#"{"user_id":"u"}"#);
    for identity in [
        format!("cloudfoundry{object}"),             // no space
        "cloudfoundry !!!not-base64!!!".to_string(), // bad base64
        format!("cloudfoundry {}", b64("[1, 2]")),   // JSON, not an object
        format!("cloudfoundry {}", b64("\"user\"")), // JSON, not an object
        format!("cloudfoundry {}", b64("not json")), // not JSON
        format!(" {object}"),                        // empty platform
        object.clone(),                              // the value alone
    ] {
        let headers = headers_plus(&[(ORIGINATING_IDENTITY, identity.as_str())]);
        let reply = osb_with(
            &system,
            "PUT",
            &instance_path("oi-bad"),
            &headers,
            Some(PROVISION_ECHO),
        );
        assert_eq!(reply.status, 400, "'{identity}': {}", reply.text);
        let body = expect_plain_error(&reply, 400);
        assert!(
            body["description"]
                .as_str()
                .unwrap_or("")
                .contains(ORIGINATING_IDENTITY),
            "the description names the header: {}",
            reply.text
        );
    }
    assert_eq!(
        fetch_instance(&system, "oi-bad").status,
        404,
        "a refused request provisions nothing"
    );
}

// --- Request Identity --------------------------------------------------------------------

#[test]
fn request_identity_is_echoed_on_the_response_and_logged() {
    let system = start();
    let identity = "e26cea0c-e2b1-4e4a-9b2a-7f5d3c1d8e11";
    let headers = headers_plus(&[(REQUEST_IDENTITY, identity)]);
    let reply = osb_with(&system, "GET", "/v2/catalog", &headers, None);
    expect(&reply, 200);
    assert_eq!(reply.header(REQUEST_IDENTITY), Some(identity));
    let line = log_line_of(&system, identity);
    assert!(line.contains("/v2/catalog"), "{line}");
}

#[test]
fn request_identity_is_echoed_on_error_responses() {
    let system = start();
    let identity = "req-on-errors";
    let with = |mut headers: Vec<(&'static str, &'static str)>| {
        headers.push((REQUEST_IDENTITY, identity));
        headers
    };
    let cases = [
        (
            "GET",
            "/v2/nowhere".to_string(),
            with(common::platform_headers()),
            404,
        ),
        (
            "POST",
            "/v2/catalog".to_string(),
            with(common::platform_headers()),
            405,
        ),
        (
            "GET",
            "/v2/catalog".to_string(),
            with(headers_without("Authorization")),
            401,
        ),
        (
            "GET",
            "/v2/catalog".to_string(),
            with(headers_without(VERSION)),
            400,
        ),
        (
            "GET",
            instance_path("ri-missing"),
            with(common::platform_headers()),
            404,
        ),
    ];
    for (method, path, headers, status) in cases {
        let reply = osb_with(&system, method, &path, &headers, None);
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text);
        assert_eq!(
            reply.header(REQUEST_IDENTITY),
            Some(identity),
            "{method} {path} echoes the request identity"
        );
    }
    let reply = osb_with(
        &system,
        "PUT",
        &instance_path("ri-bad"),
        &with(common::platform_headers()),
        Some("[]"),
    );
    expect_plain_error(&reply, 400);
    assert_eq!(reply.header(REQUEST_IDENTITY), Some(identity));
}

#[test]
fn responses_without_a_request_identity_carry_none() {
    let system = start();
    let reply = osb(&system, "GET", "/v2/catalog", None);
    expect(&reply, 200);
    assert_eq!(reply.header(REQUEST_IDENTITY), None);
}

// --- Content Type, routing, health ---------------------------------------------------------

#[test]
fn every_response_has_content_type_application_json() {
    // `osb` checks Content-Type on every answer; this walks one of each kind.
    let system = start();
    let id = "ct-1";
    let ids = echo_query("");
    let replies = [
        osb(&system, "GET", "/v2/catalog", None),
        osb(&system, "PUT", &instance_path(id), Some(PROVISION_ECHO)),
        osb(&system, "PUT", &instance_path(id), Some(PROVISION_ECHO)),
        osb(&system, "GET", &instance_path(id), None),
        osb(
            &system,
            "PATCH",
            &instance_path(id),
            Some(r#"{"service_id":"echo_service"}"#),
        ),
        osb(
            &system,
            "GET",
            &format!("{}/last_operation", instance_path(id)),
            None,
        ),
        osb(
            &system,
            "PUT",
            &binding_path(id, "b"),
            Some(common::BIND_ECHO),
        ),
        osb(&system, "GET", &binding_path(id, "b"), None),
        osb(
            &system,
            "DELETE",
            &format!("{}{ids}", binding_path(id, "b")),
            None,
        ),
        osb(
            &system,
            "DELETE",
            &format!("{}{ids}", binding_path(id, "b")),
            None,
        ),
        osb(
            &system,
            "DELETE",
            &format!("{}{ids}", instance_path(id)),
            None,
        ),
        osb(
            &system,
            "DELETE",
            &format!("{}{ids}", instance_path(id)),
            None,
        ),
        osb(&system, "GET", "/v2/nowhere", None),
    ];
    let statuses: Vec<u16> = replies.iter().map(|reply| reply.status).collect();
    assert_eq!(
        statuses,
        [200, 201, 200, 200, 200, 200, 201, 200, 200, 410, 200, 410, 404]
    );
    for reply in &replies {
        assert_eq!(reply.header("Content-Type"), Some("application/json"));
    }
}

#[test]
fn unknown_paths_return_404() {
    let system = start();
    for path in [
        "/v2",
        "/v2/nowhere",
        "/v3/catalog",
        "/v2/catalog/extra",
        "/v2/service_instances",
        "/v2/service_instances/i/service_bindings",
        "/v2/service_instances/i/unknown",
        "/v2/service_instances/i/service_bindings/b/extra",
    ] {
        let reply = osb(&system, "GET", path, None);
        assert_eq!(reply.status, 404, "GET {path}: {}", reply.text);
        expect_plain_error(&reply, 404);
    }
}

#[test]
fn known_paths_with_wrong_methods_return_405() {
    let system = start();
    for (method, path, allow) in [
        ("POST", "/v2/catalog", "GET"),
        ("PUT", "/v2/catalog", "GET"),
        ("DELETE", "/v2/catalog", "GET"),
        ("POST", "/v2/service_instances/i", "GET, PUT, PATCH, DELETE"),
        (
            "PATCH",
            "/v2/service_instances/i/service_bindings/b",
            "GET, PUT, DELETE",
        ),
        (
            "POST",
            "/v2/service_instances/i/service_bindings/b",
            "GET, PUT, DELETE",
        ),
        ("PUT", "/v2/service_instances/i/last_operation", "GET"),
        (
            "DELETE",
            "/v2/service_instances/i/service_bindings/b/last_operation",
            "GET",
        ),
        ("POST", "/health", "GET"),
    ] {
        let reply = osb(&system, method, path, Some("{}"));
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text);
        expect_plain_error(&reply, 405);
        assert_eq!(
            reply.header("Allow"),
            Some(allow),
            "a 405 names the methods the path answers (RFC 9110): {method} {path}"
        );
    }
}

#[test]
fn health_answers_200_without_credentials_or_version() {
    let system = start();
    let reply = osb_with(&system, "GET", "/health", &[], None);
    assert_eq!(
        (reply.status, reply.json()),
        (200, serde_json::json!({"status": "ok"}))
    );
}
