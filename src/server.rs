//! The serving loop both servers share, on oxhttp: one thread per connection (at most
//! [`max_connections`] at once), one handler call per request, one log line per answer, and a
//! graceful stop on SIGTERM or Ctrl-C.
//!
//! oxhttp parses the request head (8 KiB at most, one Content-Length or a chunked body, never
//! both) and answers malformed heads with 400 itself. Everything after the head is decided
//! here, in this order, so that no client can make a server read, buffer or parse more than
//! it must:
//!
//! 1. a server that is stopping answers 503 and closes;
//! 2. [`Handler::admit`] looks at the head alone (credentials, API version): a refusal is
//!    answered without reading the body;
//! 3. the body is read up to [`MAX_BODY_BYTES`], within [`CLIENT_IDLE_TIMEOUT`] of the head
//!    (413 and 408 otherwise);
//! 4. [`Handler::handle`] answers; a panic in it is one 500, never a lost thread or process.
//!
//! Whenever a body was not read to its end, the connection is closed after the answer: the
//! unread rest is never parsed as a further request (see [`close_after_answer`]).

use crate::http::{HttpRequest, HttpResponse, CLIENT_IDLE_TIMEOUT, MAX_BODY_BYTES};
use crate::logging::RequestContext;
use oxhttp::model::header::{CONNECTION, CONTENT_TYPE};
use oxhttp::model::{Body, HeaderValue, Request, Response, StatusCode};
use std::io::Read;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// What a server does with a request.
pub trait Handler: Send + Sync + 'static {
    /// The checks that need only the request line and headers (credentials, API version).
    /// A refusal is sent without the body ever being read. The default admits everything.
    fn admit(&self, _head: &HttpRequest) -> Result<(), HttpResponse> {
        Ok(())
    }

    /// Answers an admitted request, body included.
    fn handle(&self, request: &HttpRequest) -> HttpResponse;

    /// Who asked, for the request's log line.
    fn log_context(&self, _request: &HttpRequest) -> RequestContext {
        RequestContext::default()
    }

    /// Sees every answer this handler gave (refusals by [`Handler::admit`] included), for
    /// pages and metrics of what the server saw. The default does nothing.
    fn observe(&self, _answered: &Answered) {}
}

/// A request and the answer it got, as [`Handler::observe`] sees them.
pub struct Answered<'a> {
    /// The request, with its body when it was admitted.
    pub request: &'a HttpRequest,
    pub response: &'a HttpResponse,
    /// Whether [`Handler::admit`] let it through (else the response is its refusal).
    pub admitted: bool,
    /// When its head had arrived, and how long the answer took from there.
    pub at: SystemTime,
    pub elapsed: Duration,
}

/// The default cap on connections served at once, per server. Each connection is a thread;
/// measured on Linux, one holds about 47 KiB resident while idle and 74 KiB once it has
/// served a request (its stack, which oxhttp's 32 KiB header table touches, and its share of
/// the allocator), so 256 of them stay near 19 MiB, inside the manifest's 64M with both
/// servers in one process. Beyond the
/// cap, new connections wait in the kernel's accept queue until a slot frees up (an idle
/// connection frees its slot after [`CLIENT_IDLE_TIMEOUT`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// How long a stopping server waits for the requests it is answering: Cloud Foundry sends
/// SIGKILL 10 s after SIGTERM, so every server is done well before that.
pub const STOP_GRACE: Duration = Duration::from_secs(8);

/// Starts serving `handler` on `address` ("host:port") in background threads.
pub fn serve<H: Handler>(
    name: &'static str,
    address: &str,
    handler: Arc<H>,
    max_connections: usize,
) -> Result<(), String> {
    let socket_address = socket_address(address)?;
    let gate = Gate::register(name);
    let server = oxhttp::Server::new(move |request| answer(name, &gate, handler.as_ref(), request))
        .bind(socket_address)
        .with_global_timeout(CLIENT_IDLE_TIMEOUT)
        .with_max_concurrent_connections(max_connections);
    server
        .spawn()
        .map(drop)
        .map_err(|error| format!("cannot listen on {socket_address}: {error}"))
}

fn socket_address(address: &str) -> Result<SocketAddr, String> {
    address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| format!("'{address}' is not an address to listen on"))
}

