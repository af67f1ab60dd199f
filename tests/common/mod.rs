//! What every black-box test needs: start the real binaries on free loopback ports, wait
//! until they answer, talk HTTP to them, and stop them (and remove their data) afterwards.
#![allow(dead_code)]

use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// Shared with the test kit, whose PostgreSQL clusters are made with them.
pub use testkit::{free_port, fresh_password, TempDir};

pub const BROKER: &str = env!("CARGO_BIN_EXE_echo-broker");
pub const ECHO_SERVICE: &str = env!("CARGO_BIN_EXE_echo-service");

/// The platform's credentials and API version as raw header lines, for raw requests.
pub const BROKER_CREDENTIAL_LINES: &str =
    "Authorization: Basic dXNlcjpwYXNz\r\nX-Broker-API-Version: 2.17\r\n";

/// The echo service's management credentials (`broker` / `echo-secret`) as a raw header
/// line, for a system from [`System::start_with_known_echo_credentials`].
pub const ECHO_CREDENTIAL_LINES: &str = "Authorization: Basic YnJva2VyOmVjaG8tc2VjcmV0\r\n";

/// The default credentials (the original broker's), which the broker accepts when none are
/// configured.
pub const USER: &str = "user";
pub const PASSWORD: &str = "pass";

/// A running binary, killed when dropped. Its stderr (the log) goes to a file.
pub struct Process {
    pub child: Child,
    pub url: String,
    pub port: u16,
    pub log_path: PathBuf,
    _dir: TempDir,
}

impl Process {
    /// Its operating-system threads, from /proc (Linux); `None` elsewhere, or once it has
    /// gone.
    pub fn threads(&self) -> Option<usize> {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()?
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .and_then(|count| count.trim().parse().ok())
    }

    /// Starts `binary` on `port` (its `PORT`) with `env` (and nothing inherited that could
    /// change its behaviour) and waits until `GET /health` answers 200.
    pub fn start(binary: &str, port: u16, env: &[(&str, &str)]) -> Process {
        Process::start_in(None, binary, port, env)
    }

    /// [`Process::start`] with `binary` run by `wrapper` (a program and its first
    /// arguments, the binary's path following them), as `sh -c 'ulimit -n 256 && exec "$0"'`.
    pub fn start_wrapped(
        wrapper: &[&str],
        binary: &str,
        port: u16,
        env: &[(&str, &str)],
    ) -> Process {
        let mut args = wrapper[1..].to_vec();
        args.push(binary);
        Process::launch(None, wrapper[0], &args, port, env)
    }

    /// [`Process::start`] with `working_dir` as the current directory (else a folder of its
    /// own, beside its log).
    pub fn start_in(
        working_dir: Option<&Path>,
        binary: &str,
        port: u16,
        env: &[(&str, &str)],
    ) -> Process {
        Process::launch(working_dir, binary, &[], port, env)
    }

    /// Runs `program` with `args`, `PORT` and `env`, and waits until it is healthy.
    fn launch(
        working_dir: Option<&Path>,
        program: &str,
        args: &[&str],
        port: u16,
        env: &[(&str, &str)],
    ) -> Process {
        let dir = TempDir::new("process");
        let log_path = dir.path().join("log.txt");
        let port_text = port.to_string();
        let mut full_env = vec![("PORT", port_text.as_str())];
        full_env.extend_from_slice(env);
        let child = spawn_in(working_dir, program, args, &full_env, &log_path);
        let mut process = Process {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
            log_path,
            _dir: dir,
        };
        process.wait_until_healthy();
        process
    }

    fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before it was healthy; its log:\n{}",
                    self.url,
                    self.log()
                );
            }
            if let Ok(response) = call("GET", &format!("{}/health", self.url), &[], None) {
                if response.status == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{} did not become healthy; its log:\n{}",
            self.url,
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// What the process wrote to standard error.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.log_path.with_extension("stderr")).unwrap_or_default()
    }

    /// Kills the process at once (SIGKILL on Unix), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns `binary` with `args` and `env`, its stdout (the log) into `log_path` and its
/// stderr (where nothing should appear) beside it, with `.stderr` added to the name. It runs
/// in the folder of `log_path`, which the test made: never in the project's, where a
/// reader's own `./echo-data` may be.
pub fn spawn(binary: &str, args: &[&str], env: &[(&str, &str)], log_path: &Path) -> Child {
    spawn_in(None, binary, args, env, log_path)
}

