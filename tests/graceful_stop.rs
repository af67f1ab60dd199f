//! A graceful stop: SIGTERM (what Cloud Foundry sends before SIGKILL 10 s later).
//!
//! - While eight clients provision in a loop, five times: every request the broker read
//!   gets a complete answer; the others are refused before a byte is read (the listener is
//!   closed, or the connection reset), so the platform's router can retry them elsewhere;
//!   nothing is left half-done, and the process exits 0.
//! - While an answer is blocked in a write to a client that never reads, five times on
//!   each server: the write is abandoned in time and the process exits 0, with time to
//!   spare.
//! - With a separate echo service that has stopped answering, five times: a request read
//!   before the stop gets its 504, one sent during the stop is read only while there is time
//!   to see it through, and a head still arriving gets a 503; the process exits 0 in time.
//! - With an echo service too slow for the stop: the request gets a 503 in its handler's
//!   place, never silence.
#![cfg(unix)]

mod common;
use common::*;
use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// By when a stopped process must have exited: the servers' grace is 8 s (Cloud Foundry
/// sends SIGKILL at 10 s), and a stop must end with time to spare, not at the last moment.
const EXITS_WITHIN: Duration = Duration::from_millis(7_300);

/// Sends SIGTERM to `process`; its exit status and how long it took (panics after 12 s).
fn terminate(process: &mut Process) -> (ExitStatus, Duration) {
    let pid = process.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    let started = Instant::now();
    assert!(
        sent.is_ok_and(|status| status.success()),
        "kill -TERM {pid}"
    );
    wait_for_exit(process, started)
}

