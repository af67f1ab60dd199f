//! A few connections to PostgreSQL, each on a thread of its own, and calls on them that
//! never wait past a deadline.
//!
//! Why a pool of our own, and why threads: `postgres` blocks the calling thread until the
//! server answers, and has no timeout for a query. A server that stops answering without
//! closing its connections (a paused process, a cut network) would hold every request
//! thread for as long as it stays silent. Here the request thread hands the work to a
//! connection's thread and waits for the answer at most until its deadline; a connection
//! stuck on a silent server stays busy (it counts against [`MAX_CONNECTIONS`]) until the
//! server answers or the operating system gives the connection up (TCP keepalives), while
//! the request has long been answered 503. Connecting runs on the connection's thread too,
//! for the same reason: the connect timeout of `postgres` covers the TCP handshake only,
//! not the server's start-up answer.

use super::super::store::StoreError;
use postgres::{Client, Statement};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Connections one process keeps at most. PostgreSQL runs a process per connection, and a
/// small plan allows a few dozen in all; with several echo service instances on one
/// database, each takes this many. Requests beyond it wait for a free one (within their
/// deadline): the database does the work one statement at a time per connection anyway.
pub const MAX_CONNECTIONS: usize = 8;

/// How a connection is made: the parsed URL and, when it asks for TLS, the connector.
pub type Connect = Box<dyn Fn() -> Result<Client, postgres::Error> + Send + Sync>;

/// One connection's session: the client and the statements it has prepared (parsed and
/// planned once per connection, then sent as a single round trip each time).
pub struct Session {
    pub client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Session {
    /// `sql` prepared on this connection (once).
    pub fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// Why a call got no answer from the database.
#[derive(Debug)]
pub enum Failure {
    /// A new connection could not be made: refused, unreachable, or the server said no
    /// (wrong credentials, no such database, too many connections).
    Connect(postgres::Error),
    /// The statement failed on the server, or the connection broke under it.
    Statement(postgres::Error),
    /// No answer before the deadline; the work may still be done by the server.
    TimedOut(Duration),
    /// Every connection stayed busy until the deadline.
    Busy(Duration),
}

impl Failure {
    /// Whether the work surely was not done (the server never got it, or refused it).
    pub fn surely_not_done(&self) -> bool {
        match self {
            Failure::Connect(_) | Failure::Busy(_) => true,
            Failure::Statement(error) => !error.is_closed(),
            Failure::TimedOut(_) => false,
        }
    }

    /// What went wrong, for the log and the 503's description.
    pub fn reason(&self) -> String {
        match self {
            Failure::Connect(error) => format!("cannot connect: {}", reason_of(error)),
            Failure::Statement(error) => reason_of(error),
            Failure::TimedOut(waited) => {
                format!("no answer within {} ms", waited.as_millis())
            }
            Failure::Busy(waited) => format!(
                "all {MAX_CONNECTIONS} of its connections stayed busy for {} ms",
                waited.as_millis()
            ),
        }
    }
}

/// Whether the server ended the connection (closed it, or said it is shutting down or
/// restarting: SQLSTATE class 57P) rather than refusing the work.
fn connection_ended(error: &postgres::Error) -> bool {
    error.is_closed()
        || error
            .code()
            .is_some_and(|code| code.code().starts_with("57P"))
}

/// A server error's own message with its SQLSTATE, else the client's description.
pub fn reason_of(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None if error.is_closed() => "the connection was closed".into(),
        None => {
            let mut reason = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                reason = format!("{reason}: {cause}");
                source = cause.source();
            }
            reason
        }
    }
}

/// What a connection's thread is asked to do.
enum Instruction {
    /// Run this with the session, or with why there is none.
    Run(Job),
    /// Close the connection: the pool no longer trusts it.
    Retire,
}

type Job = Box<dyn FnOnce(Result<&mut Session, postgres::Error>) + Send>;

/// A connection's thread, waiting for work.
struct Idle {
    calls: Sender<Instruction>,
    /// The pool's generation when the connection was opened (see [`Pool::distrust_idle`]).
    generation: u64,
}

struct Slots {
    idle: Vec<Idle>,
    /// Connections open or being opened, idle or busy.
    open: usize,
}

