//! The HTTP/1.1 connection layer both servers run on: blocking, one thread per connection,
//! `httparse` for request heads, everything else here. [`serve_connection`] is the life of
//! one connection, read top to bottom:
//!
//! 1. wait for a request, silently closing an idle connection after [`IDLE_TIMEOUT`]
//!    (or a new one that says nothing within [`HEAD_TIMEOUT`]);
//! 2. read its head, all of it within [`HEAD_TIMEOUT`] of its first byte ([`wire`]), and
//!    parse it strictly ([`head`]): what cannot be framed without guessing is refused;
//! 3. admit it: [`Handler::admit`] looks at the head alone (credentials, API version), so a
//!    refusal costs no body; `100 Continue` is sent only to an admitted request;
//! 4. read its body, all of it within [`BODY_TIMEOUT`] of the head, at most
//!    [`MAX_BODY_BYTES`];
//! 5. handle it ([`Handler::handle`]; a panic is one 500, never a lost thread);
//! 6. answer ([`answer`]): `Date` and `Content-Length` always, `Connection: close` when
//!    the server will close;
//! 7. keep the connection for the next (possibly pipelined) request, or close it lingering,
//!    reading what the client still sends, so that the answer is not lost to a reset.
//!
//! A refusal keeps the connection when the refused request had no body, or a short one
//! that arrived at once and was read away; any other refusal closes it, since what follows
//! on it cannot be told apart from the unread body.
//!
//! At most `MAX_CONNECTIONS` connections are served at once ([`slots`]); a full server
//! makes room for a newcomer by displacing an idle connection, or else the one that has
//! been reading its head longest: nobody can hoard the server by connecting and waiting.
//! Displaced connections finish outside the slots, each within a short grace; their threads
//! are bounded too ([`threads`]), and at that bound the oldest is ended at once, so that
//! accepting never waits for them.
//!
//! A server is a value: [`serve`] starts one and returns its [`ServerHandle`], with the
//! address it listens on and its graceful stop ([`ServerHandle::stop`]), which the program
//! calls when it likes (both binaries: on SIGTERM): the listener closes first, idle
//! connections close, no request is read that could not be answered in time, and every
//! request already read is answered: by its handler, or with a 503 when the handler cannot
//! finish in time.

mod answer;
mod chunked;
mod head;
mod slots;
mod stop;
mod threads;
mod wire;

pub use stop::{stop_in_order, StopSignal, Stopped, STOP_GRACE};

use crate::http::{HttpRequest, HttpResponse, MAX_BODY_BYTES};
use crate::logging::RequestContext;
use answer::{Persistence, Refusal};
use head::{Framing, Head};
use slots::{Phase, Slot, SlotGuard, Slots};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use threads::Threads;
use wire::{BodyFailure, HeadFailure, Interrupted, Socket, Transport, Wire};

/// What a server does with a request.
pub trait Handler: Send + Sync + 'static {
    /// What [`Handler::admit`] learned of a request that [`Handler::handle`] needs too (the
    /// echo service: the bound app it let in), handed from one to the other with the
    /// request.
    type Admission;

    /// The checks that need only the request line and headers (credentials, API version).
    /// A refusal is sent without the body ever being read.
    fn admit(&self, head: &HttpRequest) -> Result<Self::Admission, HttpResponse>;

    /// Answers an admitted request, body included, with what its admission found.
    fn handle(&self, request: &HttpRequest, admission: Self::Admission) -> HttpResponse;

    /// Who asked, for the request's log line.
    fn log_context(&self, _request: &HttpRequest) -> RequestContext {
        RequestContext::default()
    }

    /// Sees every answer this handler gave (refusals by [`Handler::admit`] included), for
    /// pages and metrics of what the server saw. The default does nothing.
    fn observe(&self, _answered: &Answered) {}

    /// How long [`Handler::handle`] may take at most (the broker: the time it gives the echo
    /// service to answer). A stopping server reads no new request once the time it has left
    /// could not cover this, and answers 503 for a handler still running when its answers
    /// are due.
    fn longest_handling(&self) -> Duration {
        Duration::from_secs(1)
    }
}

