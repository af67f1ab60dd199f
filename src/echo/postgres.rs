//! The PostgreSQL store: the echo service's state in a database, so that any number of
//! echo service processes on it behave as one service.
//!
//! The database keeps the promises a lock in one process keeps for the journal:
//! - an instance or binding is created once: `INSERT ... ON CONFLICT DO NOTHING` on the
//!   primary key, and the loser of a race reads the winner's record (a 409 with it);
//! - a change checked against the instance is made only on the instance as it was checked:
//!   the store takes the instance's attributes (as this process last saw them, else read),
//!   decides in Rust with the same rules as the journal ([`refuse_other_ids`],
//!   [`apply_update`]), and makes the change in one statement that matches those attributes
//!   (compare and set), reading them afresh when another request changed them; so a change
//!   is usually one round trip, and what was only remembered never decides an answer. A
//!   deprovision's statement locks the row before it counts the bindings it removes;
//! - the dashboard's latest messages are a ring of [`RECENT_MESSAGES`] slots per instance,
//!   bounded by its primary key, and a message is counted and kept in one statement;
//! - a change is answered only after it commits, and a change that may have been made is
//!   never made again by the store (see [`pool`]).
//!
//! Attributes are kept as the JSON text the service made of what the platform sent, never
//! cast to `jsonb`: JSON text may hold `\u0000`, which `jsonb` refuses, and what a platform
//! sent must never make an instance impossible to delete.
//!
//! Every call has a deadline ([`CALL_TIMEOUT`]) that a silent server cannot stretch; a
//! failure is a [`StoreError`] that names the failing part, and a log line that names the
//! database. The schema creates itself at start, numbered, under an advisory lock (see
//! [`schema`]); start-up waits a while for a database that is not up yet.

mod import;
mod pool;
mod schema;
mod start;

pub use import::{import_journal, ImportError, ImportReport};
pub use start::{DatabaseName, OpenError};

use super::api::{BindingAttributes, BindingLifetime, InstanceAttributes, InstanceUpdate};
use super::store::{
    apply_update, refuse_other_ids, BindingLookup, BindingRecord, Bound, Caller, ClaimedIds,
    DashboardRecord, Deprovisioned, Figure, FigureKind, InstanceRecord, NewBinding, NewInstance,
    OtherIds, Provisioned, Store, StoreError, StoreResult, Totals, Unbound, RECENT_MESSAGES,
};
use crate::settings::{DatabaseSettings, TlsRoots};
use deadpool_postgres::Object;
use pool::{Call, Connections, Failure, Tls, STORE_WIDE};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Error, Row};

/// How long one call may take in all: waiting for a connection, connecting, and the
/// statements. Under the broker's 5-s wait for the echo service, so the broker hears the
/// echo service's own 503 rather than a timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// `/health`'s deadline: platforms give a health check about a second.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(800);

/// How many times a change checked against an instance reads it again when another request
/// changed it between the read and the change.
const CHANGED_MEANWHILE_TRIES: usize = 5;

/// The echo service's state in PostgreSQL.
pub struct PostgresStore {
    connections: Connections,
    name: DatabaseName,
    /// When a failure was last logged (seconds since the epoch), so a database away under
    /// load costs the log one line a second, not one a request.
    last_failure_logged: AtomicU64,
    seen: SeenAttributes,
    /// When the last health check finished, and its answer (see `health`).
    last_health_check: Mutex<Option<(Instant, StoreResult<()>)>>,
}

impl PostgresStore {
    /// Connects to the database `url` names, creates or upgrades the schema, and returns
    /// the store. While the database does not answer, start-up tries again for
    /// `settings.start_wait`, saying so. Every problem is one line for the operator (the
    /// caller prefixes the variable the URL came from).
    pub fn open(
        url: &str,
        tls_roots: &TlsRoots,
        settings: DatabaseSettings,
    ) -> Result<PostgresStore, OpenError> {
        let (config, name) = start::connection_config(url)?;
        let tls = match config.get_ssl_mode() {
            SslMode::Require => Tls::Verified(tokio_postgres_rustls::MakeRustlsConnect::new(
                tls_roots.rustls_config().map_err(OpenError::Tls)?,
            )),
            _ => Tls::Plain,
        };
        let store = PostgresStore {
            connections: Connections::new(config, tls, &settings).map_err(OpenError::Pool)?,
            name,
            last_failure_logged: AtomicU64::new(0),
            seen: SeenAttributes::default(),
            last_health_check: Mutex::new(None),
        };
        start::wait_for_schema(&store.connections, &store.name, settings.start_wait)?;
        Ok(store)
    }

