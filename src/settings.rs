//! Configuration from the environment (the Cloud Foundry way) and the command line, for both
//! binaries. Every problem is one line that names the variable and what is wrong with it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use ureq::tls::{Certificate, PemItem};

/// Every environment variable either binary reads (for `--help` and for tools that start
/// them with a clean environment).
pub const ENVIRONMENT_VARIABLES: [&str; 18] = [
    "PORT",
    "HOST",
    "BROKER_USERNAME",
    "BROKER_PASSWORD",
    "SERVICE_BASE",
    "ECHO_USERNAME",
    "ECHO_PASSWORD",
    "ECHO_PORT",
    "DATA_DIR",
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_IDLE_SECONDS",
    "DATABASE_START_SECONDS",
    "CATALOG_PATH",
    "SSL_CERT_FILE",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "MAX_CONNECTIONS",
];

/// The variables of both binaries, printed by both `--help`s (the README's table says the
/// same). Each variable's line or the next ends with its default in brackets.
pub const VARIABLES_HELP: &str = "\
Configuration comes from environment variables (a blank value counts as unset); the
second column says which binary reads one (the broker's embedded echo service reads the
echo service's):
  PORT             both    listen port                    [broker 8080, echo service 8090]
  HOST             both    listen address      [0.0.0.0 with credentials, else 127.0.0.1]
  BROKER_USERNAME  broker  basic-auth user the platform must send
                                                          [unset: 'user', loopback only]
  BROKER_PASSWORD  broker  basic-auth password the platform must send
                                                          [unset: 'pass', loopback only]
  SERVICE_BASE     broker  the echo service's URL, http:// or https:// (bare host: http)
                                                  [unset: start the echo service embedded]
  ECHO_PORT        broker  port of the embedded echo service                        [8090]
  ECHO_USERNAME    both    the echo service's management user
                           [unset: broker, a random pair; echo service, no auth, loopback]
  ECHO_PASSWORD    both    the echo service's management password     [as ECHO_USERNAME]
  DATABASE_URL     both    the echo service's PostgreSQL database, postgres:// or
                           postgresql:// (sslmode=require or verify-full: TLS, verified)
                                        [unset: a bound PostgreSQL service, else DATA_DIR]
  DATABASE_MAX_CONNECTIONS
                   both    database connections an echo service opens at most          [8]
  DATABASE_IDLE_SECONDS
                   both    seconds an idle database connection stays open             [10]
  DATABASE_START_SECONDS
                   both    seconds start-up waits for a database not up yet           [30]
  DATA_DIR         both    the echo service's journal directory (created if missing)
                                   [unset: a bound volume (see below), else ./echo-data]
  CATALOG_PATH     broker  a catalog TOML file instead of the embedded one         [unset]
  SSL_CERT_FILE    both    PEM file of the CAs an https SERVICE_BASE and a TLS
                           database must chain to        [unset: the system's trust store]
  LOG_LEVEL        both    error, warn, info, debug, trace                          [info]
  LOG_FORMAT       both    text (a readable line per event) or json (an object per line)
                                                                                    [text]
  MAX_CONNECTIONS  both    connections each server serves at once; when all are
                           taken, an idle one makes room for a newcomer             [256]
The echo service keeps its state in PostgreSQL when DATABASE_URL is set or a PostgreSQL
service is bound on Cloud Foundry (VCAP_SERVICES: a postgres:// uri, or tags naming
postgres with hostname, port, name, username, password); then any number of echo service
instances share it. Otherwise it keeps a journal: in DATA_DIR, else on the first
read-write volume mount bound on Cloud Foundry, else on Stackato's filesystem service
(STACKATO_FILESYSTEM), and warns on a platform (VCAP_APPLICATION) that ./echo-data is lost
at every restart.

Beyond loopback (a HOST outside 127.0.0.0/8 and other than ::1), BROKER_PASSWORD,
ECHO_PASSWORD and a catalog's dashboard client secret must have
at least 16 characters with letters and digits, and appear in none of the files the
echo-broker repository publishes (README, docs, manifest, catalogs): make one with e.g.
openssl rand -hex 24.

Everything either binary writes goes to standard output: the log, the help, and the
line that says why it stopped or why a catalog is invalid; nothing goes to standard error.
Secrets (passwords, Authorization headers, binding credentials, dashboard tokens) are
never logged, at any level. SIGTERM or Ctrl-C: answer the requests already read, then
exit 0.
";

/// Exit code for a bad configuration (a variable, a catalog, a flag).
pub const EXIT_BAD_CONFIG: i32 = 2;

/// A setting either binary cannot run with: which one, and what is wrong with it. Values
/// are repeated only where they hold no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingError {
    /// An environment variable's value: `NAME: problem`.
    Variable { name: String, problem: String },
    /// The command line: the problem names the argument.
    Argument(String),
}

impl SettingError {
    pub fn variable(name: &str, problem: impl Into<String>) -> SettingError {
        SettingError::Variable {
            name: name.to_string(),
            problem: problem.into(),
        }
    }
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingError::Variable { name, problem } => write!(out, "{name}: {problem}"),
            SettingError::Argument(problem) => out.write_str(problem),
        }
    }
}

