//! Operating both binaries: the command line, start-up refusals (one line, exit 2), the
//! health check, the two log formats, secrets kept out of every log line, and the
//! dashboard page's markup.

use crate::common::*;

use base64::Engine;
use serde_json::Value;

const BROKER_VARIABLES: [&str; 17] = [
    "PORT",
    "HOST",
    "BROKER_USERNAME",
    "BROKER_PASSWORD",
    "SERVICE_BASE",
    "ECHO_USERNAME",
    "ECHO_PASSWORD",
    "ECHO_PORT",
    "DATA_DIR",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_IDLE_SECONDS",
    "DATABASE_START_SECONDS",
    "CATALOG_PATH",
    "SSL_CERT_FILE",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "MAX_CONNECTIONS",
];

const ECHO_SERVICE_VARIABLES: [&str; 11] = [
    "PORT",
    "HOST",
    "ECHO_USERNAME",
    "ECHO_PASSWORD",
    "DATA_DIR",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_IDLE_SECONDS",
    "DATABASE_START_SECONDS",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "MAX_CONNECTIONS",
];

fn base64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Runs `binary` with `env` and checks it stops at start-up with exit code 2 and exactly
/// one line of output that names `variable`; returns that line.
fn assert_refused(binary: &str, env: &[(&str, &str)], variable: &str) -> String {
    let (code, output) = run_to_end(binary, &[], env);
    let lines: Vec<&str> = output
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(code, Some(2), "{env:?}: {output}");
    assert_eq!(lines.len(), 1, "{env:?}: not one line:\n{output}");
    assert!(lines[0].contains(variable), "{env:?}: {}", lines[0]);
    lines[0].to_string()
}

// ---------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------

#[test]
fn help_lists_every_variable_with_its_default_and_the_exit_codes() {
    for (binary, variables) in [
        (BROKER, &BROKER_VARIABLES[..]),
        (ECHO_SERVICE, &ECHO_SERVICE_VARIABLES[..]),
    ] {
        for flag in ["--help", "-h"] {
            let (code, help) = run_to_end(binary, &[flag], &[]);
            assert_eq!(code, Some(0), "{binary} {flag}: {help}");
            let lines: Vec<&str> = help.lines().collect();
            for variable in variables {
                let at = lines
                    .iter()
                    .position(|line| {
                        let line = line.trim();
                        line == *variable || line.starts_with(&format!("{variable} "))
                    })
                    .unwrap_or_else(|| panic!("{binary} --help does not list {variable}"));
                // The variable's line, or its continuation, ends with `[default]`.
                let described = lines[at..]
                    .iter()
                    .take(2)
                    .any(|line| line.trim_end().ends_with(']'));
                assert!(described, "{binary}: no [default] for {variable}");
            }
            assert!(help.contains("Exit codes: 0 success"), "{help}");
            assert!(help.contains("2 bad configuration"), "{help}");
            assert!(help.contains("text") && help.contains("json"), "{help}");
        }
    }
    let (_, broker_help) = run_to_end(BROKER, &["--help"], &[]);
    assert!(broker_help.contains("1 invalid catalog"), "{broker_help}");
    assert!(
        broker_help.contains("--check-catalog FILE"),
        "{broker_help}"
    );
}

/// The README says both binaries print the same list of variables: they do, word for word.
#[test]
fn both_helps_print_the_same_variable_list() {
    let variables = |binary: &str| {
        let (_, help) = run_to_end(binary, &["--help"], &[]);
        let start = help
            .find("Configuration comes from")
            .expect("the variable list");
        let end = help.find("Exit codes:").expect("the exit codes");
        help[start..end].to_string()
    };
    assert_eq!(variables(BROKER), variables(ECHO_SERVICE));
}

#[test]
fn version_prints_the_binary_name_and_package_version() {
    for (binary, name) in [(BROKER, "echo-broker"), (ECHO_SERVICE, "echo-service")] {
        for flag in ["--version", "-V"] {
            let (code, output) = run_to_end(binary, &[flag], &[]);
            assert_eq!(code, Some(0));
            assert_eq!(
                output.trim(),
                format!("{name} {}", env!("CARGO_PKG_VERSION"))
            );
        }
    }
}

