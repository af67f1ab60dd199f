//! The PostgreSQL store: the echo service's state in a database, so that any number of
//! echo service processes on it behave as one service.
//!
//! The database keeps the promises a lock in one process kept for the journal:
//! - an instance or binding is created once: `INSERT ... ON CONFLICT DO NOTHING` on the
//!   primary key, and the loser of a race reads the winner's record (a 409 with it);
//! - a check and the change it guards are one transaction that locks the instance's row
//!   (a bind cannot slip in under a deprovision);
//! - the dashboard's latest messages are a ring of [`RECENT_MESSAGES`] slots per instance,
//!   bounded by its primary key, and a message is counted and kept in one statement;
//! - a change is answered only after its transaction commits.
//!
//! Every call has a deadline ([`CALL_TIMEOUT`]) that a silent server cannot stretch (see
//! [`pool`]); a failure is a [`StoreError`] that names the database. The schema creates
//! itself at start, numbered, under an advisory lock (see [`schema`]).

mod import;
mod pool;
mod schema;

pub use import::{import_journal, ImportReport};

use super::api::{BindingAttributes, BindingLifetime, InstanceAttributes, InstanceUpdate};
use super::store::{
    apply_update, refuse_other_ids, BindingRecord, Caller, ClaimedIds, DashboardRecord,
    InstanceRecord, NewBinding, NewInstance, Outcome, Store, StoreResult, Totals, RECENT_MESSAGES,
};
use crate::metrics;
use crate::settings::TlsRoots;
use pool::{Call, Failure, Pool, Session};
use postgres::config::{Host, SslMode};
use postgres::{Config, NoTls, Row};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long one call may take in all: waiting for a connection, connecting, and the
/// statements. Under the broker's 5-s wait for the echo service, so the broker hears the
/// echo service's own 503 (which names the database) rather than a timeout.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// `/health`'s deadline: platforms give a health check about a second.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(800);

/// How long start-up waits for the database (connect, and create the schema).
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A statement the server runs longer than this is cancelled by the server itself, and a
/// transaction left open longer than the idle limit is ended by it: a connection stuck on
/// our side cannot hold row locks that other instances wait for.
/// (Notices, such as "relation already exists, skipping" at start, stay out of the log.)
const SERVER_SIDE_OPTIONS: &str = "-c statement_timeout=3000 -c lock_timeout=2500 \
    -c idle_in_transaction_session_timeout=10000 -c client_min_messages=warning";

/// Where the database is, as the start-up line and the errors name it (never the password).
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

/// The echo service's state in PostgreSQL.
pub struct PostgresStore {
    pool: Pool,
    name: DatabaseName,
    /// When a failure was last logged (seconds since the epoch), so a database away under
    /// load costs the log one line a second, not one a request.
    last_failure_logged: AtomicU64,
}

impl PostgresStore {
    /// Connects to the database `url` names, creates or upgrades the schema, and returns
    /// the store. Every problem is one line for the operator (the caller prefixes the
    /// variable the URL came from).
    pub fn open(url: &str, tls_roots: &TlsRoots) -> Result<PostgresStore, String> {
        let (config, name) = connection_config(url)?;
        let connect = connector(config, tls_roots)?;
        let store = PostgresStore {
            pool: Pool::new(connect),
            name,
            last_failure_logged: AtomicU64::new(0),
        };
        store
            .pool
            .run(START_TIMEOUT, |session| {
                schema::create_or_upgrade(&mut session.client)
            })
            .map_err(|failure| store.start_up_problem(&failure))??;
        Ok(store)
    }

    /// The database's host and name, for the start-up line.
    pub fn name(&self) -> &DatabaseName {
        &self.name
    }

    fn start_up_problem(&self, failure: &Failure) -> String {
        format!("the database {} {}", self.name, failure.reason())
    }