/// A request and the answer it got, as [`Handler::observe`] sees them.
pub struct Answered<'a> {
    /// The request, with its body when it was admitted.
    pub request: &'a HttpRequest,
    pub response: &'a HttpResponse,
    /// Whether [`Handler::admit`] let it through (else the response is its refusal).
    pub admitted: bool,
    /// Whether [`Handler::handle`] made the answer (else the server refused the body of an
    /// admitted request: too large, too slow, malformed).
    pub handled: bool,
    /// When its head had arrived, and how long the answer took from there.
    pub at: SystemTime,
    pub elapsed: Duration,
}

/// The default cap on connections served at once, per server. Each connection is a thread
/// with a [`CONNECTION_STACK`] stack, of which only the pages it touches are resident.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// How long a request head may take from its first byte to its blank line (Go's
/// `ReadHeaderTimeout`), and how long a new connection may wait before its first request:
/// generous for any real client, short enough that a trickled head cannot hold a slot.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a body may take to arrive after its head (64 KiB at most).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an idle keep-alive connection is kept before a silent close. Longer than the
/// platform's clients keep theirs (Go's default `IdleConnTimeout` is 90 s): a server that
/// closes first races the client's next request. Idle connections cost a small slot each
/// and are the first displaced when the server is full, so keeping them is cheap.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long an answer may take to be written: a client that reads slowly cannot hold a
/// connection (and its thread) longer. (One that does not read at all is let go sooner
/// when its slot is needed: see [`DISPLACED_REQUEST_WITHIN`].)
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a refused request's body may take to arrive and be read away so that the
/// connection stays open; a body that is not there at once closes the connection instead.
const REFUSED_BODY_WITHIN: Duration = Duration::from_secs(1);

/// How long a closing connection reads what its client still sends (the lingering close).
const LINGER: Duration = Duration::from_secs(2);

/// How long an idle connection that was displaced still waits for a request before it
/// closes: its client may have sent one just then, and would otherwise meet a reset.
const DISPLACED_GRACE: Duration = Duration::from_millis(250);

/// How long a displaced connection may still take for each step it has left: a request
/// that arrived as it was displaced must come whole (head and body each) within it, as a
/// client that sent it in one write does, the rest of a request that was arriving must
/// come within it of the displacement, and an answer must be written within it (from
/// the displacement, or from the answer's start if it began later), whether the answer was
/// being written when the connection was displaced or not.
const DISPLACED_REQUEST_WITHIN: Duration = Duration::from_secs(1);

/// Threads beyond twice `MAX_CONNECTIONS` that displaced connections may use while they
/// finish: with a small cap, one client's reconnections would otherwise end displaced
/// connections before their grace.
const DISPLACED_ROOM: usize = 64;

/// How long a stopping server waits for the first request of a connection it accepted
/// just before it stopped.
const FRESH_CONNECTION_GRACE: Duration = Duration::from_secs(1);

/// A connection thread's stack: what the handlers need (the broker's calls to the echo
/// service, TLS included, and serde's recursion), with room to spare. Threads touch only
/// a few pages of it (docs/performance.md measures an idle and a busy slot).
const CONNECTION_STACK: usize = 512 * 1024;

/// The time kept for writing an answer after its handler, when a stopping server decides
/// whether a request can still be answered in time.
const ANSWER_ALLOWANCE: Duration = Duration::from_millis(500);

/// Starts serving `handler` on `address` ("host:port") in background threads. The handle
/// says where it listens and stops it; dropped, it leaves the server running until the
/// process ends.
pub fn serve<H: Handler>(
    name: &'static str,
    address: &str,
    handler: Arc<H>,
    max_connections: usize,
) -> Result<ServerHandle, ServeError> {
    let socket_address = socket_address(address)?;
    let cannot_listen = |source| ServeError::Listen {
        address: socket_address,
        source,
    };
    let listener = TcpListener::bind(socket_address).map_err(cannot_listen)?;
    let local = listener.local_addr().map_err(cannot_listen)?;
    let cannot_start = |source| ServeError::Start { name, source };
    let threads =
        Threads::start(name, 2 * max_connections + DISPLACED_ROOM).map_err(cannot_start)?;
    let server = Arc::new(Server {
        name,
        slots: Slots::new(max_connections),
        max_connections,
        longest_handling: handler.longest_handling(),
        stopping: AtomicBool::new(false),
        answers_due_ms: AtomicU64::new(u64::MAX),
        reading_until_ms: AtomicU64::new(u64::MAX),
        stop_started_ms: AtomicU64::new(u64::MAX),
        epoch: Instant::now(),
        listening: AtomicBool::new(true),
        threads,
        wake_address: reachable(local),
    });
    let accepting = Arc::clone(&server);
    std::thread::Builder::new()
        .name(format!("{name}-accept"))
        .spawn(move || accept_loop(listener, &accepting, &handler))
        .map_err(cannot_start)?;
    Ok(ServerHandle {
        server,
        address: local,
    })
}

