//! The conversation page (`GET /`), its JSON, `/metrics` and the debug logs: what the
//! platform said and what the broker answered, with nothing secret in any of them.

use crate::common::*;

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
        "<b>PUT</b><span class=\"path\">/v2/service_instances/conv-1</span>",
        "<span class=\"status ok\">201</span>",
        "<span class=\"handler\">provision</span></summary>",
        "<details>",
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
        .find("<b>DELETE</b><span class=\"path\">/v2/service_instances/conv-1?")
        .expect("deprovision");
    let oldest = html
        .text
        .find("<b>PUT</b><span class=\"path\">/v2/service_instances/conv-1<")
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
        log.contains("\"credentials\": \"[redacted]\""),
        "the bind answer is logged, its credentials hidden: {log}"
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
    ] {
        assert!(text.contains(line), "{line} is not in:\n{text}");
    }
    if store_under_test() != "journal" {
        println!(
            "journal metrics not checked: the echo service runs on {}",
            store_under_test()
        );
        return;
    }
    assert!(
        text.contains("# TYPE echo_service_journal_fsyncs_total counter\n"),
        "{text}"
    );
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

/// Sends raw bytes on a fresh connection and returns the status of the answer (0 if none).
#[cfg(target_os = "linux")]
fn send_raw(system: &System, request: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let address = system.broker.url.trim_start_matches("http://").to_string();
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let _ = stream.write_all(request);
    let mut head = [0u8; 12];
    if stream.read_exact(&mut head).is_err() {
        return 0;
    }
    String::from_utf8_lossy(&head[9..12]).parse().unwrap_or(0)
}