fn wait_for_exit(process: &mut Process, since: Instant) -> (ExitStatus, Duration) {
    loop {
        if let Ok(Some(status)) = process.child.try_wait() {
            return (status, since.elapsed());
        }
        assert!(
            since.elapsed() < Duration::from_secs(12),
            "still running 12 s after SIGTERM; its log:\n{}",
            process.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Everything `stream` receives until the server closes it (or 15 s pass).
fn read_all(stream: &mut TcpStream) -> String {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// What became of one provision request sent on a fresh connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A complete answer with this status.
    Answered(u16),
    /// Refused before the server read anything: no connection, or a reset.
    Refused,
    /// The connection ended cleanly without an answer: the request is lost.
    Unanswered,
}

/// Provisions `instance_id` on a connection of its own; `Connection: close` so that the
/// answer ends with the stream.
fn provision(port: u16, instance_id: &str) -> Outcome {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return Outcome::Refused;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
    let request = format!(
        "PUT /v2/service_instances/{instance_id} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dXNlcjpwYXNz\r\nX-Broker-API-Version: 2.17\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{PROVISION_ECHO}",
        PROVISION_ECHO.len()
    );
    if let Err(error) = stream.write_all(request.as_bytes()) {
        return refused_or_not(&error);
    }
    let mut answer = Vec::new();
    if let Err(error) = stream.read_to_end(&mut answer) {
        if answer.is_empty() {
            return refused_or_not(&error);
        }
    }
    let text = String::from_utf8_lossy(&answer);
    match text.get(9..12).and_then(|status| status.parse().ok()) {
        Some(status) if text.contains("\r\n\r\n") => Outcome::Answered(status),
        _ => Outcome::Unanswered,
    }
}

fn refused_or_not(error: &std::io::Error) -> Outcome {
    match error.kind() {
        ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused | ErrorKind::BrokenPipe => {
            Outcome::Refused
        }
        _ => Outcome::Unanswered,
    }
}

fn provision_in_a_loop(
    port: u16,
    client: usize,
    signalled: &AtomicBool,
    outcomes: &Mutex<Vec<(String, Outcome)>>,
) {
    let give_up = Instant::now() + Duration::from_secs(20);
    for n in 0.. {
        let instance_id = format!("stop-{client}-{n}");
        let outcome = provision(port, &instance_id);
        outcomes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((instance_id, outcome));
        let refused = outcome == Outcome::Refused;
        if (refused && signalled.load(Ordering::SeqCst)) || Instant::now() > give_up {
            return;
        }
    }
}

#[test]
fn sigterm_under_load_answers_every_request_read_and_exits_0_five_times() {
    let data = TempDir::new("graceful");
    let data_dir = data.path().display().to_string();
    let echo_port = free_port().to_string();
    let env = [
        ("ECHO_PORT", echo_port.as_str()),
        ("DATA_DIR", data_dir.as_str()),
    ];
    let mut outcomes = Vec::new();
    for run in 0..5 {
        let mut broker = Process::start(BROKER, free_port(), &env);
        let signalled = AtomicBool::new(false);
        let run_outcomes = Mutex::new(Vec::new());
        let status = std::thread::scope(|scope| {
            for client in 0..8 {
                let (signalled, run_outcomes) = (&signalled, &run_outcomes);
                let port = broker.port;
                let client = run * 8 + client;
                scope.spawn(move || provision_in_a_loop(port, client, signalled, run_outcomes));
            }
            std::thread::sleep(Duration::from_millis(700));
            let pid = broker.child.id().to_string();
            let sent = Command::new("kill").args(["-TERM", &pid]).status();
            assert!(
                sent.is_ok_and(|status| status.success()),
                "kill -TERM {pid}"
            );
            signalled.store(true, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = broker.child.try_wait() {
                    break status;
                }
                assert!(
                    Instant::now() < deadline,
                    "run {run}: still running 10 s after SIGTERM"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let log = broker.log();
        assert_eq!(
            status.code(),
            Some(0),
            "run {run}: exit status; log:\n{log}"
        );
        assert!(log.contains("stop requested"), "{log}");
        assert_eq!(broker.stderr(), "", "run {run}");
        let run_outcomes = run_outcomes
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let lost: Vec<_> = run_outcomes
            .iter()
            .filter(|(_, outcome)| *outcome == Outcome::Unanswered)
            .collect();
        assert!(
            lost.is_empty(),
            "run {run}: requests left unanswered: {lost:?}"
        );
        outcomes.extend(run_outcomes);
    }

    // Restarted on the same state: what was answered 201 is there, nothing else is.
    let restarted = Process::start(BROKER, free_port(), &env);
    let created = outcomes
        .iter()
        .filter(|(_, outcome)| *outcome == Outcome::Answered(201))
        .count();
    assert!(created > 0, "no provision succeeded before the stops");
    for (instance_id, outcome) in &outcomes {
        assert!(
            matches!(outcome, Outcome::Refused | Outcome::Answered(201)),
            "{instance_id}: {outcome:?}"
        );
        let url = format!("{}/v2/service_instances/{instance_id}", restarted.url);
        let fetched = platform("GET", &url, None).status;
        let expected = if *outcome == Outcome::Answered(201) {
            200
        } else {
            404
        };
        assert_eq!(fetched, expected, "{instance_id} was {outcome:?}");
    }
}

/// A client that never reads: a small receive buffer and segment size, and for a second
/// as many pipelined `/health` requests as the server takes, so that it always has one to
/// answer and ends up blocked writing answers nobody reads (loopback's send buffers grow to
/// megabytes first).
fn client_that_never_reads(port: u16) -> TcpStream {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("a socket");
    socket.set_recv_buffer_size(1024).expect("a small buffer");
    socket.set_tcp_mss(536).expect("a small segment size");
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    socket.connect(&address.into()).expect("the server accepts");
    let mut stream: TcpStream = socket.into();
    stream.set_nonblocking(true).expect("non-blocking");
    let requests = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2_000);
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        if stream.write(requests.as_bytes()).is_err() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    stream
}

#[test]
fn sigterm_while_a_write_is_blocked_on_a_client_that_never_reads_exits_0_in_time_five_times() {
    // The ten stops run side by side, each process on its own ports and data: each waits
    // out most of the stop's grace, and in a row they took 40 s.
    std::thread::scope(|scope| {
        for binary in [BROKER, ECHO_SERVICE] {
            for run in 0..5 {
                scope.spawn(move || {
                    let data = TempDir::new("blocked-writer");
                    let data_dir = data.path().display().to_string();
                    let echo_port = free_port().to_string();
                    let env = [
                        ("ECHO_PORT", echo_port.as_str()),
                        ("DATA_DIR", data_dir.as_str()),
                    ];
                    let mut server = Process::start(binary, free_port(), &env);
                    let _stuck = client_that_never_reads(server.port);
                    let (status, took) = terminate(&mut server);
                    println!("{binary}, run {run}: {status}, {took:?} after SIGTERM");
                    let log = server.log();
                    assert_eq!(status.code(), Some(0), "{binary}, run {run}: {log}");
                    assert!(
                        took < EXITS_WITHIN,
                        "{binary}, run {run}: exited {took:?} after SIGTERM: {log}"
                    );
                    assert!(!log.contains("still open"), "{binary}, run {run}: {log}");
                    assert_eq!(server.stderr(), "", "{binary}, run {run}");
                });
            }
        }
    });
}

/// A request sent whole on `stream`.
fn provision_request(instance_id: &str) -> String {
    format!(
        "PUT /v2/service_instances/{instance_id} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dXNlcjpwYXNz\r\nX-Broker-API-Version: 2.17\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{PROVISION_ECHO}",
        PROVISION_ECHO.len()
    )
}

/// A connection that `server` has taken in (its thread for it runs) before the test goes
/// on: one still waiting in the listener's queue when a stop closes the listener is
/// refused, which is right for the server, and not what these tests look at.
fn connect(server: &Process) -> TcpStream {
    let threads_before = settled_threads_of(server);
    let stream = TcpStream::connect(("127.0.0.1", server.port)).expect("the broker accepts");
    match threads_before {
        Some(before) => {
            let until = Instant::now() + Duration::from_secs(5);
            while server.threads().is_some_and(|now| now <= before) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // Without /proc: time enough to accept on any machine these tests run on.
        None => std::thread::sleep(Duration::from_millis(200)),
    }
    stream
}

/// The process's threads once no connection is ending (the one that checked the process
/// was up, say), so that a new one shows as one more.
fn settled_threads_of(process: &Process) -> Option<usize> {
    let until = Instant::now() + Duration::from_secs(2);
    let mut last = process.threads();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = process.threads();
        if now == last || Instant::now() >= until {
            return now;
        }
        last = now;
    }
}

/// The status of the one answer in `answer`, if it is complete and says
/// `Connection: close`.
fn closing_status(answer: &str) -> Option<u16> {
    let (head, _) = answer.split_once("\r\n\r\n")?;
    head.contains("\r\nConnection: close")
        .then(|| answer.get(9..12)?.parse().ok())
        .flatten()
}

#[test]
fn sigterm_with_a_silent_echo_service_answers_every_request_read_and_exits_0_in_time_five_times() {
    let data = TempDir::new("silent-backend");
    let data_dir = data.path().display().to_string();
    let echo = Process::start(ECHO_SERVICE, free_port(), &[("DATA_DIR", &data_dir)]);
    let echo_pid = echo.child.id().to_string();
    let signal_echo = |signal: &str| {
        let sent = Command::new("kill").args([signal, &echo_pid]).status();
        assert!(sent.is_ok_and(|status| status.success()), "kill {signal}");
    };
    for run in 0..5 {
        let mut broker = Process::start(BROKER, free_port(), &[("SERVICE_BASE", &echo.url)]);
        // Sent whole before the stop; sent whole just after it; a head begun before it and
        // completed 4 s into it.
        let mut before = connect(&broker);
        let mut after = connect(&broker);
        let mut late = connect(&broker);
        let request = provision_request(&format!("late-{run}"));
        let (head_start, rest) = request.split_at(40);
        let rest = rest.to_string();
        late.write_all(head_start.as_bytes()).expect("sent");
        signal_echo("-STOP");
        before
            .write_all(provision_request(&format!("before-{run}")).as_bytes())
            .expect("sent");
        std::thread::sleep(Duration::from_millis(200));
        let pid = broker.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|status| status.success()));
        let stopped_at = Instant::now();
        std::thread::sleep(Duration::from_millis(200));
        let _ = after.write_all(provision_request(&format!("after-{run}")).as_bytes());
        let late_writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(4).saturating_sub(stopped_at.elapsed()));
            let _ = late.write_all(rest.as_bytes());
            read_all(&mut late)
        });
        let answers = [read_all(&mut before), read_all(&mut after)];
        let late_answer = late_writer.join().expect("the late client ends");
        let (status, took) = wait_for_exit(&mut broker, stopped_at);
        println!("run {run}: {status}, {took:?} after SIGTERM");
        signal_echo("-CONT");
        let log = broker.log();
        assert_eq!(status.code(), Some(0), "run {run}: {log}");
        assert!(
            took < EXITS_WITHIN,
            "run {run}: exited {took:?} after SIGTERM: {log}"
        );
        // The echo service's 504; or, on a machine so loaded that the 5 s took longer, the
        // stop's 503 in the handler's place. Never silence.
        for (which, answer) in ["before", "after"].iter().zip(&answers) {
            let status = closing_status(answer);
            let unfinished =
                status == Some(503) && answer.contains("could not be finished in time");
            assert!(
                status == Some(504) || unfinished,
                "run {run}, sent {which} the stop: {answer}\n{log}"
            );
        }
        assert_eq!(
            closing_status(&late_answer),
            Some(503),
            "run {run}: {late_answer}"
        );
        assert_eq!(broker.stderr(), "", "run {run}");
    }
}

/// A fake echo service that answers each request's head after `head_after`, then sends its
/// body a byte every half second: slow enough that the broker's handler cannot finish
/// before a stop's answers are due.
fn slow_backend(head_after: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
    let port = listener.local_addr().expect("it has an address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                if let Ok(clone) = stream.try_clone() {
                    let _ = read_http_message(&mut BufReader::new(clone));
                }
                std::thread::sleep(head_after);
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n";
                let _ = stream.write_all(head.as_bytes());
                for _ in 0..40 {
                    if stream.write_all(b" ").is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            });
        }
    });
    port
}

