//! The map of the protocol at the top of `src/broker.rs` is true: every row of its table
//! (a call, a status, the rule that decides it, its section of the spec) is driven through
//! the real broker over HTTP, and the answer must have that status and, on the conversation
//! page, name that rule and section. Every rule the code can name is in the table, and the
//! raw exchange shown beside it is what the broker answers, header for header.

use crate::common::*;
use serde_json::{json, Value};
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

const TEACHING_FILE: &str = include_str!("../../src/broker.rs");
const CATALOG: &str = include_str!("../../catalog.toml");

/// One row of the table, its call carried down from the row that names it.
#[derive(Debug, Clone)]
struct Row {
    call: String,
    statuses: Vec<u16>,
    rule: String,
    section: String,
}

/// The section of the teaching file's documentation that starts with `heading`, up to the
/// next heading, without the `//! ` of each line.
fn doc_section(heading: &str) -> Vec<String> {
    let lines: Vec<String> = TEACHING_FILE
        .lines()
        .take_while(|line| line.starts_with("//!"))
        .map(|line| line.trim_start_matches("//!").trim_start().to_string())
        .collect();
    let start = lines
        .iter()
        .position(|line| line == heading)
        .unwrap_or_else(|| panic!("src/broker.rs has no '{heading}'"));
    lines[start + 1..]
        .iter()
        .take_while(|line| !line.starts_with("## "))
        .cloned()
        .collect()
}

/// The rows of the table of "## The protocol on one screen".
fn table() -> Vec<Row> {
    let mut rows = Vec::new();
    let mut call = String::new();
    let section = doc_section("## The protocol on one screen");
    for line in section.iter().filter(|line| line.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 4, "a row of four cells: {line}");
        if cells[0] == "call" || cells[0].starts_with("---") {
            continue;
        }
        if !cells[0].is_empty() {
            call = cells[0].split('`').next().unwrap_or("").trim().to_string();
        }
        let statuses = cells[1]
            .split(',')
            .map(|status| status.trim().parse().expect("a status is a number"))
            .collect();
        rows.push(Row {
            call: call.clone(),
            statuses,
            rule: cells[2].to_string(),
            section: cells[3].to_string(),
        });
    }
    rows
}

/// Every rule the code names: the first string after each `of_the_call(` or `in_section(`.
fn rules_in_the_code() -> Vec<String> {
    let mut rules = Vec::new();
    for opening in ["of_the_call(", "in_section("] {
        for (at, _) in TEACHING_FILE.match_indices(opening) {
            let rest = &TEACHING_FILE[at + opening.len()..];
            let Some(quote) = rest.find('"') else {
                continue;
            };
            let text = &rest[quote + 1..];
            if rest[..quote].trim().is_empty() {
                rules.push(text[..text.find('"').unwrap_or(0)].to_string());
            }
        }
    }
    rules
}

/// The platform's headers, with a request identity that finds the exchange on the page.
fn marked(marker: &str) -> Vec<(&str, &str)> {
    let mut headers = platform_headers();
    headers.push(("X-Broker-API-Request-Identity", marker));
    headers
}

fn send(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    call(method, &format!("{base}{path}"), headers, body)
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
}

/// A set-up request as the platform sends it, which must get `status`.
fn set_up(base: &str, method: &str, path: &str, body: Option<&str>, status: u16) -> Value {
    let reply = send(base, method, path, &platform_headers(), body);
    assert_eq!(
        reply.status, status,
        "set-up {method} {path}: {}",
        reply.text
    );
    reply.json()
}

fn instance(instance_id: &str) -> String {
    format!("/v2/service_instances/{instance_id}")
}

fn binding(instance_id: &str, binding_id: &str) -> String {
    format!("/v2/service_instances/{instance_id}/service_bindings/{binding_id}")
}

const ECHO_QUERY: &str = "?service_id=echo_service&plan_id=big_0001";
const BIND_INVERT: &str = r#"{"service_id": "invert_service", "plan_id": "small_0001"}"#;