impl std::error::Error for SettingError {}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Run,
    Help,
    Version,
    /// `--check-catalog FILE` (broker only): validate and exit.
    CheckCatalog(PathBuf),
}

/// Reads the arguments after the program name. `--check-catalog` is the broker's only.
pub fn parse_command(
    args: &[String],
    accepts_check_catalog: bool,
) -> Result<Command, SettingError> {
    let takes_no_argument = ["--help", "-h", "--version", "-V"];
    match args {
        [flag, extra, ..] if takes_no_argument.contains(&flag.as_str()) => {
            Err(SettingError::Argument(format!(
                "{flag} takes no argument, and '{extra}' was given (try {flag} alone)"
            )))
        }
        [] => Ok(Command::Run),
        [flag] if flag == "--help" || flag == "-h" => Ok(Command::Help),
        [flag] if flag == "--version" || flag == "-V" => Ok(Command::Version),
        [flag, file] if flag == "--check-catalog" && accepts_check_catalog => {
            Ok(Command::CheckCatalog(PathBuf::from(file)))
        }
        [flag] if flag == "--check-catalog" && accepts_check_catalog => {
            Err(SettingError::Argument(
                "--check-catalog needs a FILE (try --help)".into(),
            ))
        }
        [other, ..] => Err(SettingError::Argument(format!(
            "unknown argument '{other}' (try --help; configuration comes from environment variables)"
        ))),
    }
}

/// A variable's value, if set and not blank.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// A TCP port from `name`, or `default`. Port 0 (any free port) is refused: the broker
/// builds the echo service's URL from the port it was given, and a platform routes to the
/// port it set, so a port chosen by the OS would be a port nobody calls.
pub fn port(name: &str, default: u16) -> Result<u16, SettingError> {
    var(name).map_or(Ok(default), |value| parse_port(name, &value))
}

fn parse_port(name: &str, value: &str) -> Result<u16, SettingError> {
    match value.trim().parse::<u16>() {
        Ok(0) => Err(SettingError::variable(
            name,
            "0 is not a fixed port (give a port number from 1 to 65535)",
        )),
        Ok(port) => Ok(port),
        Err(_) => Err(SettingError::variable(
            name,
            format!("'{value}' is not a port number (1-65535)"),
        )),
    }
}

/// `MAX_CONNECTIONS`: how many connections each server serves at once, 1 to 10,000.
pub fn max_connections() -> Result<usize, SettingError> {
    let default = crate::server::DEFAULT_MAX_CONNECTIONS as u64;
    Ok(number("MAX_CONNECTIONS", default, 1, 10_000)? as usize)
}

/// How the echo service uses a PostgreSQL database.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DatabaseSettings {
    /// `DATABASE_MAX_CONNECTIONS`: the most connections one process opens. Eight: with
    /// fewer than its concurrent requests, each connection that comes free waits for the
    /// woken request's thread to run, and the benchmark's 16 clients made 2.4 times the
    /// lifecycles with 8 as with 4 (docs/performance.md). A plan with less room still works
    /// (the processes wait for their own connections), but is best sized to fit
    /// (docs/cloud-foundry.md).
    pub max_connections: usize,
    /// `DATABASE_IDLE_SECONDS`: how long an idle connection stays open, so that echo
    /// services at rest leave the plan's room to one that starts.
    pub idle: Duration,
    /// `DATABASE_START_SECONDS`: how long start-up waits for a database that is not up yet.
    pub start_wait: Duration,
}