#[test]
fn sigterm_while_a_handler_cannot_finish_in_time_answers_503_in_its_place() {
    let backend = format!(
        "http://127.0.0.1:{}",
        slow_backend(Duration::from_millis(4_800))
    );
    for run in 0..2 {
        let mut broker = Process::start(BROKER, free_port(), &[("SERVICE_BASE", &backend)]);
        let mut client = connect(&broker);
        let pid = broker.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|status| status.success()));
        let stopped_at = Instant::now();
        // Read while there is time for the echo service's 5 s; its slow answer takes longer.
        std::thread::sleep(Duration::from_millis(200));
        client
            .write_all(provision_request(&format!("slow-{run}")).as_bytes())
            .expect("sent");
        let answer = read_all(&mut client);
        let (status, took) = wait_for_exit(&mut broker, stopped_at);
        let log = broker.log();
        assert_eq!(status.code(), Some(0), "run {run}: {log}");
        assert!(
            took < EXITS_WITHIN,
            "run {run}: exited {took:?} after SIGTERM: {log}"
        );
        assert_eq!(closing_status(&answer), Some(503), "run {run}: {answer}");
        assert!(answer.contains("could not be finished in time"), "{answer}");
        assert!(
            log.contains("answered 1 requests with 503"),
            "run {run}: {log}"
        );
    }
}