#[test]
fn unknown_arguments_exit_2_with_a_hint() {
    for binary in [BROKER, ECHO_SERVICE] {
        let (code, output) = run_to_end(binary, &["--frobnicate"], &[]);
        assert_eq!(code, Some(2), "{output}");
        assert_eq!(output.trim().lines().count(), 1, "{output}");
        assert!(
            output.contains("--frobnicate") && output.contains("--help"),
            "{output}"
        );
    }
    let (code, output) = run_to_end(ECHO_SERVICE, &["--check-catalog", "catalog.toml"], &[]);
    assert_eq!(code, Some(2), "{output}");
    let (code, output) = run_to_end(BROKER, &["--check-catalog"], &[]);
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("FILE"), "{output}");
}

#[test]
fn help_lines_fit_in_90_columns() {
    for binary in [BROKER, ECHO_SERVICE] {
        let (_, help) = run_to_end(binary, &["--help"], &[]);
        for line in help.lines() {
            assert!(line.chars().count() <= 90, "{binary}: {line}");
        }
    }
}

/// `--help` says where everything goes: standard output, for the log and every error
/// alike. Each way a run can end early is tried, and nothing reaches standard error.
#[test]
fn every_message_goes_to_standard_output_and_none_to_standard_error() {
    let dir = TempDir::new("stdout-rule");
    let invalid = dir.path().join("invalid.toml");
    std::fs::write(&invalid, "[[services]]\nid = \"\"\n").expect("the catalog is written");
    let invalid = invalid.display().to_string();
    let missing = dir.path().join("missing.toml").display().to_string();
    let valid = concat!(env!("CARGO_MANIFEST_DIR"), "/catalog.toml");
    let data_dir = dir.path().display().to_string();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let busy_port = busy.local_addr().expect("an address").port().to_string();
    // (binary, arguments, environment, the exit code expected)
    type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, i32);
    let cases: Vec<Case> = vec![
        (BROKER, vec!["--check-catalog", &invalid], vec![], 1),
        (BROKER, vec!["--check-catalog", &missing], vec![], 2),
        (BROKER, vec!["--check-catalog", valid], vec![], 0),
        (BROKER, vec!["--frobnicate"], vec![], 2),
        (ECHO_SERVICE, vec!["--frobnicate"], vec![], 2),
        (BROKER, vec!["--help"], vec![], 0),
        (ECHO_SERVICE, vec!["--version"], vec![], 0),
        (BROKER, vec![], vec![("PORT", "0")], 2),
        (ECHO_SERVICE, vec![], vec![("LOG_LEVEL", "loud")], 2),
        (BROKER, vec![], vec![("LOG_FORMAT", "xml")], 2),
        (
            BROKER,
            vec![],
            vec![("LOG_FORMAT", "json"), ("CATALOG_PATH", &missing)],
            2,
        ),
        (
            ECHO_SERVICE,
            vec![],
            vec![("PORT", &busy_port), ("DATA_DIR", &data_dir)],
            2,
        ),
        (ECHO_SERVICE, vec!["--import-journal"], vec![], 2),
        (ECHO_SERVICE, vec!["--import-journal", &data_dir], vec![], 2),
    ];
    for (binary, args, env, expected) in cases {
        let (code, stdout, stderr) = run_to_end_apart(binary, &args, &env);
        let name = binary.rsplit(['/', '\\']).next().unwrap_or(binary);
        let what = format!("{name} {args:?} {env:?}");
        assert_eq!(code, Some(expected), "{what}: {stdout}{stderr}");
        assert_eq!(stderr, "", "{what} wrote to standard error");
        assert!(!stdout.trim().is_empty(), "{what} said nothing");
    }
    drop(busy);
}

// ---------------------------------------------------------------------------------------
// Start-up refusals: one line naming the variable, exit code 2
// ---------------------------------------------------------------------------------------

#[test]
fn port_zero_is_refused_because_nobody_would_call_the_port_the_os_picks() {
    assert_refused(BROKER, &[("PORT", "0")], "PORT");
    assert_refused(ECHO_SERVICE, &[("PORT", "0")], "PORT");
    let line = assert_refused(BROKER, &[("ECHO_PORT", "0")], "ECHO_PORT");
    assert!(line.contains("1 to 65535"), "{line}");
}

