//! The broker's start-up: configuration from the environment, logging, the catalog, the
//! echo service (embedded unless `SERVICE_BASE` names one), and the broker's server loop.

use echo_broker::broker::{Broker, BrokerConfig};
use echo_broker::catalog::Catalog;
use echo_broker::http;
use echo_broker::platform::{self, StateLocation};
use echo_broker::server;
use echo_broker::settings::TlsRoots;
use echo_broker::settings::{self, Command, SettingError};
use std::path::PathBuf;
use std::sync::Arc;

/// `--check-catalog FILE`: the file was read and the catalog in it is invalid.
const EXIT_INVALID_CATALOG: i32 = 1;

/// The original broker's credentials, accepted (on loopback only) when none are configured.
const DEFAULT_CREDENTIALS: (&str, &str) = ("user", "pass");

const HELP: &str = "\
echo-broker: an Open Service Broker API v2.17 service broker for the echo service

Usage: echo-broker [--help | --version | --check-catalog FILE]

  -h, --help            print this help and exit
  -V, --version         print the version and exit
  --check-catalog FILE  check a catalog file and exit (0 valid, 1 invalid, 2 unreadable)

";

const EXIT_CODES: &str = "\
Exit codes: 0 success; 1 invalid catalog (--check-catalog only); 2 bad configuration
(an unknown argument, a bad variable, an unreadable or invalid catalog, a busy port,
unreadable state in DATA_DIR, a database that refuses or is not there, a weak or
published password beyond loopback), reported in one line on standard output that names
the variable.
";

/// Where the broker's echo service is.
enum Backend {
    /// Started in this process; the broker still talks to it over HTTP.
    Embedded {
        port: u16,
        state: StateLocation,
    },
    Remote {
        service_base: String,
    },
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match settings::parse_command(&args, true) {
        Ok(Command::Run) => run(),
        Ok(Command::Help) => echo_broker::logging::print(&format!(
            "{HELP}{}\n{EXIT_CODES}",
            settings::VARIABLES_HELP
        )),
        Ok(Command::Version) => {
            settings::say(&format!("echo-broker {}", env!("CARGO_PKG_VERSION")))
        }
        Ok(Command::CheckCatalog(path)) => check_catalog(&path),
        Err(problem) => settings::exit_with(&problem),
    }
}

fn check_catalog(path: &std::path::Path) {
    match Catalog::load(Some(path)) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                settings::say(&format!("warning: {warning}"));
            }
            settings::say(&format!(
                "{}: valid ({} services)",
                loaded.source,
                loaded.catalog.services.len()
            ));
        }
        // An unreadable file is bad configuration (2), like any other; 1 means the file
        // was read and the catalog in it is invalid.
        Err(error) if error.unreadable => settings::exit_with(&error),
        Err(error) => settings::exit_with_code(&error, EXIT_INVALID_CATALOG),
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
    let backend = backend()
        .and_then(|backend| ports_differ(port, backend))
        .unwrap_or_else(|problem| settings::exit_with(&problem));
    let echo_credentials =
        echo_credentials(&backend).unwrap_or_else(|problem| settings::exit_with(&problem));
    refuse_published_secrets(&host, configured.as_ref(), echo_credentials.as_ref())
        .unwrap_or_else(|problem| settings::exit_with(&problem));
    let tls_roots = settings::tls_roots().unwrap_or_else(|problem| settings::exit_with(&problem));
    let catalog = load_catalog(&host);
    let service_base = start_backend(
        &backend,
        &host,
        echo_credentials.clone(),
        &tls_roots,
        max_connections,
    );
    if service_base.starts_with("https://") {
        log::info!(
            "backend: TLS certificates checked against {}",
            tls_roots.describe()
        );
    }
    let broker = Broker::new(BrokerConfig {
        catalog,
        login: broker_credentials(configured, &host),
        service_base,
        echo_login: echo_credentials,
        tls_roots,
    });
    let address = format!("{}:{port}", settings::url_host(&host));
    server::serve("broker", &address, Arc::new(broker), max_connections)
        .unwrap_or_else(|problem| settings::exit_with(format!("PORT: {problem}")));
    log::info!("broker: listening on http://{address} (at most {max_connections} connections)");
    server::run_until_stopped();
}