/// Catalog requests on one keep-alive connection, each with an identity of its own, until
/// the connection ends (the stop) or `give_up`; the identities answered 200.
fn catalogs_until_stopped(port: u16, client: usize, give_up: Instant) -> Vec<String> {
    let mut answered = Vec::new();
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return answered;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
    let Ok(mut writer) = stream.try_clone() else {
        return answered;
    };
    let mut reader = BufReader::new(stream);
    for n in 0..100_000 {
        if Instant::now() > give_up {
            break;
        }
        let identity = format!("logged-{client}-{n}");
        let request = format!(
            "GET /v2/catalog HTTP/1.1\r\nHost: x\r\n{BROKER_CREDENTIAL_LINES}X-Broker-API-Request-Identity: {identity}\r\n\r\n"
        );
        if writer.write_all(request.as_bytes()).is_err() {
            break;
        }
        match read_http_message(&mut reader) {
            Some(answer) if answer.starts_with(b"HTTP/1.1 200 ") => answered.push(identity),
            _ => break,
        }
    }
    answered
}

/// A busy server writes its log in batches: a clean stop still writes every line. Sixteen
/// clients fetch the catalog as fast as they can until SIGTERM; every request answered 200
/// has its line in the log, whole, and the stop's own lines come after them.
#[test]
fn sigterm_under_load_loses_no_log_line() {
    let data = TempDir::new("logged");
    let data_dir = data.path().display().to_string();
    let echo_port = free_port().to_string();
    let mut broker = Process::start(
        BROKER,
        free_port(),
        &[
            ("ECHO_PORT", echo_port.as_str()),
            ("DATA_DIR", data_dir.as_str()),
        ],
    );
    let give_up = Instant::now() + Duration::from_secs(20);
    let answered: Vec<String> = std::thread::scope(|scope| {
        let port = broker.port;
        let clients: Vec<_> = (0..16)
            .map(|client| scope.spawn(move || catalogs_until_stopped(port, client, give_up)))
            .collect();
        std::thread::sleep(Duration::from_millis(800));
        let (status, _) = terminate(&mut broker);
        assert_eq!(status.code(), Some(0), "{}", broker.log());
        clients
            .into_iter()
            .flat_map(|client| client.join().unwrap_or_default())
            .collect()
    });
    assert!(answered.len() > 100, "only {} answered", answered.len());
    let log = broker.log();
    assert!(
        log.ends_with('\n'),
        "the last line is cut: {:?}",
        log.lines().last()
    );
    let logged: std::collections::HashSet<&str> = log
        .lines()
        .filter(|line| line.contains(" INFO  [broker] GET /v2/catalog 200 "))
        .filter_map(|line| line.split("request_identity=").nth(1))
        .collect();
    let missing: Vec<&String> = answered
        .iter()
        .filter(|identity| !logged.contains(identity.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered requests have no log line, e.g. {:?}",
        missing.len(),
        answered.len(),
        missing.first()
    );
    let stopped = log.find("broker: stopped").expect("the stop is logged");
    let last_request = log
        .rfind("GET /v2/catalog 200")
        .expect("requests are logged");
    assert!(
        last_request < stopped,
        "a request's line came after the stop's"
    );
}