/// A request with the given headers (CRLF-terminated lines) and body, closing after it.
#[cfg(target_os = "linux")]
fn raw_request(method: &str, path: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Runs `work` on `count` threads at once and waits for all of them.
#[cfg(target_os = "linux")]
fn at_once(count: usize, work: impl Fn(usize) + Sync) {
    std::thread::scope(|scope| {
        for n in 0..count {
            let work = &work;
            scope.spawn(move || work(n));
        }
    });
}

#[test]
fn refused_requests_are_counted_by_status_and_shown_nowhere() {
    let system = System::start();
    lifecycle(&system, "real-1");
    // {"user_id": "mallory"}
    let forged = "cloudfoundry eyJ1c2VyX2lkIjogIm1hbGxvcnkifQ==";
    for _ in 0..100 {
        let reply = call(
            "PUT",
            &system.url("/v2/service_instances/VICTIM"),
            &[
                ("Authorization", "Basic dXNlcjp3cm9uZw=="),
                ("X-Broker-API-Version", "2.17"),
                ("X-Broker-API-Originating-Identity", forged),
                ("X-Broker-API-Request-Identity", "forged-identity"),
            ],
            Some(PROVISION_ECHO),
        )
        .expect("the broker answers");
        reply.assert_error(401);
    }
    // Right credentials, wrong API version: refused by the checks as well.
    let old_version = call(
        "GET",
        &system.url("/v2/service_instances/VICTIM"),
        &[PAGE_CREDENTIALS, ("X-Broker-API-Version", "1.0")],
        None,
    )
    .expect("the broker answers");
    old_version.assert_error(412);

    let json = page(&system, "/?format=json").json();
    let exchanges = json["exchanges"].as_array().expect("exchanges");
    assert_eq!(exchanges.len(), 6, "only the lifecycle is kept: {json}");
    for path in ["/", "/?format=json", "/?instance=VICTIM&format=json"] {
        let text = page(&system, path).text;
        for forgery in ["VICTIM\"", "VICTIM<", "mallory", "forged-identity"] {
            assert!(!text.contains(forgery), "{forgery} on {path}: {text}");
        }
    }
    let metrics = page(&system, "/metrics").text;
    for line in [
        "echo_broker_requests_total{route=\"checks\",status=\"401\"} 100\n",
        "echo_broker_requests_total{route=\"checks\",status=\"412\"} 1\n",
    ] {
        assert!(metrics.contains(line), "{line} is not in:\n{metrics}");
    }
}

/// The broker's peak resident memory so far, in KiB (Linux: `VmHWM`).
#[cfg(target_os = "linux")]
fn peak_resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// A JSON array nested `depth` deep holding `leaves` ones, about two bytes a leaf.
#[cfg(target_os = "linux")]
fn deep_json(depth: usize, leaves: usize) -> String {
    let ones = vec!["1"; leaves].join(",");
    format!("{}{ones}{}", "[".repeat(depth), "]".repeat(depth))
}

#[cfg(target_os = "linux")]
#[test]
fn hostile_input_leaves_the_page_bounded_and_sixteen_views_add_at_most_32_mib() {
    let system = System::start_with(&[("LOG_LEVEL", "debug"), ("MALLOC_ARENA_MAX", "2")]);
    lifecycle(&system, "real-2");
    // About 8 KiB of `"`, `'` and `&` in a header, with no credentials: refused unread.
    let filler = "\"'&".repeat(2600);
    for _ in 0..100 {
        let request = raw_request(
            "PUT",
            "/v2/service_instances/VICTIM",
            &format!("X-Filler: {filler}\r\n"),
            PROVISION_ECHO,
        );
        assert_eq!(send_raw(&system, &request), 401);
    }
    // The same through the one route that needs no credentials, with a body: at debug level
    // too, nothing of it is kept or logged.
    let deep = deep_json(120, 30_000);
    let health = raw_request("GET", "/health", &format!("X-Filler: {filler}\r\n"), &deep);
    assert_eq!(send_raw(&system, &health), 200);
    // Authenticated provisions whose 60 KB bodies are nested 120 deep with 30,000 leaves:
    // refused with 400, kept on the page, each cut while it is printed.
    let provision = format!(
        r#"{{"service_id": "echo_service", "plan_id": "big_0001", "organization_guid": "HP", "space_guid": "IT", "parameters": {{"p": {deep}}}}}"#
    );
    assert!(provision.len() > 60_000);
    at_once(32, |n| {
        let url = system.url(&format!("/v2/service_instances/deep-{n}"));
        platform("PUT", &url, Some(&provision)).assert_error(400);
    });
    // The platform itself filling the page with the heaviest entries it can: header values
    // and bodies of characters that HTML escapes the most.
    let identity = filler[..6000].to_string();
    let heavy_body = serde_json::json!({ "service_id": filler }).to_string();
    at_once(4, |n| {
        for k in 0..25 {
            let reply = call(
                "PUT",
                &system.url(&format!("/v2/service_instances/heavy-{n}-{k}")),
                &[
                    PAGE_CREDENTIALS,
                    ("X-Broker-API-Version", "2.17"),
                    ("X-Broker-API-Request-Identity", identity.as_str()),
                ],
                Some(&heavy_body),
            )
            .expect("the broker answers");
            reply.assert_error(400);
        }
    });

    let html = page(&system, "/");
    assert_eq!(html.status, 200);
    assert!(html.text.len() <= 1024 * 1024, "{} bytes", html.text.len());
    assert!(
        html.text.contains("older exchanges are kept but not shown"),
        "the page is full to its bound ({} bytes)",
        html.text.len()
    );
    assert_eq!(tag_balance_problem(&html.text), None);
    assert!(!html.text.contains("VICTIM"), "refusals are not kept");
    let json = page(&system, "/?format=json");
    assert!(json.text.len() <= 1024 * 1024, "{} bytes", json.text.len());
    for exchange in json.json()["exchanges"].as_array().expect("exchanges") {
        let identity = exchange["request_identity"].as_str().unwrap_or("");
        assert!(identity.len() <= 256 + 3, "{} bytes", identity.len());
        let body = exchange["request_body"].as_str().unwrap_or("");
        assert!(body.len() <= 2048 + 64, "{} bytes", body.len());
    }
    let log = system.broker.log();
    assert!(!log.contains("X-Filler") && !log.contains("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["));

    let before = peak_resident_kib(system.broker.child.id());
    at_once(16, |_| {
        let view = page(&system, "/");
        assert_eq!(view.status, 200);
    });
    let peak = peak_resident_kib(system.broker.child.id());
    println!("the broker's peak resident memory: {before} KiB, then {peak} KiB after the views");
    // Each view renders a page of at most 1 MiB into a string that grows by doubling, so
    // up to 2 MiB at once: sixteen at once add at most 32 MiB, however hostile the input
    // kept before. (An absolute 32 MiB for the whole debug process failed about one run
    // in two on a loaded machine, from the process's own size, not the views'.)
    let added = peak.saturating_sub(before);
    assert!(
        added <= 32 * 1024,
        "sixteen views added {added} KiB (peak {peak} KiB)"
    );
}

/// A secret no page or log may show, numbered to be told apart.
fn planted(n: usize) -> String {
    format!("planted{n:02}x9Q")
}

#[test]
fn no_planted_secret_is_shown_on_the_page_in_its_json_or_in_the_debug_log() {
    let system = System::start_with(&[("LOG_LEVEL", "debug")]);
    let s = planted;
    let parameters = serde_json::json!({
        "password": s(1), "db_password": s(2), "apiKey": s(3), "api_key": s(4),
        "client-secret": s(5), "aws_secret_access_key": s(6), "access_token": s(7),
        "refresh_token": s(8), "passwd": s(9), "pwd": s(10), "private_key": s(11),
        "nested": {"list": [{"Authorization": s(12)}]}, "session_id": s(13),
        "cookie": s(14), "X-Amz-Signature": s(15),
        "uri": format!("postgres://admin:{}@db.example:5432/app", s(16)),
        "jdbc": format!("jdbc:mysql://db.example/app?user=admin&password={}&ssl=true", s(17)),
        "dsn": format!("Server=db;Uid=admin;Pwd={};", s(18)),
        "header": format!("Bearer {}", s(19)),
        "login": format!("Basic {}", s(20)),
        "credentials": {"user": "admin", "anything": s(21)},
        "size": "large",
    });
    let context = serde_json::json!({
        "platform": "cloudfoundry", "token": s(22), "nested": {"secretValue": s(23)},
        "note": format!("log in with password={} please", s(24)),
    });
    let provision = serde_json::json!({
        "service_id": "echo_service", "plan_id": "big_0001", "organization_guid": "HP",
        "space_guid": "IT", "parameters": parameters, "context": context,
    });
    let bind = serde_json::json!({
        "service_id": "echo_service", "plan_id": "big_0001", "app_guid": "app-1",
        "parameters": {"signing_key": s(25), "config": format!("{{\"password\":\"{}\"}}", s(26))},
    });
    let update = serde_json::json!({
        "service_id": "echo_service", "parameters": {"new_password": s(27)},
    });
    let instance = "/v2/service_instances/secrets-1";
    let binding = format!("{instance}/service_bindings/b-1");
    let send = |method: &str, path: &str, body: Option<String>| {
        platform(method, &system.url(path), body.as_deref())
    };
    let provisioned = send(
        "PUT",
        &format!("{instance}?accepts_incomplete=true&password={}", s(28)),
        Some(provision.to_string()),
    );
    assert_eq!(provisioned.status, 201, "{}", provisioned.text);
    let bound = send("PUT", &binding, Some(bind.to_string()));
    assert_eq!(bound.status, 201, "{}", bound.text);
    let updated = send("PATCH", instance, Some(update.to_string()));
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(
        send("GET", &format!("{instance}?api_key={}", s(29)), None).status,
        200
    );
    assert_eq!(
        send("GET", &format!("{binding}?sig=1&Signature={}", s(30)), None).status,
        200
    );
    assert_eq!(
        send("GET", &format!("/v2/catalog?session={}", s(31)), None).status,
        200
    );

    let mut secrets: Vec<String> = (1..=31).map(planted).collect();
    // And what the broker's answers carried: the binding's password, the dashboard's token,
    // the catalog's dashboard client secret.
    let credentials = &bound.json()["credentials"];
    secrets.push(
        credentials["password"]
            .as_str()
            .expect("a password")
            .to_string(),
    );
    let dashboard_url = provisioned.json()["dashboard_url"]
        .as_str()
        .unwrap_or("")
        .to_string();
    secrets.push(
        dashboard_url
            .split("token=")
            .nth(1)
            .expect("a token")
            .to_string(),
    );
    secrets.push("secret-1".to_string());
    let ids = format!("?{ECHO_IDS}");
    let unbind = format!("{binding}{ids}&client_secret={}", s(32));
    assert_eq!(send("DELETE", &unbind, None).status, 200);
    let deprovision = format!("{instance}{ids}&access_token={}", s(33));
    assert_eq!(send("DELETE", &deprovision, None).status, 200);
    secrets.extend([planted(32), planted(33)]);
    assert!(secrets.len() >= 30);

    let html = page(&system, "/").text;
    let json = page(&system, "/?format=json").text;
    let log = system.broker.log();
    assert!(html.contains("[redacted]") && json.contains("[redacted]"));
    assert!(
        log.contains("request body {"),
        "bodies are logged at debug: {log}"
    );
    for secret in &secrets {
        assert!(!html.contains(secret.as_str()), "{secret} is on the page");
        assert!(!json.contains(secret.as_str()), "{secret} is in the JSON");
        assert!(!log.contains(secret.as_str()), "{secret} is in the log");
    }
    // What is not secret still shows.
    assert!(html.contains("large") && html.contains("cloudfoundry"));
}

#[test]
fn every_route_is_named_on_the_page_and_in_metrics_by_the_router() {
    let system = System::start();
    lifecycle(&system, "named-1");
    assert_eq!(
        platform(
            "GET",
            &system.url("/v2/service_instances/named-1/last_operation"),
            None
        )
        .status,
        404
    );
    platform("POST", &system.url("/v2/catalog"), None).assert_error(405);
    let json = page(&system, "/?format=json").json();
    let handlers: Vec<&str> = json["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .filter_map(|exchange| exchange["handler"].as_str())
        .collect();
    assert_eq!(
        handlers,
        [
            "router",
            "instance_last_operation",
            "deprovision",
            "unbind",
            "fetch_binding",
            "catalog",
            "bind",
            "provision"
        ]
    );
    let metrics = page(&system, "/metrics").text;
    for line in [
        "route=\"instance_last_operation\",status=\"404\"} 1",
        "route=\"router\",status=\"405\"} 1",
        "route=\"fetch_binding\",status=\"200\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} is not in:\n{metrics}");
    }
}

#[test]
fn the_page_names_the_rule_that_decided_each_status_and_its_section() {
    let system = System::start();
    let instance = system.url("/v2/service_instances/ruled");
    assert_eq!(platform("PUT", &instance, Some(PROVISION_ECHO)).status, 201);
    assert_eq!(platform("PUT", &instance, Some(PROVISION_ECHO)).status, 200);
    let too_long = system.url(&format!("/v2/service_instances/{}", "x".repeat(300)));
    assert_eq!(platform("GET", &too_long, None).status, 400);

    let json = page(&system, "/?format=json").json();
    let exchanges = json["exchanges"].as_array().expect("exchanges");
    let rules: Vec<(&str, &str)> = exchanges
        .iter()
        .map(|exchange| {
            let rule = &exchange["rule"];
            (
                rule["says"].as_str().unwrap_or(""),
                rule["section"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            (
                "this broker's choice: an id over 255 bytes or with control characters",
                "URL Properties"
            ),
            ("SHOULD: identical repeat", "Provisioning"),
            ("MUST: created", "Provisioning"),
        ],
        "{json}"
    );
    assert!(exchanges[0]["rule"]["link"]
        .as_str()
        .is_some_and(|link| link.ends_with("/spec.md#url-properties")));

    let html = page(&system, "/").text;
    assert_eq!(tag_balance_problem(&html), None);
    for shown in [
        "<dt>Rule</dt><dd><span class=\"rule\">MUST: created</span>, spec: <a href=\"https://github.com/openservicebrokerapi/servicebroker/blob/v2.17/spec.md#provisioning\">Provisioning</a></dd>",
        "<span class=\"rule\">SHOULD: identical repeat</span>",
        "<span class=\"rule\">this broker&#39;s choice: an id over 255 bytes or with control characters</span>, spec: <a href=\"https://github.com/openservicebrokerapi/servicebroker/blob/v2.17/spec.md#url-properties\">URL Properties</a>",
    ] {
        assert!(html.contains(shown), "{shown} is not on the page");
    }
}