#[test]
fn a_database_budget_out_of_range_is_refused_before_any_connection() {
    let database = ("DATABASE_URL", "postgres://u:p@127.0.0.1:1/d");
    for (variable, value) in [
        ("DATABASE_MAX_CONNECTIONS", "0"),
        ("DATABASE_IDLE_SECONDS", "soon"),
        ("DATABASE_START_SECONDS", "-1"),
    ] {
        assert_refused(ECHO_SERVICE, &[database, (variable, value)], variable);
    }
}

#[test]
fn the_same_port_for_the_broker_and_its_embedded_echo_service_is_said_to_clash() {
    let port = free_port().to_string();
    let line = assert_refused(
        BROKER,
        &[("PORT", &port), ("ECHO_PORT", &port)],
        "ECHO_PORT",
    );
    assert!(line.contains("clashes with PORT"), "{line}");
}

#[test]
fn an_argument_after_help_or_version_is_named_as_the_extra_one() {
    for binary in [BROKER, ECHO_SERVICE] {
        for flag in ["--help", "--version"] {
            let (code, output) = run_to_end(binary, &[flag, "extra"], &[]);
            assert_eq!(code, Some(2), "{output}");
            assert_eq!(output.trim().lines().count(), 1, "{output}");
            assert!(output.contains("'extra'"), "{output}");
            assert!(
                !output.contains(&format!("unknown argument '{flag}'")),
                "{output}"
            );
        }
    }
}

#[test]
fn a_port_that_is_not_a_number_is_refused() {
    assert_refused(BROKER, &[("PORT", "abc")], "PORT");
    assert_refused(ECHO_SERVICE, &[("PORT", "abc")], "PORT");
    assert_refused(BROKER, &[("ECHO_PORT", "70000")], "ECHO_PORT");
}

#[test]
fn a_connection_cap_out_of_range_is_refused() {
    for value in ["0", "10001", "many"] {
        assert_refused(BROKER, &[("MAX_CONNECTIONS", value)], "MAX_CONNECTIONS");
        assert_refused(
            ECHO_SERVICE,
            &[("MAX_CONNECTIONS", value)],
            "MAX_CONNECTIONS",
        );
    }
}

#[test]
fn an_unreadable_catalog_is_refused() {
    let dir = TempDir::new("catalog");
    let missing = dir.path().join("missing.toml");
    let missing = missing.display().to_string();
    let line = assert_refused(BROKER, &[("CATALOG_PATH", &missing)], "CATALOG_PATH");
    assert!(line.contains("missing.toml"), "{line}");
}

#[test]
fn an_invalid_catalog_is_refused() {
    let dir = TempDir::new("catalog");
    let path = dir.path().join("catalog.toml");
    std::fs::write(&path, "[[services]]\nid = \"x\"\n").expect("catalog written");
    let path = path.display().to_string();
    assert_refused(BROKER, &[("CATALOG_PATH", &path)], "CATALOG_PATH");
}

#[test]
fn a_service_base_that_is_not_an_http_or_https_url_is_refused() {
    for value in ["ftp://x", "not a url", "https://"] {
        let line = assert_refused(BROKER, &[("SERVICE_BASE", value)], "SERVICE_BASE");
        assert!(line.contains(value), "{line}");
    }
}

#[test]
fn an_unknown_log_level_is_refused() {
    assert_refused(BROKER, &[("LOG_LEVEL", "loud")], "LOG_LEVEL");
    assert_refused(ECHO_SERVICE, &[("LOG_LEVEL", "loud")], "LOG_LEVEL");
}

#[test]
fn an_unknown_log_format_is_refused() {
    assert_refused(BROKER, &[("LOG_FORMAT", "xml")], "LOG_FORMAT");
    assert_refused(ECHO_SERVICE, &[("LOG_FORMAT", "xml")], "LOG_FORMAT");
}

#[test]
fn half_a_credential_pair_is_refused() {
    assert_refused(BROKER, &[("BROKER_USERNAME", "admin")], "BROKER_PASSWORD");
    assert_refused(BROKER, &[("BROKER_PASSWORD", "secret")], "BROKER_USERNAME");
    assert_refused(ECHO_SERVICE, &[("ECHO_USERNAME", "admin")], "ECHO_PASSWORD");
}

#[test]
fn serving_beyond_loopback_without_credentials_is_refused() {
    assert_refused(BROKER, &[("HOST", "0.0.0.0")], "HOST");
    assert_refused(ECHO_SERVICE, &[("HOST", "0.0.0.0")], "HOST");
}

