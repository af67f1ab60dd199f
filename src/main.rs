//! The broker's start-up: configuration from the environment, logging, the catalog, the
//! echo service (embedded unless `SERVICE_BASE` names one), and the broker's server loop.

use echo_broker::broker::{Broker, BrokerConfig};
use echo_broker::catalog::Catalog;
use echo_broker::echo_service::{EchoConfig, EchoService};
use echo_broker::http;
use echo_broker::server;
use echo_broker::settings::{self, Command};
use std::path::PathBuf;
use std::sync::Arc;

/// The seed's credentials, accepted (on loopback only) when none are configured.
const DEFAULT_CREDENTIALS: (&str, &str) = ("user", "pass");

const HELP: &str = "\
echo-broker: an Open Service Broker API v2.17 service broker for the echo service

Usage: echo-broker [--help | --version | --check-catalog FILE]

  -h, --help            print this help and exit
  -V, --version         print the version and exit
  --check-catalog FILE  validate a catalog file and exit (0 valid, 1 invalid)

Configuration comes from environment variables (a blank value counts as unset):
  PORT              broker listen port                                  [8080]
  HOST              listen address                [0.0.0.0 with credentials, else 127.0.0.1]
  BROKER_USERNAME   basic-auth user the platform must send    [unset: 'user', loopback only]
  BROKER_PASSWORD   basic-auth password the platform must send [unset: 'pass', loopback only]
  SERVICE_BASE      echo service base URL, http:// only, e.g. http://echo.example.com (a bare
                    host means http://host)       [unset: start the echo service embedded]
  ECHO_USERNAME     echo service management user       [unset, embedded: a random pair]
  ECHO_PASSWORD     echo service management password   [unset, embedded: a random pair]
  ECHO_PORT         port of the embedded echo service                   [8090]
  DATA_DIR          where the embedded echo service keeps its journal   [./echo-data]
  CATALOG_PATH      a catalog TOML file to use instead of the embedded one         [unset]
  LOG_LEVEL         error, warn, info, debug, trace                     [info]
  LOG_FORMAT        text (a readable line per event) or json (an object per line) [text]
  MAX_CONNECTIONS   connections each server serves at once; more wait to be accepted [256]

Logs go to standard output (the HTTP server's own connection errors, if any, to
standard error). Secrets (passwords, Authorization headers, binding credentials,
dashboard tokens) are never logged, at any level. SIGTERM or Ctrl-C: finish the
requests in progress, then exit 0.

Exit codes: 0 success; 1 invalid catalog (--check-catalog only); 2 bad configuration
(an unknown argument, a bad variable, an unreadable or invalid catalog, a busy port),
reported in one line that names the variable.
";

/// Where the broker's echo service is.
enum Backend {
    /// Started in this process; the broker still talks to it over HTTP.
    Embedded {
        port: u16,
        data_dir: PathBuf,
    },
    Remote {
        service_base: String,
    },
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match settings::parse_command(&args, true) {
        Ok(Command::Run) => run(),
        Ok(Command::Help) => print!("{HELP}"),
        Ok(Command::Version) => println!("echo-broker {}", env!("CARGO_PKG_VERSION")),
        Ok(Command::CheckCatalog(path)) => check_catalog(&path),
        Err(problem) => settings::exit_with(&problem),
    }
}

fn check_catalog(path: &std::path::Path) {
    match Catalog::load(Some(path)) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                println!("warning: {warning}");
            }
            println!(
                "{}: valid ({} services)",
                loaded.source,
                loaded.catalog.services.len()
            );
        }
        Err(error) => {
            eprintln!("error: {error}");
            std::process::exit(1);
        }
    }
}

fn run() {
    settings::init_logging().unwrap_or_else(|problem| settings::exit_with(&problem));
    let port = settings::port("PORT", 8080).unwrap_or_else(|problem| settings::exit_with(&problem));
    let configured = settings::credentials("BROKER_USERNAME", "BROKER_PASSWORD")
        .unwrap_or_else(|problem| settings::exit_with(&problem));
    let host = settings::listen_host(configured.is_some(), "BROKER_USERNAME and BROKER_PASSWORD")
        .unwrap_or_else(|problem| settings::exit_with(&problem));
    let max_connections =
        settings::max_connections().unwrap_or_else(|problem| settings::exit_with(&problem));
    let backend = backend().unwrap_or_else(|problem| settings::exit_with(&problem));
    let echo_credentials =
        echo_credentials(&backend).unwrap_or_else(|problem| settings::exit_with(&problem));
    let catalog = load_catalog();
    let service_base = start_backend(&backend, &host, echo_credentials.clone(), max_connections);
    let broker = Broker::new(BrokerConfig {
        catalog,
        credentials: broker_credentials(configured, &host),
        service_base,
        echo_credentials,
    });
    let address = format!("{}:{port}", settings::url_host(&host));
    server::serve("broker", &address, Arc::new(broker), max_connections)
        .unwrap_or_else(|problem| settings::exit_with(&format!("PORT: {problem}")));
    log::info!("broker: listening on http://{address} (at most {max_connections} connections)");
    server::run_until_stopped();
}

