//! The echo service: the backend the broker provisions and binds, a program of its own
//! (`src/bin/echo-service.rs`) that the broker can also run in its process.
//!
//! - [`service`]: the HTTP API, one function per call, over a [`store::Store`].
//! - [`api`]: the management API's bodies, the one part the broker's client shares.
//! - [`store`]: what the service asks of where its state lives, and two answers side by
//!   side: [`journal_store`] (memory and a journal on a local disk, over the generic
//!   [`journal`], holding a [`journal_state`]) and [`postgres`] (a PostgreSQL database shared by any number of
//!   instances).
//!   - [`journal`] is in layers: the journal itself (append, group commit, recovery) and
//!     its compaction, over `load` (replay, torn tails, [`journal::read_only`]), over
//!     `files` (the [`journal::Disk`] every write and fsync goes through, locks,
//!     permissions), over `format` (framing, checksums); failures are
//!     [`journal::JournalError`]s.
//!   - [`journal_state`] is the compact layout of instances and bindings; its `changes`
//!     are what the journal records, each with what undoes it.
//! - [`dashboard`]: the per-instance HTML page, rendered from a plain view.
//!
//! The arrows run one way: `service` knows the `Store` interface only; the stores know
//! nothing of HTTP; `journal` and `dashboard` know nothing of the service, and no layer of
//! the journal knows the one above it.

pub mod api;
pub mod dashboard;
pub mod journal;
pub mod journal_state;
pub mod journal_store;
pub mod postgres;
pub mod service;
pub mod store;

use crate::platform::{self, StateLocation};
use crate::settings::{self, SettingError, TlsRoots};

/// Why the echo service did not start. Its words name the variable the problem came from.
#[derive(Debug)]
pub enum StartError {
    Setting(SettingError),
    /// The journal in `DATA_DIR` (or the volume it came from) cannot be used.
    Journal(journal::JournalError),
    /// The database that `variable` names cannot be used.
    Database {
        variable: String,
        error: postgres::OpenError,
    },
    /// The store opened, and then could not say what it holds.
    Store(store::StoreError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Setting(error) => write!(out, "{error}"),
            StartError::Journal(error) => write!(out, "DATA_DIR: {error}"),
            StartError::Database { variable, error } => write!(out, "{variable}: {error}"),
            StartError::Store(error) => write!(out, "{error}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Setting(error) => Some(error),
            StartError::Journal(error) => Some(error),
            StartError::Database { error, .. } => Some(error),
            StartError::Store(error) => Some(error),
        }
    }
}

/// The echo service as both binaries start it: the store `location` names (see
/// [`platform::state_location`]) opened, and one start-up line that says which store,
/// where it came from, and what it holds.
pub fn start_service(
    location: &StateLocation,
    management_credentials: Option<(String, String)>,
    tls_roots: &TlsRoots,
) -> Result<service::EchoService, StartError> {
    if let StateLocation::Journal(data_dir) = location {
        if let Some(warning) = data_dir.ephemeral_warning(platform::on_a_platform()) {
            log::warn!("echo service: {warning}");
        }
    }
    let (store, described) = open_store(location, tls_roots)?;
    let echo = service::EchoService::new(store, management_credentials);
    let instances = echo.instance_count().map_err(StartError::Store)?;
    log::info!(
        "echo service: {} loaded, {described}",
        settings::counted(instances as usize, "instance")
    );
    Ok(echo)
}

/// Opens the store `location` names: the journal (loaded from disk) or the database
/// (connected, its schema created or upgraded). Also returns the start-up line's words
/// for where the state is.
pub fn open_store(
    location: &StateLocation,
    tls_roots: &TlsRoots,
) -> Result<(Box<dyn store::Store>, String), StartError> {
    match location {
        StateLocation::Journal(data_dir) => {
            let store =
                journal_store::JournalStore::open(&data_dir.path).map_err(StartError::Journal)?;
            Ok((Box::new(store), data_dir.describe()))
        }
        StateLocation::Database(database) => {
            let settings = settings::database_settings().map_err(StartError::Setting)?;
            let store = postgres::PostgresStore::open(&database.url, tls_roots, settings).map_err(
                |error| StartError::Database {
                    variable: database.variable(),
                    error,
                },
            )?;
            let described = format!(
                "state in PostgreSQL, database {} ({})",
                store.name(),
                database.source_description()
            );
            Ok((Box::new(store), described))
        }
    }
}