    /// The database's host and name, for the start-up line.
    pub fn name(&self) -> &DatabaseName {
        &self.name
    }

    /// Runs `work`, which changes the state; a failure becomes the 503's [`StoreError`],
    /// which says whether the change was made.
    fn change<T>(
        &self,
        instance_id: &str,
        work: impl AsyncFn(&mut Object) -> Result<T, Error>,
    ) -> StoreResult<T> {
        self.call(Call::Change, Some(instance_id), CALL_TIMEOUT, work)
    }

    /// [`Self::change`] for a change checked against the instance, whose `work` answers
    /// `None` when the instance kept changing under it (see [`CHANGED_MEANWHILE_TRIES`]).
    fn checked_change<T>(
        &self,
        instance_id: &str,
        work: impl AsyncFn(&mut Object) -> Result<Option<T>, Error>,
    ) -> StoreResult<T> {
        self.change(instance_id, work)?.ok_or_else(|| {
            StoreError::new(
                "the instance kept changing under this request (other requests at the same moment); the change was not made, try again",
            )
        })
    }

    /// Runs `work`, which only reads.
    fn read<T>(
        &self,
        instance_id: Option<&str>,
        work: impl AsyncFn(&mut Object) -> Result<T, Error>,
    ) -> StoreResult<T> {
        self.call(Call::Read, instance_id, CALL_TIMEOUT, work)
    }

    fn call<T>(
        &self,
        call: Call,
        instance_id: Option<&str>,
        timeout: Duration,
        work: impl AsyncFn(&mut Object) -> Result<T, Error>,
    ) -> StoreResult<T> {
        self.connections
            .run(call, instance_id, timeout, work)
            .map_err(|failure| {
                self.log_failure(&failure);
                store_error(&failure, call)
            })
    }

    fn log_failure(&self, failure: &Failure) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if self.last_failure_logged.swap(now, Ordering::Relaxed) != now {
            log::warn!(
                "echo service: the database {} {}",
                self.name,
                failure.reason(self.connections.max_connections())
            );
        }
    }
}

/// The [`StoreError`] for a failure, worded for the platform's user: it names the failing
/// part (never where it is) and, for a change, whether it was made.
fn store_error(failure: &Failure, call: Call) -> StoreError {
    let outcome = match call {
        Call::Read => "try again later",
        Call::Change if failure.surely_not_done() => "the change was not made, try again later",
        Call::Change => "the change may or may not have been made: repeating the request is safe",
    };
    StoreError::new(format!(
        "database unavailable: the echo service's database is unavailable ({}); {outcome}",
        failure.cause()
    ))
}

// The statements, named for what they do. `$2`-style comparisons of `attributes IS NOT
// DISTINCT FROM` are the compare-and-set: the text as the store read it.

const INSTANCE: &str = "SELECT attributes, dashboard_token, message_count,
        (SELECT count(*) FROM echo_bindings b WHERE b.instance_id = i.instance_id)
    FROM echo_instances i WHERE instance_id = $1";
const INSTANCE_ATTRIBUTES: &str = "SELECT attributes FROM echo_instances WHERE instance_id = $1";
const INSERT_INSTANCE: &str =
    "INSERT INTO echo_instances (instance_id, attributes, dashboard_token)
    VALUES ($1, $2, $3) ON CONFLICT (instance_id) DO NOTHING";
/// Sets the attributes to $3 if they are still $2; answers [`INSTANCE`]'s columns.
const UPDATE_ATTRIBUTES_IF_UNCHANGED: &str = "WITH updated AS (
        UPDATE echo_instances SET attributes = $3
        WHERE instance_id = $1 AND attributes IS NOT DISTINCT FROM $2
        RETURNING attributes, dashboard_token, message_count)
    SELECT attributes, dashboard_token, message_count,
        (SELECT count(*) FROM echo_bindings b WHERE b.instance_id = $1)
    FROM updated";