/// [`spawn`] with `working_dir` as the current directory (else the folder of `log_path`).
pub fn spawn_in(
    working_dir: Option<&Path>,
    binary: &str,
    args: &[&str],
    env: &[(&str, &str)],
    log_path: &Path,
) -> Child {
    let log = std::fs::File::create(log_path).expect("log file is created");
    let log_err =
        std::fs::File::create(log_path.with_extension("stderr")).expect("stderr file is created");
    let mut command = Command::new(binary);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let variables = echo_broker::settings::ENVIRONMENT_VARIABLES.into_iter();
    for name in variables.chain(echo_broker::platform::PLATFORM_VARIABLES) {
        command.env_remove(name);
    }
    // Not in the list above until the echo service reads it; a developer's own must not
    // reach a child either way.
    command.env_remove("DATABASE_URL");
    command.envs(env.iter().copied());
    if let Some(database_url) = matrix_database_url(env) {
        command.env("DATABASE_URL", database_url);
    }
    if let Some(dir) = working_dir.or_else(|| log_path.parent()) {
        command.current_dir(dir);
    }
    command.spawn().expect("the binary starts")
}

/// The store the echo services of this run keep their state in: `"postgres"` when
/// `ECHO_TEST_DATABASE_URL` is set (see [`spawn_in`]), else `"journal"`. A test that looks at
/// the journal's files returns early on `"postgres"`, saying so.
pub fn store_under_test() -> &'static str {
    if matrix_server_url().is_some() {
        "postgres"
    } else {
        "journal"
    }
}