    /// Runs `work`, which changes the state, under [`CALL_TIMEOUT`]; a failure becomes
    /// the 503's [`StoreError`], which says whether the change was made.
    fn change<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&mut Session) -> Result<T, postgres::Error> + Send + Sync + 'static,
    {
        self.call_within(CALL_TIMEOUT, Call::Change, work)
    }

    /// Runs `work`, which only reads, under [`CALL_TIMEOUT`].
    fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&mut Session) -> Result<T, postgres::Error> + Send + Sync + 'static,
    {
        self.call_within(CALL_TIMEOUT, Call::Read, work)
    }

    fn call_within<T, F>(&self, timeout: Duration, call: Call, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&mut Session) -> Result<T, postgres::Error> + Send + Sync + 'static,
    {
        self.pool.run(timeout, work).map_err(|failure| {
            self.log_failure(&failure);
            pool::store_error(&self.name.to_string(), &failure, call)
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
                failure.reason()
            );
        }
    }
}

/// The URL parsed, with the timeouts and server-side limits added, and its name for logs.
/// `sslmode=verify-full` and `verify-ca` (libpq's words) ask for what `require` does here:
/// TLS, with the server's certificate verified (see [`connector`]).
fn connection_config(url: &str) -> Result<(Config, DatabaseName), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("is not a postgres:// or postgresql:// URL".into());
    }
    let url = url
        .replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require");
    let mut config = Config::from_str(&url)
        .map_err(|error| format!("is not a PostgreSQL URL the echo service can use: {error}"))?;
    let host = match (config.get_hosts().first(), config.get_ports().first()) {
        (Some(Host::Tcp(host)), Some(port)) => format!("{host}:{port}"),
        (Some(Host::Tcp(host)), None) => format!("{host}:5432"),
        #[cfg(unix)]
        (Some(Host::Unix(path)), _) => path.display().to_string(),
        (None, _) => return Err("names no host".into()),
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
    config
        .options(&options)
        .application_name("echo-service")
        .connect_timeout(CALL_TIMEOUT)
        // A connection whose peer vanished (a cut network) is given up within about 30 s,
        // so a connection thread stuck on it comes back.
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(15))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(30));
    let tls = config.get_ssl_mode() == SslMode::Require;
    Ok((
        config,
        DatabaseName {
            host,
            database,
            tls,
        },
    ))
}

/// How connections are made: TLS when the URL says `sslmode=require`, verified against the
/// same trust store as an `https://` echo service (`SSL_CERT_FILE`, else the system's);
/// plain otherwise (libpq's default `prefer` falls back to plain text where TLS fails,
/// which protects nothing, so it is taken as plain).
fn connector(mut config: Config, tls_roots: &TlsRoots) -> Result<pool::Connect, String> {
    match config.get_ssl_mode() {
        SslMode::Require => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_roots.rustls_config()?);
            Ok(Box::new(move || config.connect(tls.clone())))
        }
        _ => {
            config.ssl_mode(SslMode::Disable);
            Ok(Box::new(move || config.connect(NoTls)))
        }
    }
}

// The statements, named for what they do. Attributes are kept as the JSON text the
// service received (normalised), so a record reads back exactly as it was written.

const INSTANCE: &str = "SELECT attributes, dashboard_token, message_count,
        (SELECT count(*) FROM echo_bindings b WHERE b.instance_id = i.instance_id)
    FROM echo_instances i WHERE instance_id = $1";
const INSERT_INSTANCE: &str =
    "INSERT INTO echo_instances (instance_id, attributes, dashboard_token)
    VALUES ($1, $2, $3) ON CONFLICT (instance_id) DO NOTHING";
/// Locks the instance's row for an update of its attributes (a message, which also
/// updates the row, waits; a bind does not).
const LOCK_INSTANCE_FOR_UPDATE: &str =
    "SELECT attributes FROM echo_instances WHERE instance_id = $1 FOR NO KEY UPDATE";
const UPDATE_ATTRIBUTES: &str = "UPDATE echo_instances SET attributes = $2 WHERE instance_id = $1";