/// Deletes the instance if its attributes are still $2 (its bindings and messages go with
/// it, `ON DELETE CASCADE`), counting the bindings it removes (see the schema's step 3);
/// answers [`INSTANCE`]'s columns as they were.
const DEPROVISION_IF_UNCHANGED: &str = "SELECT * FROM echo_deprovision($1, $2)";
/// Creates binding $2 if the instance's attributes are still $3 (`FOR SHARE` waits for an
/// update or a deletion of the instance under way, and holds off the next); one row if it
/// was made.
const BIND_IF_UNCHANGED: &str = "INSERT INTO echo_bindings
        (instance_id, binding_id, attributes, username, password, expires_at, renew_before)
    SELECT instance_id, $2, $4, $5, $6, to_timestamp($7), to_timestamp($8)
    FROM echo_instances WHERE instance_id = $1 AND attributes IS NOT DISTINCT FROM $3
    FOR SHARE
    ON CONFLICT (instance_id, binding_id) DO NOTHING
    RETURNING 1";
/// Deletes binding $2 if the instance's attributes are still $3; answers the binding's
/// columns as [`read_binding`] reads them.
const UNBIND_IF_UNCHANGED: &str = "DELETE FROM echo_bindings
    WHERE instance_id = $1 AND binding_id = $2 AND EXISTS (SELECT 1 FROM echo_instances
        WHERE instance_id = $1 AND attributes IS NOT DISTINCT FROM $3 FOR SHARE)
    RETURNING attributes, username, password,
        extract(epoch FROM expires_at)::bigint, extract(epoch FROM renew_before)::bigint";
const BINDING: &str = "SELECT attributes, username, password,
        extract(epoch FROM expires_at)::bigint, extract(epoch FROM renew_before)::bigint
    FROM echo_bindings WHERE instance_id = $1 AND binding_id = $2";
const INSERT_BINDING: &str = "INSERT INTO echo_bindings
        (instance_id, binding_id, attributes, username, password, expires_at, renew_before)
    VALUES ($1, $2, $3, $4, $5, to_timestamp($6), to_timestamp($7))
    ON CONFLICT (instance_id, binding_id) DO NOTHING";
const INSTANCE_EXISTS: &str = "SELECT 1 FROM echo_instances WHERE instance_id = $1";
const BINDING_EXISTS: &str =
    "SELECT 1 FROM echo_bindings WHERE instance_id = $1 AND binding_id = $2";
const CALLER: &str = "SELECT b.username, b.password, i.attributes,
        extract(epoch FROM b.expires_at)::bigint, extract(epoch FROM b.renew_before)::bigint
    FROM echo_bindings b JOIN echo_instances i USING (instance_id)
    WHERE b.instance_id = $1 AND b.binding_id = $2";
/// Counts the message on the instance's row (which also orders messages to one instance)
/// and writes its preview into the ring slot it now owns, only while the binding exists.
const RECORD_MESSAGE: &str = "WITH counted AS (
        UPDATE echo_instances SET message_count = message_count + 1
        WHERE instance_id = $1 AND EXISTS
            (SELECT 1 FROM echo_bindings WHERE instance_id = $1 AND binding_id = $2)
        RETURNING instance_id, message_count)
    INSERT INTO echo_recent_messages (instance_id, slot, sequence, preview)
    SELECT instance_id, ((message_count - 1) % $4)::smallint, message_count, $3 FROM counted
    ON CONFLICT (instance_id, slot)
        DO UPDATE SET sequence = excluded.sequence, preview = excluded.preview";
const BINDING_IDS: &str = "SELECT binding_id FROM echo_bindings WHERE instance_id = $1
    ORDER BY binding_id COLLATE \"C\"";
const RECENT: &str =
    "SELECT preview FROM echo_recent_messages WHERE instance_id = $1 ORDER BY sequence";
const TOTALS: &str = "SELECT (SELECT count(*) FROM echo_instances),
    (SELECT count(*) FROM echo_bindings),
    (SELECT coalesce(sum(message_count), 0)::bigint FROM echo_instances)";

/// The attributes a change checked against an instance expects to find.
struct Expected {
    attributes: Option<String>,
    /// Taken from what this process saw last ([`SeenAttributes`]), not read: the change's
    /// compare-and-set checks it, and it never decides an answer by itself.
    guessed: bool,
}

/// What the ids a caller named decide, if anything.
enum Decided {
    Refused(OtherIds),
    /// They are not the guessed instance's: read the instance before refusing.
    ReadAgain,
}

