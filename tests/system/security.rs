//! Authentication that means something, and ids that cannot reach another resource: the
//! broker's credentials, the echo service's management credentials, per-binding
//! credentials, the dashboard token, and hostile ids.

use crate::common::*;

fn provision_and_bind(system: &System, instance_id: &str, binding_id: &str) -> serde_json::Value {
    let encoded = echo_broker::http::percent_encode(instance_id);
    let provisioned = platform(
        "PUT",
        &system.url(&format!("/v2/service_instances/{encoded}")),
        Some(PROVISION_ECHO),
    );
    assert_eq!(provisioned.status, 201, "{}", provisioned.text);
    let url = format!("/v2/service_instances/{encoded}/service_bindings/{binding_id}");
    let bound = platform("PUT", &system.url(&url), Some(BIND_ECHO));
    assert_eq!(bound.status, 201, "{}", bound.text);
    bound.json()["credentials"].clone()
}

#[test]
fn the_401_body_is_the_same_whichever_half_of_the_credentials_is_wrong() {
    let system = System::start();
    let answer = |authorization: &str| {
        let headers = [
            ("Authorization", authorization),
            ("X-Broker-API-Version", "2.17"),
        ];
        call("GET", &system.url("/v2/catalog"), &headers, None).expect("the broker answers")
    };
    let wrong_user = answer(&echo_broker::http::basic_authorization("someone", PASSWORD));
    let wrong_password = answer(&echo_broker::http::basic_authorization(USER, "guess"));
    wrong_user.assert_error(401);
    wrong_password.assert_error(401);
    assert_eq!(wrong_user.text, wrong_password.text);
    assert!(wrong_user
        .header("WWW-Authenticate")
        .is_some_and(|value| value.starts_with("Basic")));
    for malformed in [
        "Basic !!!",
        "Basic dXNlcnBhc3M=",
        "Basic /w==",
        "Digest abc",
        "Basic",
    ] {
        answer(malformed).assert_error(401);
    }
}

