//! HTTP/1.1 connections as platforms use them, and as attackers abuse them: keep-alive and
//! pipelining, refusals that keep the connection, `100 Continue`, deadlines over whole heads
//! and bodies, slots that no client can hoard, and running out of file descriptors. Each
//! test goes at both servers of one running system (the broker and its echo service).

mod common;
use common::*;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const HEALTH: &str = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

/// One answer as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then_some(value.trim())
        })
    }

    fn closes(&self) -> bool {
        self.header("Connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"))
    }
}

/// A client connection that reads answers one at a time.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn open(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("the server accepts");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("a timeout");
        Client {
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("sent");
    }

    /// The next answer; with `head_only`, its body is not read (an answer to HEAD).
    fn read(&mut self, head_only: bool) -> Option<Answer> {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let status = head.get(9..12)?.parse().ok()?;
        let mut answer = Answer {
            status,
            head,
            body: Vec::new(),
        };
        let length: usize = answer
            .header("Content-Length")
            .and_then(|length| length.parse().ok())
            .unwrap_or(0);
        if !head_only && status >= 200 {
            answer.body = vec![0; length];
            self.reader.read_exact(&mut answer.body).ok()?;
        }
        Some(answer)
    }

    fn answer(&mut self) -> Answer {
        self.read(false).expect("an answer")
    }

    /// Whether the server closed the connection (the next read ends the stream).
    fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0) | Err(_))
    }
}

#[test]
fn keep_alive_pipelining_head_and_http_1_0_follow_http_1_1() {
    let system = System::start_with_known_echo_credentials(&[]);
    for (name, port, _) in system.servers() {
        let mut client = Client::open(port);
        client.send(HEALTH.repeat(50).as_bytes());
        for n in 0..50 {
            let answer = client.answer();
            assert_eq!(answer.status, 200, "{name}, answer {n}: {answer:?}");
            assert!(answer
                .header("Date")
                .is_some_and(|date| date.ends_with(" GMT")));
            assert!(answer.header("Content-Length").is_some(), "{answer:?}");
            assert!(!answer.closes(), "{name}: {answer:?}");
        }
        // HEAD has GET's headers, its length included, and no body: the GET that follows
        // on the same connection is read right after the HEAD answer's blank line.
        client.send(format!("HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n{HEALTH}").as_bytes());
        let head = client.read(true).expect("an answer to HEAD");
        let get = client.answer();
        assert_eq!((head.status, get.status), (200, 200), "{name}");
        let length = get.body.len().to_string();
        assert_eq!(
            head.header("Content-Length"),
            Some(length.as_str()),
            "{name}"
        );

        let mut old = Client::open(port);
        old.send(b"GET /health HTTP/1.0\r\n\r\n");
        assert!(old.answer().closes(), "{name}: HTTP/1.0 closes by default");
        assert!(old.is_closed(), "{name}");
        let mut kept = Client::open(port);
        let keep_alive = b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        kept.send(keep_alive);
        let answer = kept.answer();
        assert_eq!(answer.header("Connection"), Some("keep-alive"), "{name}");
        kept.send(keep_alive);
        assert_eq!(kept.answer().status, 200, "{name}");
    }
}

#[test]
fn continue_is_sent_only_after_admission_and_odd_targets_get_400() {
    let system = System::start_with_known_echo_credentials(&[]);
    for (name, port, credentials) in system.servers() {
        let mut refused = Client::open(port);
        refused.send(b"PUT /v2/service_instances/x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000000000\r\n\r\n");
        let answer = refused.answer();
        assert_eq!(
            answer.status, 401,
            "{name}: no 100 Continue first: {answer:?}"
        );
        assert!(answer.closes(), "{name}: the body was never invited");

        let mut admitted = Client::open(port);
        admitted.send(format!("PUT /v2/service_instances/expect-{name} HTTP/1.1\r\nHost: x\r\n{credentials}Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", PROVISION_ECHO.len()).as_bytes());
        assert_eq!(
            admitted.read(true).map(|answer| answer.status),
            Some(100),
            "{name}"
        );
        admitted.send(PROVISION_ECHO.as_bytes());
        let answer = admitted.answer();
        assert!(answer.status >= 200, "{name}: {answer:?}");

        for target in [
            "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
            "GET example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET http://x/health HTTP/1.1\r\nHost: x\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            let mut client = Client::open(port);
            client.send(target.as_bytes());
            let answer = client.answer();
            assert_eq!(answer.status, 400, "{name}: {target:?}");
            assert!(answer.closes(), "{name}: {target:?}");
        }
    }
    assert_eq!(system.broker.stderr(), "", "nothing is written to stderr");
}