impl Expected {
    /// The one rule for the ids a caller named ([`refuse_other_ids`]), applied to the
    /// attributes expected.
    fn refusal(&self, claimed: &ClaimedIds) -> Option<Decided> {
        let refusal = refuse_other_ids(parse_attributes(&self.attributes).as_ref(), claimed)?;
        Some(match self.guessed {
            true => Decided::ReadAgain,
            false => Decided::Refused(refusal),
        })
    }
}

/// What this process last read or wrote of each instance's attributes: the expected value
/// of the next compare-and-set on it, so that a change usually takes one round trip. An
/// entry another process made stale fails the compare and costs a read. At most
/// [`SEEN_AT_MOST`] instances are kept (the table starts afresh when full).
#[derive(Default)]
struct SeenAttributes(Mutex<HashMap<String, Option<String>>>);

const SEEN_AT_MOST: usize = 1_000;

impl SeenAttributes {
    fn get(&self, instance_id: &str) -> Option<Option<String>> {
        self.lock().get(instance_id).cloned()
    }

    fn remember(&self, instance_id: &str, attributes: &Option<String>) {
        let mut seen = self.lock();
        if seen.len() >= SEEN_AT_MOST {
            seen.clear();
        }
        seen.insert(instance_id.to_string(), attributes.clone());
    }