/// One request, from head to answer; see the module's documentation for the order.
fn answer<H: Handler>(
    name: &str,
    gate: &Gate,
    handler: &H,
    request: &mut Request<Body>,
) -> Response<Body> {
    let started = Instant::now();
    let arrived = SystemTime::now();
    let mut incoming = head_of(request);
    // HEAD is GET without the body, wherever GET is answered.
    let head_only = incoming.method == "HEAD";
    if head_only {
        incoming.method = "GET".to_string();
    }
    let outcome = match gate.enter() {
        Some(_in_flight) => checked_answer(handler, &mut incoming, request.body_mut(), started),
        None => Outcome {
            response: HttpResponse::error(
                503,
                "Unavailable",
                "the server is stopping; try again shortly",
            ),
            connection: Connection::CloseAfterShortBody,
            from_handler: None,
        },
    };
    let context = if log::log_enabled!(log::Level::Info) {
        handler.log_context(&incoming)
    } else {
        RequestContext::default()
    };
    let elapsed = started.elapsed();
    if let Some(admitted) = outcome.from_handler {
        let answered = Answered {
            request: &incoming,
            response: &outcome.response,
            admitted,
            at: arrived,
            elapsed,
        };
        // Like the handler's, a panic here costs nothing but the observation.
        let _ = guarded(|| handler.observe(&answered));
    }
    let method = if head_only { "HEAD" } else { &incoming.method };
    let status = outcome.response.status;
    crate::logging::request(name, method, &incoming.url, status, elapsed, &context);
    match outcome.connection {
        Connection::KeepAlive => {}
        Connection::CloseUnread => close_after_answer(request, false),
        Connection::CloseAfterShortBody => close_after_answer(request, true),
    }
    to_oxhttp(outcome.response, head_only)
}

/// An answer, what becomes of its connection, and whether the handler gave it:
/// `Some(admitted)`, or `None` for the server's own answers.
struct Outcome {
    response: HttpResponse,
    connection: Connection,
    from_handler: Option<bool>,
}

/// What becomes of a connection after an answer.
enum Connection {
    /// The body was read to its end: the next request may follow.
    KeepAlive,
    /// The body was refused while being read (too large, too slow, malformed): close.
    CloseUnread,
    /// The body was never looked at: close, after reading away a short one that is sent at
    /// once (see [`close_after_answer`]).
    CloseAfterShortBody,
}

fn checked_answer<H: Handler>(
    handler: &H,
    incoming: &mut HttpRequest,
    body: &mut Body,
    started: Instant,
) -> Outcome {
    if let Err(refusal) = guarded(|| handler.admit(incoming)).and_then(|admitted| admitted) {
        return Outcome {
            response: refusal,
            connection: Connection::CloseAfterShortBody,
            from_handler: Some(false),
        };
    }
    match read_body(body, started + CLIENT_IDLE_TIMEOUT) {
        Ok(bytes) => incoming.body = bytes,
        Err(refusal) => {
            return Outcome {
                response: refusal,
                connection: Connection::CloseUnread,
                from_handler: Some(true),
            }
        }
    }
    Outcome {
        response: guarded(|| handler.handle(incoming)).unwrap_or_else(|refusal| refusal),
        connection: Connection::KeepAlive,
        from_handler: Some(true),
    }
}

/// Runs handler code; a panic becomes a 500 for this request (the panic message is logged
/// by the panic hook), and the thread goes on.
fn guarded<T>(work: impl FnOnce() -> T) -> Result<T, HttpResponse> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
        .map_err(|_| HttpResponse::error(500, "InternalError", "the request could not be handled"))
}

/// The request line and headers as handlers see them; the body comes later.
fn head_of(request: &Request<Body>) -> HttpRequest {
    HttpRequest {
        method: request.method().as_str().to_string(),
        url: request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str())
            .to_string(),
        headers: request
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect(),
        body: Vec::new(),
    }
}

