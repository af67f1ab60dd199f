//! The connection code on bytes in memory (framing, pipelining, refusals, and random and
//! mutated input), and servers on real sockets: a panicking handler, and the stop of a
//! server value with a handler that finishes in time and one that does not.

use super::wire::tests::InMemory;
use super::*;
use proptest::prelude::*;
use std::io::{Read, Write};
use std::sync::Mutex;

/// Admits everything but requests with `X-Refuse` (401), answers with the path, and keeps
/// every request it handled.
#[derive(Default)]
struct Recorder {
    handled: Mutex<Vec<HttpRequest>>,
}

impl Handler for Recorder {
    type Admission = ();

    fn admit(&self, head: &HttpRequest) -> Result<(), HttpResponse> {
        match head.header("X-Refuse") {
            Some(_) => Err(HttpResponse::error(401, "Unauthorized", "refused")),
            None => Ok(()),
        }
    }

    fn handle(&self, request: &HttpRequest, _admitted: ()) -> HttpResponse {
        if request.path() == "/panic" {
            panic!("a handler bug");
        }
        self.handled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(request.clone());
        HttpResponse::json(200, &serde_json::json!({ "path": request.path() }))
    }
}

fn test_server() -> Server {
    Server {
        name: "test",
        slots: Slots::new(4),
        max_connections: 4,
        longest_handling: Duration::from_secs(1),
        stopping: AtomicBool::new(false),
        answers_due_ms: AtomicU64::new(u64::MAX),
        reading_until_ms: AtomicU64::new(u64::MAX),
        stop_started_ms: AtomicU64::new(u64::MAX),
        epoch: Instant::now(),
        listening: AtomicBool::new(false),
        threads: Threads::start("test", 8).expect("a reaper thread"),
        wake_address: SocketAddr::from(([127, 0, 0, 1], 9)),
    }
}

/// Runs one connection over `incoming` (read `step` bytes at a time); what the server wrote
/// and the paths the handler saw.
fn converse(incoming: &[u8], step: usize) -> (String, Vec<String>) {
    let server = test_server();
    let never = AtomicBool::new(false);
    let slot = server.slots.claim(&never).expect("a slot");
    let transport = InMemory::new(incoming, step);
    let written = Arc::clone(&transport.written);
    let handler = Recorder::default();
    let wire = Wire::new(transport).expect("in memory");
    serve_connection(wire, &slot, &server, &handler);
    let written = written
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    let paths = handler
        .handled
        .into_inner()
        .unwrap_or_default()
        .iter()
        .map(|request| request.path().to_string())
        .collect();
    (String::from_utf8_lossy(&written).into_owned(), paths)
}