struct Shared {
    connect: Connect,
    slots: Mutex<Slots>,
    freed: Condvar,
    /// Bumped when a connection is found closed by the server: the idle ones opened before
    /// are closed rather than used (after a database restart, all of them are dead).
    generation: AtomicU64,
    pub statistics: Statistics,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Statistics {
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub timeouts: AtomicU64,
    pub busy: AtomicU64,
}

/// The pool.
pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    pub fn new(connect: Connect) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                connect,
                slots: Mutex::new(Slots {
                    idle: Vec::new(),
                    open: 0,
                }),
                freed: Condvar::new(),
                generation: AtomicU64::new(0),
                statistics: Statistics::default(),
            }),
        }
    }

    /// Runs `work` on a connection and returns its result, or a [`Failure`] no later than
    /// `timeout` from now. Work that failed because the server had ended its connection (a
    /// restarted database) runs once more on a new one; the other idle connections, opened
    /// before, are closed rather than tried.
    pub fn run<T, F>(&self, timeout: Duration, work: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: Fn(&mut Session) -> Result<T, postgres::Error> + Send + Sync + 'static,
    {
        let deadline = Instant::now() + timeout;
        let work = Arc::new(work);
        let (result, reused) = self.run_once(deadline, timeout, Arc::clone(&work));
        match result {
            Err(Failure::Statement(error)) if reused && connection_ended(&error) => {
                self.distrust_idle();
                self.run_once(deadline, timeout, work).0
            }
            result => result,
        }
    }

    /// How many connections are open (for `/metrics`).
    pub fn open_connections(&self) -> usize {
        self.lock().open
    }

    pub fn statistics(&self) -> &Statistics {
        &self.shared.statistics
    }

    /// One try: a connection (idle, or a new one), the work sent to it, the answer awaited.
    /// Also says whether the connection had served before.
    fn run_once<T, F>(
        &self,
        deadline: Instant,
        timeout: Duration,
        work: Arc<F>,
    ) -> (Result<T, Failure>, bool)
    where
        T: Send + 'static,
        F: Fn(&mut Session) -> Result<T, postgres::Error> + Send + Sync + 'static,
    {
        let Some(calls) = self.take_connection(deadline) else {
            self.shared.statistics.busy.fetch_add(1, Ordering::Relaxed);
            return (Err(Failure::Busy(timeout)), false);
        };
        let (reused, calls) = calls;
        let (answer, answered) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |session| {
            let result = match session {
                Ok(session) => work(session).map_err(Failure::Statement),
                Err(error) => Err(Failure::Connect(error)),
            };
            let _ = answer.send(result);
        });
        if calls.send(Instruction::Run(job)).is_err() {
            return (Err(Failure::Busy(timeout)), reused);
        }
        let waited = deadline.saturating_duration_since(Instant::now());
        match answered.recv_timeout(waited) {
            Ok(result) => (result, reused),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                self.shared
                    .statistics
                    .timeouts
                    .fetch_add(1, Ordering::Relaxed);
                (Err(Failure::TimedOut(timeout)), reused)
            }
        }
    }

    /// An idle connection (`true`: it served before), or a new one if fewer than
    /// [`MAX_CONNECTIONS`] are open; else waits for one until `deadline`.
    fn take_connection(&self, deadline: Instant) -> Option<(bool, Sender<Instruction>)> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        let mut slots = self.lock();
        loop {
            while let Some(idle) = slots.idle.pop() {
                if idle.generation == generation {
                    return Some((true, idle.calls));
                }
                let _ = idle.calls.send(Instruction::Retire);
            }
            if slots.open < MAX_CONNECTIONS {
                slots.open += 1;
                drop(slots);
                return Some((false, self.open_connection(generation)));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            slots = self
                .shared
                .freed
                .wait_timeout(slots, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Starts a connection's thread; it connects when it gets its first call.
    fn open_connection(&self, generation: u64) -> Sender<Instruction> {
        let (calls, received) = mpsc::channel();
        let shared = Arc::clone(&self.shared);
        let own = calls.clone();
        let started = std::thread::Builder::new()
            .name("postgres".into())
            .spawn(move || serve_calls(&shared, received, own, generation));
        if started.is_err() {
            // No thread: the call sent to it fails, and the slot is given back at once.
            self.shared.close_one();
        }
        calls
    }

    /// Closes the idle connections at their next use (see [`Shared::generation`]).
    fn distrust_idle(&self) {
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.shared.lock()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for idle in self.lock().idle.drain(..) {
            let _ = idle.calls.send(Instruction::Retire);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A connection closed: its slot is free.
    fn close_one(&self) {
        let mut slots = self.lock();
        slots.open = slots.open.saturating_sub(1);
        self.freed.notify_one();
    }

    /// A connection finished its call and waits for the next.
    fn give_back(&self, calls: Sender<Instruction>, generation: u64) {
        self.lock().idle.push(Idle { calls, generation });
        self.freed.notify_one();
    }
}

/// A connection's thread: connects, then runs calls until it is retired or its
/// connection breaks.
fn serve_calls(
    shared: &Shared,
    calls: Receiver<Instruction>,
    own: Sender<Instruction>,
    generation: u64,
) {
    let Ok(Instruction::Run(first)) = calls.recv() else {
        shared.close_one();
        return;
    };
    shared.statistics.connects.fetch_add(1, Ordering::Relaxed);
    let mut session = match (shared.connect)() {
        Ok(client) => Session {
            client,
            statements: HashMap::new(),
        },
        Err(error) => {
            shared
                .statistics
                .connect_failures
                .fetch_add(1, Ordering::Relaxed);
            shared.close_one();
            first(Err(error));
            return;
        }
    };
    let mut job = first;
    loop {
        job(Ok(&mut session));
        if session.client.is_closed() {
            shared.close_one();
            return;
        }
        shared.give_back(own.clone(), generation);
        match calls.recv() {
            Ok(Instruction::Run(next)) => job = next,
            Ok(Instruction::Retire) | Err(_) => {
                shared.close_one();
                return;
            }
        }
    }
}

/// What a call does, for what its failure says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Call {
    Read,
    Change,
}

/// The [`StoreError`] for a failure, worded for the platform's user: it names the database
/// and, for a change, says whether it was made.
pub fn store_error(database: &str, failure: &Failure, call: Call) -> StoreError {
    let outcome = match call {
        Call::Read => "try again later",
        Call::Change if failure.surely_not_done() => "the change was not made, try again later",
        Call::Change => "the change may or may not have been made: repeating the request is safe",
    };
    StoreError::new(format!(
        "database unavailable: the echo service's PostgreSQL database {database}: {}; {outcome}",
        failure.reason()
    ))
}