pub fn database_settings() -> Result<DatabaseSettings, SettingError> {
    let seconds =
        |name, default, low, high| number(name, default, low, high).map(Duration::from_secs);
    Ok(DatabaseSettings {
        max_connections: number("DATABASE_MAX_CONNECTIONS", 8, 1, 1_000)? as usize,
        idle: seconds("DATABASE_IDLE_SECONDS", 10, 1, 86_400)?,
        start_wait: seconds("DATABASE_START_SECONDS", 30, 0, 3_600)?,
    })
}

/// A whole number from `name`, `low` to `high`, or `default` when it is unset.
fn number(name: &str, default: u64, low: u64, high: u64) -> Result<u64, SettingError> {
    let Some(value) = var(name) else {
        return Ok(default);
    };
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|number| (low..=high).contains(number))
        .ok_or_else(|| {
            SettingError::variable(
                name,
                format!("'{value}' is not a number from {low} to {high}"),
            )
        })
}

/// A user and password from two variables: both or neither.
pub fn credentials(
    user_name: &str,
    password_name: &str,
) -> Result<Option<(String, String)>, SettingError> {
    match (var(user_name), var(password_name)) {
        (Some(user), Some(password)) => {
            if user.contains(':') {
                return Err(SettingError::variable(
                    user_name,
                    "a basic-auth user name cannot contain ':'",
                ));
            }
            Ok(Some((user, password)))
        }
        (None, None) => Ok(None),
        (Some(_), None) => Err(SettingError::variable(
            password_name,
            format!("must be set when {user_name} is set"),
        )),
        (None, Some(_)) => Err(SettingError::variable(
            user_name,
            format!("must be set when {password_name} is set"),
        )),
    }
}

/// The address to listen on: `HOST` if set, else all interfaces when the server has
/// credentials and loopback when it has none. Without credentials only loopback is allowed.
pub fn listen_host(has_credentials: bool, credential_names: &str) -> Result<String, SettingError> {
    let host = var("HOST").unwrap_or_else(|| {
        if has_credentials {
            "0.0.0.0"
        } else {
            "127.0.0.1"
        }
        .into()
    });
    let ip: IpAddr = host
        .parse()
        .map_err(|_| SettingError::variable("HOST", format!("'{host}' is not an IP address")))?;
    if !has_credentials && !ip.is_loopback() {
        return Err(SettingError::variable(
            "HOST",
            format!("'{host}' is not loopback, and {credential_names} are not set; refusing to serve without credentials"),
        ));
    }
    Ok(host)
}

/// `host` as it stands in a URL or a socket address: IPv6 addresses in brackets.
pub fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `LOG_LEVEL`: error, warn, info (default), debug or trace.
pub fn log_level() -> Result<log::LevelFilter, SettingError> {
    let value = var("LOG_LEVEL").unwrap_or_else(|| "info".into());
    value.trim().parse::<log::LevelFilter>().map_err(|_| {
        SettingError::variable(
            "LOG_LEVEL",
            format!("'{value}' is not one of error, warn, info, debug, trace"),
        )
    })
}

/// `LOG_FORMAT`: text (default, human-readable) or json (one object per line).
pub fn log_format() -> Result<crate::logging::Format, SettingError> {
    parse_log_format(&var("LOG_FORMAT").unwrap_or_else(|| "text".into()))
}

fn parse_log_format(value: &str) -> Result<crate::logging::Format, SettingError> {
    crate::logging::Format::parse(value).ok_or_else(|| {
        SettingError::variable("LOG_FORMAT", format!("'{value}' is not one of text, json"))
    })
}

/// Starts logging to standard output as `LOG_FORMAT` and `LOG_LEVEL` say. A bad
/// `LOG_LEVEL` is reported after the logger is installed, so it comes in the chosen format.
pub fn init_logging() -> Result<(), SettingError> {
    let format = log_format()?;
    let level = log_level();
    crate::logging::init(*level.as_ref().unwrap_or(&log::LevelFilter::Info), format);
    level.map(|_| ())
}

