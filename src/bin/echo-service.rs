//! The echo service on its own, for a separate deployment (`cf push` of a second app).

use echo_broker::echo::service::{EchoConfig, EchoService};
use echo_broker::platform::{self, DataDir};
use echo_broker::server;
use echo_broker::settings::{self, Command};
use std::sync::Arc;

const HELP: &str = "\
echo-service: the demo echo service that echo-broker provisions and binds

Usage: echo-service [--help | --version]

  -h, --help      print this help and exit
  -V, --version   print the version and exit

";

const EXIT_CODES: &str = "\
Exit codes: 0 success; 2 bad configuration (an unknown argument, a bad variable, a busy
port, a weak or published password beyond loopback) or unreadable state in
DATA_DIR, reported in one line that names the variable.
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match settings::parse_command(&args, false) {
        Ok(Command::Run) => run(),
        Ok(Command::Help) => print!("{HELP}{}\n{EXIT_CODES}", settings::VARIABLES_HELP),
        Ok(Command::Version) => println!("echo-service {}", env!("CARGO_PKG_VERSION")),
        Ok(Command::CheckCatalog(_)) => settings::exit_with("--check-catalog is the broker's"),
        Err(problem) => settings::exit_with(&problem),
    }
}

/// Beyond loopback, the management password must be a strong secret of the operator's own.
fn refuse_published_secret(
    host: &str,
    credentials: Option<&(String, String)>,
) -> Result<(), String> {
    match credentials {
        Some((_, password)) => {
            platform::refuse_published_secrets(host, &[("ECHO_PASSWORD", password.as_str())])
        }
        None => Ok(()),
    }
}

/// Where the journal lives (see `platform::data_dir`), with a warning when that is the
/// container's ephemeral disk.
fn data_dir() -> Result<DataDir, String> {
    let data_dir = platform::data_dir()?;
    if let Some(warning) = data_dir.ephemeral_warning(platform::on_a_platform()) {
        log::warn!("echo service: {warning}");
    }
    Ok(data_dir)
}

fn run() {
    settings::init_logging().unwrap_or_else(|problem| settings::exit_with(&problem));
    let port = settings::port("PORT", 8090).unwrap_or_else(|problem| settings::exit_with(&problem));
    let max_connections =
        settings::max_connections().unwrap_or_else(|problem| settings::exit_with(&problem));
    let credentials = settings::credentials("ECHO_USERNAME", "ECHO_PASSWORD")
        .unwrap_or_else(|problem| settings::exit_with(&problem));
    let host = settings::listen_host(credentials.is_some(), "ECHO_USERNAME and ECHO_PASSWORD")
        .unwrap_or_else(|problem| settings::exit_with(&problem));
    refuse_published_secret(&host, credentials.as_ref())
        .unwrap_or_else(|problem| settings::exit_with(&problem));
    let data_dir = data_dir().unwrap_or_else(|problem| settings::exit_with(&problem));
    if credentials.is_none() {
        log::warn!("auth: ECHO_USERNAME and ECHO_PASSWORD are not set: the management API is open, on {host} only");
    }
    let echo = EchoService::new(EchoConfig {
        management_credentials: credentials,
        data_dir: Some(data_dir.path.clone()),
    })
    .unwrap_or_else(|problem| settings::exit_with(&format!("DATA_DIR: {problem}")));
    log::info!(
        "echo service: {} loaded, {}",
        settings::counted(echo.instance_count(), "instance"),
        data_dir.describe()
    );
    let address = format!("{}:{port}", settings::url_host(&host));
    server::serve("echo", &address, Arc::new(echo), max_connections)
        .unwrap_or_else(|problem| settings::exit_with(&format!("PORT: {problem}")));
    log::info!(
        "echo service: listening on http://{address} (at most {max_connections} connections)"
    );
    server::run_until_stopped();
}