/// The status codes of the final answers in `written`, in order.
fn statuses(written: &str) -> Vec<u16> {
    written
        .split("HTTP/1.1 ")
        .skip(1)
        .filter_map(|answer| answer.get(..3)?.parse().ok())
        .filter(|status| *status >= 200)
        .collect()
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n";

#[test]
fn pipelined_requests_are_answered_in_order_with_date_and_length() {
    let requests: String = (0..50)
        .map(|n| format!("GET /{n} HTTP/1.1\r\nHost: h\r\n\r\n"))
        .collect();
    let (written, paths) = converse(requests.as_bytes(), 4096);
    assert_eq!(paths.len(), 50);
    assert_eq!(paths[49], "/49");
    assert_eq!(written.matches("\r\nDate: ").count(), 50);
    assert_eq!(written.matches("\r\nContent-Length: ").count(), 50);
    assert!(!written.contains("Connection: close"));
}

#[test]
fn a_refusal_without_a_body_or_with_a_short_one_keeps_the_connection() {
    let input = format!(
        "PATCH /a HTTP/1.1\r\nHost: h\r\nX-Refuse: 1\r\n\r\n\
         PATCH /b HTTP/1.1\r\nHost: h\r\nX-Refuse: 1\r\nContent-Length: {}\r\n\r\n{SMUGGLED}\
         PATCH /c HTTP/1.1\r\nHost: h\r\nX-Refuse: 1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n\
         PATCH /d HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{{}}",
        SMUGGLED.len(),
        SMUGGLED.len()
    );
    let (written, paths) = converse(input.as_bytes(), 5);
    assert_eq!(statuses(&written), [401, 401, 401, 200]);
    assert_eq!(paths, ["/d"]);
    assert!(!written.contains("Connection: close"));
}

#[test]
fn what_cannot_be_read_closes_the_connection_and_is_never_parsed() {
    let closing = [
        format!("PUT /big HTTP/1.1\r\nHost: h\r\nContent-Length: 70000\r\n\r\n{SMUGGLED}"),
        format!("PUT /te HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n{SMUGGLED}"),
        format!("PUT /both HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n{SMUGGLED}"),
        format!("PUT /wait HTTP/1.1\r\nHost: h\r\nX-Refuse: 1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n{SMUGGLED}"),
        format!("PUT /bad HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{SMUGGLED}"),
        format!("GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n{SMUGGLED}"),
    ];
    for input in closing {
        let (written, paths) = converse(input.as_bytes(), 4096);
        assert_eq!(statuses(&written).len(), 1, "{input:?}: {written}");
        assert!(written.contains("Connection: close\r\n"), "{input:?}");
        assert!(!written.contains("100 Continue"), "{input:?}");
        assert!(paths.is_empty(), "{input:?}: {paths:?}");
    }
}

#[test]
fn continue_is_sent_only_to_an_admitted_request_and_head_keeps_the_length() {
    let input = "PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}\
                 HEAD /y HTTP/1.1\r\nHost: h\r\n\r\n";
    let (written, paths) = converse(input.as_bytes(), 4096);
    assert!(written.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"));
    assert_eq!(paths, ["/x", "/y"]);
    let head_answer = written.rsplit("HTTP/1.1 ").next().unwrap_or_default();
    // The test handler's JSON answer for /y, newline included.
    assert!(
        head_answer.contains("Content-Length: 14\r\n"),
        "{head_answer}"
    );
    assert!(
        head_answer.ends_with("\r\n\r\n"),
        "no body after HEAD: {head_answer}"
    );
}

#[test]
fn http_1_0_closes_unless_it_asks_for_keep_alive() {
    let (written, paths) = converse(b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n", 4096);
    assert_eq!(paths, ["/a"]);
    assert!(written.contains("Connection: close"));
    let input = b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n";
    let (written, paths) = converse(input, 4096);
    assert_eq!(paths, ["/a", "/b"]);
    assert!(written.contains("Connection: keep-alive"));
}

/// Well-formed requests of every framing, some refused, each body carrying a request of its
/// own; a few that must close the connection.
fn request_strategy() -> impl Strategy<Value = String> {
    let body = prop::collection::vec(any::<u8>(), 0..64).prop_map(|bytes| {
        let mut body = bytes;
        body.extend_from_slice(SMUGGLED.as_bytes());
        body
    });
    (0..7u8, body, any::<bool>()).prop_map(|(kind, body, refused)| {
        let refuse = if refused { "X-Refuse: 1\r\n" } else { "" };
        let text = String::from_utf8_lossy(&body).into_owned();
        let length = text.len();
        match kind {
            0 => format!("GET /plain HTTP/1.1\r\nHost: h\r\n{refuse}\r\n"),
            1 => format!(
                "PUT /length HTTP/1.1\r\nHost: h\r\n{refuse}Content-Length: {length}\r\n\r\n{text}"
            ),
            2 => format!(
                "PUT /chunked HTTP/1.1\r\nHost: h\r\n{refuse}Transfer-Encoding: chunked\r\n\r\n{length:x};ext\r\n{text}\r\n0\r\nT: 1\r\n\r\n"
            ),
            3 => format!("HEAD /head HTTP/1.1\r\nHost: h\r\n{refuse}\r\n"),
            4 => format!("PUT /huge HTTP/1.1\r\nHost: h\r\nContent-Length: 99999\r\n\r\n{text}"),
            5 => format!("PUT /ambiguous HTTP/1.1\r\nHost: h\r\nContent-Length: {length}\r\nContent-Length: {length}\r\n\r\n{text}"),
            _ => format!("POST /close HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: {length}\r\n\r\n{text}"),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the framing, the split into reads or the refusals: one answer per request
    /// up to the first that closes, nothing from a body ever handled as a request.
    #[test]
    fn requests_in_any_framing_get_one_answer_each_and_bodies_are_never_parsed(
        requests in prop::collection::vec(request_strategy(), 1..8),
        step in 1usize..200,
    ) {
        let input = requests.concat();
        let (written, paths) = converse(input.as_bytes(), step);
        let closes_at = requests
            .iter()
            .position(|request| ["/huge", "/ambiguous", "/close"].iter().any(|path| request.contains(path)));
        let expected = closes_at.map_or(requests.len(), |index| index + 1);
        prop_assert_eq!(statuses(&written).len(), expected, "{}", written);
        prop_assert!(!paths.iter().any(|path| path == "/smuggled"));
    }

    /// Random bytes, and well-formed requests with bytes changed: never a panic, and never
    /// more answers than heads sent (each answer ends a head, but for one that times out or
    /// is cut short, after which the connection closes).
    #[test]
    fn random_and_mutated_bytes_never_panic_nor_answer_twice(
        requests in prop::collection::vec(request_strategy(), 1..4),
        noise in prop::collection::vec(any::<u8>(), 0..300),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        step in 1usize..64,
    ) {
        let mut input = requests.concat().into_bytes();
        for (at, byte) in mutations {
            let index = at.index(input.len());
            input[index] = byte;
        }
        for bytes in [input, noise] {
            let (written, _) = converse(&bytes, step);
            let text = String::from_utf8_lossy(&bytes);
            let heads = text.matches("\n\r\n").count() + text.matches("\n\n").count();
            prop_assert!(statuses(&written).len() <= heads + 1, "{}", written);
        }
    }
}

/// A chunked request with an extension on each size line and two trailers, with the
/// regions where a bare CR may be put: (start, end) of its header lines, size lines,
/// extensions and trailer lines.
fn chunked_with_regions(body: &str) -> (String, Vec<(usize, usize)>) {
    let head = "PUT /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    let size_line = format!("{:x}", body.len());
    let extension = ";name=value;q=\"a b\"";
    let mut request = String::from(head);
    let mut regions = vec![(0, head.len() - 4)];
    regions.push((request.len(), request.len() + size_line.len()));
    request.push_str(&size_line);
    regions.push((request.len(), request.len() + extension.len()));
    request.push_str(extension);
    request.push_str(&format!("\r\n{body}\r\n0\r\n"));
    let trailers = "Trailer-A: 1\r\nTrailer-B: two words";
    regions.push((request.len(), request.len() + trailers.len()));
    request.push_str(trailers);
    request.push_str("\r\n\r\n");
    (request, regions)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A bare CR anywhere in a request's head, its chunk-size lines, extensions or
    /// trailers: one 400 that says so, the connection closed, nothing handled (neither the
    /// request nor what follows it), however the bytes are split into reads.
    #[test]
    fn a_bare_cr_is_refused_wherever_it_is_and_however_it_arrives(
        body in "[a-z]{1,40}",
        region in 0usize..4,
        at in any::<prop::sample::Index>(),
        step in 1usize..100,
    ) {
        let (request, regions) = chunked_with_regions(&body);
        let (start, end) = regions[region];
        let mut bytes = request.into_bytes();
        bytes.insert(start + at.index(end - start + 1), b'\r');
        bytes.extend_from_slice(SMUGGLED.as_bytes());
        let (written, paths) = converse(&bytes, step);
        prop_assert_eq!(statuses(&written), vec![400], "{}", written);
        prop_assert!(written.contains("bare CR") || written.contains("not ended by CRLF") || written.contains("not followed by CRLF"), "{}", written);
        prop_assert!(written.contains("Connection: close\r\n"));
        prop_assert!(paths.is_empty(), "{:?}", paths);
    }

    /// A head is measured whole however it is split into reads: over 16 KiB it is a 431
    /// and nothing after it is read; up to 16 KiB it is answered and so is the next request.
    #[test]
    fn a_head_is_measured_whole_however_it_is_split(
        size in (head::MAX_HEAD_BYTES - 100)..(head::MAX_HEAD_BYTES + 8_000),
        step in prop_oneof![1usize..64, 4000usize..30_000],
    ) {
        let start = "GET /large HTTP/1.1\r\nHost: h\r\nX: ";
        let filler = "a".repeat(size - start.len() - 4);
        let input = format!("{start}{filler}\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n");
        let (written, paths) = converse(input.as_bytes(), step);
        if size > head::MAX_HEAD_BYTES {
            prop_assert_eq!(statuses(&written), vec![431], "{}", written);
            prop_assert!(paths.is_empty(), "{:?}", paths);
        } else {
            prop_assert_eq!(statuses(&written), vec![200, 200], "{}", written);
            prop_assert_eq!(paths, vec!["/large".to_string(), "/next".to_string()]);
        }
    }
}

/// The status line of the answer to `GET {path}` on a connection of its own.
fn status_of(address: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connects");
    send_get(&mut stream, path);
    let answer = read_answer(&mut stream);
    answer.lines().next().unwrap_or("").to_string()
}

fn send_get(stream: &mut TcpStream, path: &str) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("sent");
}

/// The whole answer, read until the server closes the connection.
fn read_answer(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

fn loopback_server<H: Handler>(handler: &Arc<H>) -> ServerHandle {
    serve("test", "127.0.0.1:0", Arc::clone(handler), 4).expect("serves")
}

#[test]
fn a_panicking_handler_is_one_500_and_the_server_goes_on() {
    let server = loopback_server(&Arc::new(Recorder::default()));
    // More panics than connection slots: none of them may cost a slot or the process.
    for _ in 0..8 {
        assert_eq!(
            status_of(server.address(), "/panic"),
            "HTTP/1.1 500 Internal Server Error"
        );
    }
    assert_eq!(status_of(server.address(), "/ok"), "HTTP/1.1 200 OK");
}

/// Answers `GET /sleep/MS` after MS milliseconds, and says when a handler has begun.
#[derive(Default)]
struct Sleeper {
    began: AtomicBool,
}

impl Handler for Sleeper {
    type Admission = ();

    fn admit(&self, _head: &HttpRequest) -> Result<(), HttpResponse> {
        Ok(())
    }

    fn handle(&self, request: &HttpRequest, _admitted: ()) -> HttpResponse {
        self.began.store(true, Ordering::SeqCst);
        let millis = request.path().trim_start_matches("/sleep/").parse();
        std::thread::sleep(Duration::from_millis(millis.unwrap_or(0)));
        HttpResponse::json(200, &serde_json::json!({ "path": request.path() }))
    }
}

/// Sends `GET /sleep/{millis}` to a [`Sleeper`] server and waits until its handler has
/// begun; the connection, to read the answer from.
fn sleeping_request(server: &ServerHandle, handler: &Sleeper, millis: u64) -> TcpStream {
    let mut stream = TcpStream::connect(server.address()).expect("connects");
    send_get(&mut stream, &format!("/sleep/{millis}"));
    let waited = Instant::now();
    while !handler.began.load(Ordering::SeqCst) {
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "the handler began"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    stream
}

#[test]
fn a_stop_waits_for_a_handler_that_finishes_in_time_and_ends_clean() {
    let handler = Arc::new(Sleeper::default());
    let server = loopback_server(&handler);
    let address = server.address();
    let mut client = sleeping_request(&server, &handler, 300);
    let reading = std::thread::spawn(move || read_answer(&mut client));
    let stopped = server.stop(Instant::now() + Duration::from_secs(4));
    let answer = reading.join().expect("the answer is read");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("Connection: close\r\n"), "{answer}");
    assert!(stopped.clean(), "{stopped:?}");
    assert!(
        TcpStream::connect(address).is_err(),
        "a stopped server refuses connections"
    );
}

#[test]
fn a_stop_with_a_handler_running_past_the_deadline_is_not_clean_and_answers_503() {
    let handler = Arc::new(Sleeper::default());
    let server = loopback_server(&handler);
    let mut client = sleeping_request(&server, &handler, 5_000);
    let reading = std::thread::spawn(move || read_answer(&mut client));
    // The answers are due half a second from now, long before the handler is done.
    let until = Instant::now() + stop::STOP_MARGIN + Duration::from_millis(500);
    let stopped = server.stop(until);
    let answer = reading.join().expect("the answer is read");
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(answer.contains("could not be finished in time"), "{answer}");
    assert!(!stopped.clean(), "{stopped:?}");
    assert_eq!(stopped.answered_in_place, 1, "{stopped:?}");
    assert!(stopped.finished, "every request was answered: {stopped:?}");
}