fn socket_address(address: &str) -> Result<SocketAddr, ServeError> {
    address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| ServeError::NotAnAddress(address.to_string()))
}

/// A running server, as [`serve`] returns it: where it listens, and its stop
/// ([`ServerHandle::stop`]).
pub struct ServerHandle {
    server: Arc<Server>,
    address: SocketAddr,
}

impl ServerHandle {
    /// The address the server listens on (its port chosen by the system if 0 was asked).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The most connections it serves at once.
    pub fn max_connections(&self) -> usize {
        self.server.max_connections
    }
}

/// Why a server could not start.
#[derive(Debug)]
pub enum ServeError {
    /// What was given as the address to listen on names none.
    NotAnAddress(String),
    /// Listening on the address failed: it is in use, not this machine's, or not allowed.
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    /// The server's threads could not be started.
    Start {
        name: &'static str,
        source: std::io::Error,
    },
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::NotAnAddress(address) => {
                write!(out, "'{address}' is not an address to listen on")
            }
            ServeError::Listen { address, source } => {
                write!(out, "cannot listen on {address}: {source}")
            }
            ServeError::Start { name, source } => {
                write!(out, "cannot start the {name} server: {source}")
            }
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::NotAnAddress(_) => None,
            ServeError::Listen { source, .. } | ServeError::Start { source, .. } => Some(source),
        }
    }
}

/// One server: its slots, its threads and whether it is stopping.
struct Server {
    name: &'static str,
    slots: Arc<Slots>,
    max_connections: usize,
    /// What its handler says a request may take at most ([`Handler::longest_handling`]).
    longest_handling: Duration,
    stopping: AtomicBool,
    /// The times of a stop, in milliseconds since `epoch` (`u64::MAX` until it stops): when
    /// every answer is due, and until when it reads requests.
    answers_due_ms: AtomicU64,
    reading_until_ms: AtomicU64,
    /// When the stop began.
    stop_started_ms: AtomicU64,
    epoch: Instant,
    /// Whether the accept loop still holds the listener.
    listening: AtomicBool,
    /// Connection threads alive: those holding a slot, and displaced ones still finishing.
    threads: Arc<Threads>,
    /// Where to connect to wake the accept loop when stopping.
    wake_address: SocketAddr,
}

impl Server {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn ms_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a stopping server reads no more of requests still arriving: the time it has
    /// left could not cover a request's handling and answer.
    fn stop_reading(&self) -> bool {
        self.now_ms() >= self.reading_until_ms.load(Ordering::SeqCst)
    }

    /// Whether a stopping server's answers are due: writes and lingering closes end.
    fn answers_overdue(&self) -> bool {
        self.now_ms() >= self.answers_due_ms.load(Ordering::SeqCst)
    }

    /// Whether a request about to be handled can be answered before a stopping server's
    /// answers are due.
    fn can_answer_in_time(&self) -> bool {
        let needed = self.longest_handling + ANSWER_ALLOWANCE;
        self.now_ms().saturating_add(needed.as_millis() as u64)
            <= self.answers_due_ms.load(Ordering::SeqCst)
    }

    /// Whether an idle connection should close now: when the server is stopping, at once
    /// if it has served a request (a client that reuses it meanwhile retries elsewhere),
    /// after [`FRESH_CONNECTION_GRACE`] if it is new (its client has just connected, and
    /// its request is surely on the way), and never past the time requests are read.
    fn closes_idle(&self, fresh: bool) -> bool {
        let stop_started = self.stop_started_ms.load(Ordering::SeqCst);
        let grace = if fresh {
            FRESH_CONNECTION_GRACE
        } else {
            Duration::ZERO
        };
        self.stopping()
            && (self.now_ms().saturating_sub(stop_started) >= grace.as_millis() as u64
                || self.stop_reading())
    }
}

