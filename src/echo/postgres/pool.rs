//! The store's connections: deadpool's pool of `tokio-postgres` clients, on a small tokio
//! runtime that the store owns, and the one way a call runs on them.
//!
//! A call runs on the request's own thread (`block_on`): a panic in it unwinds there, into
//! that request's 500, and the connection goes back to the pool. The runtime's two worker
//! threads drive the connections' sockets, also between calls, so a connection the server
//! closed is seen closed before it is handed out again. (Two, not one: with 16 requests at
//! once, one worker made about a fifth fewer calls a second.)
//!
//! What the pool is configured to do, and why:
//! - **A deadline per call**, covering the wait for a connection, connecting, and the
//!   statements. A connection whose call ran past it is closed, not reused: its statement
//!   may still be running, and the next call would wait behind it.
//! - **A budget** of connections per process, and idle ones closed after a while (see
//!   [`DatabaseSettings`]), so that echo services at rest leave a small plan's connection
//!   slots to one that starts or restarts.
//! - **No room on the server** (SQLSTATE 53300): while the process holds connections, it
//!   opens no more and requests wait for those within their deadline; it tries to open more
//!   once [`REGROW_AFTER`] has passed. Holding none, the call fails at once with a line that
//!   names the setting.
//! - **A fair share per instance**: the calls on one instance hold at most half the budget
//!   (at least one: with `DATABASE_MAX_CONNECTIONS=1` one instance can hold it all), so one
//!   instance's trouble (a row locked from outside, a flood of its own) leaves connections
//!   for every other tenant; the calls about the whole store (`/health`) have a share too.
//! - **Retry only what is safe**: a read that lost its connection runs once more on another;
//!   a change never does, since the server may have made it before the connection broke.

use crate::settings::DatabaseSettings;
use deadpool_postgres::{Hook, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_postgres::Error;

/// After the server said it had no room for another connection, the pool opens no new one
/// for this long while it holds any (its calls wait for those), then tries again.
const REGROW_AFTER: Duration = Duration::from_secs(10);

/// How often a call waiting for one of the process's own connections looks for a free one.
const OWN_CONNECTION_POLL: Duration = Duration::from_millis(5);

/// How often idle connections are looked at (and whether new ones may be opened again).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// How a connection is made: plain, or TLS verified against the store's trust roots.
pub enum Tls {
    Plain,
    Verified(tokio_postgres_rustls::MakeRustlsConnect),
}

/// What a call does, for whether it may run again and what its failure says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Call {
    Read,
    Change,
}

/// Why a call got no answer from the database.
#[derive(Debug)]
pub enum Failure {
    /// A new connection could not be made: refused, unreachable, or the server said no
    /// (wrong credentials, no such database). Nothing was sent.
    Connect(Error),
    /// The server has no room for another connection and this process holds none.
    NoRoom(Error),
    /// No connection came free within the call's deadline. Nothing was sent.
    NoConnection(Duration),
    /// The instance's calls held their whole share (see [`FairShares`]) until the deadline.
    /// Nothing was sent.
    NoShare(Duration),
    /// The statement failed on the server, or the connection broke under it.
    Statement(Error),
    /// No answer before the deadline; the server may still do the work.
    TimedOut(Duration),
}

impl Failure {
    /// Whether the work surely was not done: the server never got it, or answered with an
    /// error (which ends the statement, and the transaction it was in). A connection that
    /// broke, or a silence, may have come after the commit.
    pub fn surely_not_done(&self) -> bool {
        match self {
            Failure::Connect(_)
            | Failure::NoRoom(_)
            | Failure::NoConnection(_)
            | Failure::NoShare(_) => true,
            Failure::Statement(error) => error.as_db_error().is_some(),
            Failure::TimedOut(_) => false,
        }
    }

    /// What went wrong, in a few words that name no host, port, database or user: for the
    /// platform, which shows a broker's errors to its users.
    pub fn cause(&self) -> String {
        match self {
            Failure::Connect(_) => "it does not accept connections".into(),
            Failure::NoRoom(_) => "it has no room for another connection".into(),
            Failure::NoConnection(timeout) => format!(
                "no connection to it came free within {} ms",
                timeout.as_millis()
            ),
            Failure::NoShare(timeout) => format!(
                "this instance's other requests held its share of the connections for {} ms",
                timeout.as_millis()
            ),
            Failure::Statement(error) => match error.as_db_error() {
                Some(db) => format!("it refused a statement (SQLSTATE {})", db.code().code()),
                None if connection_ended(error) => "the connection to it broke".into(),
                None => "what it holds could not be read".into(),
            },
            Failure::TimedOut(waited) => format!("no answer within {} ms", waited.as_millis()),
        }
    }