    fn forget(&self, instance_id: &str) {
        self.lock().remove(instance_id);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Option<String>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl PostgresStore {
    /// The attributes the `attempt`-th try of a change expects: on the first, what this
    /// process saw last, if it saw the instance; else read now (`None`: no such instance).
    async fn expected(
        &self,
        client: &Object,
        instance_id: &str,
        attempt: usize,
    ) -> Result<Option<Expected>, Error> {
        if attempt == 0 {
            if let Some(attributes) = self.seen.get(instance_id) {
                return Ok(Some(Expected {
                    attributes,
                    guessed: true,
                }));
            }
        }
        let stored = stored_attributes(client, instance_id).await?;
        match &stored {
            Some(attributes) => self.seen.remember(instance_id, attributes),
            None => self.seen.forget(instance_id),
        }
        Ok(stored.map(|attributes| Expected {
            attributes,
            guessed: false,
        }))
    }
}

impl Store for PostgresStore {
    fn provision(&self, instance_id: &str, new: NewInstance) -> StoreResult<Provisioned> {
        let attributes = to_json(&new.attributes);
        self.checked_change(instance_id, async |client| {
            let insert = client.prepare_cached(INSERT_INSTANCE).await?;
            // The loser of a race reads the winner's record: committed before our insert
            // returned (an insert waits for a racing transaction). Gone again only if it
            // was deprovisioned in between; then insert again.
            for _ in 0..CHANGED_MEANWHILE_TRIES {
                if client
                    .execute(&insert, &[&instance_id, &attributes, &new.dashboard_token])
                    .await?
                    == 1
                {
                    self.seen.remember(instance_id, &attributes);
                    return Ok(Some(Provisioned::Made(InstanceRecord {
                        attributes: new.attributes.clone(),
                        dashboard_token: new.dashboard_token.clone(),
                        bindings: 0,
                        messages: 0,
                    })));
                }
                if let Some(existing) = instance_record(client, instance_id).await? {
                    return Ok(Some(Provisioned::Exists(existing)));
                }
            }
            Ok(None)
        })
    }

    fn instance(&self, instance_id: &str) -> StoreResult<Option<InstanceRecord>> {
        self.read(Some(instance_id), async |client| {
            instance_record(client, instance_id).await
        })
    }

    fn update(
        &self,
        instance_id: &str,
        update: InstanceUpdate,
    ) -> StoreResult<Option<InstanceRecord>> {
        self.checked_change(instance_id, async |client| {
            let write = client
                .prepare_cached(UPDATE_ATTRIBUTES_IF_UNCHANGED)
                .await?;
            for attempt in 0..CHANGED_MEANWHILE_TRIES {
                let Some(expected) = self.expected(client, instance_id, attempt).await? else {
                    return Ok(Some(None));
                };
                let stored = expected.attributes;
                // An instance the original broker made has no attributes to update.
                let updated = match parse_attributes(&stored) {
                    Some(mut attributes) => {
                        apply_update(&mut attributes, update.clone());
                        to_json(&Some(attributes))
                    }
                    None => stored.clone(),
                };
                let row = client
                    .query_opt(&write, &[&instance_id, &stored, &updated])
                    .await?;
                if let Some(row) = row {
                    self.seen.remember(instance_id, &updated);
                    return Ok(Some(Some(read_instance(&row)?)));
                }
            }
            Ok(None)
        })
    }

    fn deprovision(&self, instance_id: &str, claimed: &ClaimedIds) -> StoreResult<Deprovisioned> {
        self.checked_change(instance_id, async |client| {
            let remove = client.prepare_cached(DEPROVISION_IF_UNCHANGED).await?;
            for attempt in 0..CHANGED_MEANWHILE_TRIES {
                let Some(expected) = self.expected(client, instance_id, attempt).await? else {
                    return Ok(Some(Deprovisioned::NoInstance));
                };
                match expected.refusal(claimed) {
                    Some(Decided::Refused(refusal)) => {
                        return Ok(Some(Deprovisioned::OtherIds(refusal)))
                    }
                    Some(Decided::ReadAgain) => continue,
                    None => {}
                }
                let row = client
                    .query_opt(&remove, &[&instance_id, &expected.attributes])
                    .await?;
                if let Some(row) = row {
                    self.seen.forget(instance_id);
                    return Ok(Some(Deprovisioned::Removed(read_instance(&row)?)));
                }
            }
            Ok(None)
        })
    }

    fn bind(
        &self,
        instance_id: &str,
        binding_id: &str,
        claimed: &ClaimedIds,
        new: NewBinding,
    ) -> StoreResult<Bound> {
        let attributes = to_json(&new.attributes);
        let (expires_at, renew_before) = lifetime_columns(new.lifetime);
        self.checked_change(instance_id, async |client| {
            let bind = client.prepare_cached(BIND_IF_UNCHANGED).await?;
            let read = client.prepare_cached(BINDING).await?;
            for attempt in 0..CHANGED_MEANWHILE_TRIES {
                let Some(expected) = self.expected(client, instance_id, attempt).await? else {
                    return Ok(Some(Bound::NoInstance));
                };
                match expected.refusal(claimed) {
                    Some(Decided::Refused(refusal)) => return Ok(Some(Bound::OtherIds(refusal))),
                    Some(Decided::ReadAgain) => continue,
                    None => {}
                }
                let made = client
                    .query_opt(
                        &bind,
                        &[
                            &instance_id,
                            &binding_id,
                            &expected.attributes,
                            &attributes,
                            &new.username,
                            &new.password,
                            &expires_at,
                            &renew_before,
                        ],
                    )
                    .await?;
                if made.is_some() {
                    return Ok(Some(Bound::Made(BindingRecord {
                        attributes: new.attributes.clone(),
                        username: new.username.clone(),
                        password: new.password.clone(),
                        lifetime: new.lifetime,
                    })));
                }
                // Not made: the binding exists, or the instance changed (or went) meanwhile.
                let existing = client
                    .query_opt(&read, &[&instance_id, &binding_id])
                    .await?;
                if let Some(row) = existing {
                    return Ok(Some(Bound::Exists(read_binding(&row, 0)?)));
                }
            }
            Ok(None)
        })
    }

    fn binding(&self, instance_id: &str, binding_id: &str) -> StoreResult<BindingLookup> {
        self.read(Some(instance_id), async |client| {
            let read = client.prepare_cached(BINDING).await?;
            if let Some(row) = client
                .query_opt(&read, &[&instance_id, &binding_id])
                .await?
            {
                return Ok(BindingLookup::Found(read_binding(&row, 0)?));
            }
            let exists = client.prepare_cached(INSTANCE_EXISTS).await?;
            Ok(match client.query_opt(&exists, &[&instance_id]).await? {
                Some(_) => BindingLookup::NoBinding,
                None => BindingLookup::NoInstance,
            })
        })
    }

    fn unbind(
        &self,
        instance_id: &str,
        binding_id: &str,
        claimed: &ClaimedIds,
    ) -> StoreResult<Unbound> {
        self.checked_change(instance_id, async |client| {
            let remove = client.prepare_cached(UNBIND_IF_UNCHANGED).await?;
            let exists = client.prepare_cached(BINDING_EXISTS).await?;
            for attempt in 0..CHANGED_MEANWHILE_TRIES {
                let Some(expected) = self.expected(client, instance_id, attempt).await? else {
                    return Ok(Some(Unbound::NoInstance));
                };
                match expected.refusal(claimed) {
                    Some(Decided::Refused(refusal)) => return Ok(Some(Unbound::OtherIds(refusal))),
                    Some(Decided::ReadAgain) => continue,
                    None => {}
                }
                let removed = client
                    .query_opt(&remove, &[&instance_id, &binding_id, &expected.attributes])
                    .await?;
                if let Some(row) = removed {
                    return Ok(Some(Unbound::Removed(read_binding(&row, 0)?)));
                }
                // Nothing removed: there is no such binding (now), or the instance changed
                // meanwhile (or was only guessed) and the binding is still there.
                let found = client
                    .query_opt(&exists, &[&instance_id, &binding_id])
                    .await?;
                if found.is_none() && !expected.guessed {
                    return Ok(Some(Unbound::NoBinding));
                }
            }
            Ok(None)
        })
    }

    fn caller(&self, instance_id: &str, binding_id: &str) -> StoreResult<Option<Caller>> {
        self.read(Some(instance_id), async |client| {
            let read = client.prepare_cached(CALLER).await?;
            let Some(row) = client
                .query_opt(&read, &[&instance_id, &binding_id])
                .await?
            else {
                return Ok(None);
            };
            let attributes: Option<String> = row.try_get(2)?;
            Ok(Some(Caller {
                username: row.try_get(0)?,
                password: row.try_get(1)?,
                lifetime: read_lifetime(&row, 3)?,
                service_id: parse_attributes(&attributes).map(|a| a.service_id),
            }))
        })
    }

    fn record_message(
        &self,
        instance_id: &str,
        binding_id: &str,
        preview: &str,
    ) -> StoreResult<bool> {
        let ring = RECENT_MESSAGES as i64;
        self.change(instance_id, async |client| {
            let record = client.prepare_cached(RECORD_MESSAGE).await?;
            Ok(client
                .execute(&record, &[&instance_id, &binding_id, &preview, &ring])
                .await?
                == 1)
        })
    }

    fn dashboard(&self, instance_id: &str) -> StoreResult<Option<DashboardRecord>> {
        self.read(Some(instance_id), async |client| {
            let read = client.prepare_cached(INSTANCE).await?;
            let bindings = client.prepare_cached(BINDING_IDS).await?;
            let recent = client.prepare_cached(RECENT).await?;
            // One snapshot, so the counts, the bindings and the messages agree.
            let transaction = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let Some(row) = transaction.query_opt(&read, &[&instance_id]).await? else {
                return Ok(None);
            };
            let binding_ids = transaction.query(&bindings, &[&instance_id]).await?;
            let recent_messages = transaction.query(&recent, &[&instance_id]).await?;
            let shown = DashboardRecord {
                instance: read_instance(&row)?,
                binding_ids: first_column(&binding_ids)?,
                recent_messages: first_column(&recent_messages)?,
            };
            transaction.commit().await?;
            Ok(Some(shown))
        })
    }

    fn totals(&self) -> StoreResult<Totals> {
        self.read(Some(STORE_WIDE), async |client| {
            let totals = client.prepare_cached(TOTALS).await?;
            let row = client.query_one(&totals, &[]).await?;
            let count = |index: usize| -> Result<u64, Error> {
                Ok(row.try_get::<_, i64>(index)?.max(0) as u64)
            };
            Ok(Totals {
                instances: count(0)?,
                bindings: count(1)?,
                messages: count(2)?,
            })
        })
    }

    /// `Ok` while a connection answers a trivial statement within [`HEALTH_TIMEOUT`]. One
    /// check runs at a time, and the callers that arrived while it ran take its answer: a
    /// flood of health checks asks the database once per check's length.
    fn health(&self) -> StoreResult<()> {
        let arrived = Instant::now();
        let mut last_check = self
            .last_health_check
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((finished, answer)) = &*last_check {
            if *finished > arrived {
                return answer.clone();
            }
        }
        let answer = self.call(
            Call::Read,
            Some(STORE_WIDE),
            HEALTH_TIMEOUT,
            async |client| client.simple_query("SELECT 1").await.map(|_| ()),
        );
        *last_check = Some((Instant::now(), answer.clone()));
        answer
    }

    fn figures(&self) -> Vec<Figure> {
        use FigureKind::{Counter, Gauge};
        let statistics = self.connections.statistics();
        let (open, idle) = self.connections.open_and_idle();
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed) as f64;
        let figures = [
            ("connections", Gauge, "Connections to the database open now.", open as f64),
            ("connections_idle", Gauge, "Of those, idle now.", idle as f64),
            (
                "connections_max",
                Gauge,
                "DATABASE_MAX_CONNECTIONS: the most this process opens.",
                self.connections.max_connections() as f64,
            ),
            ("connects_total", Counter, "Connections opened to the database.", count(&statistics.connects)),
            (
                "connect_failures_total",
                Counter,
                "Connections the database refused or did not answer.",
                count(&statistics.connect_failures),
            ),
            (
                "timeouts_total",
                Counter,
                "Calls the database did not answer within their deadline.",
                count(&statistics.timeouts),
            ),
            (
                "busy_total",
                Counter,
                "Calls that got no connection (or no share of them for their instance) within their deadline.",
                count(&statistics.no_connection),
            ),
        ];
        figures
            .into_iter()
            .map(|(name, kind, help, value)| Figure {
                name: format!("echo_service_database_{name}"),
                kind,
                help,
                value,
            })
            .collect()
    }

    fn longest_call(&self) -> Duration {
        CALL_TIMEOUT
    }
}

async fn instance_record(
    client: &Object,
    instance_id: &str,
) -> Result<Option<InstanceRecord>, Error> {
    let read = client.prepare_cached(INSTANCE).await?;
    match client.query_opt(&read, &[&instance_id]).await? {
        Some(row) => Ok(Some(read_instance(&row)?)),
        None => Ok(None),
    }
}

/// The instance's attributes as stored (`Some(None)`: it has none), or `None` if there is
/// no such instance.
async fn stored_attributes(
    client: &Object,
    instance_id: &str,
) -> Result<Option<Option<String>>, Error> {
    let read = client.prepare_cached(INSTANCE_ATTRIBUTES).await?;
    match client.query_opt(&read, &[&instance_id]).await? {
        Some(row) => Ok(Some(row.try_get(0)?)),
        None => Ok(None),
    }
}

/// A row of [`INSTANCE`].
fn read_instance(row: &Row) -> Result<InstanceRecord, Error> {
    let attributes: Option<String> = row.try_get(0)?;
    Ok(InstanceRecord {
        attributes: parse_attributes(&attributes),
        dashboard_token: row.try_get(1)?,
        messages: row.try_get::<_, i64>(2)?.max(0) as u64,
        bindings: row.try_get::<_, i64>(3)?.max(0) as usize,
    })
}

/// `attributes, username, password, expires_at, renew_before` from column `first` on (see
/// [`BINDING`]).
fn read_binding(row: &Row, first: usize) -> Result<BindingRecord, Error> {
    let attributes: Option<String> = row.try_get(first)?;
    Ok(BindingRecord {
        attributes: attributes
            .and_then(|text| serde_json::from_str::<BindingAttributes>(&text).ok()),
        username: row.try_get(first + 1)?,
        password: row.try_get(first + 2)?,
        lifetime: read_lifetime(row, first + 3)?,
    })
}

/// A lifetime from its two columns at `first` and the next (seconds since the epoch).
fn read_lifetime(row: &Row, first: usize) -> Result<Option<BindingLifetime>, Error> {
    let expires_at: Option<i64> = row.try_get(first)?;
    let renew_before: Option<i64> = row.try_get(first + 1)?;
    Ok(expires_at
        .zip(renew_before)
        .map(|(expires_at, renew_before)| BindingLifetime {
            expires_at: u64::try_from(expires_at).unwrap_or(0),
            renew_before: u64::try_from(renew_before).unwrap_or(0),
        }))
}

fn first_column(rows: &[Row]) -> Result<Vec<String>, Error> {
    rows.iter().map(|row| row.try_get(0)).collect()
}

/// A lifetime as the parameters of `to_timestamp` (double precision seconds; NULL: none).
/// The service refuses lifetimes past the year 9999, within the range of a timestamp.
fn lifetime_columns(lifetime: Option<BindingLifetime>) -> (Option<f64>, Option<f64>) {
    match lifetime {
        Some(lifetime) => (
            Some(lifetime.expires_at as f64),
            Some(lifetime.renew_before as f64),
        ),
        None => (None, None),
    }
}

fn to_json<T: serde::Serialize>(value: &Option<T>) -> Option<String> {
    value
        .as_ref()
        .and_then(|value| serde_json::to_string(value).ok())
}

/// Stored attributes read back; `None` where there are none (an instance the original
/// broker made without them) or they are not what this service wrote.
fn parse_attributes(text: &Option<String>) -> Option<InstanceAttributes> {
    text.as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
}