/// `SERVICE_BASE`: the echo service's base URL, `http://` or `https://`. A bare host name
/// means `http://host`, as in the original. The broker appends its paths to it, so a query
/// or fragment has no place in it, and credentials belong in `ECHO_USERNAME` and
/// `ECHO_PASSWORD` (a URL's userinfo would be logged and shown where the URL is).
pub fn service_base(value: &str) -> Result<String, SettingError> {
    let value = value.trim();
    let url = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    let authority = |rest: &str| rest.split('/').next().unwrap_or("").to_string();
    if url
        .split_once("://")
        .is_some_and(|(_, rest)| authority(rest).contains('@'))
    {
        // The value is not repeated: it holds a password.
        return Err(SettingError::variable(
            "SERVICE_BASE",
            "credentials do not belong in the URL; set ECHO_USERNAME and ECHO_PASSWORD",
        ));
    }
    let Some((scheme, rest)) = url.split_once("://").filter(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
    }) else {
        return Err(SettingError::variable(
            "SERVICE_BASE",
            format!("'{value}' is not an http:// or https:// URL"),
        ));
    };
    let rest = rest.trim_end_matches('/');
    if rest.contains(['?', '#']) {
        return Err(SettingError::variable(
            "SERVICE_BASE",
            format!("'{value}' has a query or fragment; give the echo service's base URL only (the broker appends its paths)"),
        ));
    }
    check_authority(&authority(rest)).map_err(|problem| {
        SettingError::variable("SERVICE_BASE", format!("'{value}' {problem}"))
    })?;
    Ok(format!("{}://{rest}", scheme.to_ascii_lowercase()))
}

/// `host[:port]` with a host name, an IPv4 address or a bracketed IPv6 address, and a port
/// from 1 to 65535: what is wrong with it, if anything.
fn check_authority(authority: &str) -> Result<(), &'static str> {
    let port = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (address, after) = bracketed
                .split_once(']')
                .ok_or("has an IPv6 address without its closing ']'")?;
            if address.parse::<std::net::Ipv6Addr>().is_err() {
                return Err("has a malformed IPv6 address");
            }
            match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or("has text after its IPv6 address")?,
                ),
            }
        }
        None => {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            if port.is_some_and(|port| port.contains(':')) {
                return Err("has an IPv6 address without brackets (write http://[::1]:8090)");
            }
            let host_is_valid = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
            if !host_is_valid {
                return Err("is not a URL with a host name");
            }
            port
        }
    };
    match port {
        Some(port)
            if !port.bytes().all(|b| b.is_ascii_digit())
                || !matches!(port.parse::<u16>(), Ok(1..)) =>
        {
            Err("has a port that is not a number from 1 to 65535")
        }
        _ => Ok(()),
    }
}

/// Reads a configuration file whole, at most `limit` bytes: a path that names something
/// endless or huge (`/dev/zero`, a disk image) is refused after `limit` bytes instead of
/// filling memory.
pub fn read_config_file(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, UnreadableFile> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(UnreadableFile::Io)?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(UnreadableFile::Io)?;
    if bytes.len() as u64 > limit {
        return Err(UnreadableFile::TooLarge { limit });
    }
    Ok(bytes)
}

/// Why a configuration file could not be read. Its words leave out the path, which the
/// caller names as it sees fit.
#[derive(Debug)]
pub enum UnreadableFile {
    Io(std::io::Error),
    /// Larger than `limit` bytes, which no such file needs.
    TooLarge {
        limit: u64,
    },
}

impl std::fmt::Display for UnreadableFile {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnreadableFile::Io(error) => write!(out, "cannot be read: {error}"),
            UnreadableFile::TooLarge { limit } => write!(
                out,
                "cannot be read: larger than {} KiB, which no such file needs",
                limit / 1024
            ),
        }
    }
}

impl std::error::Error for UnreadableFile {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UnreadableFile::Io(error) => Some(error),
            UnreadableFile::TooLarge { .. } => None,
        }
    }
}

/// `SSL_CERT_FILE`: a PEM file of the CAs an `https://` echo service's certificate, or a TLS
/// database's, must chain to, instead of the system's trust store.
pub fn tls_roots() -> Result<TlsRoots, SettingError> {
    match var("SSL_CERT_FILE") {
        None => Ok(TlsRoots::System),
        Some(path) => TlsRoots::from_pem_file(std::path::Path::new(&path))
            .map_err(|problem| SettingError::variable("SSL_CERT_FILE", problem)),
    }
}