/// Reads the whole body, refusing one over [`MAX_BODY_BYTES`] (413, before reading it when
/// its length is declared) or one that has not arrived by `deadline` (408).
fn read_body(body: &mut Body, deadline: Instant) -> Result<Vec<u8>, HttpResponse> {
    let too_large = || {
        HttpResponse::error(
            413,
            "PayloadTooLarge",
            &format!("the request body exceeds the limit of {MAX_BODY_BYTES} bytes"),
        )
    };
    if body
        .len()
        .is_some_and(|length| length > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    let mut reader = DeadlineReader {
        inner: body,
        deadline,
    }
    .take(MAX_BODY_BYTES as u64 + 1);
    if let Err(error) = reader.read_to_end(&mut bytes) {
        return Err(unreadable_body(&error));
    }
    if bytes.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

fn unreadable_body(error: &std::io::Error) -> HttpResponse {
    use std::io::ErrorKind::{TimedOut, WouldBlock};
    if matches!(error.kind(), TimedOut | WouldBlock) {
        let seconds = CLIENT_IDLE_TIMEOUT.as_secs();
        let description = format!("the request body did not arrive within {seconds} s");
        HttpResponse::error(408, "RequestTimeout", &description)
    } else {
        let description = format!("the request body could not be read: {error}");
        HttpResponse::error(400, "BadRequest", &description)
    }
}

/// A reader that fails with `TimedOut` once `deadline` has passed. The socket's own timeout
/// bounds each read; this bounds them all together, so a body trickled a byte at a time
/// cannot hold its connection for longer than one timeout more.
struct DeadlineReader<R> {
    inner: R,
    deadline: Instant,
}

impl<R: Read> Read for DeadlineReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if Instant::now() >= self.deadline {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.inner.read(buffer)
    }
}

/// Makes oxhttp close the connection after this answer: it reads `Connection: close` from
/// the request once the handler has returned, then drains the body it is given. Closing a
/// socket with unread bytes resets the connection, and on Windows a reset throws away the
/// answer before the client reads it; so with `drain_short_body`, a body declared at most
/// [`LINGER_BYTES`] long (or chunked) is read away for at most [`LINGER`] first. Nothing
/// unread is ever parsed; a body declared longer, or one that already failed, is left.
fn close_after_answer(request: &mut Request<Body>, drain_short_body: bool) {
    let unread = std::mem::take(request.body_mut());
    let short = unread.len().is_none_or(|length| length <= LINGER_BYTES);
    if drain_short_body && short {
        *request.body_mut() = Body::from_read(Linger {
            unread,
            deadline: Instant::now() + LINGER,
            left: LINGER_BYTES,
        });
    }
    request
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
}

/// How long, and how much of an unread body, [`close_after_answer`] reads away.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: u64 = MAX_BODY_BYTES as u64;

/// The rest of a body, read and dropped until it ends, fails, or a limit is reached; any of
/// these is simply its end, so oxhttp's own drain never turns the answer into an error.
struct Linger {
    unread: Body,
    deadline: Instant,
    left: u64,
}

impl Read for Linger {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || Instant::now() >= self.deadline {
            return Ok(0);
        }
        let most = buffer
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let read = self.unread.read(&mut buffer[..most]).unwrap_or(0);
        self.left -= read as u64;
        Ok(read)
    }
}

fn to_oxhttp(response: HttpResponse, head_only: bool) -> Response<Body> {
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut reply = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, response.content_type);
    for (name, value) in response.headers {
        // Values are the handlers' own; one that is not a valid header value is left out
        // rather than sent broken.
        if let Ok(value) = HeaderValue::from_str(&value) {
            reply = reply.header(name, value);
        }
    }
    let body = if head_only {
        Body::empty()
    } else {
        Body::from(response.body)
    };
    reply.body(body).unwrap_or_else(|_| {
        let mut fallback = Response::new(Body::empty());
        *fallback.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        fallback
    })
}

// ---------------------------------------------------------------------------------------
// Graceful stop
// ---------------------------------------------------------------------------------------

/// A server's count of requests in progress, and whether it still takes new ones.
struct Gate {
    name: &'static str,
    stopping: AtomicBool,
    in_flight: AtomicUsize,
}

/// Every server of this process, in the order they started.
static GATES: Mutex<Vec<Arc<Gate>>> = Mutex::new(Vec::new());

