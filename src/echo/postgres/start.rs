//! Opening the PostgreSQL store: what the URL names (and the limits added to it), and
//! start-up's wait for a database that is not up yet, which ends in the schema created or
//! upgrade (see [`super::schema`]). A problem is an [`OpenError`]: one line for the
//! operator, to which the caller adds the variable the URL came from.

use super::pool::{Call, Connections, Failure, SetupError};
use super::schema::{self, SchemaVersion};
use super::CALL_TIMEOUT;
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Config, Error};

/// How long start-up may take once the database answers (connect, and create the schema).
const SCHEMA_TIMEOUT: Duration = Duration::from_secs(15);

/// How often start-up tries again while the database does not answer.
const START_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// A statement the server runs longer than this is cancelled by the server itself, and a
/// transaction left open longer than the idle limit is ended by it: a connection stuck on
/// our side cannot hold row locks that other instances wait for.
/// (Notices, such as "relation already exists, skipping" at start, stay out of the log.)
const SERVER_SIDE_OPTIONS: &str = "-c statement_timeout=3000 -c lock_timeout=2500 \
    -c idle_in_transaction_session_timeout=10000 -c client_min_messages=warning";

/// Where the database is, as the start-up line and the log name it (never the password; and
/// never in what the platform is told).
#[derive(Debug, Clone)]
pub struct DatabaseName {
    pub host: String,
    pub database: String,
    /// Whether connections use TLS (`sslmode=require`).
    pub tls: bool,
}

impl std::fmt::Display for DatabaseName {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let over = if self.tls { " over TLS" } else { "" };
        write!(out, "'{}' on {}{over}", self.database, self.host)
    }
}

/// Why the PostgreSQL store did not open.
#[derive(Debug)]
pub enum OpenError {
    /// The URL cannot be used: what is wrong with it (it is not repeated: it may hold a
    /// password).
    Url(String),
    /// TLS to the database cannot be set up.
    Tls(crate::settings::TlsSetupError),
    /// The store's own runtime or pool cannot be made.
    Pool(SetupError),
    /// The database did not answer, or refused, until start-up gave up.
    Unavailable {
        database: DatabaseName,
        reason: String,
    },
    /// The database holds a schema newer than this echo service knows.
    NewerSchema { found: i32, known: i32 },
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Url(problem) => out.write_str(problem),
            OpenError::Tls(error) => write!(out, "{error}"),
            OpenError::Pool(error) => write!(out, "{error}"),
            OpenError::Unavailable { database, reason } => {
                write!(out, "the database {database} {reason}")
            }
            OpenError::NewerSchema { found, known } => write!(
                out,
                "holds the echo service's schema version {found}, newer than this echo service's {known}: run a newer echo service"
            ),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OpenError::Tls(error) => Some(error),
            OpenError::Pool(error) => Some(error),
            _ => None,
        }
    }
}

/// Creates or upgrades the schema, trying again while the database is not up (refuses
/// connections, is starting, has no room) until `wait` has passed.
pub fn wait_for_schema(
    connections: &Connections,
    name: &DatabaseName,
    wait: Duration,
) -> Result<(), OpenError> {
    let give_up_at = Instant::now() + wait;
    let mut told = false;
    loop {
        let left = give_up_at.saturating_duration_since(Instant::now());
        let timeout = SCHEMA_TIMEOUT.min(left).max(CALL_TIMEOUT);
        let created = connections.run(Call::Change, None, timeout, async |client| {
            schema::create_or_upgrade(client).await
        });
        let failure = match created {
            Ok(SchemaVersion::Current) => return Ok(()),
            Ok(SchemaVersion::Newer { found, known }) => {
                return Err(OpenError::NewerSchema { found, known })
            }
            Err(failure) => failure,
        };
        let left = give_up_at.saturating_duration_since(Instant::now());
        if !may_come_up(&failure) || left.is_zero() {
            return Err(OpenError::Unavailable {
                database: name.clone(),
                reason: failure.reason(connections.max_connections()),
            });
        }
        if !told {
            log::warn!(
                "echo service: waiting up to {} s for the database {} ({}); DATABASE_START_SECONDS sets how long",
                left.as_secs(),
                name,
                failure.reason(connections.max_connections())
            );
            told = true;
        }
        std::thread::sleep(START_RETRY_INTERVAL.min(left));
    }
}

/// Whether a failure at start may heal by itself: the server refuses, drops or does not
/// answer connections (not up yet), is starting up or shutting down (57P), or has no room
/// (53300). Wrong credentials, no such database, a certificate that does not verify or a
/// newer schema will not.
fn may_come_up(failure: &Failure) -> bool {
    // 55P03 and 57014: another echo service's start held the schema's lock past a timeout;
    // 40P01: a deadlock with it.
    let passing = ["53300", "55P03", "57014", "40P01"];
    match failure {
        Failure::Connect(error) | Failure::Statement(error) => match error.code() {
            Some(code) => code.code().starts_with("57P") || passing.contains(&code.code()),
            None => not_up_yet(error),
        },
        Failure::NoRoom(_)
        | Failure::NoConnection(_)
        | Failure::NoShare(_)
        | Failure::TimedOut(_) => true,
    }
}

/// Whether a client error is the network's answer of a server not (yet) listening.
fn not_up_yet(error: &Error) -> bool {
    use std::io::ErrorKind::*;
    let io =
        std::error::Error::source(error).and_then(|cause| cause.downcast_ref::<std::io::Error>());
    io.is_some_and(|io| {
        matches!(
            io.kind(),
            ConnectionRefused
                | ConnectionReset
                | ConnectionAborted
                | NotConnected
                | TimedOut
                | UnexpectedEof
                | AddrNotAvailable
                | HostUnreachable
                | NetworkUnreachable
                | NotFound
        )
    }) || error.is_closed()
}

/// The URL parsed, with the timeouts and server-side limits added, and its name for logs.
/// `sslmode=verify-full` and `verify-ca` (libpq's words) ask for what `require` does here:
/// TLS, with the server's certificate verified. libpq's default `prefer` falls back to plain
/// text where TLS fails, which protects nothing, so it is taken as plain.
pub fn connection_config(url: &str) -> Result<(Config, DatabaseName), OpenError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(OpenError::Url(
            "is not a postgres:// or postgresql:// URL".into(),
        ));
    }
    let url = url
        .replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require");
    let mut config = Config::from_str(&url).map_err(|error| {
        OpenError::Url(format!(
            "is not a PostgreSQL URL the echo service can use: {error}"
        ))
    })?;
    let host = match (config.get_hosts().first(), config.get_ports().first()) {
        (Some(Host::Tcp(host)), Some(port)) => format!("{host}:{port}"),
        (Some(Host::Tcp(host)), None) => format!("{host}:5432"),
        #[cfg(unix)]
        (Some(Host::Unix(path)), _) => path.display().to_string(),
        (None, _) => return Err(OpenError::Url("names no host".into())),
    };
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres")
        .to_string();
    let options = match config.get_options() {
        Some(theirs) => format!("{theirs} {SERVER_SIDE_OPTIONS}"),
        None => SERVER_SIDE_OPTIONS.to_string(),
    };
    let tls = config.get_ssl_mode() == SslMode::Require;
    if !tls {
        config.ssl_mode(SslMode::Disable);
    }
    config
        .options(&options)
        .application_name("echo-service")
        .connect_timeout(CALL_TIMEOUT)
        // A connection whose peer vanished (a cut network) is given up within about 30 s.
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(15))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(30));
    Ok((
        config,
        DatabaseName {
            host,
            database,
            tls,
        },
    ))
}