/// Beyond loopback, the broker's and the echo service's passwords must be secrets of the
/// operator's own: strong, and not values anyone can read in this repository.
fn refuse_published_secrets(
    host: &str,
    broker: Option<&(String, String)>,
    echo: Option<&(String, String)>,
) -> Result<(), SettingError> {
    let mut secrets = Vec::new();
    if let Some((_, password)) = broker {
        secrets.push(("BROKER_PASSWORD", password.as_str()));
    }
    if let Some((_, password)) = echo {
        secrets.push(("ECHO_PASSWORD", password.as_str()));
    }
    platform::refuse_published_secrets(host, &secrets)
}

/// Beyond loopback, a catalog whose dashboard client secret is weak or published (the
/// built-in catalog's) would make the platform create a UAA client anyone can use. The
/// refusal says first which catalog it is, since the built-in one is served when
/// `CATALOG_PATH` is unset.
fn refuse_published_catalog_secret(
    host: &str,
    catalog: &Catalog,
    from_catalog_path: bool,
) -> Result<(), String> {
    if platform::is_loopback(host) {
        return Ok(());
    }
    let Some(problem) = catalog
        .services
        .iter()
        .filter_map(|service| service.dashboard_client.as_ref())
        .find_map(|client| platform::password_problem(&client.secret))
    else {
        return Ok(());
    };
    let which = if from_catalog_path {
        "CATALOG_PATH: the catalog's dashboard_client secret"
    } else {
        "CATALOG_PATH is unset, and the built-in catalog's dashboard_client secret"
    };
    Err(format!(
        "{which} {problem}, and HOST '{host}' is not loopback; set CATALOG_PATH to catalog-cf.toml (no dashboard_client) or to a catalog whose secret has {}",
        platform::PASSWORD_RULE
    ))
}

/// The catalog from `CATALOG_PATH` or the embedded one, validated, without a published
/// secret where that matters; its warnings logged.
fn load_catalog(host: &str) -> Catalog {
    let catalog_path = settings::var("CATALOG_PATH").map(PathBuf::from);
    let loaded =
        Catalog::load(catalog_path.as_deref()).unwrap_or_else(|error| match catalog_path {
            Some(_) => settings::exit_with(format!("CATALOG_PATH: {error}")),
            None => settings::exit_with(&error),
        });
    refuse_published_catalog_secret(host, &loaded.catalog, catalog_path.is_some())
        .unwrap_or_else(|problem| settings::exit_with(&problem));
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

/// The configured credentials, or the default pair (only ever on loopback: see
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
                "auth: BROKER_USERNAME and BROKER_PASSWORD are not set: accepting the default user '{user}' with password '{password}', on {host} only"
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
    tls_roots: &TlsRoots,
    max_connections: usize,
) -> String {
    match backend {
        Backend::Remote { service_base } => {
            log::info!("backend: echo service at {service_base}");
            service_base.clone()
        }
        Backend::Embedded { port, state } => {
            start_embedded_echo_service(
                host,
                *port,
                state,
                credentials,
                tls_roots,
                max_connections,
            );
            log::info!("backend: embedded echo service on port {port}");
            format!("http://{}:{port}", settings::url_host(reachable_host(host)))
        }
    }
}

fn backend() -> Result<Backend, SettingError> {
    match settings::var("SERVICE_BASE") {
        Some(value) => Ok(Backend::Remote {
            service_base: settings::service_base(&value)?,
        }),
        None => Ok(Backend::Embedded {
            port: settings::port("ECHO_PORT", 8090)?,
            state: platform::state_location()?,
        }),
    }
}

/// The broker and its embedded echo service listen on the same host, so they need two ports.
fn ports_differ(port: u16, backend: Backend) -> Result<Backend, SettingError> {
    match backend {
        Backend::Embedded { port: echo_port, .. } if echo_port == port => Err(SettingError::variable(
            "ECHO_PORT",
            format!("{echo_port} clashes with PORT {port}; the broker and the embedded echo service need different ports"),
        )),
        backend => Ok(backend),
    }
}

/// The echo service's management credentials: the configured pair, or for the embedded
/// echo service a random pair that only this process knows.
fn echo_credentials(
    backend: &Backend,
) -> Result<Option<(String, String)>, Box<dyn std::error::Error>> {
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
    state: &StateLocation,
    credentials: Option<(String, String)>,
    tls_roots: &TlsRoots,
    max_connections: usize,
) {
    let echo = echo_broker::echo::start_service(state, credentials, tls_roots)
        .unwrap_or_else(|problem| settings::exit_with(&problem));
    let address = format!("{}:{port}", settings::url_host(host));
    server::serve("echo", &address, Arc::new(echo), max_connections)
        .unwrap_or_else(|problem| settings::exit_with(format!("ECHO_PORT: {problem}")));
}