/// The largest `SSL_CERT_FILE` read (a system's whole CA bundle is about 200 KiB).
const MAX_PEM_BYTES: u64 = 4 * 1024 * 1024;

/// Which certificate authorities a server's certificate must chain to: an `https://` echo
/// service's (the broker's calls, `echo_client.rs`) and a PostgreSQL database's over TLS
/// (the echo service's store). `SSL_CERT_FILE` chooses them, for both binaries.
#[derive(Debug, Clone, Default)]
pub enum TlsRoots {
    /// The operating system's trust store, through its own verifier where it has one
    /// (Windows, macOS) and its CA files elsewhere. Cloud Foundry installs the platform's
    /// CAs (those of `*.apps.internal` and of its routers) into the container's store.
    #[default]
    System,
    /// Only these CAs: the certificates of the PEM file that `SSL_CERT_FILE` names (its
    /// meaning in OpenSSL and curl: it replaces the system's list).
    Only(Vec<Certificate<'static>>),
}

impl TlsRoots {
    /// The certificates of a PEM file; an error names the file and what is wrong.
    fn from_pem_file(path: &Path) -> Result<TlsRoots, String> {
        let pem = read_config_file(path, MAX_PEM_BYTES)
            .map_err(|problem| format!("{} {problem}", path.display()))?;
        let mut certificates = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(certificate)) => certificates.push(certificate),
                Ok(_) => {}
                Err(error) => return Err(format!("{} is not PEM: {error}", path.display())),
            }
        }
        if certificates.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
        Ok(TlsRoots::Only(certificates))
    }

    /// What certificates are checked against, for the start-up log.
    pub fn describe(&self) -> String {
        match self {
            TlsRoots::System => "the system's trust store".into(),
            TlsRoots::Only(certificates) => {
                format!(
                    "the {} CA certificate(s) of SSL_CERT_FILE",
                    certificates.len()
                )
            }
        }
    }

    /// A rustls client configuration that checks a server's certificate against these
    /// roots, with ring as the crypto provider (for TLS to a PostgreSQL database).
    pub fn rustls_config(&self) -> Result<rustls::ClientConfig, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(TlsSetupError::Protocols)?;
        let config = match self {
            TlsRoots::System => {
                let verifier = rustls_platform_verifier::Verifier::new(provider)
                    .map_err(TlsSetupError::SystemTrustStore)?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
            }
            TlsRoots::Only(certificates) => {
                let mut roots = rustls::RootCertStore::empty();
                for certificate in certificates {
                    let der = rustls::pki_types::CertificateDer::from(certificate.der().to_vec());
                    roots.add(der).map_err(TlsSetupError::UnusableCertificate)?;
                }
                builder.with_root_certificates(roots)
            }
        };
        Ok(config.with_no_client_auth())
    }
}

/// Why TLS to a server cannot be set up from [`TlsRoots`].
#[derive(Debug)]
pub enum TlsSetupError {
    /// The crypto provider offers none of the protocol versions asked for.
    Protocols(rustls::Error),
    /// The operating system's trust store cannot be read.
    SystemTrustStore(rustls::Error),
    /// A certificate of `SSL_CERT_FILE` cannot serve as a root.
    UnusableCertificate(rustls::Error),
}

impl std::fmt::Display for TlsSetupError {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsSetupError::Protocols(error) => write!(out, "TLS cannot be set up: {error}"),
            TlsSetupError::SystemTrustStore(error) => {
                write!(out, "the system's trust store cannot be read: {error}")
            }
            TlsSetupError::UnusableCertificate(error) => {
                write!(out, "SSL_CERT_FILE: a certificate is unusable: {error}")
            }
        }
    }
}

impl std::error::Error for TlsSetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsSetupError::Protocols(error)
            | TlsSetupError::SystemTrustStore(error)
            | TlsSetupError::UnusableCertificate(error) => Some(error),
        }
    }
}

/// `1 instance`, `2 instances`: a count with its noun, for log lines.
pub fn counted(count: usize, noun: &str) -> String {
    match count {
        1 => format!("1 {noun}"),
        _ => format!("{count} {noun}s"),
    }
}