impl Gate {
    fn register(name: &'static str) -> Arc<Gate> {
        let gate = Arc::new(Gate {
            name,
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        });
        lock_gates().push(Arc::clone(&gate));
        gate
    }

    /// Counts a request in, unless the server is stopping.
    fn enter(&self) -> Option<InFlight<'_>> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let in_flight = InFlight(self);
        (!self.stopping.load(Ordering::SeqCst)).then_some(in_flight)
    }

    /// Takes no new requests, then waits until those in progress are answered, or `until`.
    fn close_and_drain(&self, until: Instant) -> bool {
        self.stopping.store(true, Ordering::SeqCst);
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

/// A request in progress; counted out when dropped.
struct InFlight<'a>(&'a Gate);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock_gates() -> std::sync::MutexGuard<'static, Vec<Arc<Gate>>> {
    GATES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Blocks until SIGTERM, SIGINT or SIGHUP (Ctrl-C, Ctrl-Break or closing the console on
/// Windows), then stops every server of the process, the last started first (the broker
/// before the embedded echo service its requests still call), and exits 0. Every change
/// the echo service acknowledged is already on disk, so nothing is left to flush.
pub fn run_until_stopped() -> ! {
    let (signalled, signal) = std::sync::mpsc::channel();
    if let Err(error) = ctrlc::set_handler(move || {
        let _ = signalled.send(());
    }) {
        log::warn!("stop signals are not handled ({error}): stopping ends requests abruptly");
    }
    if signal.recv().is_err() {
        // No handler could be installed: serve until the process is killed.
        loop {
            std::thread::park();
        }
    }
    log::info!("stop requested: finishing the requests in progress");
    std::process::exit(stop_all())
}

/// Closes and drains every server; the exit status: 0 when all finished in time.
fn stop_all() -> i32 {
    let until = Instant::now() + STOP_GRACE;
    let gates: Vec<Arc<Gate>> = lock_gates().iter().rev().cloned().collect();
    let mut status = 0;
    for gate in gates {
        if gate.close_and_drain(until) {
            log::info!("{}: stopped", gate.name);
        } else {
            let left = gate.in_flight.load(Ordering::SeqCst);
            log::error!(
                "{}: {left} requests still in progress after {} s; stopping anyway",
                gate.name,
                STOP_GRACE.as_secs()
            );
            status = 1;
        }
    }
    // The last answers were handed to oxhttp, which writes them right after the handler
    // returns; a moment lets those writes reach the sockets before the process ends.
    std::thread::sleep(ANSWER_WRITE_SETTLE);
    log::logger().flush();
    status
}

/// See [`stop_all`]: small answers are written into the socket buffer in microseconds.
const ANSWER_WRITE_SETTLE: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    struct Panicky;

    impl Handler for Panicky {
        fn handle(&self, request: &HttpRequest) -> HttpResponse {
            if request.path() == "/panic" {
                panic!("a handler bug");
            }
            HttpResponse::json(200, &serde_json::json!({"ok": true}))
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free port")
    }

    fn status_of(port: u16, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("sent");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.lines().next().unwrap_or("").to_string()
    }

    #[test]
    fn a_panicking_handler_is_one_500_and_the_server_goes_on() {
        let port = free_port();
        serve("test", &format!("127.0.0.1:{port}"), Arc::new(Panicky), 4).expect("serves");
        let deadline = Instant::now() + Duration::from_secs(5);
        while status_of(port, "/ok").is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // More panics than connection slots: none of them may cost a slot or the process.
        for _ in 0..8 {
            assert_eq!(
                status_of(port, "/panic"),
                "HTTP/1.1 500 Internal Server Error"
            );
        }
        assert_eq!(status_of(port, "/ok"), "HTTP/1.1 200 OK");
    }

    #[test]
    fn a_stopping_gate_refuses_new_requests_and_waits_for_those_in_progress() {
        let gate = Gate {
            name: "test",
            stopping: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        };
        let in_progress = gate.enter().expect("open gate admits");
        assert!(!gate.close_and_drain(Instant::now() + Duration::from_millis(20)));
        assert!(gate.enter().is_none(), "a closed gate admits nothing");
        drop(in_progress);
        assert!(gate.close_and_drain(Instant::now() + Duration::from_millis(20)));
    }
}
