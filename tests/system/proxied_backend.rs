//! The broker with a proxy between it and its echo service, as a platform spreads the load
//! over echo services: nginx, which decodes each path it forwards and resolves its
//! dot-segments before it passes it on. Whatever id a platform sends, the broker answers
//! without a 5xx, and no call reaches a path other than its own: an id such a proxy reads
//! as a path step is refused with a 400 that says why, and every other id travels whole.
//!
//! Needs nginx (`apt-get install nginx-light`): where it is missing the tests say loudly
//! that they skipped, unless `ECHO_TEST_REQUIRE_NGINX` is set (CI sets it), where that fails
//! them. nginx runs as one process on a free loopback port, from a configuration in a temp
//! dir the test made, in front of a separately started `echo-service`.

use crate::common::*;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The echo service's management pair, as the broker and the test send it.
const ECHO_USER: &str = "broker";
const ECHO_PASSWORD: &str = "echo-secret";

/// nginx in front of one echo service: `/echo/...` through a `proxy_pass` with a path,
/// which makes nginx send the path it decoded and normalised (re-encoding only what it
/// must); anything else as it came.
fn nginx_config(dir: &std::path::Path, port: u16, upstream: u16) -> String {
    let d = dir.display();
    format!(
        "daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream echo {{
        server 127.0.0.1:{upstream};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /echo/ {{
            proxy_pass http://echo/echo/;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $http_host;
        }}
        location / {{
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $http_host;
        }}
    }}
}}
"
    )
}