/// `ECHO_TEST_DATABASE_URL`: a PostgreSQL server (and a user there that may create
/// databases) for the store matrix.
fn matrix_server_url() -> Option<String> {
    std::env::var("ECHO_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// The store matrix: with `ECHO_TEST_DATABASE_URL` set, a child given a `DATA_DIR` and no
/// `DATABASE_URL` gets a database of its own instead, so every echo service the tests start
/// runs on PostgreSQL with no test changed. The database belongs to the directory: a restart
/// with the same `DATA_DIR` finds the same state, and a fresh directory a fresh database.
fn matrix_database_url(env: &[(&str, &str)]) -> Option<String> {
    let server = matrix_server_url()?;
    if env.iter().any(|(name, _)| *name == "DATABASE_URL") {
        return None;
    }
    let (_, data_dir) = env
        .iter()
        .find(|(name, value)| *name == "DATA_DIR" && !value.trim().is_empty())?;
    let name = database_name(data_dir);
    create_database_once(&server, &name);
    Some(with_database(&server, &name))
}

/// `echo_` and a hash of the directory and of a random value drawn once per test process:
/// temp dirs are named after the process id, and a database left by an earlier process
/// with a reused id must not be taken for this one's. Hex only, so it needs no quoting.
fn database_name(data_dir: &str) -> String {
    use std::hash::{Hash, Hasher};
    static PROCESS_SALT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let salt = PROCESS_SALT.get_or_init(fresh_password);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    salt.hash(&mut hasher);
    data_dir.hash(&mut hasher);
    format!("echo_{:016x}", hasher.finish())
}

fn create_database_once(server: &str, name: &str) {
    let mut config: ::postgres::Config = server
        .parse()
        .unwrap_or_else(|error| panic!("ECHO_TEST_DATABASE_URL is not a PostgreSQL URL: {error}"));
    config.connect_timeout(Duration::from_secs(10));
    let mut client = config
        .connect(::postgres::NoTls)
        .unwrap_or_else(|error| panic!("ECHO_TEST_DATABASE_URL cannot be reached: {error}"));
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .unwrap_or_else(|error| panic!("looking for database {name}: {error}"))
        .is_some();
    if exists {
        return;
    }
    // CREATE DATABASE takes no parameters: the name is spliced in, which is safe because
    // database_name makes it of hex digits. Another thread may create it first.
    match client.batch_execute(&format!("CREATE DATABASE {name}")) {
        Ok(()) => {}
        Err(error) if error.code() == Some(&::postgres::error::SqlState::DUPLICATE_DATABASE) => {}
        Err(error) => panic!("CREATE DATABASE {name} on ECHO_TEST_DATABASE_URL: {error}"),
    }
}

/// `server` (a postgres:// URL) with its database replaced by `database`, its query kept.
fn with_database(server: &str, database: &str) -> String {
    let authority_start = server.find("://").map_or(0, |i| i + 3);
    let rest = &server[authority_start..];
    // A password holds '/' or '?' only percent-encoded, so the first of them ends the
    // authority.
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let query = rest[authority_end..]
        .find('?')
        .map_or("", |i| &rest[authority_end + i..]);
    format!(
        "{}{}/{database}{query}",
        &server[..authority_start],
        &rest[..authority_end]
    )
}

/// Runs `binary` with `args` and `env` to completion (bounded), returning exit code and
/// output (standard output and standard error).
pub fn run_to_end(binary: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    // What a person at a terminal sees: standard output, then standard error.
    let (code, stdout, stderr) = run_to_end_apart(binary, args, env);
    (code, stdout + &stderr)
}

/// [`run_to_end`], with standard output and standard error apart, in that order.
pub fn run_to_end_apart(
    binary: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let dir = TempDir::new("run");
    let log_path = dir.path().join("out.txt");
    let mut child = spawn(binary, args, env, &log_path);
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{binary} {args:?} did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |path: PathBuf| std::fs::read_to_string(path).unwrap_or_default();
    (
        code,
        read(log_path.clone()),
        read(log_path.with_extension("stderr")),
    )
}

/// The broker with its embedded echo service, on free ports, state in a temp dir.
pub struct System {
    pub broker: Process,
    pub echo_url: String,
    pub data: TempDir,
}

impl System {
    pub fn start() -> System {
        System::start_with(&[])
    }

    /// Starts the embedded default, with `extra` environment variables added.
    pub fn start_with(extra: &[(&str, &str)]) -> System {
        let data = TempDir::new("data");
        let broker_port = free_port().to_string();
        let echo_port = free_port();
        let echo_port_text = echo_port.to_string();
        let data_dir = data.path().display().to_string();
        let mut env = vec![
            ("PORT", broker_port.as_str()),
            ("ECHO_PORT", echo_port_text.as_str()),
            ("DATA_DIR", data_dir.as_str()),
        ];
        env.extend_from_slice(extra);
        let port = broker_port.parse().expect("port is a number");
        System {
            broker: Process::start(BROKER, port, &env),
            echo_url: format!("http://127.0.0.1:{echo_port}"),
            data,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.broker.url, path)
    }

    /// The embedded default with the echo service's management pair known to the test
    /// (`broker` / `echo-secret`, as [`ECHO_CREDENTIAL_LINES`] sends it), so that both
    /// servers can be called as their trusted callers.
    pub fn start_with_known_echo_credentials(extra: &[(&str, &str)]) -> System {
        let mut env = vec![
            ("ECHO_USERNAME", "broker"),
            ("ECHO_PASSWORD", "echo-secret"),
        ];
        env.extend_from_slice(extra);
        System::start_with(&env)
    }

    /// Both servers of the system: name, port, and the header lines of a caller each trusts
    /// (for a system from [`System::start_with_known_echo_credentials`]).
    pub fn servers(&self) -> [(&'static str, u16, &'static str); 2] {
        let echo_port = self
            .echo_url
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("the echo URL has a port");
        [
            ("broker", self.broker.port, BROKER_CREDENTIAL_LINES),
            ("echo", echo_port, ECHO_CREDENTIAL_LINES),
        ]
    }
}

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Reply {
    /// The body as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|_| panic!("not JSON (status {}): {}", self.status, self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// A JSON error body with a non-empty `description`.
    pub fn assert_error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text);
        assert_eq!(
            self.header("Content-Type"),
            Some("application/json"),
            "body: {}",
            self.text
        );
        let body = self.json();
        let description = body["description"].as_str().unwrap_or("");
        assert!(!description.is_empty(), "no description in {}", self.text);
        body
    }
}

/// One HTTP exchange with a fresh agent (statuses are not errors; 10 s timeout).
pub fn call(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Reply, ureq::Error> {
    call_bytes(method, url, headers, body.unwrap_or("").as_bytes())
}

/// [`call`] with a body of any bytes (invalid UTF-8 included).
pub fn call_bytes(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(body.to_vec())
        .expect("the test builds a valid request");
    let mut response = agent.run(request)?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_string()))
        .collect();
    let mut text = String::new();
    response
        .body_mut()
        .as_reader()
        .read_to_string(&mut text)
        .map_err(ureq::Error::Io)?;
    Ok(Reply {
        status,
        headers,
        text,
    })
}

/// The headers a platform sends: basic auth with the default credentials and the API
/// version [`platform_api_version`].
pub fn platform_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Authorization", "Basic dXNlcjpwYXNz"),
        ("X-Broker-API-Version", platform_api_version()),
        ("Content-Type", "application/json"),
    ]
}

