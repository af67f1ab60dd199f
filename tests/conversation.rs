//! The conversation page (`GET /`), its JSON, `/metrics` and the debug logs: what the
//! platform said and what the broker answered, with nothing secret in any of them.

mod common;
use common::*;

const PAGE_CREDENTIALS: (&str, &str) = ("Authorization", "Basic dXNlcjpwYXNz");

fn page(system: &System, path: &str) -> Reply {
    call("GET", &system.url(path), &[PAGE_CREDENTIALS], None).expect("the broker answers")
}

/// A full lifecycle, with the secrets every answer carried.
fn lifecycle(system: &System, instance_id: &str) -> Vec<String> {
    let headers = [
        ("Authorization", "Basic dXNlcjpwYXNz"),
        ("X-Broker-API-Version", "2.17"),
        ("X-Broker-API-Request-Identity", "conversation-1"),
        (
            "X-Broker-API-Originating-Identity",
            // {"user_id": "jane"}
            "cloudfoundry eyJ1c2VyX2lkIjogImphbmUifQ==",
        ),
    ];
    let send = |method: &str, path: &str, body: Option<&str>| {
        call(method, &system.url(path), &headers, body).expect("the broker answers")
    };
    let instance = format!("/v2/service_instances/{instance_id}");
    let binding = format!("{instance}/service_bindings/b-1");
    let mut secrets = vec!["secret-1".to_string()]; // the catalog's dashboard client
    let provisioned = send("PUT", &instance, Some(PROVISION_ECHO));
    assert_eq!(provisioned.status, 201, "{}", provisioned.text);
    let dashboard_url = provisioned.json()["dashboard_url"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let token = dashboard_url
        .split("token=")
        .nth(1)
        .expect("a dashboard token");
    secrets.push(token.to_string());
    let bound = send("PUT", &binding, Some(BIND_ECHO));
    assert_eq!(bound.status, 201, "{}", bound.text);
    let credentials = &bound.json()["credentials"];
    let password = credentials["password"].as_str().expect("a password");
    secrets.push(password.to_string());
    assert_eq!(
        post_message(credentials["uri"].as_str().unwrap_or(""), "hello").status,
        200
    );
    assert_eq!(send("GET", "/v2/catalog", None).status, 200);
    assert_eq!(send("GET", &binding, None).status, 200);
    let ids = format!("?{ECHO_IDS}");
    assert_eq!(send("DELETE", &format!("{binding}{ids}"), None).status, 200);
    assert_eq!(
        send("DELETE", &format!("{instance}{ids}"), None).status,
        200
    );
    secrets
}

#[test]
fn the_page_shows_the_conversation_newest_first_with_no_secret_in_it() {
    let system = System::start();
    let secrets = lifecycle(&system, "conv-1");

    let html = page(&system, "/");
    assert_eq!(html.status, 200, "{}", html.text);
    assert_eq!(
        html.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let policy = html.header("Content-Security-Policy").unwrap_or("");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert_eq!(tag_balance_problem(&html.text), None);
    assert!(!html.text.contains("<script"), "no script is needed");
    for shown in [
        "PUT /v2/service_instances/conv-1 ",
        "<code>provision</code>",
        "spec.md#provisioning",
        "<code>conversation-1</code>",
        "<code>jane</code>",
        "<code>2.17</code>",
        "&quot;organization_guid&quot;: &quot;HP&quot;",
    ] {
        assert!(html.text.contains(shown), "{shown} is not on the page");
    }
    let newest = html
        .text
        .find("DELETE /v2/service_instances/conv-1?")
        .expect("deprovision");
    let oldest = html
        .text
        .find("PUT /v2/service_instances/conv-1 ")
        .expect("provision");
    assert!(newest < oldest, "newest first");

    let json = page(&system, "/?format=json").json();
    let exchanges = json["exchanges"].as_array().expect("exchanges");
    assert_eq!(exchanges.len(), 6, "{json}");
    assert_eq!(exchanges[5]["handler"], "provision");
    assert_eq!(exchanges[5]["status"], 201);
    assert_eq!(exchanges[5]["user"], "jane");

    for secret in &secrets {
        assert!(
            !html.text.contains(secret.as_str()),
            "{secret} is on the page"
        );
        assert!(
            !json.to_string().contains(secret.as_str()),
            "{secret} is in the JSON"
        );
    }
    assert!(
        !html.text.contains("dXNlcjpwYXNz"),
        "the Authorization header"
    );
}

#[test]
fn the_page_filters_by_instance_and_needs_the_broker_credentials() {
    let system = System::start();
    lifecycle(&system, "conv-a");
    lifecycle(&system, "conv-b");
    let only_a = page(&system, "/?instance=conv-a&format=json").json();
    let exchanges = only_a["exchanges"].as_array().expect("exchanges");
    assert!(!exchanges.is_empty());
    assert!(
        exchanges.iter().all(|e| e["instance_id"] == "conv-a"),
        "{only_a}"
    );

    let anonymous = call("GET", &system.url("/"), &[], None).expect("answers");
    anonymous.assert_error(401);
    let metrics = call("GET", &system.url("/metrics"), &[], None).expect("answers");
    metrics.assert_error(401);
}

#[test]
fn metrics_count_requests_by_route_and_status_in_the_prometheus_format() {
    let system = System::start();
    lifecycle(&system, "conv-m");
    let metrics = page(&system, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("Content-Type")
        .is_some_and(|kind| kind.starts_with("text/plain; version=0.0.4")));
    let text = &metrics.text;
    for line in [
        "echo_broker_requests_total{route=\"provision\",status=\"201\"} 1",
        "echo_broker_requests_total{route=\"catalog\",status=\"200\"} 1",
        "echo_broker_request_duration_seconds_count ",
        "echo_broker_backend_failures_total{kind=\"timeout\"} 0",
        "# TYPE echo_broker_request_duration_seconds histogram",
    ] {
        assert!(text.contains(line), "{line} is not in:\n{text}");
    }
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap_or("");
        assert!(value.parse::<f64>().is_ok(), "not a sample: {line}");
    }
}

#[test]
fn debug_logs_show_each_exchange_with_its_bodies_redacted() {
    let system = System::start_with(&[("LOG_LEVEL", "debug")]);
    let secrets = lifecycle(&system, "conv-d");
    let log = system.broker.log();
    assert!(
        log.contains("PUT /v2/service_instances/conv-d: request body {"),
        "{log}"
    );
    assert!(
        log.contains("\"username\""),
        "the bind answer is logged: {log}"
    );
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "{secret} is in the log");
    }
}