/// The check and its change in one statement, so one round trip: the instance's row is
/// locked (`instance`), the ids the caller named ($2 service, $3 plan; NULL where it named
/// none) are compared with the instance's (`allowed`: no rows if they differ; an instance
/// the original broker made records none), and only then is the change made. The caller
/// reads which it was from what the statement returns.
macro_rules! checked_change {
    ($lock:literal, $change:literal, $answer:literal) => {
        concat!(
            "WITH instance AS (SELECT * FROM echo_instances WHERE instance_id = $1 ",
            $lock,
            "),
            allowed AS (SELECT 1 FROM instance WHERE attributes IS NULL
                OR ((attributes::jsonb->>'service_id' = $2::text OR $2::text IS NULL)
                AND (attributes::jsonb->>'plan_id' = $3::text OR $3::text IS NULL))),
            changed AS (",
            $change,
            ") ",
            $answer
        )
    };
}

/// Deletes the instance (its bindings and messages go with it, `ON DELETE CASCADE`).
/// Answers nothing if there is no instance; else [`INSTANCE`]'s columns as they were, and
/// whether it was deleted.
const DEPROVISION: &str = checked_change!(
    "FOR UPDATE",
    "DELETE FROM echo_instances WHERE instance_id = $1 AND EXISTS (SELECT 1 FROM allowed)
        RETURNING 1",
    "SELECT attributes, dashboard_token, message_count,
        (SELECT count(*) FROM echo_bindings b WHERE b.instance_id = $1),
        EXISTS (SELECT 1 FROM changed)
    FROM instance"
);

/// Creates the binding $4 (`FOR KEY SHARE` holds off the instance's deletion, not its
/// messages). Answers nothing if there is no instance; else its attributes, and whether
/// the binding was made (not if the ids differ or it exists).
const BIND: &str = checked_change!(
    "FOR KEY SHARE",
    "INSERT INTO echo_bindings
            (instance_id, binding_id, attributes, username, password, expires_at, renew_before)
        SELECT $1, $4, $5, $6, $7, to_timestamp($8), to_timestamp($9) FROM allowed
        ON CONFLICT (instance_id, binding_id) DO NOTHING
        RETURNING 1",
    "SELECT attributes, EXISTS (SELECT 1 FROM changed) FROM instance"
);

/// Deletes the binding $4. Answers nothing if there is no instance; else its attributes and,
/// if the binding was deleted, the binding's columns as [`read_binding`] reads them.
const UNBIND: &str = checked_change!(
    "FOR KEY SHARE",
    "DELETE FROM echo_bindings
        WHERE instance_id = $1 AND binding_id = $4 AND EXISTS (SELECT 1 FROM allowed)
        RETURNING attributes, username, password,
            extract(epoch FROM expires_at)::bigint, extract(epoch FROM renew_before)::bigint",
    "SELECT instance.attributes, changed.* FROM instance LEFT JOIN changed ON true"
);

const BINDING: &str = "SELECT attributes, username, password,
        extract(epoch FROM expires_at)::bigint, extract(epoch FROM renew_before)::bigint
    FROM echo_bindings WHERE instance_id = $1 AND binding_id = $2";
const INSERT_BINDING: &str = "INSERT INTO echo_bindings
        (instance_id, binding_id, attributes, username, password, expires_at, renew_before)
    VALUES ($1, $2, $3, $4, $5, to_timestamp($6), to_timestamp($7))
    ON CONFLICT (instance_id, binding_id) DO NOTHING";
const INSTANCE_EXISTS: &str = "SELECT 1 FROM echo_instances WHERE instance_id = $1";
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

impl Store for PostgresStore {
    fn provision(
        &self,
        instance_id: &str,
        new: NewInstance,
    ) -> StoreResult<Outcome<InstanceRecord>> {
        let instance_id = instance_id.to_string();
        self.change(move |session| {
            let insert = session.statement(INSERT_INSTANCE)?;
            let attributes = to_json(&new.attributes);
            // The loser of a race reads the winner's record: committed before our insert
            // returned (an insert waits for a racing transaction). Gone again only if it
            // was deprovisioned in between; then insert again (a few times at most).
            for _ in 0..3 {
                let inserted = session
                    .client
                    .execute(&insert, &[&instance_id, &attributes, &new.dashboard_token])?;
                if inserted == 1 {
                    return Ok(Outcome::Done(InstanceRecord {
                        attributes: new.attributes.clone(),
                        dashboard_token: new.dashboard_token.clone(),
                        bindings: 0,
                        messages: 0,
                    }));
                }
                if let Some(existing) = instance_record(session, &instance_id)? {
                    return Ok(Outcome::Exists(existing));
                }
            }
            Ok(Outcome::NoInstance)
        })
    }

    fn instance(&self, instance_id: &str) -> StoreResult<Outcome<InstanceRecord>> {
        let instance_id = instance_id.to_string();
        self.read(move |session| {
            Ok(instance_record(session, &instance_id)?.map_or(Outcome::NoInstance, Outcome::Done))
        })
    }

    fn update(
        &self,
        instance_id: &str,
        update: InstanceUpdate,
    ) -> StoreResult<Outcome<InstanceRecord>> {
        let instance_id = instance_id.to_string();
        self.change(move |session| {
            let lock = session.statement(LOCK_INSTANCE_FOR_UPDATE)?;
            let write = session.statement(UPDATE_ATTRIBUTES)?;
            let read = session.statement(INSTANCE)?;
            let mut transaction = session.client.transaction()?;
            let Some(row) = transaction.query_opt(&lock, &[&instance_id])? else {
                return Ok(Outcome::NoInstance);
            };
            if let Some(mut attributes) = from_json::<InstanceAttributes>(&row, 0) {
                apply_update(&mut attributes, update.clone());
                transaction.execute(&write, &[&instance_id, &to_json(&Some(attributes))])?;
            }
            let record = transaction
                .query_opt(&read, &[&instance_id])?
                .map(|row| read_instance(&row));
            transaction.commit()?;
            Ok(record.map_or(Outcome::NoInstance, Outcome::Done))
        })
    }

    fn deprovision(
        &self,
        instance_id: &str,
        claimed: &ClaimedIds,
    ) -> StoreResult<Outcome<InstanceRecord>> {
        let instance_id = instance_id.to_string();
        let claimed = claimed.clone();
        self.change(move |session| {
            let deprovision = session.statement(DEPROVISION)?;
            let ids = (&claimed.service_id, &claimed.plan_id);
            let row = session
                .client
                .query_opt(&deprovision, &[&instance_id, ids.0, ids.1])?;
            let Some(row) = row else {
                return Ok(Outcome::NoInstance);
            };
            if row.get::<_, bool>(4) {
                return Ok(Outcome::Done(read_instance(&row)));
            }
            let attributes = from_json::<InstanceAttributes>(&row, 0);
            let refusal = refuse_other_ids(attributes.as_ref(), &claimed).unwrap_or_default();
            Ok(Outcome::OtherIds(refusal))
        })
    }

    fn bind(
        &self,
        instance_id: &str,
        binding_id: &str,
        claimed: &ClaimedIds,
        new: NewBinding,
    ) -> StoreResult<Outcome<BindingRecord>> {
        let (instance_id, binding_id) = (instance_id.to_string(), binding_id.to_string());
        let claimed = claimed.clone();
        self.change(move |session| {
            let bind = session.statement(BIND)?;
            let read = session.statement(BINDING)?;
            let attributes = to_json(&new.attributes);
            let (expires_at, renew_before) = lifetime_columns(new.lifetime);
            // As for a provision: the binding found in the way may be deleted before it is
            // read; then bind again (a few times at most).
            for _ in 0..3 {
                let row = session.client.query_opt(
                    &bind,
                    &[
                        &instance_id,
                        &claimed.service_id,
                        &claimed.plan_id,
                        &binding_id,
                        &attributes,
                        &new.username,
                        &new.password,
                        &expires_at,
                        &renew_before,
                    ],
                )?;
                let Some(row) = row else {
                    return Ok(Outcome::NoInstance);
                };
                if row.get::<_, bool>(1) {
                    return Ok(Outcome::Done(BindingRecord {
                        attributes: new.attributes.clone(),
                        username: new.username.clone(),
                        password: new.password.clone(),
                        lifetime: new.lifetime,
                    }));
                }
                let stored = from_json::<InstanceAttributes>(&row, 0);
                if let Some(refusal) = refuse_other_ids(stored.as_ref(), &claimed) {
                    return Ok(Outcome::OtherIds(refusal));
                }
                if let Some(existing) = session
                    .client
                    .query_opt(&read, &[&instance_id, &binding_id])?
                {
                    return Ok(Outcome::Exists(read_binding(&existing, 0)));
                }
            }
            Ok(Outcome::NoBinding)
        })
    }

    fn binding(&self, instance_id: &str, binding_id: &str) -> StoreResult<Outcome<BindingRecord>> {
        let (instance_id, binding_id) = (instance_id.to_string(), binding_id.to_string());
        self.read(move |session| {
            let read = session.statement(BINDING)?;
            if let Some(row) = session
                .client
                .query_opt(&read, &[&instance_id, &binding_id])?
            {
                return Ok(Outcome::Done(read_binding(&row, 0)));
            }
            let exists = session.statement(INSTANCE_EXISTS)?;
            Ok(match session.client.query_opt(&exists, &[&instance_id])? {
                Some(_) => Outcome::NoBinding,
                None => Outcome::NoInstance,
            })
        })
    }

    fn unbind(
        &self,
        instance_id: &str,
        binding_id: &str,
        claimed: &ClaimedIds,
    ) -> StoreResult<Outcome<BindingRecord>> {
        let (instance_id, binding_id) = (instance_id.to_string(), binding_id.to_string());
        let claimed = claimed.clone();
        self.change(move |session| {
            let unbind = session.statement(UNBIND)?;
            let ids = (&claimed.service_id, &claimed.plan_id);
            let row = session
                .client
                .query_opt(&unbind, &[&instance_id, ids.0, ids.1, &binding_id])?;
            let Some(row) = row else {
                return Ok(Outcome::NoInstance);
            };
            if row.get::<_, Option<String>>(2).is_some() {
                return Ok(Outcome::Done(read_binding(&row, 1)));
            }
            let attributes = from_json::<InstanceAttributes>(&row, 0);
            Ok(match refuse_other_ids(attributes.as_ref(), &claimed) {
                Some(refusal) => Outcome::OtherIds(refusal),
                None => Outcome::NoBinding,
            })
        })
    }

    fn caller(&self, instance_id: &str, binding_id: &str) -> StoreResult<Option<Caller>> {
        let (instance_id, binding_id) = (instance_id.to_string(), binding_id.to_string());
        self.read(move |session| {
            let read = session.statement(CALLER)?;
            let row = session
                .client
                .query_opt(&read, &[&instance_id, &binding_id])?;
            Ok(row.map(|row| Caller {
                username: row.get(0),
                password: row.get(1),
                lifetime: read_lifetime(&row, 3),
                service_id: from_json::<InstanceAttributes>(&row, 2).map(|a| a.service_id),
            }))
        })
    }

    fn record_message(
        &self,
        instance_id: &str,
        binding_id: &str,
        preview: &str,
    ) -> StoreResult<Outcome<()>> {
        let (instance_id, binding_id) = (instance_id.to_string(), binding_id.to_string());
        let preview = preview.to_string();
        let ring = RECENT_MESSAGES as i64;
        self.change(move |session| {
            let record = session.statement(RECORD_MESSAGE)?;
            let recorded = session
                .client
                .execute(&record, &[&instance_id, &binding_id, &preview, &ring])?;
            Ok(if recorded == 1 {
                Outcome::Done(())
            } else {
                Outcome::NoBinding
            })
        })
    }

    fn dashboard(&self, instance_id: &str) -> StoreResult<Outcome<DashboardRecord>> {
        let instance_id = instance_id.to_string();
        self.read(move |session| {
            let read = session.statement(INSTANCE)?;
            let bindings = session.statement(BINDING_IDS)?;
            let recent = session.statement(RECENT)?;
            // One snapshot, so the counts, the bindings and the messages agree.
            let mut transaction = session
                .client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let Some(row) = transaction.query_opt(&read, &[&instance_id])? else {
                return Ok(Outcome::NoInstance);
            };
            let column = |rows: Vec<Row>| rows.iter().map(|row| row.get(0)).collect();
            let shown = DashboardRecord {
                instance: read_instance(&row),
                binding_ids: column(transaction.query(&bindings, &[&instance_id])?),
                recent_messages: column(transaction.query(&recent, &[&instance_id])?),
            };
            transaction.commit()?;
            Ok(Outcome::Done(shown))
        })
    }

    fn totals(&self) -> StoreResult<Totals> {
        self.read(|session| {
            let totals = session.statement(TOTALS)?;
            let row = session.client.query_one(&totals, &[])?;
            let count = |index: usize| row.get::<_, i64>(index).max(0) as u64;
            Ok(Totals {
                instances: count(0),
                bindings: count(1),
                messages: count(2),
            })
        })
    }

    /// `Ok` while a connection answers a trivial statement within [`HEALTH_TIMEOUT`].
    fn health(&self) -> StoreResult<()> {
        self.call_within(HEALTH_TIMEOUT, Call::Read, |session| {
            session.client.simple_query("SELECT 1").map(|_| ())
        })
    }

    fn render_metrics(&self, out: &mut String) {
        let statistics = self.pool.statistics();
        let open = self.pool.open_connections();
        let help = "Connections to the database open now.";
        metrics::single(
            out,
            "echo_service_database_connections",
            "gauge",
            help,
            open,
        );
        let counters = [
            (
                "connects",
                "Connections opened to the database.",
                &statistics.connects,
            ),
            (
                "connect_failures",
                "Connections the database refused or did not answer.",
                &statistics.connect_failures,
            ),
            (
                "timeouts",
                "Calls the database did not answer within their deadline.",
                &statistics.timeouts,
            ),
            (
                "busy",
                "Calls that found every connection busy until their deadline.",
                &statistics.busy,
            ),
        ];
        for (name, help, counter) in counters {
            let name = format!("echo_service_database_{name}_total");
            metrics::single(out, &name, "counter", help, counter.load(Ordering::Relaxed));
        }
    }
}

fn instance_record(
    session: &mut Session,
    instance_id: &str,
) -> Result<Option<InstanceRecord>, postgres::Error> {
    let read = session.statement(INSTANCE)?;
    Ok(session
        .client
        .query_opt(&read, &[&instance_id])?
        .map(|row| read_instance(&row)))
}

/// A row of [`INSTANCE`].
fn read_instance(row: &Row) -> InstanceRecord {
    InstanceRecord {
        attributes: from_json(row, 0),
        dashboard_token: row.get(1),
        messages: row.get::<_, i64>(2).max(0) as u64,
        bindings: row.get::<_, i64>(3).max(0) as usize,
    }
}

/// `attributes, username, password, expires_at, renew_before` from column `first` on (see
/// [`BINDING`]).
fn read_binding(row: &Row, first: usize) -> BindingRecord {
    BindingRecord {
        attributes: from_json::<BindingAttributes>(row, first),
        username: row.get(first + 1),
        password: row.get(first + 2),
        lifetime: read_lifetime(row, first + 3),
    }
}

/// A lifetime from its two columns at `first` and the next (seconds since the epoch).
fn read_lifetime(row: &Row, first: usize) -> Option<BindingLifetime> {
    let expires_at: Option<i64> = row.get(first);
    let renew_before: Option<i64> = row.get(first + 1);
    Some(BindingLifetime {
        expires_at: u64::try_from(expires_at?).unwrap_or(0),
        renew_before: u64::try_from(renew_before?).unwrap_or(0),
    })
}

/// A lifetime as the parameters of `to_timestamp` (double precision seconds; NULL: none).
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

/// The JSON text in column `index`, read back; `None` where there is none (an instance the
/// original broker made without attributes) or it is not what this service wrote.
fn from_json<T: serde::de::DeserializeOwned>(row: &Row, index: usize) -> Option<T> {
    let text: Option<String> = row.get(index);
    text.and_then(|text| serde_json::from_str(&text).ok())
}