/// The API version the tests' platform speaks: 2.17, or `ECHO_TEST_API_VERSION` (`.ci/run`
/// runs the conformance suite as older platforms too, which ignore the newer fields).
pub fn platform_api_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        std::env::var("ECHO_TEST_API_VERSION").unwrap_or_else(|_| "2.17".to_string())
    })
}

/// A request as the platform sends it; panics if the broker cannot be reached.
pub fn platform(method: &str, url: &str, body: Option<&str>) -> Reply {
    call(method, url, &platform_headers(), body)
        .unwrap_or_else(|error| panic!("{method} {url}: {error}"))
}

pub const PROVISION_ECHO: &str = r#"{"service_id": "echo_service", "plan_id": "big_0001", "organization_guid": "HP", "space_guid": "IT"}"#;
pub const PROVISION_INVERT: &str = r#"{"service_id": "invert_service", "plan_id": "small_0001", "organization_guid": "HP", "space_guid": "IT"}"#;
pub const BIND_ECHO: &str =
    r#"{"service_id": "echo_service", "plan_id": "big_0001", "app_guid": "otherappid"}"#;
pub const ECHO_IDS: &str = "service_id=echo_service&plan_id=big_0001";

/// Sends `message` to a binding's `credentials.uri`, as a bound app does.
pub fn post_message(uri: &str, message: &str) -> Reply {
    let (without_userinfo, authorization) = split_userinfo(uri);
    let body = serde_json::json!({ "message": message }).to_string();
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(authorization) = &authorization {
        headers.push(("Authorization", authorization.as_str()));
    }
    call("POST", &without_userinfo, &headers, Some(&body)).expect("the echo service answers")
}

/// `http://user:pass@host/path` -> (`http://host/path`, `Basic base64(user:pass)`).
pub fn split_userinfo(uri: &str) -> (String, Option<String>) {
    use base64::Engine;
    let Some((scheme, rest)) = uri.split_once("://") else {
        return (uri.to_string(), None);
    };
    match rest.split_once('@') {
        Some((userinfo, host_and_path)) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(userinfo);
            (
                format!("{scheme}://{host_and_path}"),
                Some(format!("Basic {encoded}")),
            )
        }
        None => (uri.to_string(), None),
    }
}

/// Elements that have no end tag in HTML.
const VOID_ELEMENTS: [&str; 13] = [
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr",
];

/// Checks that every opened non-void element is closed, in order; returns the problem.
pub fn tag_balance_problem(html: &str) -> Option<String> {
    let mut open: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        if let Some(comment) = rest.strip_prefix("!--") {
            rest = &comment[comment.find("-->")? + 3..];
            continue;
        }
        let end = rest.find('>')?;
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') {
            continue; // <!DOCTYPE html>
        }
        if tag.contains('<') {
            return Some(format!("'<' inside the tag <{tag}>"));
        }
        if let Some(name) = tag.strip_prefix('/') {
            let name = name.trim().to_ascii_lowercase();
            match open.pop() {
                Some(opened) if opened == name => {}
                other => return Some(format!("</{name}> closes {other:?}")),
            }
            continue;
        }
        let name = tag
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Some(format!("a bad tag <{tag}>"));
        }
        if VOID_ELEMENTS.contains(&name.as_str()) || tag.ends_with('/') {
            continue;
        }
        if name == "style" || name == "script" {
            // Raw text: everything up to the end tag belongs to the element.
            let close = format!("</{name}>");
            rest = &rest[rest.find(&close)? + close.len()..];
            continue;
        }
        open.push(name);
    }
    (!open.is_empty()).then(|| format!("never closed: {open:?}"))
}

/// Reads one whole HTTP/1.1 message (request or response) from `reader`: the head up to the
/// blank line and then `Content-Length` bytes of body. `None` at end of stream or on error.
///
/// A fake server must read the whole request before it answers and closes: on Windows,
/// closing a socket with unread bytes resets the connection, and the reset discards the
/// answer before the client reads it.
pub fn read_http_message(reader: &mut impl std::io::BufRead) -> Option<Vec<u8>> {
    let mut message = Vec::new();
    let mut content_length = 0usize;
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        message.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line);
        if text == "\r\n" || text == "\n" {
            break;
        }
        if let Some((name, value)) = text.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).ok()?;
    message.extend_from_slice(&body);
    Some(message)
}