// ---------------------------------------------------------------------------------------
// Accepting
// ---------------------------------------------------------------------------------------

/// Accepts connections until the server stops, each into a slot and a thread of its own.
/// When accepting fails (out of file descriptors, most likely), it displaces a connection
/// to free one and backs off, logging at most one line a second, instead of spinning.
fn accept_loop<H: Handler>(listener: TcpListener, server: &Arc<Server>, handler: &Arc<H>) {
    let mut trouble = AcceptTrouble::default();
    while !server.stopping() {
        match listener.accept() {
            Ok((stream, _)) => {
                trouble.over();
                // Displaced connections never hold newcomers back: at the thread bound the
                // oldest of them is ended at once.
                server.threads.make_room(&server.stopping);
                // While every slot is busy the newcomer waits here, and later ones in the
                // kernel's queue; `None` means the server is stopping.
                let Some(slot) = server.slots.claim(&server.stopping) else {
                    break;
                };
                spawn_connection(stream, slot, server, handler);
            }
            Err(error) => trouble.after(&error, server),
        }
    }
    // Closing the listener refuses new connections, so that the platform's router tries
    // another instance.
    drop(listener);
    server.listening.store(false, Ordering::SeqCst);
}

fn spawn_connection<H: Handler>(
    stream: TcpStream,
    slot: SlotGuard,
    server: &Arc<Server>,
    handler: &Arc<H>,
) {
    let stream = Arc::new(stream);
    let socket = Arc::downgrade(&stream);
    let shared_slot = slot.shared();
    let handler = Arc::clone(handler);
    let serving = Arc::clone(server);
    let spawned = server.threads.spawn(
        format!("{}-connection", server.name),
        CONNECTION_STACK,
        shared_slot,
        socket,
        move || {
            // Small answers go out at once instead of waiting for the client's ACK.
            let _ = stream.set_nodelay(true);
            if let Ok(wire) = Wire::new(Socket::new(stream)) {
                // A bug in this layer costs its connection, never the slot or the process.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    serve_connection(wire, &slot, &serving, handler.as_ref());
                }));
            }
        },
    );
    if let Err(error) = spawned {
        log::warn!(target: server.name, "cannot start a connection thread: {error}");
    }
}

