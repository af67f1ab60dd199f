//! The echo service on its own, for a separate deployment (`cf push` of a second app).

use echo_broker::echo::journal::{self, ReadOnlyCopy};
use echo_broker::echo::journal_state::EchoState;
use echo_broker::echo::postgres::{import_journal, PostgresStore};
use echo_broker::platform::{self, StateLocation};
use echo_broker::server;
use echo_broker::settings::{self, Command};
use std::path::Path;
use std::sync::Arc;

const HELP: &str = "\
echo-service: the demo echo service that echo-broker provisions and binds

Usage: echo-service [--help | --version | --import-journal DIR]

  -h, --help            print this help and exit
  -V, --version         print the version and exit
  --import-journal DIR  copy the instances, bindings and messages of the journal in DIR
                        into the database (DATABASE_URL, or a bound PostgreSQL service)
                        and exit; DIR is only read, never written; records already there
                        are kept, and a different one is reported as a conflict, never
                        overwritten

";

const EXIT_CODES: &str = "\
Exit codes: 0 success; 1 conflicts found (--import-journal only: listed, nothing
overwritten); 2 bad configuration (an unknown argument, a bad variable, a busy port, a
weak or published password beyond loopback), unreadable state in DATA_DIR, or a database
that refuses or is not there, reported in one line on standard output that names the
variable.
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, dir] = args.as_slice() {
        if flag == "--import-journal" {
            return import(Path::new(dir));
        }
    }
    if matches!(args.as_slice(), [flag] if flag == "--import-journal") {
        settings::exit_with("--import-journal needs the journal's DIR (try --help)");
    }
    match settings::parse_command(&args, false) {
        Ok(Command::Run) => run(),
        Ok(Command::Help) => echo_broker::logging::print(&format!(
            "{HELP}{}\n{EXIT_CODES}",
            settings::VARIABLES_HELP
        )),
        Ok(Command::Version) => {
            settings::say(&format!("echo-service {}", env!("CARGO_PKG_VERSION")))
        }
        Ok(Command::CheckCatalog(_)) => settings::exit_with("--check-catalog is the broker's"),
        Err(problem) => settings::exit_with(&problem),
    }
}

/// Beyond loopback, the management password must be a strong secret of the operator's own.
fn refuse_published_secret(
    host: &str,
    credentials: Option<&(String, String)>,
) -> Result<(), settings::SettingError> {
    match credentials {
        Some((_, password)) => {
            platform::refuse_published_secrets(host, &[("ECHO_PASSWORD", password.as_str())])
        }
        None => Ok(()),
    }
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
    let location =
        platform::state_location().unwrap_or_else(|problem| settings::exit_with(&problem));
    let tls_roots = settings::tls_roots().unwrap_or_else(|problem| settings::exit_with(&problem));
    let open = credentials.is_none();
    let echo = echo_broker::echo::start_service(&location, credentials, &tls_roots)
        .unwrap_or_else(|problem| settings::exit_with(&problem));
    if open {
        log::warn!("auth: ECHO_USERNAME and ECHO_PASSWORD are not set: the management API is open, on {host} only");
    }
    let address = format!("{}:{port}", settings::url_host(&host));
    server::serve("echo", &address, Arc::new(echo), max_connections)
        .unwrap_or_else(|problem| settings::exit_with(format!("PORT: {problem}")));
    log::info!(
        "echo service: listening on http://{address} (at most {max_connections} connections)"
    );
    server::run_until_stopped();
}

/// `--import-journal DIR`: copies a journal's state into the database and exits (0, or 1
/// when some records conflicted with the database's). DIR is read without being written,
/// so a journal another process still uses can be copied as it stands (except on Windows,
/// where its locks bar reading).
fn import(dir: &Path) {
    settings::init_logging().unwrap_or_else(|problem| settings::exit_with(&problem));
    let database = match platform::state_location() {
        Ok(StateLocation::Database(database)) => database,
        Ok(StateLocation::Journal(_)) => settings::exit_with(
            "DATABASE_URL: --import-journal copies into a database; set DATABASE_URL (or bind a PostgreSQL service)",
        ),
        Err(problem) => settings::exit_with(&problem),
    };
    let tls_roots = settings::tls_roots().unwrap_or_else(|problem| settings::exit_with(&problem));
    let journal = read_journal(dir);
    let settings =
        settings::database_settings().unwrap_or_else(|problem| settings::exit_with(&problem));
    let store =
        PostgresStore::open(&database.url, &tls_roots, settings).unwrap_or_else(|problem| {
            settings::exit_with(format!("{}: {problem}", database.variable()))
        });
    let report = import_journal(&store, journal.state).unwrap_or_else(|problem| {
        settings::exit_with(format!("{}: {problem}", database.variable()))
    });
    for conflict in &report.conflicts {
        log::warn!("import: conflict: {conflict}");
    }
    for refused in &report.refused {
        log::warn!("import: refused: {refused}");
    }
    log::info!(
        "import: from {} into the database {}: {report}",
        dir.display(),
        store.name()
    );
    log::logger().flush();
    if !report.conflicts.is_empty() || !report.refused.is_empty() {
        std::process::exit(1);
    }
}

/// The state of the journal in `dir`, read without writing to it; exits with the reason if
/// it does not read.
fn read_journal(dir: &Path) -> ReadOnlyCopy<EchoState> {
    let journal = journal::read_only::<EchoState>(dir)
        .unwrap_or_else(|problem| settings::exit_with(format!("--import-journal: {problem}")));
    if let Some(torn) = &journal.torn_tail {
        log::warn!(
            "import: {}: an incomplete last line ({} bytes, a write that was interrupted or under way, never acknowledged) is not imported, and left in place",
            torn.log.display(),
            torn.bytes
        );
    }
    journal
}