/// A configuration file that names something endless or huge is refused after a bounded
/// read (exit 2, one line), instead of being read into memory until the process is killed.
#[test]
fn endless_or_huge_configuration_files_are_refused_after_a_bounded_read() {
    let dir = TempDir::new("huge");
    let huge = dir.path().join("huge.toml");
    let file = std::fs::File::create(&huge).expect("a file is created");
    file.set_len(64 * 1024 * 1024)
        .expect("the file is made large");
    let huge = huge.display().to_string();
    let mut paths = vec![huge.as_str()];
    if cfg!(unix) {
        paths.push("/dev/zero");
    }
    let port = free_port().to_string();
    for path in paths {
        for variable in ["CATALOG_PATH", "SSL_CERT_FILE"] {
            let line = assert_refused(BROKER, &[("PORT", &port), (variable, path)], variable);
            assert!(line.contains("larger than"), "{line}");
        }
        let (code, output) = run_to_end(BROKER, &["--check-catalog", path], &[]);
        assert_eq!(code, Some(2), "{output}");
        assert!(output.contains("larger than"), "{output}");
    }
}

#[test]
fn a_service_base_with_a_query_credentials_a_bad_host_or_scheme_is_refused() {
    let port = free_port().to_string();
    for (service_base, problem) in [
        ("http://127.0.0.1:9/?x=1", "query or fragment"),
        ("http://127.0.0.1:9/#top", "query or fragment"),
        ("http://[::1:9", "IPv6"),
        ("http://[fe80::zz]:9", "IPv6"),
        ("file:///etc/passwd", "http:// or https://"),
        ("ftp://127.0.0.1:9", "http:// or https://"),
        ("http://127.0.0.1:70000", "port"),
    ] {
        let line = assert_refused(
            BROKER,
            &[("PORT", &port), ("SERVICE_BASE", service_base)],
            "SERVICE_BASE",
        );
        assert!(line.contains(problem), "{service_base}: {line}");
    }
    let line = assert_refused(
        BROKER,
        &[
            ("PORT", &port),
            ("SERVICE_BASE", "http://broker:s3cr3t-value@127.0.0.1:9"),
        ],
        "SERVICE_BASE",
    );
    assert!(line.contains("ECHO_USERNAME and ECHO_PASSWORD"), "{line}");
    assert!(
        !line.contains("s3cr3t-value"),
        "the refusal repeats the password: {line}"
    );
}

#[test]
fn start_up_refusals_are_one_json_object_with_log_format_json() {
    let line = assert_refused(BROKER, &[("LOG_FORMAT", "json"), ("PORT", "abc")], "PORT");
    let value: Value = serde_json::from_str(&line).expect("the refusal is JSON");
    assert_eq!(value["level"], "ERROR");
    assert!(value["message"].as_str().unwrap_or("").starts_with("PORT:"));
}

// ---------------------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------------------

#[test]
fn health_answers_without_credentials_when_both_binaries_require_them() {
    let data = TempDir::new("health");
    let data_dir = data.path().display().to_string();
    let echo_port = free_port();
    let echo = Process::start(
        ECHO_SERVICE,
        echo_port,
        &[
            ("PORT", &echo_port.to_string()),
            ("HOST", "127.0.0.1"),
            ("ECHO_USERNAME", "manager"),
            ("ECHO_PASSWORD", "health-test-echo-password"),
            ("DATA_DIR", &data_dir),
        ],
    );
    let broker_port = free_port();
    let broker = Process::start(
        BROKER,
        broker_port,
        &[
            ("PORT", &broker_port.to_string()),
            ("HOST", "127.0.0.1"),
            ("BROKER_USERNAME", "platform"),
            ("BROKER_PASSWORD", "health-test-broker-password"),
            ("SERVICE_BASE", &echo.url),
            ("ECHO_USERNAME", "manager"),
            ("ECHO_PASSWORD", "health-test-echo-password"),
        ],
    );
    for (url, protected) in [
        (&echo.url, "/echo/some-instance"),
        (&broker.url, "/v2/catalog"),
    ] {
        let health = call("GET", &format!("{url}/health"), &[], None).expect("health answers");
        assert_eq!(health.status, 200);
        assert_eq!(health.header("Content-Type"), Some("application/json"));
        assert_eq!(health.json(), serde_json::json!({"status": "ok"}));
        let refused = call("GET", &format!("{url}{protected}"), &[], None).expect("answers");
        assert_eq!(refused.status, 401, "{url}{protected}: {}", refused.text);
    }
}

