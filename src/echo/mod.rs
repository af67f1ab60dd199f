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
use crate::settings;
use crate::settings::TlsRoots;

/// The echo service as both binaries start it: the store `location` names (see
/// [`platform::state_location`]) opened, and one start-up line that says which store,
/// where it came from, and what it holds. A problem is one line that names the variable.
pub fn start_service(
    location: &StateLocation,
    management_credentials: Option<(String, String)>,
    tls_roots: &TlsRoots,
) -> Result<service::EchoService, String> {
    if let StateLocation::Journal(data_dir) = location {
        if let Some(warning) = data_dir.ephemeral_warning(platform::on_a_platform()) {
            log::warn!("echo service: {warning}");
        }
    }
    let (store, described) = open_store(location, tls_roots)?;
    let echo = service::EchoService::new(store, management_credentials);
    let instances = echo.instance_count().map_err(|error| error.to_string())?;
    log::info!(
        "echo service: {} loaded, {described}",
        settings::counted(instances as usize, "instance")
    );
    Ok(echo)
}

/// Opens the store `location` names: the journal (loaded from disk) or the database
/// (connected, its schema created or upgraded). Also returns the start-up line's words
/// for where the state is. A problem is one line that names the variable it came from.
pub fn open_store(
    location: &StateLocation,
    tls_roots: &TlsRoots,
) -> Result<(Box<dyn store::Store>, String), String> {
    match location {
        StateLocation::Journal(data_dir) => {
            let store = journal_store::JournalStore::open(&data_dir.path)
                .map_err(|problem| format!("DATA_DIR: {problem}"))?;
            Ok((Box::new(store), data_dir.describe()))
        }
        StateLocation::Database(database) => {
            let settings = settings::database_settings().map_err(|error| error.to_string())?;
            let store = postgres::PostgresStore::open(&database.url, tls_roots, settings)
                .map_err(|problem| format!("{}: {problem}", database.variable()))?;
            let described = format!(
                "state in PostgreSQL, database {} ({})",
                store.name(),
                database.source_description()
            );
            Ok((Box::new(store), described))
        }
    }
}
