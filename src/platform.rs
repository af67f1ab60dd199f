//! What the platform the binaries run on offers or forbids: where the echo service's state
//! can outlive the process (a PostgreSQL database, a volume bound on Cloud Foundry, a
//! filesystem service on Stackato), and which secrets must never reach it (those published
//! in this repository).

use crate::settings::SettingError;
use serde_json::Value;
use std::path::PathBuf;

/// The variables the platforms set that the binaries read (never set by hand).
pub const PLATFORM_VARIABLES: [&str; 3] =
    ["VCAP_SERVICES", "VCAP_APPLICATION", "STACKATO_FILESYSTEM"];

/// The journal's directory when nothing better is offered: relative to the working
/// directory, which on Cloud Foundry is the container's disk, lost at every restart.
pub const EPHEMERAL_DATA_DIR: &str = "echo-data";

/// Where the echo service keeps its state.
#[derive(Debug, PartialEq)]
pub enum StateLocation {
    /// In a PostgreSQL database: any number of instances share it.
    Database(DatabaseUrl),
    /// In a journal on this machine's disk: one instance.
    Journal(DataDir),
}

/// A PostgreSQL database's URL, and where it came from.
#[derive(Debug, PartialEq)]
pub struct DatabaseUrl {
    pub url: String,
    pub source: DatabaseSource,
}

#[derive(Debug, PartialEq)]
pub enum DatabaseSource {
    /// `DATABASE_URL` was set.
    Explicit,
    /// A database service bound on Cloud Foundry (its name in `VCAP_SERVICES`).
    BoundService(String),
}

impl DatabaseUrl {
    /// The variable an operator fixes when the database refuses (for error lines).
    pub fn variable(&self) -> String {
        match &self.source {
            DatabaseSource::Explicit => "DATABASE_URL".into(),
            DatabaseSource::BoundService(name) => {
                format!("VCAP_SERVICES (the bound service '{name}')")
            }
        }
    }

    /// Where the URL came from, for the start-up line.
    pub fn source_description(&self) -> String {
        match &self.source {
            DatabaseSource::Explicit => "DATABASE_URL".into(),
            DatabaseSource::BoundService(name) => format!("the bound service '{name}'"),
        }
    }
}

/// Where the echo service keeps its state: `DATABASE_URL`; else a PostgreSQL service bound
/// on Cloud Foundry (`VCAP_SERVICES`); else the journal's directory (see [`data_dir`]).
pub fn state_location() -> Result<StateLocation, SettingError> {
    if let Some(url) = crate::settings::var("DATABASE_URL") {
        if !is_postgres_url(&url) {
            return Err(SettingError::variable(
                "DATABASE_URL",
                "is not a postgres:// or postgresql:// URL",
            ));
        }
        return Ok(StateLocation::Database(DatabaseUrl {
            url,
            source: DatabaseSource::Explicit,
        }));
    }
    if let Some(json) = crate::settings::var("VCAP_SERVICES") {
        if let Some(database) = bound_database(&json)? {
            return Ok(StateLocation::Database(database));
        }
    }
    data_dir().map(StateLocation::Journal)
}

/// The first service in `VCAP_SERVICES` that is a PostgreSQL database: its credentials
/// carry a `postgres://` or `postgresql://` `uri` (or `url`), or its `tags` name
/// `postgres` or `postgresql` and its credentials have `hostname`, `port`, `name`,
/// `username` and `password` (as the platforms' PostgreSQL brokers publish them). Labels are
/// taken in sorted order, so the choice does not depend on how the platform ordered them.
fn bound_database(vcap_services: &str) -> Result<Option<DatabaseUrl>, SettingError> {
    let labels = parse_vcap_services(vcap_services)?;
    let found = labels.iter().find_map(|(label, bindings)| {
        bindings.as_array()?.iter().find_map(|binding| {
            let url = database_url_of(binding)?;
            let name = binding.get("name").and_then(Value::as_str).unwrap_or(label);
            Some(DatabaseUrl {
                url,
                source: DatabaseSource::BoundService(name.to_string()),
            })
        })
    });
    Ok(found)
}