/// Accept failures: how long to back off, and when the last line was logged.
#[derive(Default)]
struct AcceptTrouble {
    backoff: Duration,
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptTrouble {
    const FIRST_BACKOFF: Duration = Duration::from_millis(5);
    const MOST_BACKOFF: Duration = Duration::from_millis(500);
    const LOG_EVERY: Duration = Duration::from_secs(1);

    fn after(&mut self, error: &std::io::Error, server: &Server) {
        use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
        if matches!(
            error.kind(),
            ConnectionAborted | ConnectionReset | Interrupted
        ) {
            // That one connection is gone before it was accepted: nothing to back off from.
            return;
        }
        // Most likely out of file descriptors: end a displaced connection at once, or else
        // let the connection worth least go.
        if !server.threads.cut_off_oldest_displaced() {
            server.slots.displace_for_descriptor();
        }
        self.log(error, server.name);
        self.backoff = (self.backoff * 2).clamp(Self::FIRST_BACKOFF, Self::MOST_BACKOFF);
        std::thread::sleep(self.backoff);
    }

    fn log(&mut self, error: &std::io::Error, name: &str) {
        let due = self
            .last_logged
            .is_none_or(|at| at.elapsed() >= Self::LOG_EVERY);
        if !due {
            self.unlogged += 1;
            return;
        }
        let more = match self.unlogged {
            0 => String::new(),
            count => format!(" ({count} more failures since the last line)"),
        };
        log::warn!(target: name, "cannot accept a connection: {error}{more}; backing off");
        self.last_logged = Some(Instant::now());
        self.unlogged = 0;
    }

    fn over(&mut self) {
        self.backoff = Duration::ZERO;
    }
}

// ---------------------------------------------------------------------------------------
// A connection's life
// ---------------------------------------------------------------------------------------

/// Serves the requests of one connection in order until it closes; see the module's
/// documentation for the steps.
fn serve_connection<T: Transport, H: Handler>(
    mut wire: Wire<T>,
    slot: &Slot,
    server: &Server,
    handler: &H,
) {
    let mut patience = HEAD_TIMEOUT;
    let mut fresh = true;
    loop {
        // 1. Idle: nothing read yet, so a displaced or stopping connection closes silently.
        slot.enter(Phase::Idle);
        let idle_until = Instant::now() + patience;
        let give_up_idle = || slot.displaced_for(DISPLACED_GRACE) || server.closes_idle(fresh);
        if wire.await_request(idle_until, &give_up_idle).is_err() {
            return;
        }
        // 2. The head. A request that arrived just as the idle connection was displaced
        // is served all the same (its client could not know), and then the connection closes.
        // One displaced while it arrives gets as long from then to come whole: the rest may
        // already be on its way, and a busy machine may have been slow to read it.
        slot.enter(Phase::ReadingHead);
        let started = Instant::now();
        let arrived = SystemTime::now();
        let displaced_while_idle = slot.displaced();
        let give_up_reading = || {
            (!displaced_while_idle && slot.displaced_for(DISPLACED_REQUEST_WITHIN))
                || slot.is_cut_off()
                || server.stop_reading()
        };
        let (head_within, body_within) = if displaced_while_idle {
            (DISPLACED_REQUEST_WITHIN, DISPLACED_REQUEST_WITHIN)
        } else {
            (HEAD_TIMEOUT, BODY_TIMEOUT)
        };
        let head = match receive_head(&mut wire, head_within, &give_up_reading) {
            Ok(head) => head,
            Err(None) => return,
            Err(Some(refusal)) => {
                log::info!(
                    target: server.name,
                    "refused a request head: {} {}",
                    refusal.response.status,
                    description_of(&refusal.response)
                );
                send(
                    &mut wire,
                    slot,
                    server,
                    &refusal.response,
                    Persistence::Close,
                    false,
                );
                return close(wire, slot, server);
            }
        };
        // 3-6. Admit, read the body, handle, answer.
        slot.enter(Phase::Busy);
        let reading = Reading {
            slot,
            server,
            body_within,
            give_up: &give_up_reading,
        };
        let keep = exchange(&mut wire, head, &reading, handler, started, arrived);
        if !keep {
            return close(wire, slot, server);
        }
        // 7. Kept: the next request may already be buffered.
        wire.compact();
        patience = IDLE_TIMEOUT;
        fresh = false;
    }
}

/// Step 2: a request head, read `within` its start and parsed; or the refusal to answer
/// instead (`None` when the client has gone and there is nobody to answer).
fn receive_head<T: Transport>(
    wire: &mut Wire<T>,
    within: Duration,
    give_up: &dyn Fn() -> bool,
) -> Result<Head, Option<Refusal>> {
    match wire.read_head(Instant::now() + within, give_up) {
        Ok(bytes) => head::parse(&bytes).map_err(Some),
        Err(HeadFailure::TooLarge) => Err(Some(Refusal::headers_too_large(&format!(
            "the request head exceeds {} bytes",
            head::MAX_HEAD_BYTES
        )))),
        Err(HeadFailure::Interrupted(Interrupted::TimedOut)) => {
            Err(Some(Refusal::timed_out("head", within.as_secs())))
        }
        Err(HeadFailure::Interrupted(Interrupted::Called)) => Err(Some(Refusal::cut_short())),
        Err(HeadFailure::Interrupted(Interrupted::Closed)) => Err(None),
    }
}

/// Steps 3 to 6 for one request; whether the connection is kept for another.
fn exchange<T: Transport, H: Handler>(
    wire: &mut Wire<T>,
    head: Head,
    reading: &Reading,
    handler: &H,
    started: Instant,
    arrived: SystemTime,
) -> bool {
    let Head {
        mut request,
        http_1_0,
        framing,
        wants_close,
        expects_continue,
    } = head;
    // HEAD is GET without the body, wherever GET is answered.
    let head_only = request.method == "HEAD";
    if head_only {
        request.method = "GET".to_string();
    }
    let (response, body_read_away, admitted, handled) =
        match guarded(|| handler.admit(&request)).flatten() {
            Err(refusal) => {
                let read_away = !expects_continue && read_away_body(wire, framing, reading);
                (refusal, read_away, false, false)
            }
            Ok(admission) => match receive_body(wire, framing, expects_continue, reading) {
                // A stopping server does not start what it could not answer in time.
                Ok(_) if !reading.server.can_answer_in_time() => {
                    (Refusal::stopping().response, true, true, false)
                }
                Ok(body) => {
                    request.body = body;
                    let handled = guarded(|| handler.handle(&request, admission));
                    let response = handled.unwrap_or_else(|e| e);
                    (response, true, true, true)
                }
                Err(Some(refusal)) => (refusal.response, false, true, false),
                // The client left mid-body: there is nobody to answer.
                Err(None) => return false,
            },
        };
    let answered = Answered {
        request: &request,
        response: &response,
        admitted,
        handled,
        at: arrived,
        elapsed: started.elapsed(),
    };
    let (slot, server) = (reading.slot, reading.server);
    // The stopping server answered in the handler's place: this answer is nobody's.
    if !slot.enter_writing() {
        return false;
    }
    report(server.name, handler, &answered, head_only);
    let keep = body_read_away && !wants_close && !server.stopping() && !slot.displaced();
    let persistence = match (keep, http_1_0) {
        (false, _) => Persistence::Close,
        (true, true) => Persistence::KeepAliveHttp10,
        (true, false) => Persistence::KeepAlive,
    };
    send(wire, slot, server, &response, persistence, head_only) && keep
}

/// Step 4 for an admitted request: its body, or the refusal to answer instead (`None` when
/// the client has gone and there is nobody to answer).
fn receive_body<T: Transport>(
    wire: &mut Wire<T>,
    framing: Framing,
    expects_continue: bool,
    reading: &Reading,
) -> Result<Vec<u8>, Option<Refusal>> {
    if !framing.has_body() {
        return Ok(Vec::new());
    }
    // A body declared too large is refused before anything invites it.
    if matches!(framing, Framing::Length(length) if length > MAX_BODY_BYTES as u64) {
        return Err(Some(Refusal::body_too_large()));
    }
    if expects_continue && !write(wire, reading.slot, reading.server, answer::CONTINUE) {
        return Err(None);
    }
    reading.slot.enter(Phase::ReadingBody);
    let deadline = Instant::now() + reading.body_within;
    let body = wire.read_body(framing, MAX_BODY_BYTES, true, deadline, reading.give_up);
    reading.slot.enter(Phase::Busy);
    body.map_err(|failure| match failure {
        BodyFailure::TooLarge => Some(Refusal::body_too_large()),
        BodyFailure::Malformed(what) => Some(Refusal::bad_request(&format!(
            "the chunked body is malformed: {what}"
        ))),
        BodyFailure::Interrupted(Interrupted::TimedOut) => {
            Some(Refusal::timed_out("body", reading.body_within.as_secs()))
        }
        BodyFailure::Interrupted(Interrupted::Called) => Some(Refusal::cut_short()),
        BodyFailure::Interrupted(Interrupted::Closed) => None,
    })
}

/// Reads away the body of a refused request, if it is short and arrives at once, so that
/// the connection can carry the next request; whether it was.
fn read_away_body<T: Transport>(wire: &mut Wire<T>, framing: Framing, reading: &Reading) -> bool {
    if !framing.has_body() {
        return true;
    }
    reading.slot.enter(Phase::ReadingHead);
    let deadline = Instant::now() + REFUSED_BODY_WITHIN;
    let read = wire.read_body(framing, MAX_BODY_BYTES, false, deadline, reading.give_up);
    reading.slot.enter(Phase::Busy);
    read.is_ok()
}

/// A request being read: its connection's slot and server, how long its body may take,
/// and when to stop waiting for its bytes.
struct Reading<'a> {
    slot: &'a Slot,
    server: &'a Server,
    body_within: Duration,
    give_up: &'a dyn Fn() -> bool,
}