/// A fake echo service on a loopback port that reads each whole request and answers it
/// with `reply`, or with `None` never answers (its threads end with the test process).
fn fake_echo_service(reply: Option<&'static [u8]>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
    let port = listener.local_addr().expect("it has an address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            if let Ok(clone) = stream.try_clone() {
                let _ = read_http_message(&mut BufReader::new(clone));
            }
            match reply {
                Some(bytes) => {
                    let _ = stream.write_all(bytes);
                }
                None => held.push(stream),
            }
        }
    });
    port
}

/// A broker whose echo service fails so that the broker answers `status`.
fn broker_failing_with(status: u16) -> Process {
    let port = match status {
        502 => fake_echo_service(Some(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        )),
        503 => free_port(), // nobody listens
        504 => fake_echo_service(None),
        other => panic!("no failing echo service answers {other}"),
    };
    let service_base = format!("http://127.0.0.1:{port}");
    Process::start(BROKER, free_port(), &[("SERVICE_BASE", &service_base)])
}

/// The brokers the rows are driven through.
struct Brokers {
    /// The embedded catalog with a second plan for the Echo Service (a plan change to it
    /// is refused: its plans are not `plan_updateable`).
    main: System,
    /// The Invert Service's bindings live 2 s; `expiring_bindings` were made at start.
    expiring: System,
    expires_at: u64,
    _catalogs: (TempDir, TempDir),
}

fn catalog_file(dir: &TempDir, text: &str) -> String {
    let path = dir.path().join("catalog.toml");
    std::fs::write(&path, text).expect("the catalog file is written");
    path.display().to_string()
}

impl Brokers {
    fn start() -> Brokers {
        let main_dir = TempDir::new("table-catalog");
        let second_plan = "[[services.plans]]\nid = \"big_0002\"\nname = \"larger\"\ndescription = \"A larger dedicated service\"\n\n[[services]]\nid = \"invert_service\"";
        let with_second_plan =
            CATALOG.replacen("[[services]]\nid = \"invert_service\"", second_plan, 1);
        let main =
            System::start_with(&[("CATALOG_PATH", &catalog_file(&main_dir, &with_second_plan))]);
        let expiring_dir = TempDir::new("table-expiring");
        let short = CATALOG.replace("binding_lifetime = \"90d\"", "binding_lifetime = \"2s\"");
        let expiring =
            System::start_with(&[("CATALOG_PATH", &catalog_file(&expiring_dir, &short))]);
        let base = expiring.broker.url.clone();
        set_up(&base, "PUT", &instance("x"), Some(PROVISION_INVERT), 201);
        set_up(&base, "PUT", &binding("x", "x-b"), Some(BIND_INVERT), 201);
        set_up(&base, "PUT", &binding("x", "x-p"), Some(BIND_INVERT), 201);
        let rotation = r#"{"predecessor_binding_id": "x-p"}"#;
        let successor = set_up(&base, "PUT", &binding("x", "x-s"), Some(rotation), 201);
        let expires_at = successor["metadata"]["expires_at"]
            .as_str()
            .and_then(|text| text.get(..19))
            .map(seconds_since_epoch)
            .expect("the successor expires");
        Brokers {
            main,
            expiring,
            expires_at,
            _catalogs: (main_dir, expiring_dir),
        }
    }

    /// The expiring broker, once its bindings have expired.
    fn expired(&self) -> String {
        while seconds_now() <= self.expires_at {
            std::thread::sleep(Duration::from_millis(200));
        }
        self.expiring.broker.url.clone()
    }
}