    /// What went wrong, in full, for the echo service's own log.
    pub fn reason(&self, max_connections: usize) -> String {
        match self {
            Failure::Connect(error) => format!("cannot connect: {}", reason_of(error)),
            Failure::NoRoom(error) => format!(
                "refused a new connection and this process holds none: {}; the server's max_connections is shared by every echo service on it, each holding up to DATABASE_MAX_CONNECTIONS={}",
                reason_of(error),
                max_connections
            ),
            Failure::NoConnection(timeout) => format!(
                "gave no connection within {} ms (DATABASE_MAX_CONNECTIONS={}, all busy or the database silent)",
                timeout.as_millis(),
                max_connections
            ),
            Failure::NoShare(timeout) => format!(
                "gave this instance no connection within {} ms: its other calls held its share, half of DATABASE_MAX_CONNECTIONS={} (a row locked from outside, or a flood of its own)",
                timeout.as_millis(),
                max_connections
            ),
            Failure::Statement(error) => reason_of(error),
            Failure::TimedOut(waited) => format!("no answer within {} ms", waited.as_millis()),
        }
    }
}

/// A server error's own message with its SQLSTATE, else the client's description with its
/// causes.
pub fn reason_of(error: &Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason = format!("{reason}: {cause}");
        source = cause.source();
    }
    reason
}

/// Whether the server's connection is gone: closed, broken (an I/O error), or ended by the
/// server (shutting down or restarting: SQLSTATE class 57P).
fn connection_ended(error: &Error) -> bool {
    let broken = std::error::Error::source(error).is_some_and(|cause| cause.is::<std::io::Error>());
    error.is_closed()
        || broken
        || error
            .code()
            .is_some_and(|code| code.code().starts_with("57P"))
}

/// Whether the server refused a connection for lack of room (SQLSTATE 53300).
fn out_of_room(error: &Error) -> bool {
    error.code() == Some(&tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS)
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Statistics {
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub timeouts: AtomicU64,
    pub no_connection: AtomicU64,
}

/// The fair share of the calls about the whole store (`/health`, the totals): no instance
/// has an empty id, so these never take an instance's share, nor every connection.
pub const STORE_WIDE: &str = "";

/// The pool, the runtime it runs on, and the per-instance shares.
pub struct Connections {
    pool: Pool,
    max_connections: usize,
    idle: Duration,
    shares: FairShares,
    statistics: Arc<Statistics>,
    /// When the server last said it had no room (see [`REGROW_AFTER`]).
    no_room_since: Arc<Mutex<Option<Instant>>>,
    /// Held by the one call that may take a connection while there is no room.
    claim: tokio::sync::Mutex<()>,
    /// Declared last: dropped after the pool, it ends the connections' tasks.
    runtime: tokio::runtime::Runtime,
}

/// Why the connections cannot be set up.
#[derive(Debug)]
pub enum SetupError {
    /// The store's tokio runtime cannot start.
    Runtime(std::io::Error),
    /// deadpool refuses the pool's configuration.
    Pool(deadpool_postgres::BuildError),
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::Runtime(error) => {
                write!(out, "cannot start the database's runtime: {error}")
            }
            SetupError::Pool(error) => write!(out, "cannot make the connection pool: {error}"),
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SetupError::Runtime(error) => Some(error),
            SetupError::Pool(error) => Some(error),
        }
    }
}