/// Step 6: writes the answer; whether it went out whole. Nothing is written for a request
/// its stopping server has answered already.
fn send<T: Transport>(
    wire: &mut Wire<T>,
    slot: &Slot,
    server: &Server,
    response: &HttpResponse,
    persistence: Persistence,
    head_only: bool,
) -> bool {
    if !slot.enter_writing() {
        return false;
    }
    let bytes = answer::encode(response, persistence, head_only);
    let written = write(wire, slot, server, &bytes);
    slot.enter(Phase::Busy);
    written
}

/// Writes `bytes` within [`WRITE_TIMEOUT`]; given up between chunks once the connection has
/// been displaced for [`DISPLACED_REQUEST_WITHIN`] (counted from the start of this write if
/// that is later), or a stopping server's answers are due. Whether they all went out.
fn write<T: Transport>(wire: &mut Wire<T>, slot: &Slot, server: &Server, bytes: &[u8]) -> bool {
    let started = slot.now_ms();
    let give_up =
        || slot.displaced_beyond(DISPLACED_REQUEST_WITHIN, started) || server.answers_overdue();
    wire.write_all(bytes, Instant::now() + WRITE_TIMEOUT, &give_up)
        .is_ok()
}

/// Step 7 when the connection ends after an answer: a lingering close, cut short when the
/// connection is displaced or a stopping server's answers are due.
fn close<T: Transport>(wire: Wire<T>, slot: &Slot, server: &Server) {
    slot.enter(Phase::Closing);
    let give_up = || slot.displaced_for(DISPLACED_GRACE) || server.answers_overdue();
    wire.close_lingering(Instant::now() + LINGER, &give_up);
}