fn seconds_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// `yyyy-mm-ddThh:mm:ss` (UTC) in seconds since the epoch.
fn seconds_since_epoch(text: &str) -> u64 {
    let number = |range: std::ops::Range<usize>| -> u64 { text[range].parse().expect("digits") };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
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

/// What a row's request got, and the broker whose conversation page keeps it (`None` for
/// the checks' refusals, which no page keeps).
struct Driven {
    reply: Reply,
    page_of: Option<String>,
}

/// Sends the request a row describes (after its set-up), marked with `marker`.
fn drive(brokers: &Brokers, row: &Row, status: u16, marker: &str) -> Driven {
    let main = brokers.main.broker.url.clone();
    let headers = marked(marker);
    let kept = |base: &str, method: &str, path: &str, body: Option<&str>| Driven {
        reply: send(base, method, path, &headers, body),
        page_of: Some(base.to_string()),
    };
    let refused = |headers: &[(&str, &str)]| Driven {
        reply: send(&main, "GET", "/v2/catalog", headers, None),
        page_of: None,
    };
    let version = ("X-Broker-API-Version", "2.17");
    let login = ("Authorization", "Basic dXNlcjpwYXNz");
    // Each row has ids of its own, so that rows never meet.
    let id = |name: &str| format!("{marker}-{name}");
    let provisioned = |service: &str| {
        let body = if service == "invert" {
            PROVISION_INVERT
        } else {
            PROVISION_ECHO
        };
        set_up(&main, "PUT", &instance(&id("i")), Some(body), 201);
        id("i")
    };
    let bound = |instance_id: &str, binding_id: &str, body: &str| {
        set_up(
            &main,
            "PUT",
            &binding(instance_id, binding_id),
            Some(body),
            201,
        );
    };
    match (row.call.as_str(), row.rule.as_str(), status) {
        ("every call", "MUST: no valid credentials", 401) => {
            refused(&[("Authorization", "Basic d3Jvbmc6d3Jvbmc="), version])
        }
        ("every call", "MAY: no API version header", 400) => refused(&[login]),
        ("every call", "MAY: an API version this broker does not speak", 412) => {
            refused(&[login, ("X-Broker-API-Version", "1.0")])
        }
        ("every call", "this broker's choice: a malformed originating identity", 400) => {
            refused(&[
                login,
                version,
                ("X-Broker-API-Originating-Identity", "cloudfoundry !!"),
            ])
        }
        (
            "every call",
            "this broker's choice: an id over 255 bytes or with control characters",
            400,
        ) => kept(&main, "GET", &instance(&"a".repeat(256)), None),
        ("every call", "this broker's choice: an id a proxy would read as a path step", 400) => {
            kept(&main, "GET", &instance("%2e%2e"), None)
        }
        ("every call", "this broker's choice: the echo service failed", 502..=504) => {
            let failing = broker_failing_with(status);
            let driven = kept(
                &failing.url,
                "PUT",
                &instance(&id("i")),
                Some(PROVISION_ECHO),
            );
            // The page is read before the broker stops.
            check_page(&failing.url, marker, row, &driven.reply);
            Driven {
                reply: driven.reply,
                page_of: None,
            }
        }
        ("any other path", _, 404) => kept(&main, "GET", "/v2/nothing", None),
        ("any other method", _, 405) => kept(&main, "POST", "/v2/catalog", None),
        ("catalog", _, 200) => kept(&main, "GET", "/v2/catalog", None),

        ("provision", "MUST: created", 201) => {
            kept(&main, "PUT", &instance(&id("i")), Some(PROVISION_ECHO))
        }
        ("provision", "SHOULD: identical repeat", 200) => {
            let instance_id = provisioned("echo");
            kept(&main, "PUT", &instance(&instance_id), Some(PROVISION_ECHO))
        }
        ("provision", "MUST: exists with other attributes", 409) => {
            let instance_id = provisioned("echo");
            let elsewhere = PROVISION_ECHO.replace("\"IT\"", "\"elsewhere\"");
            kept(&main, "PUT", &instance(&instance_id), Some(&elsewhere))
        }
        ("provision", "MUST: malformed or missing data", 400) => {
            let no_space = r#"{"service_id": "echo_service", "plan_id": "big_0001", "organization_guid": "HP"}"#;
            kept(&main, "PUT", &instance(&id("i")), Some(no_space))
        }
        ("provision", "MAY: invalid data", 400) => {
            let unknown = PROVISION_ECHO.replace("big_0001", "nope");
            kept(&main, "PUT", &instance(&id("i")), Some(&unknown))
        }
        ("provision", "MUST: maintenance_info.version is not the plan's", 422) => {
            let body = json!({"service_id": "echo_service", "plan_id": "big_0001",
                "organization_guid": "HP", "space_guid": "IT", "maintenance_info": {"version": "9.9.9"}});
            kept(&main, "PUT", &instance(&id("i")), Some(&body.to_string()))
        }

        ("fetch instance", "MUST: found", 200) => {
            let instance_id = provisioned("echo");
            kept(&main, "GET", &instance(&instance_id), None)
        }
        ("fetch instance", "MUST: does not exist", 404) => {
            kept(&main, "GET", &instance(&id("missing")), None)
        }

        ("update", rule, _) => {
            let instance_id = provisioned("echo");
            let (target, body) = match (rule, status) {
                ("MUST: changes applied", 200) => (
                    instance_id,
                    r#"{"service_id": "echo_service", "parameters": {"size": 2}}"#,
                ),
                ("MUST: malformed or missing data", 400) => {
                    (instance_id, r#"{"parameters": {"size": 2}}"#)
                }
                ("MAY: invalid data", 400) => (instance_id, r#"{"service_id": "nope"}"#),
                ("this broker's choice: the instance does not exist", 404) => {
                    (id("missing"), r#"{"service_id": "echo_service"}"#)
                }
                ("MUST: a change the plan does not support", 422) => (
                    instance_id,
                    r#"{"service_id": "echo_service", "plan_id": "big_0002"}"#,
                ),
                ("MUST: maintenance_info.version is not the plan's", 422) => (
                    instance_id,
                    r#"{"service_id": "echo_service", "maintenance_info": {"version": "9.9.9"}}"#,
                ),
                _ => panic!("no request drives {row:?} {status}"),
            };
            kept(&main, "PATCH", &instance(&target), Some(body))
        }

        ("bind", "this broker's choice: exists but has expired", 409) => {
            let base = brokers.expired();
            kept(&base, "PUT", &binding("x", "x-b"), Some(BIND_INVERT))
        }
        ("bind", rule, _) => {
            let instance_id = provisioned("echo");
            let path = binding(&instance_id, &id("b"));
            let body = match (rule, status) {
                ("MUST: created", 201) => BIND_ECHO.to_string(),
                ("SHOULD: identical repeat", 200) => {
                    bound(&instance_id, &id("b"), BIND_ECHO);
                    BIND_ECHO.to_string()
                }
                ("MUST: exists with other attributes", 409) => {
                    bound(&instance_id, &id("b"), BIND_ECHO);
                    BIND_ECHO.replace("otherappid", "anotherapp")
                }
                ("MUST: malformed or missing data", 400) => {
                    r#"{"service_id": "echo_service"}"#.into()
                }
                ("MAY: invalid data", 400) => BIND_INVERT.into(),
                (
                    "this broker's choice: a plan not in the catalog, the instance's own included",
                    400,
                ) => BIND_ECHO.replace("big_0001", "gone_0001"),
                ("this broker's choice: the instance does not exist", 404) => {
                    return kept(&main, "PUT", &binding(&id("missing"), "b"), Some(BIND_ECHO));
                }
                _ => panic!("no request drives {row:?} {status}"),
            };
            kept(&main, "PUT", &path, Some(&body))
        }

        ("rotate", "this broker's choice: exists but has expired", 409) => {
            let base = brokers.expired();
            let rotation = r#"{"predecessor_binding_id": "x-p"}"#;
            kept(&base, "PUT", &binding("x", "x-s"), Some(rotation))
        }
        ("rotate", rule, _) => {
            let instance_id = provisioned("invert");
            bound(&instance_id, "p", BIND_INVERT);
            let rotation = r#"{"predecessor_binding_id": "p"}"#;
            let path = binding(&instance_id, "s");
            let body = match (rule, status) {
                ("MUST: created", 201) => rotation.to_string(),
                ("SHOULD: identical repeat", 200) => {
                    bound(&instance_id, "s", rotation);
                    rotation.to_string()
                }
                ("MUST: exists with other attributes", 409) => {
                    bound(&instance_id, "s", rotation);
                    r#"{"predecessor_binding_id": "p", "parameters": {"size": 3}}"#.into()
                }
                ("MUST: malformed or missing data", 400) => r#"{"predecessor_binding_id": ""}"#.into(),
                ("MAY: no live predecessor of this instance, or a plan that does not rotate", 400) => {
                    r#"{"predecessor_binding_id": "missing"}"#.into()
                }
                ("this broker's choice: a plan not in the catalog, the instance's own included", 400) => {
                    r#"{"predecessor_binding_id": "p", "service_id": "invert_service", "plan_id": "gone_0001"}"#.into()
                }
                _ => panic!("no request drives {row:?} {status}"),
            };
            kept(&main, "PUT", &path, Some(&body))
        }

        ("fetch binding", "this broker's choice: found, though expired", 200) => {
            let base = brokers.expired();
            kept(&base, "GET", &binding("x", "x-b"), None)
        }
        ("fetch binding", "MUST: found", 200) => {
            let instance_id = provisioned("echo");
            bound(&instance_id, "b", BIND_ECHO);
            kept(&main, "GET", &binding(&instance_id, "b"), None)
        }
        ("fetch binding", "MUST: does not exist", 404) => {
            let instance_id = provisioned("echo");
            kept(&main, "GET", &binding(&instance_id, "missing"), None)
        }

        ("unbind", rule, _) => {
            let instance_id = provisioned("echo");
            bound(&instance_id, "b", BIND_ECHO);
            let path = match (rule, status) {
                ("MUST: deleted", 200) => format!("{}{ECHO_QUERY}", binding(&instance_id, "b")),
                ("MUST: does not exist", 410) => {
                    format!("{}{ECHO_QUERY}", binding(&instance_id, "never"))
                }
                ("MUST: malformed or missing data", 400) => binding(&instance_id, "b"),
                ("MAY: invalid data", 400) => {
                    format!(
                        "{}?service_id=echo_service&plan_id=other",
                        binding(&instance_id, "b")
                    )
                }
                _ => panic!("no request drives {row:?} {status}"),
            };
            kept(&main, "DELETE", &path, None)
        }

        ("deprovision", rule, _) => {
            let instance_id = provisioned("echo");
            let path = match (rule, status) {
                ("MUST: deleted", 200) => format!("{}{ECHO_QUERY}", instance(&instance_id)),
                ("MUST: does not exist", 410) => format!("{}{ECHO_QUERY}", instance(&id("never"))),
                ("MUST: malformed or missing data", 400) => instance(&instance_id),
                ("MAY: invalid data", 400) => {
                    format!(
                        "{}?service_id=echo_service&plan_id=other",
                        instance(&instance_id)
                    )
                }
                _ => panic!("no request drives {row:?} {status}"),
            };
            kept(&main, "DELETE", &path, None)
        }

        ("instance last operation", "MUST: succeeded", 200) => {
            let instance_id = provisioned("echo");
            kept(
                &main,
                "GET",
                &format!("{}/last_operation", instance(&instance_id)),
                None,
            )
        }
        ("instance last operation", "MUST: does not exist", 404) => kept(
            &main,
            "GET",
            &format!("{}/last_operation", instance(&id("missing"))),
            None,
        ),
        ("binding last operation", "MUST: succeeded", 200) => {
            let instance_id = provisioned("echo");
            bound(&instance_id, "b", BIND_ECHO);
            kept(
                &main,
                "GET",
                &format!("{}/last_operation", binding(&instance_id, "b")),
                None,
            )
        }
        ("binding last operation", "MUST: does not exist", 404) => {
            let instance_id = provisioned("echo");
            kept(
                &main,
                "GET",
                &format!("{}/last_operation", binding(&instance_id, "missing")),
                None,
            )
        }
        _ => panic!("no request drives the row {row:?} with {status}: add one here"),
    }
}

/// The conversation page of `base` shows the exchange marked `marker` with the row's rule
/// and section, in its JSON and in its HTML.
fn check_page(base: &str, marker: &str, row: &Row, reply: &Reply) {
    let credentials = [("Authorization", "Basic dXNlcjpwYXNz")];
    let json = send(base, "GET", "/?format=json", &credentials, None).json();
    let exchanges = json["exchanges"].as_array().cloned().unwrap_or_default();
    let exchange = exchanges
        .iter()
        .find(|exchange| exchange["request_identity"] == marker)
        .unwrap_or_else(|| panic!("{marker} is not on the page: {json}"));
    assert_eq!(exchange["status"], reply.status, "{marker}");
    assert_eq!(
        exchange["rule"]["says"],
        row.rule.as_str(),
        "{marker}: {exchange}"
    );
    assert_eq!(
        exchange["rule"]["section"],
        row.section.as_str(),
        "{marker}: {exchange}"
    );
    let html = send(base, "GET", "/", &credentials, None).text;
    let shown = format!(
        "<span class=\"rule\">{}</span>",
        row.rule.replace('\'', "&#39;")
    );
    assert!(html.contains(&shown), "{shown} is not on the page");
}

#[test]
fn every_row_of_the_table_in_src_broker_rs_is_what_the_broker_answers() {
    let rows = table();
    assert!(rows.len() > 40, "the table is read: {rows:#?}");
    let brokers = Brokers::start();
    for (number, row) in rows.iter().enumerate() {
        for &status in &row.statuses {
            let marker = format!("row-{number}-{status}");
            let driven = drive(&brokers, row, status, &marker);
            assert_eq!(
                driven.reply.status, status,
                "{row:?}: {}",
                driven.reply.text
            );
            if let Some(base) = &driven.page_of {
                check_page(base, &marker, row, &driven.reply);
            }
        }
    }
}

#[test]
fn every_rule_the_code_names_is_a_rule_of_the_table() {
    let in_the_table: Vec<String> = table().into_iter().map(|row| row.rule).collect();
    let named = rules_in_the_code();
    assert!(named.len() > 20, "the rules are read: {named:?}");
    for rule in named {
        assert!(in_the_table.contains(&rule), "'{rule}' is not in the table");
    }
}

/// The raw exchange of "## One exchange, as a platform sends it": its request, sent byte
/// for byte, gets its answer: the same status line, the same headers in the same order (the
/// date aside), and the same body once the echo service's address and the dashboard's
/// random token are the example's.
#[test]
fn the_raw_exchange_in_src_broker_rs_is_what_the_broker_answers() {
    let section = doc_section("## One exchange, as a platform sends it");
    let start = section
        .iter()
        .position(|line| line == "```text")
        .expect("a text block")
        + 1;
    let end = start
        + section[start..]
            .iter()
            .position(|line| line == "```")
            .expect("its end");
    let block = &section[start..end];
    let blank: Vec<usize> = (0..block.len())
        .filter(|&at| block[at].is_empty())
        .collect();
    assert_eq!(
        blank.len(),
        3,
        "request head, body, response head, body: {block:#?}"
    );
    let (request_head, request_body) = (&block[..blank[0]], &block[blank[0] + 1]);
    let (response_head, response_body) = (&block[blank[1] + 1..blank[2]], &block[blank[2] + 1]);
    let stated_length = |head: &[String]| {
        head.iter()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .and_then(|length| length.parse::<usize>().ok())
            .expect("a Content-Length")
    };
    assert_eq!(
        stated_length(request_head),
        request_body.len(),
        "the request's length"
    );
    assert_eq!(
        stated_length(response_head),
        response_body.len(),
        "the answer's length"
    );

    let system = System::start();
    let mut stream = TcpStream::connect(("127.0.0.1", system.broker.port)).expect("connects");
    let request = format!("{}\r\n\r\n{request_body}", request_head.join("\r\n"));
    stream
        .write_all(request.as_bytes())
        .expect("the request is sent");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout is set");
    let answer = read_http_message(&mut BufReader::new(stream)).expect("an answer");
    let answer = String::from_utf8(answer).expect("UTF-8");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let head: Vec<&str> = head.split("\r\n").collect();
    assert_eq!(head[0], response_head[0], "the status line");
    let without_date = |lines: Vec<&str>| -> Vec<String> {
        lines
            .into_iter()
            .filter(|line| !line.starts_with("Date: "))
            .map(|line| match line.strip_prefix("Content-Length: ") {
                Some(_) => "Content-Length".to_string(),
                None => line.to_string(),
            })
            .collect()
    };
    assert_eq!(
        without_date(head[1..].to_vec()),
        without_date(response_head[1..].iter().map(String::as_str).collect()),
        "the headers"
    );
    assert!(head.iter().any(|line| line.starts_with("Date: ")));
    let example: Value = serde_json::from_str(response_body).expect("the example is JSON");
    let token = |body: &Value| {
        let url = body["dashboard_url"].as_str().unwrap_or("").to_string();
        url.split("token=").nth(1).unwrap_or("").to_string()
    };
    let answered: Value = serde_json::from_str(body).expect("the answer is JSON");
    let as_example = body
        .replace(&system.echo_url, "http://127.0.0.1:8090")
        .replace(&token(&answered), &token(&example));
    let as_example: Value = serde_json::from_str(&as_example).expect("JSON");
    assert_eq!(as_example, example);
}