impl Connections {
    pub fn new(
        config: tokio_postgres::Config,
        tls: Tls,
        settings: &DatabaseSettings,
    ) -> Result<Connections, SetupError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("postgres")
            .enable_io()
            .enable_time()
            .build()
            .map_err(SetupError::Runtime)?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls {
            Tls::Plain => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
            Tls::Verified(tls) => Manager::from_config(config, tls, manager_config),
        };
        let statistics = Arc::new(Statistics::default());
        let counted = Arc::clone(&statistics);
        let pool = Pool::builder(manager)
            .max_size(settings.max_connections)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .post_create(Hook::sync_fn(move |_, _| {
                counted.connects.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }))
            .build()
            .map_err(SetupError::Pool)?;
        let connections = Connections {
            pool,
            max_connections: settings.max_connections,
            idle: settings.idle,
            shares: FairShares::new((settings.max_connections / 2).max(1)),
            statistics,
            no_room_since: Arc::default(),
            claim: tokio::sync::Mutex::new(()),
            runtime,
        };
        connections.start_upkeep();
        Ok(connections)
    }

    /// `DATABASE_MAX_CONNECTIONS`.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    pub fn statistics(&self) -> &Statistics {
        &self.statistics
    }

    /// Connections open now, and how many of them are idle.
    pub fn open_and_idle(&self) -> (usize, usize) {
        let status = self.pool.status();
        (status.size, status.available)
    }

    /// Runs `work` on a connection, on this thread, and returns its result, or a
    /// [`Failure`] no later than `timeout` from now. `share` names the fair share the call
    /// counts against: its instance's, [`STORE_WIDE`] for calls about the whole store, none
    /// for start-up and the import.
    pub fn run<T>(
        &self,
        call: Call,
        share: Option<&str>,
        timeout: Duration,
        work: impl AsyncFn(&mut Object) -> Result<T, Error>,
    ) -> Result<T, Failure> {
        let deadline = Instant::now() + timeout;
        let _share = match share {
            Some(key) => Some(self.shares.enter(key, deadline).ok_or_else(|| {
                self.statistics
                    .no_connection
                    .fetch_add(1, Ordering::Relaxed);
                Failure::NoShare(timeout)
            })?),
            None => None,
        };
        self.runtime
            .block_on(self.run_until(call, deadline, timeout, work))
    }

    async fn run_until<T>(
        &self,
        call: Call,
        deadline: Instant,
        timeout: Duration,
        work: impl AsyncFn(&mut Object) -> Result<T, Error>,
    ) -> Result<T, Failure> {
        let mut tries_left = match call {
            Call::Read => 2,
            Call::Change => 1,
        };
        loop {
            let mut client = self.checkout(deadline, timeout).await?;
            let answer = tokio::time::timeout_at(deadline.into(), work(&mut client)).await;
            match answer {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) if connection_ended(&error) => {
                    drop(Object::take(client));
                    self.close_broken_idle();
                    tries_left -= 1;
                    if tries_left == 0 {
                        return Err(Failure::Statement(error));
                    }
                }
                Ok(Err(error)) => return Err(Failure::Statement(error)),
                Err(_) => {
                    // Its statement may still run: the connection is closed, not reused.
                    drop(Object::take(client));
                    self.statistics.timeouts.fetch_add(1, Ordering::Relaxed);
                    return Err(Failure::TimedOut(timeout));
                }
            }
        }
    }

    /// A connection, idle or new, before `deadline`. While the server has no room for a
    /// new one (see [`REGROW_AFTER`]) and this process holds some, it opens none and waits
    /// for one of its own to come free.
    async fn checkout(&self, deadline: Instant, timeout: Duration) -> Result<Object, Failure> {
        loop {
            // While there is no room, one call at a time looks for a free connection and
            // takes it, so that two never race for one and the loser opens another.
            let claim = if self.has_no_room() {
                match tokio::time::timeout_at(deadline.into(), self.claim.lock()).await {
                    Ok(claim) => Some(claim),
                    Err(_) => return Err(self.no_connection(timeout)),
                }
            } else {
                None
            };
            if claim.is_some() && self.all_own_busy() {
                drop(claim);
                if Instant::now() + OWN_CONNECTION_POLL > deadline {
                    return Err(self.no_connection(timeout));
                }
                tokio::time::sleep(OWN_CONNECTION_POLL).await;
                continue;
            }
            let got = tokio::time::timeout_at(deadline.into(), self.pool.get()).await;
            let error = match got {
                Ok(Ok(client)) => return Ok(client),
                Ok(Err(PoolError::Backend(error))) => error,
                Ok(Err(_)) | Err(_) => return Err(self.no_connection(timeout)),
            };
            self.statistics
                .connect_failures
                .fetch_add(1, Ordering::Relaxed);
            if !out_of_room(&error) {
                return Err(Failure::Connect(error));
            }
            let held = self.pool.status().size;
            if held == 0 {
                return Err(Failure::NoRoom(error));
            }
            self.note_no_room(held);
        }
    }

    fn no_connection(&self, timeout: Duration) -> Failure {
        self.statistics
            .no_connection
            .fetch_add(1, Ordering::Relaxed);
        Failure::NoConnection(timeout)
    }

    /// Whether the server recently had no room for another connection.
    fn has_no_room(&self) -> bool {
        lock(&self.no_room_since).is_some()
    }

    /// Whether the process holds connections and every one is in use: a call must wait for
    /// one rather than open another.
    fn all_own_busy(&self) -> bool {
        let status = self.pool.status();
        status.size > 0 && status.available == 0
    }

    /// Opens no new connection for [`REGROW_AFTER`] while this process holds `held`.
    fn note_no_room(&self, held: usize) {
        let mut no_room_since = lock(&self.no_room_since);
        if no_room_since.is_none() {
            log::warn!(
                "echo service: the database has no room for another connection (SQLSTATE 53300); going on with the {held} this process holds, of DATABASE_MAX_CONNECTIONS={}",
                self.max_connections
            );
        }
        *no_room_since = Some(Instant::now());
    }

    /// Drops the idle connections the server has closed (after a restart, all of them).
    fn close_broken_idle(&self) {
        self.pool.retain(|client, _| !client.is_closed());
    }

    /// Every [`UPKEEP_INTERVAL`]: closes the connections not taken for `DATABASE_IDLE_SECONDS`
    /// (deadpool counts from when a connection was last handed out), and lets the pool open
    /// new ones again [`REGROW_AFTER`] the server last had no room.
    fn start_upkeep(&self) {
        let pool = self.pool.weak();
        let (max_connections, idle) = (self.max_connections, self.idle);
        let no_room_since = Arc::clone(&self.no_room_since);
        self.runtime.spawn(async move {
            let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                ticks.tick().await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                pool.retain(|client, metrics| !client.is_closed() && metrics.last_used() < idle);
                let mut no_room_since = lock(&no_room_since);
                if no_room_since.is_some_and(|since| since.elapsed() >= REGROW_AFTER) {
                    *no_room_since = None;
                    log::info!(
                        "echo service: the database's connections may grow again, up to DATABASE_MAX_CONNECTIONS={max_connections}"
                    );
                }
            }
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many calls each instance has under way, each at most `limit`.
struct FairShares {
    limit: usize,
    under_way: Mutex<HashMap<String, usize>>,
    freed: Condvar,
}

/// One call's place in its instance's share, given back when dropped.
struct Share<'a> {
    shares: &'a FairShares,
    instance_id: String,
}

impl FairShares {
    fn new(limit: usize) -> FairShares {
        FairShares {
            limit,
            under_way: Mutex::default(),
            freed: Condvar::new(),
        }
    }

    /// A place for one more call on `instance_id`, waiting for one until `deadline`.
    fn enter(&self, instance_id: &str, deadline: Instant) -> Option<Share<'_>> {
        let mut under_way = lock(&self.under_way);
        while under_way.get(instance_id).copied().unwrap_or(0) >= self.limit {
            let left = deadline.checked_duration_since(Instant::now())?;
            under_way = self
                .freed
                .wait_timeout(under_way, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        *under_way.entry(instance_id.to_string()).or_insert(0) += 1;
        Some(Share {
            shares: self,
            instance_id: instance_id.to_string(),
        })
    }
}

impl Drop for Share<'_> {
    fn drop(&mut self) {
        let mut under_way = lock(&self.shares.under_way);
        if let Some(count) = under_way.get_mut(&self.instance_id) {
            *count -= 1;
            if *count == 0 {
                under_way.remove(&self.instance_id);
            }
        }
        self.shares.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_holds_at_most_its_share_and_gets_it_back() {
        let shares = FairShares::new(2);
        let soon = Instant::now() + Duration::from_millis(50);
        let first = shares.enter("a", soon).expect("room");
        let _second = shares.enter("a", soon).expect("room");
        assert!(
            shares.enter("a", soon).is_none(),
            "a third waits, then gives up"
        );
        assert!(
            shares.enter("b", soon).is_some(),
            "another instance is not held up"
        );
        drop(first);
        let later = Instant::now() + Duration::from_millis(50);
        assert!(shares.enter("a", later).is_some(), "a freed place is taken");
    }

    #[test]
    fn what_the_platform_is_told_names_no_place() {
        let failures = [
            Failure::NoConnection(Duration::from_millis(3000)),
            Failure::TimedOut(Duration::from_millis(3000)),
        ];
        for failure in failures {
            assert!(!failure.cause().contains("127.0.0.1"));
            assert!(failure.cause().contains("3000 ms"));
        }
        assert!(Failure::NoConnection(Duration::ZERO).surely_not_done());
        assert!(!Failure::TimedOut(Duration::ZERO).surely_not_done());
    }
}