/// The request's log line, and the handler's observation of it.
fn report<H: Handler>(name: &str, handler: &H, answered: &Answered, head_only: bool) {
    // Like the handler's, a panic here costs nothing but the observation.
    let _ = guarded(|| handler.observe(answered));
    let request = answered.request;
    let context = if log::log_enabled!(log::Level::Info) {
        guarded(|| handler.log_context(request)).unwrap_or_default()
    } else {
        RequestContext::default()
    };
    let method = if head_only { "HEAD" } else { &request.method };
    let status = answered.response.status;
    crate::logging::request(
        name,
        method,
        &request.url,
        status,
        answered.elapsed,
        &context,
    );
}

/// The `description` of a JSON error answer, for a log line.
fn description_of(response: &HttpResponse) -> String {
    serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|value| value["description"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Runs handler code; a panic becomes a 500 for this request (the panic message is logged
/// by the panic hook), and the thread goes on.
fn guarded<T>(work: impl FnOnce() -> T) -> Result<T, HttpResponse> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
        .map_err(|_| HttpResponse::error(500, "InternalError", "the request could not be handled"))
}

// ---------------------------------------------------------------------------------------
// The servers of a process
// ---------------------------------------------------------------------------------------

/// Each connection holds one file descriptor, and a request may hold one more while its
/// handler calls another server (the broker calling the echo service); with a few dozen
/// for the process itself, the `servers` of a process together need about
/// `2 × connections + 64`. Linux says the limit in /proc; elsewhere there is nothing cheap
/// to read. Said once, when every server of the process has started (the embedded default
/// runs two), if they need more than there is.
pub fn warn_if_descriptors_run_short(servers: &[ServerHandle]) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft_limit = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|limit| limit.parse::<usize>().ok());
    let connections: usize = servers.iter().map(ServerHandle::max_connections).sum();
    let needed = 2 * connections + 64;
    if let Some(limit) = soft_limit.filter(|limit| *limit < needed) {
        let servers = match servers.len() {
            1 => "1 server".to_string(),
            count => format!("{count} servers"),
        };
        log::warn!("MAX_CONNECTIONS: {connections} connections over {servers} need about {needed} file descriptors, but the limit is {limit} (ulimit -n); when it is reached, idle connections are closed to make room");
    }
}

/// An address on which this machine reaches `local`: loopback when listening on all
/// interfaces.
fn reachable(local: SocketAddr) -> SocketAddr {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let mut address = local;
    if local.ip().is_unspecified() {
        address.set_ip(match local {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    address
}

#[cfg(test)]
mod tests;
