//! nginx, when installed: a ceiling serving the catalog's bytes, and a proxy in front of
//! one or two echo services in the store phase; each from a minimal nginx.conf in the run's
//! directory, on loopback.

use crate::client::{request_bytes, Client};
use crate::processes::{find_program, free_ports, loopback, Process, READY_TIMEOUT};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// nginx, stopped with `nginx -s stop` (its workers would outlive a killed master).
pub struct Nginx {
    pub process: Process,
    binary: PathBuf,
    prefix: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new(&self.binary)
            .args(nginx_args(&self.prefix))
            .args(["-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn nginx_args(prefix: &Path) -> Vec<String> {
    let text = |path: PathBuf| path.display().to_string();
    vec![
        "-p".into(),
        text(prefix.to_path_buf()),
        "-e".into(),
        text(prefix.join("error.log")),
        "-c".into(),
        text(prefix.join("nginx.conf")),
    ]
}

pub fn find_nginx() -> Option<PathBuf> {
    find_program("nginx")
}

/// nginx serving the catalog file at `/v2/catalog` and `{}` for everything else, with
/// `worker_processes auto` (one per core) and no access log.
pub fn start_nginx(binary: &Path, dir: &Path, catalog_file: &Path) -> Result<Nginx, String> {
    let prefix = dir.join("nginx");
    fs::create_dir_all(prefix.join("temp")).map_err(|error| error.to_string())?;
    let port = free_ports(1)[0];
    let p = prefix.display();
    let config = format!(
        "worker_processes auto;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    open_file_cache max=16;
    client_body_temp_path {p}/temp/body;
    proxy_temp_path {p}/temp/proxy;
    fastcgi_temp_path {p}/temp/fastcgi;
    uwsgi_temp_path {p}/temp/uwsgi;
    scgi_temp_path {p}/temp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /v2/catalog {{
            default_type application/json;
            alias {catalog};
        }}
        location / {{
            default_type application/json;
            return 200 '{{}}';
        }}
    }}
}}
",
        catalog = catalog_file.display()
    );
    launch_nginx(binary, prefix, &config, port, "/v2/catalog")
}

/// nginx in front of echo services (`upstreams`, their ports): round robin, per request, on
/// keep-alive connections to them; a failed request is not retried on the other one, so
/// the load generator sees it.
pub fn start_nginx_proxy(
    binary: &Path,
    dir: &Path,
    name: &str,
    upstreams: &[u16],
) -> Result<Nginx, String> {
    let prefix = dir.join(name);
    fs::create_dir_all(prefix.join("temp")).map_err(|error| error.to_string())?;
    let port = free_ports(1)[0];
    let p = prefix.display();
    let servers: String = upstreams
        .iter()
        .map(|upstream| format!("        server 127.0.0.1:{upstream};\n"))
        .collect();
    let config = format!(
        "worker_processes auto;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path {p}/temp/body;
    proxy_temp_path {p}/temp/proxy;
    fastcgi_temp_path {p}/temp/fastcgi;
    uwsgi_temp_path {p}/temp/uwsgi;
    scgi_temp_path {p}/temp/scgi;
    upstream echo {{
{servers}        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $http_host;
            proxy_next_upstream off;
            proxy_read_timeout 10s;
        }}
    }}
}}
"
    );
    launch_nginx(binary, prefix, &config, port, "/health")
}

/// Starts nginx on `config` in `prefix`, and waits until `GET ready_path` answers 200.
fn launch_nginx(
    binary: &Path,
    prefix: PathBuf,
    config: &str,
    port: u16,
    ready_path: &str,
) -> Result<Nginx, String> {
    fs::write(prefix.join("nginx.conf"), config).map_err(|error| error.to_string())?;
    let log = prefix.join("stderr.log");
    let log_file = fs::File::create(&log).map_err(|error| error.to_string())?;
    let child = Command::new(binary)
        .args(nginx_args(&prefix))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
    let mut nginx = Nginx {
        process: Process {
            name: "nginx".into(),
            child,
            address: loopback(port),
            log,
        },
        binary: binary.to_path_buf(),
        prefix,
    };
    let mut request = Vec::new();
    request_bytes(&mut request, "GET", ready_path, "127.0.0.1", None);
    let started = Instant::now();
    while started.elapsed() < READY_TIMEOUT {
        if let Ok(Some(status)) = nginx.process.child.try_wait() {
            let log = fs::read_to_string(&nginx.process.log).unwrap_or_default();
            return Err(format!("nginx exited ({status}): {}", log.trim()));
        }
        if let Ok(200) = Client::new(nginx.process.address).send(&request) {
            return Ok(nginx);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("nginx did not answer in time".into())
}