/// The catalog from `CATALOG_PATH` or the embedded one, validated; its warnings logged.
fn load_catalog() -> Catalog {
    let catalog_path = settings::var("CATALOG_PATH").map(PathBuf::from);
    let loaded =
        Catalog::load(catalog_path.as_deref()).unwrap_or_else(|error| match catalog_path {
            Some(_) => settings::exit_with(&format!("CATALOG_PATH: {error}")),
            None => settings::exit_with(&error.to_string()),
        });
    let services = &loaded.catalog.services;
    let plans: usize = services.iter().map(|service| service.plans.len()).sum();
    log::info!(
        "catalog: {} ({} services, {plans} plans)",
        loaded.source,
        services.len()
    );
    for warning in &loaded.warnings {
        log::warn!("catalog: {warning}");
    }
    loaded.catalog
}

/// The configured credentials, or the seed's pair (only ever on loopback: see
/// `settings::listen_host`).
fn broker_credentials(configured: Option<(String, String)>, host: &str) -> (String, String) {
    match configured {
        Some(credentials) => {
            log::info!("auth: basic auth with BROKER_USERNAME / BROKER_PASSWORD");
            credentials
        }
        None => {
            let (user, password) = DEFAULT_CREDENTIALS;
            log::warn!(
                "auth: BROKER_USERNAME and BROKER_PASSWORD are not set: accepting the seed's '{user}' / '{password}' on {host} only"
            );
            (user.to_string(), password.to_string())
        }
    }
}

/// Starts the embedded echo service if there is one; returns the echo service's base URL.
fn start_backend(
    backend: &Backend,
    host: &str,
    credentials: Option<(String, String)>,
    max_connections: usize,
) -> String {
    match backend {
        Backend::Remote { service_base } => {
            log::info!("backend: echo service at {service_base}");
            service_base.clone()
        }
        Backend::Embedded { port, data_dir } => {
            start_embedded_echo_service(host, *port, data_dir, credentials, max_connections);
            log::info!(
                "backend: embedded echo service on port {port}, state in {}",
                data_dir.display()
            );
            format!("http://{}:{port}", settings::url_host(reachable_host(host)))
        }
    }
}

fn backend() -> Result<Backend, String> {
    match settings::var("SERVICE_BASE") {
        Some(value) => Ok(Backend::Remote {
            service_base: settings::service_base(&value)?,
        }),
        None => Ok(Backend::Embedded {
            port: settings::port("ECHO_PORT", 8090)?,
            data_dir: settings::var("DATA_DIR")
                .map_or_else(|| PathBuf::from("echo-data"), PathBuf::from),
        }),
    }
}

/// The echo service's management credentials: the configured pair, or for the embedded
/// echo service a random pair that only this process knows.
fn echo_credentials(backend: &Backend) -> Result<Option<(String, String)>, String> {
    let configured = settings::credentials("ECHO_USERNAME", "ECHO_PASSWORD")?;
    match (configured, backend) {
        (Some(credentials), _) => Ok(Some(credentials)),
        (None, Backend::Embedded { .. }) => Ok(Some(("broker".into(), http::random_token()?))),
        (None, Backend::Remote { .. }) => Ok(None),
    }
}

/// The address the broker uses to reach an echo service listening on `host`.
fn reachable_host(host: &str) -> &str {
    match host {
        "0.0.0.0" => "127.0.0.1",
        "::" => "::1",
        _ => host,
    }
}

fn start_embedded_echo_service(
    host: &str,
    port: u16,
    data_dir: &std::path::Path,
    credentials: Option<(String, String)>,
    max_connections: usize,
) {
    let echo = EchoService::new(EchoConfig {
        management_credentials: credentials,
        data_dir: Some(data_dir.to_path_buf()),
    })
    .unwrap_or_else(|problem| settings::exit_with(&format!("DATA_DIR: {problem}")));
    log::info!("echo service: {} instances loaded", echo.instance_count());
    let address = format!("{}:{port}", settings::url_host(host));
    server::serve("echo", &address, Arc::new(echo), max_connections)
        .unwrap_or_else(|problem| settings::exit_with(&format!("ECHO_PORT: {problem}")));
}