/// A running nginx, stopped when dropped.
struct Nginx {
    child: Child,
    url: String,
    dir: TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // One process (master_process off): killing it leaves nothing behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// nginx in front of the echo service on `upstream`, answering; `None` (after saying
    /// so) where nginx is not installed.
    fn start(upstream: u16) -> Option<Nginx> {
        let Some(binary) = find_nginx() else {
            not_available("nginx is not installed (apt-get install nginx-light)");
            return None;
        };
        let dir = TempDir::new("nginx");
        let port = free_port();
        let config = dir.path().join("nginx.conf");
        std::fs::write(&config, nginx_config(dir.path(), port, upstream))
            .expect("the nginx config is written");
        let child = Command::new(&binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        nginx.wait_until_it_forwards();
        Some(nginx)
    }

    fn wait_until_it_forwards(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited ({status}): {}", self.error_log());
            }
            let health = call("GET", &format!("{}/health", self.url), &[], None);
            if health.is_ok_and(|reply| reply.status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("nginx did not forward /health: {}", self.error_log());
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(if cfg!(windows) { "nginx.exe" } else { "nginx" }))
        .find(|candidate| candidate.is_file())
}

/// Where nginx is missing: a failure when CI requires it, else a message on standard error
/// that no capture hides, so that a skip never looks like a pass.
fn not_available(reason: &str) {
    if std::env::var_os("ECHO_TEST_REQUIRE_NGINX").is_some_and(|value| !value.is_empty()) {
        panic!("ECHO_TEST_REQUIRE_NGINX is set, but {reason}");
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: {reason}; set ECHO_TEST_REQUIRE_NGINX=1 to fail instead. ***\n"
    );
}

/// An echo service on its own, nginx in front of it, and a broker whose `SERVICE_BASE` is
/// nginx; `None` where nginx is missing.
struct Proxied {
    broker: Process,
    nginx: Nginx,
    echo: Process,
    _data: TempDir,
}

impl Proxied {
    fn start() -> Option<Proxied> {
        let data = TempDir::new("proxied-echo");
        let data_dir = data.path().display().to_string();
        let echo = Process::start(
            ECHO_SERVICE,
            free_port(),
            &[
                ("HOST", "127.0.0.1"),
                ("DATA_DIR", &data_dir),
                ("ECHO_USERNAME", ECHO_USER),
                ("ECHO_PASSWORD", ECHO_PASSWORD),
            ],
        );
        let nginx = Nginx::start(echo.port)?;
        let broker = Process::start(
            BROKER,
            free_port(),
            &[
                ("HOST", "127.0.0.1"),
                ("SERVICE_BASE", &nginx.url),
                ("ECHO_USERNAME", ECHO_USER),
                ("ECHO_PASSWORD", ECHO_PASSWORD),
            ],
        );
        Some(Proxied {
            broker,
            nginx,
            echo,
            _data: data,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.broker.url)
    }

    /// How many instances the echo service holds, asked directly, not through nginx.
    fn echo_instance_count(&self) -> u64 {
        let authorization = echo_broker::http::basic_authorization(ECHO_USER, ECHO_PASSWORD);
        let reply = call(
            "GET",
            &format!("{}/echo", self.echo.url),
            &[("Authorization", &authorization)],
            None,
        )
        .expect("the echo service answers");
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["instances"].as_u64().unwrap_or(u64::MAX)
    }
}

fn instance_url(proxied: &Proxied, instance_id: &str) -> String {
    let encoded = echo_broker::http::percent_encode(instance_id);
    proxied.url(&format!("/v2/service_instances/{encoded}"))
}

/// The echo service's own view of one instance, asked directly: its status code.
fn echo_status_of(proxied: &Proxied, instance_id: &str) -> u16 {
    let authorization = echo_broker::http::basic_authorization(ECHO_USER, ECHO_PASSWORD);
    let encoded = echo_broker::http::percent_encode(instance_id);
    call(
        "GET",
        &format!("{}/echo/{encoded}", proxied.echo.url),
        &[("Authorization", &authorization)],
        None,
    )
    .expect("the echo service answers")
    .status
}

/// The proxy in these tests is one that would turn such ids into other paths: nginx itself
/// refuses a path that climbs above its root, and forwards `x/../kept` as `kept`.
#[test]
fn the_proxy_in_front_of_the_echo_service_normalises_paths() {
    let Some(proxied) = Proxied::start() else {
        return;
    };
    let authorization = echo_broker::http::basic_authorization(ECHO_USER, ECHO_PASSWORD);
    let through_nginx = |method: &str, path: &str, body: Option<&str>| {
        call(
            method,
            &format!("{}{path}", proxied.nginx.url),
            &[
                ("Authorization", &authorization),
                ("Content-Type", "application/json"),
            ],
            body,
        )
        .expect("nginx answers")
    };
    let climbing = echo_broker::http::percent_encode("../../etc");
    assert_eq!(
        through_nginx("GET", &format!("/echo/{climbing}"), None).status,
        400
    );
    let sideways = echo_broker::http::percent_encode("x/../kept");
    let provision = r#"{"service_id": "echo_service", "plan_id": "big_0001", "organization_guid": "o", "space_guid": "s"}"#;
    let made = through_nginx("PUT", &format!("/echo/{sideways}"), Some(provision));
    assert!(made.status < 300, "{} {}", made.status, made.text);
    assert_eq!(echo_status_of(&proxied, "kept"), 200);
    assert_eq!(echo_status_of(&proxied, "x/../kept"), 404);
}

/// Ids a proxy reads as a path step: a 400 from the broker that says why, on every route
/// that sends an id on, and nothing made or touched behind the proxy.
#[test]
fn ids_a_proxy_reads_as_path_steps_get_a_400_and_reach_nothing_through_nginx() {
    let Some(proxied) = Proxied::start() else {
        return;
    };
    let kept = platform("PUT", &instance_url(&proxied, "kept"), Some(PROVISION_ECHO));
    assert_eq!(kept.status, 201, "{}", kept.text);
    for id in [
        ".",
        "..",
        "../../etc",
        "../kept",
        "x/../kept",
        "a/b",
        "a\\b",
    ] {
        let instance = instance_url(&proxied, id);
        let binding = format!(
            "{}/service_bindings/{}",
            instance_url(&proxied, "kept"),
            echo_broker::http::percent_encode(id)
        );
        for (method, url, body) in [
            ("PUT", instance.clone(), Some(PROVISION_ECHO)),
            ("GET", instance.clone(), None),
            ("DELETE", format!("{instance}?{ECHO_IDS}"), None),
            ("PUT", binding.clone(), Some(BIND_ECHO)),
            ("GET", binding.clone(), None),
            ("DELETE", format!("{binding}?{ECHO_IDS}"), None),
        ] {
            let reply = platform(method, &url, body);
            assert_eq!(reply.status, 400, "{method} {url}: {}", reply.text);
            let description = reply.json()["description"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                description.contains("proxy"),
                "{method} {url}: {description}"
            );
        }
    }
    let kept = platform("GET", &instance_url(&proxied, "kept"), None);
    assert_eq!(kept.status, 200, "{}", kept.text);
    assert_eq!(
        proxied.echo_instance_count(),
        1,
        "the echo service holds only 'kept'"
    );
}

/// Every other id travels whole through the proxy: `%2e%2e`, `%2F`, a `?`, a space and the
/// rest make their whole lifecycle with no 5xx, bound apps reach their binding through
/// nginx too, and the echo service holds each under its own id.
#[test]
fn other_hostile_ids_travel_whole_through_nginx() {
    let Some(proxied) = Proxied::start() else {
        return;
    };
    for id in [
        "%2e%2e",
        "%2E%2E%2Fetc",
        "%2F",
        "...",
        ".x",
        "%",
        "?",
        "#",
        "+",
        "a b",
        "é ü",
        "a;b",
    ] {
        let instance = instance_url(&proxied, id);
        let made = platform("PUT", &instance, Some(PROVISION_ECHO));
        assert_eq!(made.status, 201, "{id:?}: {}", made.text);
        assert_eq!(
            echo_status_of(&proxied, id),
            200,
            "{id:?} is not the echo service's"
        );
        let binding = format!(
            "{instance}/service_bindings/{}",
            echo_broker::http::percent_encode(id)
        );
        let bound = platform("PUT", &binding, Some(BIND_ECHO));
        assert_eq!(bound.status, 201, "{id:?}: {}", bound.text);
        let uri = bound.json()["credentials"]["uri"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            uri.contains(&proxied.nginx.url.replace("http://", "")),
            "{uri}"
        );
        let echoed = post_message(&uri, "through nginx");
        assert_eq!(echoed.status, 200, "{id:?}: {}", echoed.text);
        assert_eq!(echoed.json()["response"], "through nginx");
        let fetched = platform("GET", &binding, None);
        assert_eq!(fetched.status, 200, "{id:?}: {}", fetched.text);
        let unbound = platform("DELETE", &format!("{binding}?{ECHO_IDS}"), None);
        assert_eq!(unbound.status, 200, "{id:?}: {}", unbound.text);
        let deprovisioned = platform("DELETE", &format!("{instance}?{ECHO_IDS}"), None);
        assert_eq!(deprovisioned.status, 200, "{id:?}: {}", deprovisioned.text);
        assert_eq!(echo_status_of(&proxied, id), 404, "{id:?} is still there");
    }
}