#[test]
fn the_echo_service_reports_its_holdings_and_its_journal_in_metrics() {
    let system = System::start_with(&[
        ("ECHO_USERNAME", "broker"),
        ("ECHO_PASSWORD", "echo-secret"),
    ]);
    lifecycle(&system, "conv-e1");
    let kept = "/v2/service_instances/conv-e2";
    assert_eq!(
        platform("PUT", &system.url(kept), Some(PROVISION_ECHO)).status,
        201
    );
    let url = format!("{}/metrics", system.echo_url);
    call("GET", &url, &[], None)
        .expect("answers")
        .assert_error(401);
    let management = ("Authorization", "Basic YnJva2VyOmVjaG8tc2VjcmV0");
    let metrics = call("GET", &url, &[management], None).expect("answers");
    assert_eq!(metrics.status, 200, "{}", metrics.text);
    let text = &metrics.text;
    for line in [
        "echo_service_instances 1\n",
        "echo_service_bindings 0\n",
        "echo_service_requests_total{route=\"provision\",status=\"200\"} 2\n",
        "echo_service_requests_total{route=\"message\",status=\"200\"} 1\n",
        "# TYPE echo_service_journal_fsyncs_total counter\n",
    ] {
        assert!(text.contains(line), "{line} is not in:\n{text}");
    }
    let sample = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    assert!(sample("echo_service_journal_fsyncs_total") >= 1.0);
    assert!(sample("echo_service_journal_changes_total") >= 6.0);
    assert!(sample("echo_service_journal_bytes") > 0.0);
    assert!(sample("echo_service_journal_changes_per_fsync") >= 1.0);
}

#[test]
fn repeated_anonymous_catalog_fetches_are_one_entry_with_a_count() {
    let system = System::start();
    for _ in 0..5 {
        assert_eq!(
            platform("GET", &system.url("/v2/catalog"), None).status,
            200
        );
    }
    let json = page(&system, "/?format=json").json();
    let exchanges = json["exchanges"].as_array().expect("exchanges");
    assert_eq!(exchanges.len(), 1, "{json}");
    assert_eq!(exchanges[0]["handler"], "catalog");
    assert_eq!(exchanges[0]["repeats"], 4);
    assert!(exchanges[0]["last_repeat"].is_string(), "{json}");
    let html = page(&system, "/");
    assert!(
        html.text.contains("then 4 more times alike"),
        "{}",
        html.text
    );
}