#[test]
fn configured_broker_credentials_replace_the_default_pair() {
    let system = System::start_with(&[
        ("BROKER_USERNAME", "platform"),
        ("BROKER_PASSWORD", "s3cret-broker"),
        ("HOST", "127.0.0.1"),
    ]);
    platform("GET", &system.url("/v2/catalog"), None).assert_error(401);
    let headers = [
        (
            "Authorization",
            echo_broker::http::basic_authorization("platform", "s3cret-broker"),
        ),
        ("X-Broker-API-Version", "2.17".to_string()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let reply =
        call("GET", &system.url("/v2/catalog"), &headers, None).expect("the broker answers");
    assert_eq!(reply.status, 200);
}

#[test]
fn the_echo_management_api_refuses_callers_without_the_brokers_credentials() {
    let system = System::start();
    for (method, path) in [
        ("PUT", "/echo/x"),
        ("GET", "/echo/x"),
        ("DELETE", "/echo/x"),
        ("PUT", "/echo/x/y"),
        ("GET", "/echo"),
    ] {
        let reply = call(
            method,
            &format!("{}{path}", system.echo_url),
            &[],
            Some("{}"),
        )
        .expect("echo answers");
        reply.assert_error(401);
    }
}

#[test]
fn the_echo_service_refuses_to_start_open_on_a_non_loopback_address() {
    let data = TempDir::new("open");
    let data_dir = data.path().display().to_string();
    let port = free_port().to_string();
    let env = [
        ("PORT", port.as_str()),
        ("HOST", "0.0.0.0"),
        ("DATA_DIR", data_dir.as_str()),
    ];
    let (code, output) = run_to_end(ECHO_SERVICE, &[], &env);
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("HOST") && output.contains("ECHO_USERNAME"),
        "{output}"
    );
}

#[test]
fn a_standalone_echo_service_with_credentials_requires_them() {
    let data = TempDir::new("standalone");
    let data_dir = data.path().display().to_string();
    let env = [
        ("HOST", "127.0.0.1"),
        ("ECHO_USERNAME", "broker"),
        ("ECHO_PASSWORD", "echo-secret"),
        ("DATA_DIR", data_dir.as_str()),
    ];
    let echo = Process::start(ECHO_SERVICE, free_port(), &env);
    call("PUT", &format!("{}/echo/x", echo.url), &[], None)
        .expect("echo answers")
        .assert_error(401);
    let authorization = echo_broker::http::basic_authorization("broker", "echo-secret");
    let reply = call(
        "PUT",
        &format!("{}/echo/x", echo.url),
        &[("Authorization", &authorization)],
        None,
    )
    .expect("echo answers");
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[test]
fn a_binding_is_usable_only_with_its_own_credentials_and_not_after_unbind() {
    let system = System::start();
    let first = provision_and_bind(&system, "secured", "first");
    let url = "/v2/service_instances/secured/service_bindings/second";
    let second = platform("PUT", &system.url(url), Some(BIND_ECHO)).json()["credentials"].clone();
    assert_ne!(first["password"], second["password"]);

    let first_uri = first["uri"].as_str().expect("uri");
    let (bare_uri, _) = split_userinfo(first_uri);
    assert_eq!(post_message(first_uri, "mine").status, 200);
    let json = [("Content-Type", "application/json")];
    call("POST", &bare_uri, &json, Some(r#"{"message": "x"}"#))
        .expect("echo answers")
        .assert_error(401);
    let others = echo_broker::http::basic_authorization(
        second["username"].as_str().unwrap_or(""),
        second["password"].as_str().unwrap_or(""),
    );
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", others.as_str()),
    ];
    call("POST", &bare_uri, &headers, Some(r#"{"message": "x"}"#))
        .expect("echo answers")
        .assert_error(401);

    let unbind = format!("/v2/service_instances/secured/service_bindings/first?{ECHO_IDS}");
    assert_eq!(platform("DELETE", &system.url(&unbind), None).status, 200);
    assert_eq!(post_message(first_uri, "revoked?").status, 401);
}

/// Without credentials, a message to a binding that exists, to one that does not, and to an
/// instance that does not, all get the same 401: nobody learns what exists.
#[test]
fn an_unauthenticated_message_is_a_401_whether_or_not_the_binding_exists() {
    let system = System::start();
    let credentials = provision_and_bind(&system, "known", "bound");
    let (bound_uri, _) = split_userinfo(credentials["uri"].as_str().expect("uri"));
    let elsewhere = |path: &str| bound_uri.replace("/echo/known/bound", path);
    let json = [("Content-Type", "application/json")];
    let answers: Vec<(u16, String, Option<String>)> = [
        bound_uri.clone(),
        elsewhere("/echo/known/unknown"),
        elsewhere("/echo/unknown/unknown"),
    ]
    .iter()
    .map(|uri| {
        let reply = call("POST", uri, &json, Some(r#"{"message": "x"}"#)).expect("echo answers");
        let challenge = reply
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("WWW-Authenticate"))
            .map(|(_, value)| value.clone());
        (reply.status, reply.text, challenge)
    })
    .collect();
    assert_eq!(answers[0].0, 401, "{answers:?}");
    assert!(answers[0].2.is_some(), "{answers:?}");
    assert!(
        answers.iter().all(|answer| *answer == answers[0]),
        "{answers:?}"
    );
}

#[test]
fn the_dashboard_is_not_readable_by_instance_id_alone() {
    let system = System::start();
    let provisioned = platform(
        "PUT",
        &system.url("/v2/service_instances/private"),
        Some(PROVISION_ECHO),
    );
    let dashboard_url = provisioned.json()["dashboard_url"]
        .as_str()
        .expect("dashboard_url")
        .to_string();
    let (without_token, _) = dashboard_url
        .split_once('?')
        .expect("the URL carries a token");
    assert_eq!(
        call("GET", without_token, &[], None)
            .expect("echo answers")
            .status,
        404
    );
    let wrong = format!("{without_token}?token=00000000000000000000000000000000");
    assert_eq!(
        call("GET", &wrong, &[], None).expect("echo answers").status,
        404
    );
    assert_eq!(
        call("GET", &dashboard_url, &[], None)
            .expect("echo answers")
            .status,
        200
    );
}

#[test]
fn hostile_ids_stay_one_resource_and_are_escaped_in_the_dashboard() {
    let system = System::start();
    for instance_id in [
        "%2e%2e",
        "%2F",
        "...",
        "<img src=x onerror=alert(1)>",
        "é ü",
        "x?y#z",
    ] {
        let credentials = provision_and_bind(&system, instance_id, "b");
        let encoded = echo_broker::http::percent_encode(instance_id);
        let uri = credentials["uri"].as_str().expect("uri");
        assert!(uri.ends_with(&format!("/echo/{encoded}/b")), "{uri}");
        assert_eq!(post_message(uri, "hi").json()["response"], "hi");

        let fetched = platform(
            "GET",
            &system.url(&format!("/v2/service_instances/{encoded}")),
            None,
        );
        let dashboard_url = fetched.json()["dashboard_url"]
            .as_str()
            .expect("dashboard_url")
            .to_string();
        assert!(
            dashboard_url.contains(&format!("/echo/dashboard/{encoded}?")),
            "{dashboard_url}"
        );
        let page = call("GET", &dashboard_url, &[], None).expect("echo answers");
        assert_eq!(page.status, 200);
        assert!(!page.text.contains("<img"), "unescaped id in {}", page.text);
    }
    // None of them reached a neighbour: "x" and "b" were never provisioned.
    for neighbour in ["x", "b"] {
        assert_eq!(
            platform(
                "GET",
                &system.url(&format!("/v2/service_instances/{neighbour}")),
                None
            )
            .status,
            404
        );
    }
}

/// Ids that a proxy in front of the echo service would read as a path step are refused
/// before any call to it, with a 400 that says why, on every route that sends an id on;
/// nothing is made, and nothing else is reached.
#[test]
fn ids_a_proxy_reads_as_path_steps_are_refused_with_400_on_every_route() {
    let system = System::start_with_known_echo_credentials(&[]);
    assert_eq!(
        platform(
            "PUT",
            &system.url("/v2/service_instances/kept"),
            Some(PROVISION_ECHO)
        )
        .status,
        201
    );
    for id in [".", "..", "../../etc", "a/b", "x/../kept", "a\\b"] {
        let encoded = echo_broker::http::percent_encode(id);
        let instance = system.url(&format!("/v2/service_instances/{encoded}"));
        let binding = system.url(&format!(
            "/v2/service_instances/kept/service_bindings/{encoded}"
        ));
        let ids = format!("?{ECHO_IDS}");
        for (method, url, body) in [
            ("PUT", instance.clone(), Some(PROVISION_ECHO)),
            ("GET", instance.clone(), None),
            (
                "PATCH",
                instance.clone(),
                Some(r#"{"service_id": "echo_service"}"#),
            ),
            ("DELETE", format!("{instance}{ids}"), None),
            ("GET", format!("{instance}/last_operation"), None),
            ("PUT", binding.clone(), Some(BIND_ECHO)),
            ("GET", binding.clone(), None),
            ("DELETE", format!("{binding}{ids}"), None),
        ] {
            let reply = platform(method, &url, body);
            reply.assert_error(400);
            let description = reply.json()["description"]
                .as_str()
                .unwrap_or("")
                .to_string();
            assert!(
                description.contains("proxy") && description.contains(&format!("'{id}'")),
                "{method} {url}: {description}"
            );
        }
    }
    // "kept" is as it was: no binding reached it, no deprovision.
    let kept = platform("GET", &system.url("/v2/service_instances/kept"), None);
    assert_eq!(kept.status, 200, "{}", kept.text);
    let authorization = echo_broker::http::basic_authorization("broker", "echo-secret");
    let totals = call(
        "GET",
        &format!("{}/echo", system.echo_url),
        &[("Authorization", &authorization)],
        None,
    )
    .expect("the echo service answers");
    assert_eq!(totals.json()["instances"], 1, "{}", totals.text);
    assert_eq!(totals.json()["bindings"], 0, "{}", totals.text);
}

#[test]
fn ids_that_are_too_long_or_carry_control_characters_are_refused() {
    let system = System::start();
    let too_long = "x".repeat(256);
    let with_newline = echo_broker::http::percent_encode("a\nb");
    for instance_id in [too_long.as_str(), with_newline.as_str(), "%00"] {
        let url = system.url(&format!("/v2/service_instances/{instance_id}"));
        platform("PUT", &url, Some(PROVISION_ECHO)).assert_error(400);
    }
    let just_fits = "x".repeat(255);
    let url = system.url(&format!("/v2/service_instances/{just_fits}"));
    assert_eq!(platform("PUT", &url, Some(PROVISION_ECHO)).status, 201);
}

#[test]
fn malformed_bodies_are_400_with_a_description() {
    let system = System::start();
    let url = system.url("/v2/service_instances/bodies");
    let deep = format!(
        "{{\"parameters\": {}1{}}}",
        "{\"a\":".repeat(200),
        "}".repeat(200)
    );
    let duplicate = r#"{"service_id": "echo_service", "service_id": "invert_service", "plan_id": "big_0001", "organization_guid": "o", "space_guid": "s"}"#;
    let wrong_type = r#"{"service_id": ["echo_service"], "plan_id": "big_0001", "organization_guid": "o", "space_guid": "s"}"#;
    for body in [deep.as_str(), duplicate, wrong_type, "{", "[]", "\"text\""] {
        platform("PUT", &url, Some(body)).assert_error(400);
    }
    let headers = platform_headers();
    let invalid_utf8 =
        call_bytes("PUT", &url, &headers, b"{\"service_id\": \"\xff\xfe\"}").expect("answers");
    invalid_utf8.assert_error(400);
    assert_eq!(
        platform("GET", &url, None).status,
        404,
        "nothing was provisioned"
    );
}

/// Like the broker, the echo service parses the body whatever its `Content-Type`: curl's
/// `-d` alone sends `application/x-www-form-urlencoded`, and a missing type is common.
#[test]
fn a_message_without_a_json_content_type_is_still_echoed() {
    let system = System::start();
    let credentials = provision_and_bind(&system, "any-type", "app");
    let (bare_uri, authorization) = split_userinfo(credentials["uri"].as_str().expect("uri"));
    let authorization = authorization.expect("the uri carries credentials");
    for content_type in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
    ] {
        let mut headers = vec![("Authorization", authorization.as_str())];
        if let Some(content_type) = content_type {
            headers.push(("Content-Type", content_type));
        }
        let reply = call("POST", &bare_uri, &headers, Some(r#"{"message": "typed"}"#))
            .expect("echo answers");
        assert_eq!(reply.status, 200, "{content_type:?}: {}", reply.text);
        assert_eq!(reply.json()["response"], "typed");
    }
}