fn database_url_of(binding: &Value) -> Option<String> {
    let credentials = binding.get("credentials")?;
    let given = ["uri", "url"].iter().find_map(|key| {
        credentials
            .get(*key)?
            .as_str()
            .filter(|url| is_postgres_url(url))
    });
    if let Some(url) = given {
        return Some(url.to_string());
    }
    let tagged = binding
        .get("tags")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .any(|tag| tag.eq_ignore_ascii_case("postgres") || tag.eq_ignore_ascii_case("postgresql"));
    tagged.then(|| url_from_parts(credentials)).flatten()
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `postgres://username:password@hostname:port/name` from separate credentials.
fn url_from_parts(credentials: &Value) -> Option<String> {
    let text = |key: &str| match credentials.get(key)? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    };
    let encode = |text: String| {
        percent_encoding::utf8_percent_encode(&text, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let host = text("hostname").or_else(|| text("host"))?;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let port = text("port").unwrap_or_else(|| "5432".into());
    Some(format!(
        "postgres://{}:{}@{host}:{port}/{}",
        encode(text("username")?),
        encode(text("password")?),
        encode(text("name")?)
    ))
}

fn parse_vcap_services(
    vcap_services: &str,
) -> Result<serde_json::Map<String, Value>, SettingError> {
    let services: Value = serde_json::from_str(vcap_services)
        .map_err(|error| SettingError::variable("VCAP_SERVICES", format!("not JSON ({error})")))?;
    match services {
        Value::Object(labels) => Ok(labels),
        _ => Err(SettingError::variable(
            "VCAP_SERVICES",
            "not a JSON object of service labels",
        )),
    }
}

/// Where the echo service keeps its journal, and why there.
#[derive(Debug, PartialEq)]
pub struct DataDir {
    pub path: PathBuf,
    pub source: DataDirSource,
}

#[derive(Debug, PartialEq)]
pub enum DataDirSource {
    /// `DATA_DIR` was set: the operator's choice wins.
    Explicit,
    /// The mount of a volume service bound on Cloud Foundry (its label in `VCAP_SERVICES`).
    CloudFoundryVolume(String),
    /// Stackato's filesystem service (`STACKATO_FILESYSTEM`).
    StackatoFilesystem,
    /// `./echo-data`: nothing else was offered.
    Default,
}

impl DataDir {
    /// One start-up line saying where the state lives and where that came from.
    pub fn describe(&self) -> String {
        let path = self.path.display();
        match &self.source {
            DataDirSource::Explicit => format!("state in {path} (DATA_DIR)"),
            DataDirSource::CloudFoundryVolume(label) => {
                format!("state in {path} (the volume of the bound service '{label}')")
            }
            DataDirSource::StackatoFilesystem => {
                format!("state in {path} (Stackato's filesystem service)")
            }
            DataDirSource::Default => format!("state in {path} (the default)"),
        }
    }

    /// A warning when the state will not survive the platform: the default directory on a
    /// platform (`VCAP_APPLICATION` set) is the container's disk.
    pub fn ephemeral_warning(&self, on_a_platform: bool) -> Option<String> {
        (self.source == DataDirSource::Default && on_a_platform).then(|| {
            format!(
                "{} is on the container's ephemeral disk: a restart, restage or re-push forgets every instance and binding; bind a volume service (see the README) or set DATA_DIR",
                self.path.display()
            )
        })
    }
}

/// The journal's directory: `DATA_DIR`, else a bound volume's read-write mount
/// (`VCAP_SERVICES`), else Stackato's filesystem service, else `./echo-data`.
pub fn data_dir() -> Result<DataDir, SettingError> {
    let vcap_services = crate::settings::var("VCAP_SERVICES");
    let stackato = crate::settings::var("STACKATO_FILESYSTEM");
    choose_data_dir(
        crate::settings::var("DATA_DIR"),
        vcap_services.as_deref(),
        stackato,
    )
}

/// Whether this runs on Cloud Foundry or Stackato (both set `VCAP_APPLICATION`).
pub fn on_a_platform() -> bool {
    crate::settings::var("VCAP_APPLICATION").is_some()
}

fn choose_data_dir(
    explicit: Option<String>,
    vcap_services: Option<&str>,
    stackato_filesystem: Option<String>,
) -> Result<DataDir, SettingError> {
    let chosen = |path: String, source| DataDir {
        path: PathBuf::from(path),
        source,
    };
    if let Some(path) = explicit {
        return Ok(chosen(path, DataDirSource::Explicit));
    }
    if let Some(json) = vcap_services {
        if let Some((label, path)) = bound_volume(json)? {
            return Ok(chosen(path, DataDirSource::CloudFoundryVolume(label)));
        }
    }
    if let Some(path) = stackato_filesystem {
        return Ok(chosen(path, DataDirSource::StackatoFilesystem));
    }
    Ok(chosen(EPHEMERAL_DATA_DIR.into(), DataDirSource::Default))
}

/// The first read-write `container_dir` among the `volume_mounts` of the services in
/// `VCAP_SERVICES` (`{"label": [{"name": .., "volume_mounts": [{"container_dir": ..,
/// "mode": "rw"}]}]}`), with its service's label. Labels are taken in sorted order, so
/// the choice does not depend on how the platform ordered the document.
fn bound_volume(vcap_services: &str) -> Result<Option<(String, String)>, SettingError> {
    let labels = parse_vcap_services(vcap_services)?;
    let found = labels.iter().find_map(|(label, bindings)| {
        let bindings = bindings.as_array()?;
        bindings
            .iter()
            .find_map(read_write_mount)
            .map(|dir| (label.clone(), dir))
    });
    Ok(found)
}

fn read_write_mount(binding: &Value) -> Option<String> {
    binding
        .get("volume_mounts")?
        .as_array()?
        .iter()
        .filter(|mount| mount.get("mode").and_then(Value::as_str) == Some("rw"))
        .find_map(|mount| mount.get("container_dir")?.as_str().map(str::to_string))
        .filter(|dir| !dir.trim().is_empty())
}

/// Beyond loopback a password must be at least this long ...
pub const MIN_PASSWORD_LENGTH: usize = 16;

/// The rule, as the refusal says it (`--help` says it in its own words, in settings.rs).
pub const PASSWORD_RULE: &str = "at least 16 characters with letters and digits, and found in none of the files the echo-broker repository publishes (e.g. openssl rand -hex 24)";

/// The repository's published text: its documentation, deployment files, catalogs and the
/// teaching file, `src/broker.rs`, whose example exchange shows a dashboard token (a new
/// file under docs/ belongs here; the test of every credential-looking value fails until it
/// is, if the file shows a strong-looking one). Anyone
/// can read them, so a password that appears in any of them (a placeholder, a sample
/// credential in an example's output) is refused beyond loopback. Carried in the binaries so
/// the rule follows the files as they change; a test checks that every credential-looking
/// value anywhere in the repository is refused. (`vars.example.yml` is not carried:
/// `.cfignore` leaves it out of an upload, where a buildpack building from source would
/// miss it; its placeholders are refused as too easy to guess, and the test would say so if
/// one were not.)
const PUBLISHED_FILES: [&str; 16] = [
    include_str!("../README.md"),
    include_str!("broker.rs"),
    include_str!("../CONTRIBUTING.md"),
    include_str!("../manifest.yml"),
    include_str!("../catalog.toml"),
    include_str!("../catalog-cf.toml"),
    include_str!("../docs/architecture.md"),
    include_str!("../docs/cloud-foundry.md"),
    include_str!("../docs/conversation-and-metrics.md"),
    include_str!("../docs/http.md"),
    include_str!("../docs/osb-api.md"),
    include_str!("../docs/performance.md"),
    include_str!("../docs/reliability.md"),
    include_str!("../docs/stackato.md"),
    include_str!("../docs/testing.md"),
    include_str!("../docs/windows.md"),
];

/// Why `password` must not be used beyond loopback, `None` if it may.
pub fn password_problem(password: &str) -> Option<&'static str> {
    let has_letter = password.chars().any(|c| c.is_alphabetic());
    let has_digit = password.chars().any(|c| c.is_ascii_digit());
    if password.chars().count() < MIN_PASSWORD_LENGTH || !has_letter || !has_digit {
        return Some("is too easy to guess");
    }
    if PUBLISHED_FILES.iter().any(|text| text.contains(password)) {
        return Some("is published in the echo-broker repository");
    }
    None
}

/// Refuses a weak or published password in any of `secrets` (variable name, value) when the
/// server listens beyond loopback: one line naming the variable and the rule.
pub fn refuse_published_secrets(host: &str, secrets: &[(&str, &str)]) -> Result<(), SettingError> {
    if is_loopback(host) {
        return Ok(());
    }
    let refused = secrets
        .iter()
        .find_map(|(name, value)| password_problem(value).map(|problem| (name, problem)));
    match refused {
        Some((name, problem)) => Err(SettingError::variable(
            name,
            format!("this value {problem}, and HOST '{host}' is not loopback; beyond loopback a password needs {PASSWORD_RULE}"),
        )),
        None => Ok(()),
    }
}

/// Whether `host` (an IP address, as `HOST` must be) is a loopback address.
pub fn is_loopback(host: &str) -> bool {
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NFS_BINDING: &str = r#"{
        "nfs": [{
            "name": "echo-state",
            "label": "nfs",
            "credentials": {},
            "volume_mounts": [
                {"container_dir": "/var/vcap/data/read-only", "mode": "r", "device_type": "shared"},
                {"container_dir": "/var/vcap/data/echo", "mode": "rw", "device_type": "shared"}
            ]
        }],
        "Echo Service": [{"name": "my-echo", "credentials": {"uri": "http://x"}, "volume_mounts": []}]
    }"#;

    #[test]
    fn the_first_read_write_volume_mount_is_chosen() {
        let chosen = choose_data_dir(None, Some(NFS_BINDING), None);
        assert_eq!(
            chosen,
            Ok(DataDir {
                path: PathBuf::from("/var/vcap/data/echo"),
                source: DataDirSource::CloudFoundryVolume("nfs".into()),
            })
        );
    }

    #[test]
    fn an_explicit_data_dir_wins_over_every_platform_offer() {
        let chosen = choose_data_dir(Some("mine".into()), Some(NFS_BINDING), Some("/fs".into()));
        assert_eq!(chosen.map(|dir| dir.source), Ok(DataDirSource::Explicit));
    }

    #[test]
    fn stackato_filesystem_is_used_when_no_volume_is_bound() {
        let no_volume = r#"{"Echo Service": [{"name": "x", "volume_mounts": []}]}"#;
        let chosen = choose_data_dir(None, Some(no_volume), Some("/stackato/fs".into()));
        assert_eq!(
            chosen,
            Ok(DataDir {
                path: PathBuf::from("/stackato/fs"),
                source: DataDirSource::StackatoFilesystem,
            })
        );
    }

    #[test]
    fn only_read_only_mounts_fall_back_to_the_default_with_a_warning_on_a_platform() {
        let read_only = r#"{"nfs": [{"volume_mounts": [{"container_dir": "/ro", "mode": "r"}]}]}"#;
        let chosen = choose_data_dir(None, Some(read_only), None).expect("valid JSON");
        assert_eq!(chosen.source, DataDirSource::Default);
        assert!(chosen.ephemeral_warning(true).is_some());
        assert!(chosen.ephemeral_warning(false).is_none());
    }

    #[test]
    fn malformed_vcap_services_is_refused_naming_the_variable() {
        for bad in ["not json", "[1, 2]"] {
            let refused = choose_data_dir(None, Some(bad), None);
            assert!(
                refused.is_err_and(|problem| problem.to_string().starts_with("VCAP_SERVICES: "))
            );
        }
    }

    #[test]
    fn a_bound_postgresql_service_is_found_by_its_uri_or_by_its_tags() {
        let by_uri = r#"{"user-provided": [{"name": "db", "credentials": {"uri": "postgresql://u:p@h:5432/d"}}],
                         "Echo Service": [{"name": "x", "credentials": {"uri": "http://x"}}]}"#;
        assert_eq!(
            bound_database(by_uri),
            Ok(Some(DatabaseUrl {
                url: "postgresql://u:p@h:5432/d".into(),
                source: DatabaseSource::BoundService("db".into()),
            }))
        );
        let by_tags = r#"{"a9s-postgresql": [{"name": "pg", "tags": ["SQL", "PostgreSQL"], "credentials":
            {"hostname": "10.0.0.5", "port": 5432, "name": "d1", "username": "u@x", "password": "p/w:1"}}]}"#;
        let found = bound_database(by_tags).expect("valid JSON").expect("found");
        assert_eq!(found.url, "postgres://u%40x:p%2Fw%3A1@10.0.0.5:5432/d1");
        assert_eq!(found.variable(), "VCAP_SERVICES (the bound service 'pg')");
    }

    #[test]
    fn services_that_are_not_postgresql_are_not_taken_for_a_database() {
        let others = r#"{"mysql": [{"name": "m", "tags": ["mysql"], "credentials": {"uri": "mysql://u:p@h/d",
                          "hostname": "h", "port": 3306, "name": "d", "username": "u", "password": "p"}}],
                         "nfs": [{"name": "v", "credentials": {}, "volume_mounts": []}]}"#;
        assert_eq!(bound_database(others), Ok(None));
        let tagged_but_incomplete =
            r#"{"pg": [{"tags": ["postgres"], "credentials": {"hostname": "h"}}]}"#;
        assert_eq!(bound_database(tagged_but_incomplete), Ok(None));
    }

    #[test]
    fn weak_or_published_passwords_are_refused_beyond_loopback_only() {
        let secrets = [
            ("BROKER_PASSWORD", "pass"),
            ("ECHO_PASSWORD", "9f3a7c1e5b2d4f6a8c0e"),
        ];
        assert!(refuse_published_secrets("127.0.0.1", &secrets).is_ok());
        assert!(refuse_published_secrets("::1", &secrets).is_ok());
        let refused = refuse_published_secrets("0.0.0.0", &secrets);
        assert!(refused.is_err_and(|problem| problem.to_string().starts_with("BROKER_PASSWORD: ")));
        for weak in [
            "THE-BROKER-PASSWORD",
            "secret-1",
            "0123456789012345",
            "short-1",
        ] {
            assert_eq!(
                password_problem(weak),
                Some("is too easy to guess"),
                "{weak}"
            );
        }
        assert_eq!(password_problem("9f3a7c1e5b2d4f6a8c0e"), None);
    }

    #[test]
    fn a_strong_looking_value_found_in_a_published_file_is_refused() {
        let strong_looking = |word: &&str| {
            word.len() >= MIN_PASSWORD_LENGTH
                && word.chars().any(|c| c.is_alphabetic())
                && word.chars().any(|c| c.is_ascii_digit())
        };
        let sample = PUBLISHED_FILES
            .iter()
            .flat_map(|text| text.split_whitespace())
            .find(strong_looking)
            .expect("a published file has a long word with letters and digits");
        assert_eq!(
            password_problem(sample),
            Some("is published in the echo-broker repository"),
            "{sample}"
        );
    }
}