/// Prints `message` as the one line that explains why start-up stopped (`error: ...`, or a
/// JSON object with `LOG_FORMAT=json`) on standard output, after the log lines before it,
/// and exits 2. This is where an error becomes words.
pub fn exit_with(message: impl std::fmt::Display) -> ! {
    exit_with_code(message, EXIT_BAD_CONFIG)
}

/// [`exit_with`], with another exit code.
pub fn exit_with_code(message: impl std::fmt::Display, code: i32) -> ! {
    crate::logging::fatal(&message.to_string());
    std::process::exit(code)
}

/// Prints a line of a command's own output (`--check-catalog`'s verdict) on standard
/// output, where everything the binaries write goes.
pub fn say(line: &str) {
    crate::logging::print(&format!("{line}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_base_accepts_bare_hosts_and_refuses_other_schemes() {
        assert_eq!(
            service_base("echo.example.com").as_deref(),
            Ok("http://echo.example.com")
        );
        assert_eq!(
            service_base("http://127.0.0.1:8090/").as_deref(),
            Ok("http://127.0.0.1:8090")
        );
        assert_eq!(
            service_base("https://echo.apps.internal:61443").as_deref(),
            Ok("https://echo.apps.internal:61443")
        );
        assert_eq!(
            service_base("http://[::1]:8090").as_deref(),
            Ok("http://[::1]:8090")
        );
        assert!(service_base("ftp://x").is_err());
        assert!(service_base("http://").is_err());
        assert!(service_base("not a url").is_err());
    }

    #[test]
    fn service_base_refuses_queries_fragments_credentials_and_malformed_hosts() {
        let refusals = [
            ("http://echo:8090/?debug=1", "query or fragment"),
            ("http://echo:8090#top", "query or fragment"),
            ("http://user:hunter2@echo:8090", "credentials"),
            ("http://[::1:8090", "closing ']'"),
            ("http://[::g]:8090", "malformed IPv6"),
            ("http://[::1]x", "after its IPv6"),
            ("http://::1:8090", "without brackets"),
            ("http://echo:0", "port"),
            ("http://echo:99999", "port"),
            ("http://echo:+80", "port"),
            ("gopher://echo", "http:// or https://"),
        ];
        for (value, problem) in refusals {
            let refused = service_base(value).expect_err(value).to_string();
            assert!(refused.starts_with("SERVICE_BASE: "), "{refused}");
            assert!(refused.contains(problem), "{value}: {refused}");
        }
        let refused = service_base("ftp://user:hunter2@echo")
            .expect_err("credentials")
            .to_string();
        assert!(!refused.contains("hunter2"), "{refused}");
    }

    #[test]
    fn port_zero_is_refused_with_the_usable_range() {
        let refused = parse_port("ECHO_PORT", "0");
        assert!(refused.is_err_and(|problem| problem.to_string().starts_with("ECHO_PORT: 0 ")));
        assert_eq!(parse_port("PORT", " 8091 "), Ok(8091));
        assert!(parse_port("PORT", "65536").is_err());
    }

    #[test]
    fn counts_take_a_plural_except_for_one() {
        assert_eq!(counted(0, "instance"), "0 instances");
        assert_eq!(counted(1, "instance"), "1 instance");
        assert_eq!(counted(2, "instance"), "2 instances");
    }

    #[test]
    fn commands_are_parsed_and_unknown_flags_refused() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_command(&args(&[]), true), Ok(Command::Run));
        assert_eq!(parse_command(&args(&["--help"]), false), Ok(Command::Help));
        assert_eq!(
            parse_command(&args(&["--check-catalog", "x"]), true),
            Ok(Command::CheckCatalog("x".into()))
        );
        assert!(parse_command(&args(&["--check-catalog", "x"]), false).is_err());
        assert!(parse_command(&args(&["--frobnicate"]), true).is_err());
        let extra = parse_command(&args(&["--help", "extra"]), true).map_err(|e| e.to_string());
        assert!(extra
            .is_err_and(|problem| problem.contains("'extra'")
                && !problem.contains("unknown argument '--help'")));
    }

    #[test]
    fn a_log_format_other_than_text_or_json_is_refused_naming_the_variable() {
        assert_eq!(parse_log_format("json"), Ok(crate::logging::Format::Json));
        let refused = parse_log_format("xml")
            .expect_err("xml is refused")
            .to_string();
        assert!(refused.starts_with("LOG_FORMAT: 'xml'"), "{refused}");
    }
}