// ---------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------

/// The headers a platform sends, with an originating user and a request identity.
fn identified_headers(identity: &str, user: &str) -> Vec<(&'static str, String)> {
    let originating = format!(
        "cloudfoundry {}",
        base64(&serde_json::json!({ "user_id": user }).to_string())
    );
    vec![
        ("Authorization", format!("Basic {}", base64("user:pass"))),
        ("X-Broker-API-Version", "2.17".into()),
        ("X-Broker-API-Request-Identity", identity.into()),
        ("X-Broker-API-Originating-Identity", originating),
    ]
}

fn call_with(
    method: &str,
    url: &str,
    headers: &[(&'static str, String)],
    body: Option<&str>,
) -> Reply {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    call(method, url, &headers, body).unwrap_or_else(|error| panic!("{method} {url}: {error}"))
}

#[test]
fn text_logs_have_one_readable_line_per_request() {
    let system = System::start();
    let headers = identified_headers("req-text-1", "jane");
    assert_eq!(
        call_with("GET", &system.url("/v2/catalog"), &headers, None).status,
        200
    );
    let log = system.broker.log();
    let line = log
        .lines()
        .find(|line| line.contains("GET /v2/catalog"))
        .unwrap_or_else(|| panic!("no request line in:\n{log}"));
    assert!(
        line.contains(" INFO  [broker] GET /v2/catalog 200 "),
        "{line}"
    );
    assert!(
        line.ends_with("ms request_identity=req-text-1 user=jane"),
        "{line}"
    );
    assert!(line.get(..24).is_some_and(is_rfc3339_utc), "{line}");
    assert!(
        !log.contains("GET /health"),
        "passing health checks are debug lines:\n{log}"
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_request_fields() {
    let system = System::start_with(&[("LOG_FORMAT", "json")]);
    let headers = identified_headers("req-json-1", "jane");
    assert_eq!(
        call_with("GET", &system.url("/v2/catalog"), &headers, None).status,
        200
    );
    let missing = call_with("GET", &system.url("/v2/nowhere?x=1"), &headers, None);
    assert_eq!(missing.status, 404);
    // Hostile clients: every line they cause is still one JSON object.
    for hostile in [
        "GET /v2/catalog HTTP/1.1\r\nHost: x\r\nX-Broker-API-Request-Identity: a\tb\r\n\r\n",
        "GET / HTTP/1.1\r\nbroken header\r\n\r\n",
        "PUT /v2/catalog HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
    ] {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", system.broker.port))
            .expect("the broker accepts");
        let _ = std::io::Write::write_all(&mut stream, hostile.as_bytes());
    }
    std::thread::sleep(std::time::Duration::from_millis(300));

    let log = system.broker.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| {
            let value: Value =
                serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line}"));
            assert!(value.is_object(), "{line}");
            let time = value["time"].as_str().unwrap_or("");
            assert!(is_rfc3339_utc(time), "{line}");
            assert!(
                ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"]
                    .contains(&value["level"].as_str().unwrap_or("")),
                "{line}"
            );
            assert!(value["message"].is_string(), "{line}");
            value
        })
        .collect();
    assert!(lines.iter().any(|line| line["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("broker: listening on"))));

    let catalog = lines
        .iter()
        .find(|line| line["path"] == "/v2/catalog")
        .unwrap_or_else(|| panic!("no catalog request line in:\n{log}"));
    assert_eq!(catalog["method"], "GET");
    assert_eq!(catalog["status"], 200);
    assert!(catalog["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    assert_eq!(catalog["request_identity"], "req-json-1");
    assert_eq!(catalog["user"], "jane");
    assert_eq!(catalog["level"], "INFO");

    let not_found = lines
        .iter()
        .find(|line| line["path"] == "/v2/nowhere")
        .unwrap_or_else(|| panic!("no 404 request line in:\n{log}"));
    assert_eq!(not_found["status"], 404);
    assert_eq!(not_found["query"], "x=1");
}

/// The broker forwards the platform's request identity to the echo service, whose request
/// line carries it too: one platform request is followed through both logs.
#[test]
fn the_request_identity_is_forwarded_and_logged_by_the_echo_service() {
    let data = TempDir::new("identity");
    let data_dir = data.path().display().to_string();
    let echo = Process::start(ECHO_SERVICE, free_port(), &[("DATA_DIR", &data_dir)]);
    let broker = Process::start(BROKER, free_port(), &[("SERVICE_BASE", &echo.url)]);
    let headers = identified_headers("req-follow-7", "jane");
    let url = format!("{}/v2/service_instances/followed", broker.url);
    let provisioned = call_with("PUT", &url, &headers, Some(PROVISION_ECHO));
    assert_eq!(provisioned.status, 201, "{}", provisioned.text);

    let broker_log = broker.log();
    assert!(
        broker_log.contains("request_identity=req-follow-7 user=jane"),
        "{broker_log}"
    );
    let echo_log = echo.log();
    let line = echo_log
        .lines()
        .find(|line| line.contains("PUT /echo/followed"))
        .unwrap_or_else(|| panic!("no request line in:\n{echo_log}"));
    assert!(line.ends_with("request_identity=req-follow-7"), "{line}");
}

/// `2026-04-14T09:30:00.123Z`
fn is_rfc3339_utc(time: &str) -> bool {
    let bytes = time.as_bytes();
    bytes.len() == 24
        && time.ends_with('Z')
        && bytes.iter().enumerate().all(|(i, byte)| match i {
            4 | 7 => *byte == b'-',
            10 => *byte == b'T',
            13 | 16 => *byte == b':',
            19 => *byte == b'.',
            23 => *byte == b'Z',
            _ => byte.is_ascii_digit(),
        })
}

#[test]
fn secrets_never_appear_in_logs_even_at_trace_level() {
    const BROKER_USER: &str = "platform-7f3a";
    const BROKER_PASSWORD: &str = "broker-secret-c41d9e";
    const ECHO_USER: &str = "manager-2b8c";
    const ECHO_PASSWORD: &str = "echo-secret-9a0f17";
    const WRONG_PASSWORD: &str = "wrong-secret-55e2ab";

    for format in ["text", "json"] {
        let system = System::start_with(&[
            ("LOG_LEVEL", "trace"),
            ("LOG_FORMAT", format),
            ("HOST", "127.0.0.1"),
            ("BROKER_USERNAME", BROKER_USER),
            ("BROKER_PASSWORD", BROKER_PASSWORD),
            ("ECHO_USERNAME", ECHO_USER),
            ("ECHO_PASSWORD", ECHO_PASSWORD),
        ]);
        let broker_authorization = format!(
            "Basic {}",
            base64(&format!("{BROKER_USER}:{BROKER_PASSWORD}"))
        );
        let headers = [
            ("Authorization", broker_authorization.clone()),
            ("X-Broker-API-Version", "2.17".to_string()),
            ("Content-Type", "application/json".to_string()),
        ];
        let wrong = [(
            "Authorization",
            format!(
                "Basic {}",
                base64(&format!("{BROKER_USER}:{WRONG_PASSWORD}"))
            ),
        )];
        assert_eq!(
            call_with("GET", &system.url("/v2/catalog"), &wrong, None).status,
            401
        );

        let instance = system.url("/v2/service_instances/secret-test");
        let provisioned = call_with("PUT", &instance, &headers, Some(PROVISION_ECHO));
        assert_eq!(provisioned.status, 201, "{}", provisioned.text);
        let dashboard_url = provisioned.json()["dashboard_url"]
            .as_str()
            .expect("dashboard_url")
            .to_string();
        let dashboard_token = dashboard_url
            .split("token=")
            .nth(1)
            .expect("a token in the dashboard url")
            .to_string();
        let binding = format!("{instance}/service_bindings/app-binding");
        let bound = call_with("PUT", &binding, &headers, Some(BIND_ECHO));
        assert_eq!(bound.status, 201, "{}", bound.text);
        let credentials = bound.json()["credentials"].clone();
        let uri = credentials["uri"].as_str().expect("uri").to_string();
        let binding_user = credentials["username"]
            .as_str()
            .expect("username")
            .to_string();
        let binding_password = credentials["password"]
            .as_str()
            .expect("password")
            .to_string();
        assert_eq!(post_message(&uri, "a message").status, 200);
        let fetched = call_with("GET", &binding, &headers, None);
        assert_eq!(fetched.status, 200, "{}", fetched.text);
        let dashboard = call("GET", &dashboard_url, &[], None).expect("the dashboard answers");
        assert_eq!(dashboard.status, 200);
        let query = format!("?{ECHO_IDS}");
        assert_eq!(
            call_with("DELETE", &format!("{binding}{query}"), &headers, None).status,
            200
        );
        assert_eq!(
            call_with("DELETE", &format!("{instance}{query}"), &headers, None).status,
            200
        );

        let log = system.broker.log();
        assert!(
            log.contains("POST /echo/secret-test/app-binding 200"),
            "{log}"
        );
        assert!(log.contains("PUT /echo/secret-test 200"), "{log}");
        let secrets = [
            ("the broker password", BROKER_PASSWORD.to_string()),
            ("a wrong broker password", WRONG_PASSWORD.to_string()),
            (
                "the broker Authorization value",
                base64(&format!("{BROKER_USER}:{BROKER_PASSWORD}")),
            ),
            ("the echo management password", ECHO_PASSWORD.to_string()),
            (
                "the echo Authorization value",
                base64(&format!("{ECHO_USER}:{ECHO_PASSWORD}")),
            ),
            ("the binding password", binding_password.clone()),
            (
                "the binding Authorization value",
                base64(&format!("{binding_user}:{binding_password}")),
            ),
            ("the dashboard token", dashboard_token.clone()),
        ];
        // ureq's trace output is a hex dump of every request and response, headers and
        // bodies included, where no secret appears whole: none of it may be logged.
        let http_crate_debug = log.lines().find(|line| {
            (line.contains("ureq") || line.contains("tiny_http"))
                && (line.contains("DEBUG") || line.contains("TRACE"))
        });
        assert_eq!(http_crate_debug, None, "in the {format} log");
        for (what, secret) in secrets {
            assert!(
                !log.contains(&secret),
                "{what} ({secret}) is in the {format} log:\n{log}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// The dashboard page
// ---------------------------------------------------------------------------------------

#[test]
fn tag_balance_checker_finds_unclosed_and_misnested_tags() {
    assert_eq!(tag_balance_problem("<p><b>x</b><br></p>"), None);
    assert!(tag_balance_problem("<p><b>x</p></b>").is_some());
    assert!(tag_balance_problem("<ul><li>x</ul>").is_some());
    assert!(tag_balance_problem("<p>x").is_some());
    assert!(tag_balance_problem("<p><script>alert(1)</script></p>").is_none());
}

#[test]
fn dashboard_is_well_formed_and_escapes_hostile_ids_and_messages() {
    let system = System::start();
    // No '/': an id a proxy could read as a path separator is refused (security.rs).
    let hostile_instance = "<script>alert(1)<!--";
    let hostile_binding = "\"&'";
    let instance_url = system.url(&format!(
        "/v2/service_instances/{}",
        echo_broker::http::percent_encode(hostile_instance)
    ));
    let provisioned = platform("PUT", &instance_url, Some(PROVISION_ECHO));
    assert_eq!(provisioned.status, 201, "{}", provisioned.text);
    let dashboard_url = provisioned.json()["dashboard_url"]
        .as_str()
        .expect("dashboard_url")
        .to_string();

    let empty = call("GET", &dashboard_url, &[], None).expect("the dashboard answers");
    assert_eq!(empty.status, 200);
    assert_eq!(tag_balance_problem(&empty.text), None, "{}", empty.text);

    let binding_url = format!(
        "{instance_url}/service_bindings/{}",
        echo_broker::http::percent_encode(hostile_binding)
    );
    let bound = platform("PUT", &binding_url, Some(BIND_ECHO));
    assert_eq!(bound.status, 201, "{}", bound.text);
    let uri = bound.json()["credentials"]["uri"]
        .as_str()
        .expect("uri")
        .to_string();
    for message in ["<script>alert(1)</script>", "\"&'", "</li></ul><h1>x"] {
        assert_eq!(post_message(&uri, message).status, 200);
    }

    let page = call("GET", &dashboard_url, &[], None).expect("the dashboard answers");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let html = &page.text;
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("<meta name=\"viewport\""), "{html}");
    assert_eq!(tag_balance_problem(html), None, "{html}");
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("alert(1)</"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains("&quot;&amp;&#39;"), "{html}");
    assert!(html.contains("&lt;/li&gt;&lt;/ul&gt;&lt;h1&gt;x"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;!--"), "{html}");
}