#[test]
fn a_refusal_does_not_cost_the_connection() {
    let system = System::start_with_known_echo_credentials(&[]);
    let mut client = Client::open(system.broker.port);
    let patch = |headers: &str, body: &str| {
        format!(
            "PATCH /v2/service_instances/kept HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let basic_only = "Authorization: Basic dXNlcjpwYXNz\r\n";
    let steps = [
        (patch("", "{}"), 401),
        (patch(BROKER_CREDENTIAL_LINES, "{\"service_id\":"), 400),
        (patch(basic_only, "{}"), 400),
        (
            patch(&format!("{basic_only}X-Broker-API-Version: 1.0\r\n"), "{}"),
            412,
        ),
        (
            patch(BROKER_CREDENTIAL_LINES, r#"{"service_id":"echo_service"}"#),
            404,
        ),
        (
            format!("GET /v2/catalog HTTP/1.1\r\nHost: x\r\n{BROKER_CREDENTIAL_LINES}\r\n"),
            200,
        ),
    ];
    for (request, status) in steps {
        client.send(request.as_bytes());
        let answer = client.answer();
        assert_eq!(answer.status, status, "{request:?}: {answer:?}");
        assert!(!answer.closes(), "{request:?}: {answer:?}");
    }
    // The same on the echo service, and with a chunked body.
    let (_, echo_port, _) = system.servers()[1];
    let mut client = Client::open(echo_port);
    client.send(b"PUT /instances/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
    let refused = client.answer();
    assert_eq!(refused.status, 401, "{refused:?}");
    client.send(HEALTH.as_bytes());
    assert_eq!(client.answer().status, 200);
}

#[test]
fn a_large_body_gets_its_413_every_time() {
    let system = System::start_with_known_echo_credentials(&[]);
    let body = vec![b'x'; 2 << 20];
    for (name, port, credentials) in system.servers() {
        let head = format!(
            "PUT /v2/service_instances/big HTTP/1.1\r\nHost: x\r\n{credentials}Content-Length: {}\r\n\r\n",
            body.len()
        );
        let request = [head.as_bytes(), &body].concat();
        let mut received = 0;
        for _ in 0..150 {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("accepts");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("a timeout");
            let _ = stream.write_all(&request);
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            let answer = String::from_utf8_lossy(&answer);
            if answer.starts_with("HTTP/1.1 413 ") && answer.contains("Connection: close\r\n") {
                received += 1;
            }
        }
        assert_eq!(received, 150, "{name}: 413s received");
    }
}

/// Sends `prefix`, then one byte of `filler` every 200 ms (more often than the server's
/// reads wait, so that only a deadline over the whole head or body can stop it), and
/// returns how long after the first byte the server answered, and with what.
fn trickle_until_answered(port: u16, prefix: &str, filler: u8) -> (Duration, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("accepts");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("a timeout");
    let started = Instant::now();
    let _ = stream.write_all(prefix.as_bytes());
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(30) {
        let mut buffer = [0u8; 4096];
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => answer.extend_from_slice(&buffer[..count]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if !answer.is_empty() {
                    break;
                }
                let _ = stream.write_all(&[filler]);
            }
            Err(_) => break,
        }
    }
    (
        started.elapsed(),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

#[test]
fn deadlines_cover_whole_heads_and_bodies_and_idle_connections_close_silently() {
    let system = System::start_with_known_echo_credentials(&[]);
    std::thread::scope(|scope| {
        for (name, port, _) in system.servers() {
            scope.spawn(move || {
                let (took, answer) =
                    trickle_until_answered(port, "GET /health HTTP/1.1\r\nX-Slow: ", b'a');
                assert!(answer.starts_with("HTTP/1.1 408 "), "{name}: {answer}");
                assert!(took < Duration::from_secs(16), "{name}: head took {took:?}");
            });
            scope.spawn(move || {
                let chunked =
                    "GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
                let (took, answer) = trickle_until_answered(port, chunked, b'0');
                assert!(answer.starts_with("HTTP/1.1 408 "), "{name}: {answer}");
                assert!(took < Duration::from_secs(16), "{name}: body took {took:?}");
            });
            scope.spawn(move || {
                // Kept idle past the old 10 s timeout: nothing unsolicited, still usable.
                let mut client = Client::open(port);
                client.send(HEALTH.as_bytes());
                assert_eq!(client.answer().status, 200);
                let stream = client.reader.get_ref();
                stream
                    .set_read_timeout(Some(Duration::from_secs(12)))
                    .expect("a timeout");
                let mut byte = [0u8; 1];
                let read = client.reader.read(&mut byte);
                assert!(
                    read.as_ref().is_err_and(|error| matches!(
                        error.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut
                    )),
                    "{name}: an idle connection got {read:?}"
                );
                client.send(HEALTH.as_bytes());
                assert_eq!(client.answer().status, 200, "{name}");
            });
            scope.spawn(move || {
                // A connection that never says anything is closed without a word.
                let mut silent = TcpStream::connect(("127.0.0.1", port)).expect("accepts");
                silent
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("a timeout");
                let started = Instant::now();
                let mut answer = Vec::new();
                let _ = silent.read_to_end(&mut answer);
                assert!(
                    answer.is_empty(),
                    "{name}: {:?}",
                    String::from_utf8_lossy(&answer)
                );
                assert!(started.elapsed() < Duration::from_secs(16), "{name}");
            });
        }
    });
}

// ---------------------------------------------------------------------------------------
// Slots and descriptors
// ---------------------------------------------------------------------------------------

/// A bound on how long a well-behaved request may take while the servers are under attack:
/// one second, plus ten times the slowest of a few requests before the attack, so that a
/// slow machine (a debug build, wine, a loaded CI runner) does not fail the test while a
/// server that makes newcomers wait for a slot (seconds, the attackers' pace) still does.
fn patience(system: &System) -> Duration {
    let slowest = (0..5)
        .map(|n| timed_provision(system, &format!("baseline-{n}")))
        .max()
        .unwrap_or_default();
    Duration::from_secs(1) + slowest * 10
}

/// A full provision (and bind, unbind, deprovision) through the broker; how long its
/// slowest call took.
fn timed_provision(system: &System, instance: &str) -> Duration {
    let instance_url = system.url(&format!("/v2/service_instances/{instance}"));
    let binding_url = format!("{instance_url}/service_bindings/b");
    let steps = [
        ("PUT", instance_url.clone(), Some(PROVISION_ECHO), 201),
        ("PUT", binding_url.clone(), Some(BIND_ECHO), 201),
        ("DELETE", format!("{binding_url}?{ECHO_IDS}"), None, 200),
        ("DELETE", format!("{instance_url}?{ECHO_IDS}"), None, 200),
    ];
    let mut slowest = Duration::ZERO;
    for (method, url, body, status) in steps {
        let started = Instant::now();
        let reply = platform(method, &url, body);
        slowest = slowest.max(started.elapsed());
        assert_eq!(reply.status, status, "{method} {url}: {}", reply.text);
    }
    slowest
}

/// `/health` on both servers and the catalog; the slowest.
fn timed_reads(system: &System) -> Duration {
    let mut slowest = Duration::ZERO;
    for (name, port, _) in system.servers() {
        let started = Instant::now();
        let health = call("GET", &format!("http://127.0.0.1:{port}/health"), &[], None);
        slowest = slowest.max(started.elapsed());
        let status = health.map(|reply| reply.status);
        assert!(matches!(status, Ok(200)), "{name}: /health {status:?}");
    }
    let started = Instant::now();
    assert_eq!(
        platform("GET", &system.url("/v2/catalog"), None).status,
        200
    );
    slowest.max(started.elapsed())
}

fn connect_soon(port: u16) -> Option<TcpStream> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()
}

/// Attackers without credentials, `count` of each kind, reconnecting whenever a server
/// lets them go, until `until`: heads trickled a byte every half second, and keep-alive
/// connections that asked for `/health` once and then sit idle.
fn hoard(port: u16, count: usize, until: Instant, stop: &AtomicBool) {
    let trickler = || {
        let mut stream = connect_soon(port)?;
        stream.write_all(b"GET /health HTTP/1.1\r\nX-Slow: ").ok()?;
        Some(stream)
    };
    let idler = || {
        let mut stream = connect_soon(port)?;
        stream.write_all(HEALTH.as_bytes()).ok()?;
        stream.set_nonblocking(true).ok()?;
        Some(stream)
    };
    let mut tricklers: Vec<Option<TcpStream>> = (0..count).map(|_| trickler()).collect();
    let mut idlers: Vec<Option<TcpStream>> = (0..count).map(|_| idler()).collect();
    while Instant::now() < until && !stop.load(Ordering::SeqCst) {
        for slot in tricklers.iter_mut() {
            let alive = slot
                .as_mut()
                .is_some_and(|stream| stream.write_all(b"a").is_ok());
            if !alive {
                *slot = trickler();
            }
        }
        for slot in idlers.iter_mut() {
            let mut buffer = [0u8; 1024];
            let alive = slot
                .as_mut()
                .is_some_and(|stream| match stream.read(&mut buffer) {
                    Ok(0) => false,
                    Ok(_) => true,
                    Err(error) => error.kind() == ErrorKind::WouldBlock,
                });
            if !alive {
                *slot = idler();
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs `hoard` against both servers while `probe` runs every 300 ms for `length`; the
/// slowest probe.
fn under_attack(
    system: &System,
    count: usize,
    length: Duration,
    probe: impl Fn(usize) -> Duration + Sync,
) -> Duration {
    let until = Instant::now() + length;
    let stop = AtomicBool::new(false);
    let slowest = Mutex::new(Duration::ZERO);
    std::thread::scope(|scope| {
        for (_, port, _) in system.servers() {
            let stop = &stop;
            scope.spawn(move || hoard(port, count, until, stop));
        }
        // Let the attackers take their places first.
        std::thread::sleep(Duration::from_secs(2));
        let mut round = 0;
        while Instant::now() < until {
            let took = probe(round);
            let mut slowest = slowest
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            *slowest = slowest.max(took);
            round += 1;
            std::thread::sleep(Duration::from_millis(300));
        }
        stop.store(true, Ordering::SeqCst);
    });
    slowest.into_inner().unwrap_or_default()
}

/// Attackers of each kind per server. Under wine (the Windows check) every socket call of
/// every process goes through one single-threaded wineserver, so 1,024 churning sockets
/// measure wine rather than the servers: a quarter of them there, still half the slots.
const HOARDERS: usize = if cfg!(windows) { 64 } else { 256 };

#[test]
fn slots_cannot_be_hoarded_by_trickling_or_idle_clients() {
    let system = System::start_with_known_echo_credentials(&[]);
    let patience = patience(&system);
    let slowest = under_attack(&system, HOARDERS, Duration::from_secs(30), |round| {
        timed_reads(&system).max(timed_provision(&system, &format!("hoarded-{round}")))
    });
    println!("slowest request under attack: {slowest:?} (patience {patience:?})");
    assert!(
        slowest < patience,
        "a request took {slowest:?} (patience {patience:?})"
    );
}

#[test]
fn with_one_slot_one_trickler_delays_nobody() {
    let system = System::start_with_known_echo_credentials(&[("MAX_CONNECTIONS", "1")]);
    let patience = patience(&system);
    let slowest = under_attack(&system, 1, Duration::from_secs(10), |_| {
        timed_reads(&system)
    });
    println!("slowest request under attack: {slowest:?} (patience {patience:?})");
    assert!(
        slowest < patience,
        "a request took {slowest:?} (patience {patience:?})"
    );
}

/// A request half sent when a newcomer takes its connection's only slot still gets its
/// answer if the rest comes at once: the rest may already be on its way, and a busy machine
/// may simply have been slow to read it. One that never comes whole is let go.
#[test]
fn a_request_arriving_as_its_slot_is_taken_is_answered_if_the_rest_comes_soon() {
    let system = System::start_with_known_echo_credentials(&[("MAX_CONNECTIONS", "1")]);
    for (name, port, _) in system.servers() {
        let mut displaced = Client::open(port);
        displaced.send(b"GET /health HTTP/1.1\r\n");
        // Its first bytes are read (the connection is reading its head) before the newcomer.
        std::thread::sleep(Duration::from_millis(300));
        let mut newcomer = Client::open(port);
        newcomer.send(HEALTH.as_bytes());
        assert_eq!(newcomer.answer().status, 200, "{name}: the newcomer");
        // Past the server's next look at its flags (wire::POLL, 500 ms), within 1 s.
        std::thread::sleep(Duration::from_millis(600));
        displaced.send(b"Host: x\r\n\r\n");
        let answer = displaced.answer();
        assert_eq!(
            answer.status, 200,
            "{name}: the displaced request: {answer:?}"
        );
        assert!(
            answer.closes(),
            "{name}: a displaced connection closes after it"
        );

        let mut abandoned = Client::open(port);
        abandoned.send(b"GET /health HTTP/1.1\r\n");
        std::thread::sleep(Duration::from_millis(300));
        let mut next = Client::open(port);
        next.send(HEALTH.as_bytes());
        assert_eq!(next.answer().status, 200, "{name}: the next newcomer");
        let started = Instant::now();
        let answer = abandoned.answer();
        assert_eq!(answer.status, 503, "{name}: {answer:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{name}");
    }
}

/// The process's CPU time so far (user and system), from /proc.
#[cfg(target_os = "linux")]
fn cpu_time(process: &Process) -> Duration {
    let stat =
        std::fs::read_to_string(format!("/proc/{}/stat", process.child.id())).unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime are the 12th
    // and 13th of them, in clock ticks (100 a second on Linux).
    let ticks: u64 = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

#[cfg(target_os = "linux")]
#[test]
fn running_out_of_descriptors_backs_off_quietly_and_recovers() {
    let data = TempDir::new("descriptors");
    let data_dir = data.path().display().to_string();
    let echo_port = free_port().to_string();
    let env = [
        ("ECHO_PORT", echo_port.as_str()),
        ("DATA_DIR", data_dir.as_str()),
    ];
    let limited = ["sh", "-c", "ulimit -n 256 && exec \"$0\""];
    let broker = Process::start_wrapped(&limited, BROKER, free_port(), &env);
    let warning = broker.log();
    assert!(
        warning.contains("512 connections over 2 servers need about 1088 file descriptors"),
        "the start-up warning counts both servers: {warning}"
    );
    let cpu_before = cpu_time(&broker);
    let started = Instant::now();
    let held: Vec<TcpStream> = (0..1_000)
        .filter_map(|_| connect_soon(broker.port))
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let busy = cpu_time(&broker).saturating_sub(cpu_before);
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        busy.as_secs_f64() < seconds / 2.0,
        "{busy:?} of CPU in {seconds:.1} s with {} connections held: a busy loop",
        held.len()
    );
    drop(held);
    let log = broker.log();
    let failures = log
        .lines()
        .filter(|line| line.contains("cannot accept"))
        .count();
    assert!(
        (failures as f64) <= seconds + 3.0,
        "{failures} lines about accepting in {seconds:.1} s:\n{log}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let health = call("GET", &format!("{}/health", broker.url), &[], None);
        if health.is_ok_and(|reply| reply.status == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not serving 5 s after the connections closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(broker.stderr(), "");
}
