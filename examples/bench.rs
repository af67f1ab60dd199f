//! The benchmark: throughput, latency, memory, start-up time and size of `echo-broker` and
//! `echo-service`, each figure next to three ceilings measured in the same run, all answering
//! the same bytes: a bare oxhttp server and a bare tiny_http 0.12 server (the two HTTP
//! servers the project ran on before its own connection layer, with the settings it ran them
//! with, and no routing, auth or logging), and nginx when it is installed. `--before DIR`
//! adds another build of the broker (say, the last one before a change) to the same rounds.
//!
//! ```text
//! cargo benchmark              # the full run
//! cargo benchmark --quick      # a short run, for a smoke check
//! cargo benchmark --help       # every option
//! ```
//!
//! `cargo benchmark` is an alias (in `.cargo/config.toml`) for
//! `cargo run --release --target-dir target/bench --example bench --`: the benchmark and the
//! release binaries it measures are built in a target directory of their own, so switching
//! between it and the usual builds recompiles nothing. How long each takes is in
//! docs/performance.md.
//!
//! It builds the release binaries first (`cargo build --release --bins`, into the target
//! directory it was itself built in; `--no-build` skips that), copies them into a fresh
//! temporary directory, starts everything it measures on free loopback ports (127.0.0.1
//! only), and stops and removes all of it at the end, also when interrupted (Ctrl-C). Every load
//! loop is bounded in time and in count. The load generator is in this file: one thread per
//! keep-alive HTTP/1.1 connection, each with one request in flight (a closed loop), with a
//! hand-written client so that its own cost stays small and is the same for every server.
//!
//! What runs (all on 127.0.0.1):
//! - `broker`: `echo-broker` with `SERVICE_BASE` pointing at its own `echo-service` process
//!   (the two-app deployment), `LOG_LEVEL=warn`, so their memory is measured apart;
//! - `broker-info`: a second `echo-broker` on the same echo service at the default
//!   `LOG_LEVEL=info` (its log, on standard output, goes to a file), to show what
//!   per-request logging costs;
//! - `broker-10k`: a third pair whose echo service holds 10,000 live instances;
//! - `bare-oxhttp`: this program re-run as a bare oxhttp server (`--serve-bare oxhttp`), with
//!   the servers' settings (a 10 s timeout, at most 256 connections, a thread per
//!   connection), answering `/v2/catalog` with the catalog's bytes and anything else with `{}`;
//! - `bare-tiny_http`: the same on tiny_http 0.12 (`--serve-bare tiny_http`), with the 24
//!   worker threads the broker had when it ran on tiny_http;
//! - `nginx`: the same bytes, from a minimal nginx.conf in the temporary directory (left out,
//!   with its column, when nginx is not installed);
//! - and, for start-up time and one memory figure, `echo-broker` in its default embedded
//!   form (the echo service inside the broker's process).
//!
//! The store phase compares where the echo service keeps its state, in the same rounds as
//! the lifecycle phase, each configuration started afresh every round (a fresh DATA_DIR or
//! a fresh database, new processes) and warmed up before its clock starts:
//! - `journal`: a broker and an echo service with `DATA_DIR` (the two-app deployment);
//! - `postgres`: the same with `DATABASE_URL`;
//! - `postgres-far`: `postgres` with the database a round trip away: the echo service
//!   reaches it through a TCP relay in this program (threads, on 127.0.0.1) that holds
//!   every chunk half of `--db-delay-ms` (0.5 ms by default) in each direction, in order,
//!   at most 1 MiB per direction of a connection; started and stopped with the round;
//! - `postgres-x1-proxied`: one echo service on the database behind a small nginx
//!   (keep-alive upstream) in front of one broker; left out without nginx;
//! - `postgres-x2`: two echo services on one database behind the same kind of nginx (round
//!   robin) in front of one broker, so that `postgres-x2 / postgres-x1-proxied` is what a
//!   second instance brings; without nginx, two broker and echo service pairs with the
//!   connections split between the brokers.
//!
//! For each it reports cycles/s, latencies, errors, the connections its echo services hold
//! to the round's database at the end of the measured window (from `pg_stat_activity`),
//! memory and CPU per cycle (the relay's threads counted apart from the load generator's,
//! and the delay the relay really applied), and the medians of the rounds'
//! ratios `postgres / journal`, `postgres-far / postgres` and
//! `postgres-x2 / postgres-x1-proxied`, each with a target. The phase runs in every run
//! (there is no option to run it alone): `cargo benchmark --quick` is the short way to it.
//!
//! Its cycle is provision, bind, a message to the binding's `uri` with its credentials (as
//! a bound app sends it), unbind, deprovision. PostgreSQL is a throwaway cluster made from
//! the system's packages (`initdb` and `pg_ctl` from `PG_BIN`, else the newest
//! `/usr/lib/postgresql/*/bin`, else `PATH`; through `runuser -u postgres` when running as
//! root) in the temporary directory, listening on 127.0.0.1, with durability on (fsync,
//! synchronous commit), stopped at the end and on Ctrl-C. Without PostgreSQL (or with
//! `--no-postgres`) its columns read n/a and the rest runs as before.
//!
//! Phases run interleaved, round by round, so that noise from other work on the machine hits
//! the server and its ceilings alike; figures are medians over rounds, and ratios are the
//! medians of each round's ratio. A run's connections are opened one after another and each
//! answered once before its clock starts; rates count what finished inside the window.
//! Separately (not with `--quick`), a burst phase opens 16 connections at once after 6 s of
//! idleness and times each one's first answer: each server starts a thread for each new
//! connection, and the broker's own keep-alive connections to its echo service may have gone
//! idle by then; the tiny_http ceiling shows its connection pool's race (a new connection
//! can wait seconds behind idle keep-alive ones). Output: a table, the targets with
//! pass/miss, and one `BENCH key=value ...` line per figure for scripts.
//!
//! With wrk installed (and nginx), each round also runs `wrk -t1 -c16` on the catalog
//! against nginx, `broker` and `broker-info` (the rows `catalog-wrk`): the default
//! configuration measured as a user measures it, with the load generator most people reach
//! for, whose one thread costs less per request than this program's sixteen.
//!
//! The lifecycle phase counts every non-2xx answer and every failed request as an error;
//! `BENCH_DEBUG=1` prints each one as it happens.
//!
//! Profiling: `--drive ADDR --work catalog|lifecycle` runs only the load generator against a
//! broker started by hand (say under `valgrind --tool=callgrind`).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const USAGE: &str = "\
bench: throughput, latency, memory, start-up time and size of echo-broker and echo-service,
next to a bare oxhttp server, a bare tiny_http server and nginx serving the same bytes.

Usage: cargo benchmark [OPTIONS]
  (an alias for: cargo run --release --target-dir target/bench --example bench --)

  --quick            a short run (3 short rounds, fewer starts, no burst phase)
  --rounds N         rounds per phase                                  [5; quick: 3]
  --secs S           seconds per round and server                      [2; quick: 0.5]
  --starts N         start-ups to time, per program                    [7; quick: 3]
  --instances N      live instances for the 'broker-10k' phase         [10000]
  --no-build         use the binaries beside this program (target/bench/release) as they are
  --no-nginx         leave nginx out even when it is installed (its column reads n/a;
                     two echo services on one database then get a broker each)
  --no-postgres      leave PostgreSQL out of the store phase (its columns read n/a)
  --pg-statements    load pg_stat_statements into the cluster and print each statement's
                     calls and time (it costs a little per statement: not for the figures)
  --db-delay-ms MS   the round trip that 'postgres-far' adds between its echo service and
                     the database (half of it each way)                [0.5]
  --db-connections N each echo service's DATABASE_MAX_CONNECTIONS [the echo service's default]
  --before DIR       also measure the binaries in DIR (another build's target/release) as
                     'broker-before', beside this build, in the same rounds
  --drive ADDR       only run the load generator against a broker at ADDR (127.0.0.1:PORT),
                     e.g. one started under valgrind; with --work, --conns and --secs
  --work KIND        catalog, lifecycle, lifecycle-message or burst (with --drive)
                                                                       [catalog]
  --conns N          connections (with --drive)                        [16]
  -h, --help         print this help

BENCH_DEBUG=1 prints every failed request (status or I/O error) as it happens.
With wrk installed (apt-get install wrk) and nginx, each round also runs wrk -t1 -c16 on the
catalog against nginx, broker and broker-info (rows catalog-wrk; target: broker-info, the
default LOG_LEVEL=info, at 0.9x nginx or more).
The ceilings: 'bare-oxhttp' and 'bare-tiny_http' (oxhttp 0.3 and tiny_http 0.12, the HTTP
servers the project ran on before its own, with the settings it ran them with) and 'nginx' (when installed: apt-get install
nginx-light), each answering /v2/catalog with the broker's catalog bytes and all else {}.
Everything listens on 127.0.0.1 only. DATA_DIR and the copies of the binaries live in a
fresh directory under the system's temporary directory (TMPDIR), removed at the end and
when interrupted (Ctrl-C).
The store phase compares the echo service's journal with PostgreSQL: one echo service on
it (postgres), the same through a relay that delays the database (postgres-far), one and two
echo services behind nginx (postgres-x1-proxied, postgres-x2). PostgreSQL is a throwaway
cluster in that directory, from initdb and pg_ctl in PG_BIN, else the newest
/usr/lib/postgresql/*/bin, else PATH (run through 'runuser -u postgres' when the benchmark
runs as root); stopped at the end and on Ctrl-C.
";

/// The idle and body timeout the servers ran with on oxhttp and tiny_http, for their
/// bare-server ceilings.
const OLD_SERVERS_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker's basic-auth pair (user:pass), as the platform sends it.
const AUTHORIZATION: &str = "Basic dXNlcjpwYXNz";
const BROKER_USER: &str = "user";
const BROKER_PASSWORD: &str = "pass";
/// The echo service's management pair in the two-process deployment.
const ECHO_USER: &str = "broker";
const ECHO_PASSWORD: &str = "bench-secret";

const PROVISION_BODY: &str = r#"{"service_id":"echo_service","plan_id":"big_0001","organization_guid":"o","space_guid":"s"}"#;
const BIND_BODY: &str = r#"{"service_id":"echo_service","plan_id":"big_0001","app_guid":"a"}"#;
const IDS_QUERY: &str = "service_id=echo_service&plan_id=big_0001";

/// The connection counts of the catalog phase.
const CATALOG_CONNS: [usize; 3] = [1, 16, 64];
const LIFECYCLE_CONNS: usize = 16;
/// How many connections the burst phase opens at once.
const BURST_CONNS: usize = 16;

/// Hard caps on any one load run, whatever the clock says.
const MAX_REQUESTS_PER_RUN: u64 = 5_000_000;
/// How long a client waits for one answer before counting an error.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to come up.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest response the load generator accepts.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// The worker threads of the bare tiny_http server: the broker's count when it ran on
/// tiny_http (12 per core, at least 24).
const BARE_TINY_HTTP_WORKERS: usize = 24;
/// The labels of the two bare servers, as `--serve-bare` takes them.
const BARE_OXHTTP: &str = "oxhttp";
const BARE_TINY_HTTP: &str = "tiny_http";

/// A bare server started by this program stops by itself after this long, in case the
/// benchmark is killed before it can stop it.
const BARE_SERVER_LIFETIME: Duration = Duration::from_secs(30 * 60);

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    rounds: usize,
    secs: f64,
    starts: usize,
    instances: u64,
    build: bool,
    nginx: bool,
    /// Whether the store phase may start a PostgreSQL cluster.
    postgres: bool,
    /// Load pg_stat_statements into it and report the statements' times.
    pg_statements: bool,
    /// The round trip the relay in front of the database adds for `postgres-far`.
    db_delay: Duration,
    /// Another build's `target/release`, measured beside this one as `broker-before`.
    before: Option<PathBuf>,
    drive: Option<SocketAddr>,
    work: Work,
    conns: usize,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let quick = args.iter().any(|arg| arg == "--quick");
        let mut options = Options {
            quick,
            rounds: if quick { 3 } else { 5 },
            secs: if quick { 0.5 } else { 2.0 },
            starts: if quick { 3 } else { 7 },
            instances: 10_000,
            build: true,
            nginx: true,
            postgres: true,
            pg_statements: false,
            db_delay: DEFAULT_DB_DELAY,
            before: None,
            drive: None,
            work: Work::Catalog,
            conns: LIFECYCLE_CONNS,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match arg.as_str() {
                "--quick" => {}
                "--no-build" => options.build = false,
                "--no-nginx" => options.nginx = false,
                "--no-postgres" => options.postgres = false,
                "--pg-statements" => options.pg_statements = true,
                "--before" => options.before = Some(PathBuf::from(value(arg)?)),
                "--rounds" => {
                    options.rounds = parse_number(&value(arg)?, arg, 1.0, 100.0)? as usize
                }
                "--secs" => options.secs = parse_number(&value(arg)?, arg, 0.1, 600.0)?,
                "--db-delay-ms" => {
                    let millis = parse_number(&value(arg)?, arg, 0.0, 1000.0)?;
                    options.db_delay = Duration::from_secs_f64(millis / 1000.0);
                }
                "--db-connections" => {
                    let connections = parse_number(&value(arg)?, arg, 1.0, 1000.0)? as usize;
                    let _ = DB_CONNECTIONS.set(connections);
                }
                "--starts" => {
                    options.starts = parse_number(&value(arg)?, arg, 1.0, 100.0)? as usize
                }
                "--instances" => {
                    options.instances = parse_number(&value(arg)?, arg, 0.0, 1_000_000.0)? as u64
                }
                "--conns" => options.conns = parse_number(&value(arg)?, arg, 1.0, 1024.0)? as usize,
                "--work" => {
                    options.work = match value(arg)?.as_str() {
                        "catalog" => Work::Catalog,
                        "lifecycle" => Work::Lifecycle,
                        "lifecycle-message" => Work::LifecycleMessage,
                        "burst" => Work::Burst,
                        other => return Err(format!("--work: '{other}' is not {WORK_KINDS}")),
                    }
                }
                "--drive" => {
                    let text = value(arg)?;
                    let address: SocketAddr = text
                        .parse()
                        .map_err(|_| format!("--drive: '{text}' is not IP:PORT"))?;
                    if !address.ip().is_loopback() {
                        return Err(format!("--drive: {address} is not a loopback address"));
                    }
                    options.drive = Some(address);
                }
                other => return Err(format!("unknown option '{other}' (try --help)")),
            }
        }
        Ok(options)
    }
}

/// The round trip between an echo service and its database in `postgres-far`: about what
/// a database in the same data centre, on another host, adds.
const DEFAULT_DB_DELAY: Duration = Duration::from_micros(500);

/// What `--work` takes.
const WORK_KINDS: &str = "catalog, lifecycle, lifecycle-message or burst";

fn parse_number(text: &str, name: &str, low: f64, high: f64) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(number) if (low..=high).contains(&number) => Ok(number),
        _ => Err(format!(
            "{name}: '{text}' is not a number from {low} to {high}"
        )),
    }
}

// ---------------------------------------------------------------------------------------
// The load generator: a keep-alive HTTP/1.1 client and closed-loop runs
// ---------------------------------------------------------------------------------------

/// What each connection does in a loop.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Work {
    /// `GET /v2/catalog`.
    Catalog,
    /// Provision, bind, unbind, deprovision, with fresh ids every cycle.
    Lifecycle,
    /// Provision, bind, a message with the binding's credentials to its `uri`, unbind,
    /// deprovision: every kind of change the echo service's store makes.
    LifecycleMessage,
    /// Provision only, numbered from a shared counter (to fill an echo service).
    Provision,
    /// `--drive` only: open the connections at once, one catalog request each.
    Burst,
}

/// One keep-alive connection and the bytes read past the last response.
struct Client {
    address: SocketAddr,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
    filled: usize,
    body: Vec<u8>,
}

impl Client {
    fn new(address: SocketAddr) -> Client {
        Client {
            address,
            stream: None,
            buffer: vec![0; 16 * 1024],
            filled: 0,
            body: Vec::new(),
        }
    }

    /// Sends one request and reads its response; returns the status. The response body is
    /// in `self.body` afterwards. On an I/O error the connection is dropped, and the next
    /// call opens a new one.
    fn send(&mut self, request: &[u8]) -> io::Result<u16> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.address, Duration::from_secs(2))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
            stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
            self.stream = Some(stream);
            self.filled = 0;
        }
        let result = match self.stream.as_mut() {
            Some(stream) => exchange(
                stream,
                &mut self.buffer,
                &mut self.filled,
                &mut self.body,
                request,
            ),
            None => Err(io::Error::other("no connection")),
        };
        match result {
            Ok((status, keep_alive)) => {
                if !keep_alive {
                    self.stream = None;
                }
                Ok(status)
            }
            Err(error) => {
                self.stream = None;
                Err(error)
            }
        }
    }
}

/// Writes `request`, reads one response (Content-Length or chunked), and returns its status
/// and whether the connection stays open.
fn exchange(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    filled: &mut usize,
    body: &mut Vec<u8>,
    request: &[u8],
) -> io::Result<(u16, bool)> {
    stream.write_all(request)?;
    let head_end = loop {
        if let Some(at) = find(&buffer[..*filled], b"\r\n\r\n") {
            break at + 4;
        }
        read_more(stream, buffer, filled)?;
    };
    let (status, length, chunked, close) = parse_head(&buffer[..head_end])?;
    body.clear();
    let consumed = if chunked {
        read_chunked(stream, buffer, filled, body, head_end)?
    } else {
        let length = match length {
            Some(length) => length,
            None if status == 204 || status == 304 || status < 200 => 0,
            None => return Err(io::Error::other("a response with no length")),
        };
        if head_end + length > MAX_RESPONSE_BYTES {
            return Err(io::Error::other("a response over the size limit"));
        }
        while *filled < head_end + length {
            read_more(stream, buffer, filled)?;
        }
        body.extend_from_slice(&buffer[head_end..head_end + length]);
        head_end + length
    };
    buffer.copy_within(consumed..*filled, 0);
    *filled -= consumed;
    Ok((status, !close))
}

fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>, filled: &mut usize) -> io::Result<()> {
    if *filled == buffer.len() {
        if buffer.len() >= MAX_RESPONSE_BYTES {
            return Err(io::Error::other("a response over the size limit"));
        }
        buffer.resize(buffer.len() * 2, 0);
    }
    let read = stream.read(&mut buffer[*filled..])?;
    if read == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    *filled += read;
    Ok(())
}

/// Status, Content-Length, chunked, Connection: close.
fn parse_head(head: &[u8]) -> io::Result<(u16, Option<usize>, bool, bool)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not an HTTP/1.x response");
    if head.len() < 12 || !head.starts_with(b"HTTP/1.") {
        return Err(bad());
    }
    let status = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|text| text.parse::<u16>().ok())
        .ok_or_else(bad)?;
    let (mut length, mut chunked, mut close) = (None, false, head.starts_with(b"HTTP/1.0"));
    for line in head.split(|&byte| byte == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = String::from_utf8_lossy(value).trim().to_ascii_lowercase();
        if name.eq_ignore_ascii_case(b"content-length") {
            length = Some(value.parse::<usize>().map_err(|_| bad())?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value.contains("chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            close = value.contains("close");
        }
    }
    Ok((status, length, chunked, close))
}

/// Reads a chunked body that starts at `start`; returns where the response ends.
fn read_chunked(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    filled: &mut usize,
    body: &mut Vec<u8>,
    start: usize,
) -> io::Result<usize> {
    let mut at = start;
    loop {
        let line_end = loop {
            if let Some(offset) = find(&buffer[at..*filled], b"\r\n") {
                break at + offset;
            }
            read_more(stream, buffer, filled)?;
        };
        let size_text = String::from_utf8_lossy(&buffer[at..line_end]).to_string();
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a bad chunk size"))?;
        at = line_end + 2;
        if body.len() + size > MAX_RESPONSE_BYTES {
            return Err(io::Error::other("a response over the size limit"));
        }
        while *filled < at + size + 2 {
            read_more(stream, buffer, filled)?;
        }
        if size == 0 {
            return Ok(at + 2);
        }
        body.extend_from_slice(&buffer[at..at + size]);
        at += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The request a connection sends, built into a reused buffer.
/// The bytes of a `GET path` request to `address`.
fn get_request(path: &str, address: SocketAddr) -> Vec<u8> {
    let mut request = Vec::new();
    request_bytes(&mut request, "GET", path, &address.to_string(), None);
    request
}

fn request_bytes(buffer: &mut Vec<u8>, method: &str, path: &str, host: &str, body: Option<&str>) {
    buffer.clear();
    let result = match body {
        Some(body) => write!(
            buffer,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTHORIZATION}\r\n\
             X-Broker-API-Version: 2.17\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        None => write!(
            buffer,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTHORIZATION}\r\n\
             X-Broker-API-Version: 2.17\r\n\r\n"
        ),
    };
    result.expect("a Vec<u8> takes every write");
}

/// What one load run measured.
#[derive(Debug, Default)]
struct Outcome {
    /// From the common start to the last connection's stop.
    elapsed: f64,
    /// From the first connect to the common start (every connection made and answered once).
    setup: f64,
    /// Catalog answers or provisions that were 2xx, or lifecycles whose four answers were.
    operations: u64,
    /// Those of `operations` that ended before the deadline: what the rate counts.
    in_window: u64,
    /// The run's planned length in seconds (the rate's denominator).
    window: f64,
    /// Every request answered or failed.
    requests: u64,
    /// Non-2xx answers plus requests that failed (refused, reset, timed out, garbage).
    errors: u64,
    /// Microseconds per request, by lifecycle step (catalog and provision use index 0; see
    /// [`STEPS`]).
    latencies: [Vec<u32>; 5],
    /// Errors by kind: `status 404`, or the I/O error's kind (`TimedOut`, `UnexpectedEof`...).
    error_kinds: BTreeMap<String, u64>,
}

impl Outcome {
    /// Counts an operation that has just ended.
    fn count(&mut self, ok: bool, deadline: Instant) {
        if ok {
            self.operations += 1;
            if Instant::now() <= deadline {
                self.in_window += 1;
            }
        }
    }

    /// Operations per second within the planned window. A request still running at the
    /// deadline (say one stuck for seconds) makes the run overrun, but neither it nor the
    /// time it overran counts: its connection simply did less in the window.
    fn rate(&self) -> f64 {
        if self.window > 0.0 {
            self.in_window as f64 / self.window
        } else {
            0.0
        }
    }
}

/// The lifecycle steps, by their index in [`Outcome::latencies`].
const STEPS: [&str; 5] = ["provision", "bind", "unbind", "deprovision", "message"];
const MESSAGE_STEP: usize = 4;

/// One run: `conns` connections, each looping `work` until `secs` have passed (or the run
/// has made its share of [`MAX_REQUESTS_PER_RUN`], or a `Provision` counter reaches `limit`).
/// Connection `i` goes to `addresses[i % addresses.len()]` (two brokers share the load).
///
/// The connections are opened one after another before the clock starts, each answered once,
/// so that the rate measures answering, not connecting (opening many connections at once is
/// the `burst` phase's work, see [`first_answers`]).
fn run_load(
    addresses: &[SocketAddr],
    work: Work,
    conns: usize,
    secs: f64,
    limit: u64,
    tag: &str,
) -> Outcome {
    let begun = Instant::now();
    let clients: Vec<Client> = (0..conns)
        .map(|index| {
            let address = addresses[index % addresses.len()];
            let mut client = Client::new(address);
            // A failure here shows up again, as errors, in the loop.
            let _ = client.send(&catalog_request(&address.to_string()));
            client
        })
        .collect();
    let barrier = Arc::new(Barrier::new(conns + 1));
    let counter = Arc::new(AtomicU64::new(0));
    let per_connection = (MAX_REQUESTS_PER_RUN / conns as u64).max(1);
    let duration = Duration::from_secs_f64(secs);
    let (start, results) = std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(index, client)| {
                let barrier = Arc::clone(&barrier);
                let counter = Arc::clone(&counter);
                let tag = format!("{tag}-{index}");
                scope.spawn(move || {
                    barrier.wait();
                    let plan = Plan {
                        work,
                        tag: &tag,
                        deadline: Instant::now() + duration,
                        max_requests: per_connection,
                        counter: &counter,
                        limit,
                    };
                    connection_loop(client, &plan)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<_> = handles
            .into_iter()
            .map(|handle| handle.join().expect("a load thread panicked"))
            .collect();
        (start, results)
    });
    let mut outcome = Outcome::default();
    let mut last = start;
    for (finished, part) in results {
        last = last.max(finished);
        outcome.operations += part.operations;
        outcome.in_window += part.in_window;
        outcome.requests += part.requests;
        outcome.errors += part.errors;
        for (kind, count) in part.error_kinds {
            *outcome.error_kinds.entry(kind).or_default() += count;
        }
        for (all, some) in outcome.latencies.iter_mut().zip(part.latencies) {
            all.extend(some);
        }
    }
    outcome.elapsed = last.duration_since(start).as_secs_f64();
    outcome.setup = start.duration_since(begun).as_secs_f64();
    outcome.window = secs;
    outcome
}

/// What one connection does in a run.
struct Plan<'a> {
    work: Work,
    /// Makes the ids of this connection's instances unique in the whole benchmark.
    tag: &'a str,
    deadline: Instant,
    max_requests: u64,
    /// Numbers `Provision`s across connections, up to `limit`.
    counter: &'a AtomicU64,
    limit: u64,
}

fn connection_loop(mut client: Client, plan: &Plan) -> (Instant, Outcome) {
    let host = client.address.to_string();
    let tag = plan.tag;
    let mut outcome = Outcome::default();
    let capacity = (plan.max_requests as usize).min(256 * 1024);
    outcome.latencies[0].reserve(capacity);
    let mut request = Vec::with_capacity(512);
    let catalog = catalog_request(&host);
    let mut cycle: u64 = 0;
    // The bound app's keep-alive connection to the echo service (LifecycleMessage).
    let mut app: Option<Client> = None;
    while Instant::now() < plan.deadline && outcome.requests < plan.max_requests {
        match plan.work {
            Work::Catalog => {
                let ok = timed(&mut client, &catalog, &mut outcome, 0);
                outcome.count(ok, plan.deadline);
            }
            Work::Burst => break,
            Work::Provision => {
                let number = plan.counter.fetch_add(1, Ordering::Relaxed);
                if number >= plan.limit {
                    break;
                }
                let path = format!("/v2/service_instances/{tag}-{number:08}");
                request_bytes(&mut request, "PUT", &path, &host, Some(PROVISION_BODY));
                let ok = timed(&mut client, &request, &mut outcome, 0);
                outcome.count(ok, plan.deadline);
            }
            Work::Lifecycle => {
                let instance = format!("/v2/service_instances/{tag}-{cycle:08}");
                let binding = format!("{instance}/service_bindings/{tag}-{cycle:08}-b");
                let steps: [(&str, String, Option<&str>); 4] = [
                    ("PUT", instance.clone(), Some(PROVISION_BODY)),
                    ("PUT", binding.clone(), Some(BIND_BODY)),
                    ("DELETE", format!("{binding}?{IDS_QUERY}"), None),
                    ("DELETE", format!("{instance}?{IDS_QUERY}"), None),
                ];
                let mut all_ok = true;
                for (step, (method, path, body)) in steps.iter().enumerate() {
                    request_bytes(&mut request, method, path, &host, *body);
                    all_ok &= timed(&mut client, &request, &mut outcome, step);
                }
                outcome.count(all_ok, plan.deadline);
                cycle += 1;
            }
            Work::LifecycleMessage => {
                let instance = format!("/v2/service_instances/{tag}-{cycle:08}");
                let binding = format!("{instance}/service_bindings/{tag}-{cycle:08}-b");
                let mut all_ok = true;
                request_bytes(&mut request, "PUT", &instance, &host, Some(PROVISION_BODY));
                all_ok &= timed(&mut client, &request, &mut outcome, 0);
                request_bytes(&mut request, "PUT", &binding, &host, Some(BIND_BODY));
                let bound = timed(&mut client, &request, &mut outcome, 1);
                all_ok &= bound;
                match binding_credentials(&client.body).filter(|_| bound) {
                    Some(credentials) => {
                        if app
                            .as_ref()
                            .is_some_and(|app| app.address != credentials.address)
                        {
                            app = None;
                        }
                        let app = app.get_or_insert_with(|| Client::new(credentials.address));
                        message_request(&mut request, &credentials);
                        all_ok &= timed(app, &request, &mut outcome, MESSAGE_STEP);
                    }
                    None => {
                        all_ok = false;
                        outcome.requests += 1;
                        outcome.errors += 1;
                        *outcome
                            .error_kinds
                            .entry("message not sent: no credentials in the bind answer".into())
                            .or_default() += 1;
                    }
                }
                let unbind = format!("{binding}?{IDS_QUERY}");
                request_bytes(&mut request, "DELETE", &unbind, &host, None);
                all_ok &= timed(&mut client, &request, &mut outcome, 2);
                let deprovision = format!("{instance}?{IDS_QUERY}");
                request_bytes(&mut request, "DELETE", &deprovision, &host, None);
                all_ok &= timed(&mut client, &request, &mut outcome, 3);
                outcome.count(all_ok, plan.deadline);
                cycle += 1;
            }
        }
    }
    (Instant::now(), outcome)
}

/// Where a bound app sends its messages, from a bind answer's `credentials.uri`
/// (`http://USER:PASSWORD@127.0.0.1:PORT/echo/INSTANCE/BINDING`).
struct AppCredentials {
    address: SocketAddr,
    host: String,
    path: String,
    authorization: String,
}

const MESSAGE_BODY: &str = r#"{"message":"Hello, echo service"}"#;

/// The credentials of a bind answer, if they name a loopback address.
fn binding_credentials(body: &[u8]) -> Option<AppCredentials> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let uri = answer.get("credentials")?.get("uri")?.as_str()?;
    let rest = uri.strip_prefix("http://")?;
    let (authority, path) = rest.split_at(rest.find('/')?);
    let (login, host) = authority.rsplit_once('@')?;
    let (user, password) = login.split_once(':')?;
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .ok()
            .map(|text| text.into_owned())
    };
    let address: SocketAddr = host.parse().ok()?;
    if !address.ip().is_loopback() {
        return None;
    }
    Some(AppCredentials {
        address,
        host: host.to_string(),
        path: path.to_string(),
        authorization: echo_broker::http::basic_authorization(&decode(user)?, &decode(password)?),
    })
}

/// A bound app's message: `POST uri` with the binding's basic-auth pair.
fn message_request(buffer: &mut Vec<u8>, credentials: &AppCredentials) {
    buffer.clear();
    write!(
        buffer,
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{MESSAGE_BODY}",
        credentials.path,
        credentials.host,
        credentials.authorization,
        MESSAGE_BODY.len()
    )
    .expect("a Vec<u8> takes every write");
}

/// `slowest_ms=.. median_ms=.. unanswered=..` of [`first_answers`].
fn burst_summary(times: &[Option<f64>]) -> String {
    let answered: Vec<f64> = times.iter().flatten().copied().collect();
    let slowest = answered.last().copied().unwrap_or(f64::NAN);
    format!(
        "slowest_ms={} median_ms={} unanswered={}",
        fmt(slowest, 1),
        fmt(median(answered.clone()), 2),
        times.len() - answered.len()
    )
}

/// Opens `conns` connections at once (one thread each, released together) and sends one
/// catalog request on each: the milliseconds each took to be answered, sorted, with
/// `None` for one that failed or was not answered within [`CLIENT_TIMEOUT`].
fn first_answers(address: SocketAddr, conns: usize) -> Vec<Option<f64>> {
    let barrier = Arc::new(Barrier::new(conns));
    let request = catalog_request(&address.to_string());
    let mut times: Vec<Option<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..conns)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let request = &request;
                scope.spawn(move || {
                    barrier.wait();
                    let started = Instant::now();
                    let mut client = Client::new(address);
                    let time = match client.send(request) {
                        Ok(200) => Some(started.elapsed().as_secs_f64() * 1000.0),
                        _ => None,
                    };
                    // Kept open until every connection is answered, as a platform's
                    // keep-alive connections would be: a closing one frees its thread.
                    (time, client)
                })
            })
            .collect();
        let results: Vec<(Option<f64>, Client)> = handles
            .into_iter()
            .map(|handle| handle.join().expect("a burst thread panicked"))
            .collect();
        results.into_iter().map(|(time, _client)| time).collect()
    });
    times.sort_by(|a, b| match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    times
}

fn catalog_request(host: &str) -> Vec<u8> {
    let mut request = Vec::new();
    request_bytes(&mut request, "GET", "/v2/catalog", host, None);
    request
}

/// Sends one request, records its latency, and tells whether it was answered 2xx.
fn timed(client: &mut Client, request: &[u8], outcome: &mut Outcome, step: usize) -> bool {
    let started = Instant::now();
    let result = client.send(request);
    let micros = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
    outcome.requests += 1;
    outcome.latencies[step].push(micros);
    let ok = matches!(result, Ok(status) if (200..300).contains(&status));
    if !ok {
        outcome.errors += 1;
        let kind = match &result {
            Ok(status) => format!("status {status}"),
            Err(error) => format!("{:?}", error.kind()),
        };
        if std::env::var_os("BENCH_DEBUG").is_some() {
            eprintln!(
                "DEBUG error {kind} at request {} after {micros} us",
                outcome.requests
            );
        }
        *outcome.error_kinds.entry(kind).or_default() += 1;
        if result.is_err() {
            // A refused or broken connection fails fast; do not spin on it.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    ok
}

/// The value at quantile `q` of `values` (sorted in place), in milliseconds.
fn quantile_ms(values: &mut [u32], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    f64::from(values[rank - 1]) / 1000.0
}

// ---------------------------------------------------------------------------------------
// Processes: the binaries, the bare server, nginx
// ---------------------------------------------------------------------------------------

/// A child process that is killed when dropped.
struct Process {
    name: String,
    child: Child,
    address: SocketAddr,
    log: PathBuf,
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx, stopped with `nginx -s stop` (its workers would outlive a killed master).
struct Nginx {
    process: Process,
    binary: PathBuf,
    prefix: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new(&self.binary)
            .args(nginx_args(&self.prefix))
            .args(["-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn nginx_args(prefix: &Path) -> Vec<String> {
    let text = |path: PathBuf| path.display().to_string();
    vec![
        "-p".into(),
        text(prefix.to_path_buf()),
        "-e".into(),
        text(prefix.join("error.log")),
        "-c".into(),
        text(prefix.join("nginx.conf")),
    ]
}

/// Free loopback ports, all picked before any is released so they differ.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port"))
        .collect();
    listeners
        .iter()
        .map(|listener| {
            listener
                .local_addr()
                .expect("a bound listener has an address")
                .port()
        })
        .collect()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn spawn(name: &str, binary: &Path, env: &[(&str, String)], log: PathBuf, port: u16) -> Process {
    let mut command = Command::new(binary);
    for variable in echo_broker::settings::ENVIRONMENT_VARIABLES {
        command.env_remove(variable);
    }
    // A bound database or a platform in this program's environment would change where
    // the echo services keep their state.
    command
        .env_remove("VCAP_SERVICES")
        .env_remove("VCAP_APPLICATION");
    command.envs(env.iter().map(|(key, value)| (*key, value.as_str())));
    let log_file = fs::File::create(&log).expect("cannot create a log file in the temp dir");
    // The servers log to standard output (start-up failures go to standard error): both
    // into the one file, so that `broker-info` pays for writing a
    // real log and a failed start shows why.
    let log_copy = log_file
        .try_clone()
        .expect("cannot share the log file between stdout and stderr");
    let child = command
        .stdin(Stdio::null())
        .stdout(log_copy)
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
    Process {
        name: name.to_string(),
        child,
        address: loopback(port),
        log,
    }
}

/// Waits until `GET path` on the process answers 200; panics with its log if it does not.
fn wait_ready(process: &mut Process, path: &str) -> Duration {
    let started = Instant::now();
    let request = get_request(path, process.address);
    while started.elapsed() < READY_TIMEOUT {
        if let Ok(Some(status)) = process.child.try_wait() {
            fail_with_log(process, &format!("exited ({status}) while starting"));
        }
        let mut client = Client::new(process.address);
        if let Ok(200) = client.send(&request) {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    fail_with_log(process, "did not answer 200 in time")
}

fn fail_with_log(process: &Process, what: &str) -> ! {
    let log = fs::read_to_string(&process.log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    panic!(
        "{} {what}; its log ({}):\n{}",
        process.name,
        process.log.display(),
        tail.join("\n")
    )
}

struct Binaries {
    broker: PathBuf,
    echo: PathBuf,
    /// The originals in the release directory, for their sizes.
    broker_original: PathBuf,
    echo_original: PathBuf,
}

/// An echo service (own process) and a broker in front of it.
struct Pair {
    echo: Process,
    broker: Process,
}

/// A DATA_DIR that only its owner may read (the echo service warns about any other).
fn create_data_dir(path: &Path) {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(path)
        .expect("cannot create a DATA_DIR in the temp dir");
}

/// Where an echo service keeps its state.
enum EchoStore<'a> {
    DataDir(&'a Path),
    /// A `DATABASE_URL`.
    Database(&'a str),
}

/// The environment of every echo service process this program starts, in one place, so a
/// setting the echo service gains (a database connection budget, say) is added here once.
/// `--db-connections`: the echo services' `DATABASE_MAX_CONNECTIONS`, when given (set once,
/// while the options are read).
static DB_CONNECTIONS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn echo_environment(port: u16, store: EchoStore, log_level: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("PORT", port.to_string()),
        ("HOST", "127.0.0.1".into()),
        ("ECHO_USERNAME", ECHO_USER.into()),
        ("ECHO_PASSWORD", ECHO_PASSWORD.into()),
        ("LOG_LEVEL", log_level.into()),
    ];
    match store {
        EchoStore::DataDir(data) => env.push(("DATA_DIR", data.display().to_string())),
        EchoStore::Database(url) => {
            env.push(("DATABASE_URL", url.to_string()));
            if let Some(connections) = DB_CONNECTIONS.get() {
                env.push(("DATABASE_MAX_CONNECTIONS", connections.to_string()));
            }
        }
    }
    env
}

/// An echo service keeping its state in a fresh DATA_DIR, or in `database_url`.
fn start_echo(
    binaries: &Binaries,
    dir: &Path,
    name: &str,
    port: u16,
    database_url: Option<&str>,
) -> Process {
    let data = dir.join(format!("{name}-data"));
    let store = match database_url {
        Some(url) => EchoStore::Database(url),
        None => {
            create_data_dir(&data);
            EchoStore::DataDir(&data)
        }
    };
    let env = echo_environment(port, store, "warn");
    let mut echo = spawn(
        name,
        &binaries.echo,
        &env,
        dir.join(format!("{name}.log")),
        port,
    );
    wait_ready(&mut echo, "/health");
    echo
}

fn start_broker(
    binaries: &Binaries,
    dir: &Path,
    name: &str,
    port: u16,
    echo_port: u16,
    log_level: &str,
) -> Process {
    let mut broker = spawn(
        name,
        &binaries.broker,
        &[
            ("PORT", port.to_string()),
            ("HOST", "127.0.0.1".into()),
            ("BROKER_USERNAME", BROKER_USER.into()),
            ("BROKER_PASSWORD", BROKER_PASSWORD.into()),
            ("SERVICE_BASE", format!("http://127.0.0.1:{echo_port}")),
            ("ECHO_USERNAME", ECHO_USER.into()),
            ("ECHO_PASSWORD", ECHO_PASSWORD.into()),
            ("LOG_LEVEL", log_level.into()),
        ],
        dir.join(format!("{name}.log")),
        port,
    );
    wait_ready(&mut broker, "/health");
    broker
}

fn start_pair(binaries: &Binaries, dir: &Path, name: &str) -> Pair {
    let ports = free_ports(2);
    let echo = start_echo(binaries, dir, &format!("{name}-echo"), ports[1], None);
    let broker = start_broker(binaries, dir, name, ports[0], ports[1], "warn");
    Pair { echo, broker }
}

/// The broker in its default form, the echo service inside it.
fn spawn_embedded(binaries: &Binaries, dir: &Path, name: &str, log_level: &str) -> Process {
    let ports = free_ports(2);
    let data = dir.join(format!("{name}-data"));
    create_data_dir(&data);
    spawn(
        name,
        &binaries.broker,
        &[
            ("PORT", ports[0].to_string()),
            ("HOST", "127.0.0.1".into()),
            ("BROKER_USERNAME", BROKER_USER.into()),
            ("BROKER_PASSWORD", BROKER_PASSWORD.into()),
            ("ECHO_PORT", ports[1].to_string()),
            ("DATA_DIR", data.display().to_string()),
            ("LOG_LEVEL", log_level.into()),
        ],
        dir.join(format!("{name}.log")),
        ports[0],
    )
}

/// This program again, as a bare server of the catalog bytes: `kind` is [`BARE_OXHTTP`] or
/// [`BARE_TINY_HTTP`].
fn start_bare(dir: &Path, catalog_file: &Path, kind: &str) -> Process {
    let exe = std::env::current_exe().expect("cannot find this program's own path");
    let port = free_ports(1)[0];
    let name = format!("bare-{kind}");
    let log = dir.join(format!("{name}.log"));
    let log_file = fs::File::create(&log).expect("cannot create a log file in the temp dir");
    let child = Command::new(exe)
        .arg("--serve-bare")
        .arg(kind)
        .arg(port.to_string())
        .arg(catalog_file)
        // The bare server stops when this pipe closes, that is when the benchmark ends.
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start the {name} server: {error}"));
    let mut process = Process {
        name,
        child,
        address: loopback(port),
        log,
    };
    wait_ready(&mut process, "/v2/catalog");
    process
}

/// `--serve-bare oxhttp|tiny_http PORT FILE`: answers `/v2/catalog` with FILE's bytes and
/// anything else with `{}`, with no routing, auth or logging.
fn serve_bare(args: &[String]) {
    let (Some(kind), Some(port), Some(file)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: bench --serve-bare oxhttp|tiny_http PORT CATALOG_FILE");
        std::process::exit(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("bench --serve-bare: '{port}' is not a port");
        std::process::exit(2);
    };
    let catalog = fs::read(file).expect("cannot read the catalog file");
    std::thread::spawn(|| {
        // Stop with the benchmark: its end closes our standard input.
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        std::process::exit(0);
    });
    std::thread::spawn(|| {
        std::thread::sleep(BARE_SERVER_LIFETIME);
        std::process::exit(0);
    });
    match kind.as_str() {
        BARE_OXHTTP => serve_bare_oxhttp(port, catalog),
        BARE_TINY_HTTP => serve_bare_tiny_http(port, catalog),
        other => {
            eprintln!("bench --serve-bare: '{other}' is not oxhttp or tiny_http");
            std::process::exit(2);
        }
    }
}

/// oxhttp as the servers ran it before their own connection layer: the same timeout and
/// connection cap, a thread per connection; oxhttp reads (drains) any body itself.
fn serve_bare_oxhttp(port: u16, catalog: Vec<u8>) {
    use oxhttp::model::header::CONTENT_TYPE;
    use oxhttp::model::{Body, Response};
    let catalog: &'static [u8] = Box::leak(catalog.into_boxed_slice());
    let server = oxhttp::Server::new(move |request| {
        let body: &'static [u8] = if request.uri().path() == "/v2/catalog" {
            catalog
        } else {
            b"{}"
        };
        Response::builder()
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("a valid response")
    })
    .bind(loopback(port))
    .with_global_timeout(OLD_SERVERS_TIMEOUT)
    .with_max_concurrent_connections(echo_broker::server::DEFAULT_MAX_CONNECTIONS);
    let listening = server
        .spawn()
        .expect("cannot listen for the bare oxhttp server");
    let _ = listening.join();
    std::process::exit(1);
}

/// tiny_http 0.12 as the servers ran it before oxhttp (commit e0ffaf1, `http::bind`):
/// [`BARE_TINY_HTTP_WORKERS`] threads taking requests from the server's queue (tiny_http
/// adds a thread per open connection), on a listening socket with TCP_NODELAY, 10 s
/// timeouts and a backlog of 1024 (accepted connections inherit them), and a loopback
/// connect every 25 ms that kept a pool thread free for new connections.
fn serve_bare_tiny_http(port: u16, catalog: Vec<u8>) {
    let address = loopback(port);
    let listener = tiny_http_listener(address).expect("cannot listen for the bare server");
    let server = Arc::new(
        tiny_http::Server::from_listener(listener, None).expect("cannot serve for the bare server"),
    );
    std::thread::spawn(move || loop {
        std::thread::sleep(TINY_HTTP_HEARTBEAT);
        let _ = TcpStream::connect_timeout(&address, Duration::from_secs(1));
    });
    let content_type =
        tiny_http::Header::from_bytes("Content-Type", "application/json").expect("a valid header");
    let workers: Vec<_> = (0..BARE_TINY_HTTP_WORKERS)
        .map(|_| {
            let server = Arc::clone(&server);
            let catalog = catalog.clone();
            let content_type = content_type.clone();
            std::thread::spawn(move || loop {
                let Ok(mut request) = server.recv() else {
                    std::process::exit(1);
                };
                let body = if request.url() == "/v2/catalog" {
                    catalog.clone()
                } else {
                    let _ = io::copy(request.as_reader(), &mut io::sink());
                    b"{}".to_vec()
                };
                let response =
                    tiny_http::Response::from_data(body).with_header(content_type.clone());
                let _ = request.respond(response);
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}

/// How often the bare tiny_http server knocks on its own door (as the servers did).
const TINY_HTTP_HEARTBEAT: Duration = Duration::from_millis(25);

/// The listening socket of the servers on tiny_http: without TCP_NODELAY, small answers
/// wait for the client's delayed ACK (about 40 ms each on Linux).
fn tiny_http_listener(address: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_read_timeout(Some(OLD_SERVERS_TIMEOUT))?;
    socket.set_write_timeout(Some(OLD_SERVERS_TIMEOUT))?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn find_nginx() -> Option<PathBuf> {
    find_program("nginx")
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

// ---------------------------------------------------------------------------------------
// wrk
// ---------------------------------------------------------------------------------------

/// The catalog as wrk measures it: its threads and connections.
const WRK_THREADS: usize = 1;
const WRK_CONNS: usize = 16;

/// One round of `wrk -t1 -c16` on the catalog against each of `targets`, the order rotated
/// each round as in [`run_rounds`]; each sample under `catalog-wrk`.
fn wrk_round(
    results: &mut Results,
    wrk: &Path,
    targets: &[Target],
    options: &Options,
    round: usize,
) {
    for offset in 0..targets.len() {
        let target = &targets[(offset + round) % targets.len()];
        match measure_with_wrk(wrk, target, options.secs) {
            Ok(sample) => results
                .entry(("catalog-wrk", WRK_CONNS, target.label))
                .or_default()
                .push(sample),
            Err(problem) => eprintln!(
                "  note: wrk on {}, round {}: {problem}",
                target.label,
                round + 1
            ),
        }
    }
}

/// `wrk -t1 -c16 --latency` on `GET /v2/catalog` for `secs` (whole seconds, at least 1),
/// with the broker's headers, and the server's CPU time meanwhile.
fn measure_with_wrk(wrk: &Path, target: &Target, secs: f64) -> Result<Sample, String> {
    let seconds = secs.ceil().max(1.0) as u64;
    let cpu_before = total_cpu(&target.pids);
    let mut child = Command::new(wrk)
        .args([
            format!("-t{WRK_THREADS}"),
            format!("-c{WRK_CONNS}"),
            format!("-d{seconds}s"),
            "--latency".into(),
            "-H".into(),
            format!("Authorization: {AUTHORIZATION}"),
            "-H".into(),
            "X-Broker-API-Version: 2.17".into(),
            format!("http://{}/v2/catalog", target.address),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| format!("cannot start {}: {error}", wrk.display()))?;
    let mut output = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        // wrk prints its report when its run ends: this read ends with it.
        let _ = stdout.read_to_string(&mut output);
    }
    let deadline = Instant::now() + Duration::from_secs(seconds + 15);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("wrk did not end in time".into());
            }
        }
    }
    let cpu_after = total_cpu(&target.pids);
    parse_wrk(&output, seconds as f64, cpu_before.zip(cpu_after))
}

/// A sample from wrk's report: the rate, p50 and p99, and errors (socket errors and
/// answers other than 2xx or 3xx).
fn parse_wrk(report: &str, secs: f64, cpu: Option<(f64, f64)>) -> Result<Sample, String> {
    let field = |prefix: &str| {
        report
            .lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::trim)
    };
    let rate: f64 = field("Requests/sec:")
        .and_then(|rate| rate.parse().ok())
        .ok_or_else(|| format!("no rate in wrk's report: {report}"))?;
    let latency_ms = |percentile: &str| {
        field(percentile)
            .and_then(wrk_duration_ms)
            .unwrap_or(f64::NAN)
    };
    let socket_errors: u64 = field("Socket errors:").map_or(0, |errors| {
        errors
            .split(',')
            .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
            .sum()
    });
    let not_2xx: u64 = field("Non-2xx or 3xx responses:")
        .and_then(|count| count.parse().ok())
        .unwrap_or(0);
    let requests = (rate * secs).round() as u64;
    Ok(Sample {
        rate,
        p50: latency_ms("50%"),
        p99: latency_ms("99%"),
        max: f64::NAN,
        step_p50: [f64::NAN; 5],
        step_p99: [f64::NAN; 5],
        operations: requests,
        errors: socket_errors + not_2xx,
        requests,
        error_kinds: BTreeMap::new(),
        elapsed: secs,
        setup: 0.0,
        cpu_us: cpu
            .map(|(before, after)| (after - before) * 1e6 / requests.max(1) as f64)
            .filter(|_| requests > 0),
        client_cpu_us: None,
    })
}

/// A duration as wrk prints it (`85.00us`, `1.20ms`, `2.00s`), in milliseconds.
fn wrk_duration_ms(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(number) = text.strip_suffix("us") {
        (number, 0.001)
    } else if let Some(number) = text.strip_suffix("ms") {
        (number, 1.0)
    } else if let Some(number) = text.strip_suffix('s') {
        (number, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|value| value * scale)
}

/// nginx serving the catalog file at `/v2/catalog` and `{}` for everything else, with
/// `worker_processes auto` (one per core) and no access log.
fn start_nginx(binary: &Path, dir: &Path, catalog_file: &Path) -> Result<Nginx, String> {
    let prefix = dir.join("nginx");
    fs::create_dir_all(prefix.join("temp")).map_err(|error| error.to_string())?;
    let port = free_ports(1)[0];
    let p = prefix.display();
    let config = format!(
        "worker_processes auto;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    open_file_cache max=16;
    client_body_temp_path {p}/temp/body;
    proxy_temp_path {p}/temp/proxy;
    fastcgi_temp_path {p}/temp/fastcgi;
    uwsgi_temp_path {p}/temp/uwsgi;
    scgi_temp_path {p}/temp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /v2/catalog {{
            default_type application/json;
            alias {catalog};
        }}
        location / {{
            default_type application/json;
            return 200 '{{}}';
        }}
    }}
}}
",
        catalog = catalog_file.display()
    );
    launch_nginx(binary, prefix, &config, port, "/v2/catalog")
}

/// nginx in front of echo services (`upstreams`, their ports): round robin, per request, on
/// keep-alive connections to them; a failed request is not retried on the other one, so
/// the load generator sees it.
fn start_nginx_proxy(
    binary: &Path,
    dir: &Path,
    name: &str,
    upstreams: &[u16],
) -> Result<Nginx, String> {
    let prefix = dir.join(name);
    fs::create_dir_all(prefix.join("temp")).map_err(|error| error.to_string())?;
    let port = free_ports(1)[0];
    let p = prefix.display();
    let servers: String = upstreams
        .iter()
        .map(|upstream| format!("        server 127.0.0.1:{upstream};\n"))
        .collect();
    let config = format!(
        "worker_processes auto;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path {p}/temp/body;
    proxy_temp_path {p}/temp/proxy;
    fastcgi_temp_path {p}/temp/fastcgi;
    uwsgi_temp_path {p}/temp/uwsgi;
    scgi_temp_path {p}/temp/scgi;
    upstream echo {{
{servers}        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $http_host;
            proxy_next_upstream off;
            proxy_read_timeout 10s;
        }}
    }}
}}
"
    );
    launch_nginx(binary, prefix, &config, port, "/health")
}

/// Starts nginx on `config` in `prefix`, and waits until `GET ready_path` answers 200.
fn launch_nginx(
    binary: &Path,
    prefix: PathBuf,
    config: &str,
    port: u16,
    ready_path: &str,
) -> Result<Nginx, String> {
    fs::write(prefix.join("nginx.conf"), config).map_err(|error| error.to_string())?;
    let log = prefix.join("stderr.log");
    let log_file = fs::File::create(&log).map_err(|error| error.to_string())?;
    let child = Command::new(binary)
        .args(nginx_args(&prefix))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
    let mut nginx = Nginx {
        process: Process {
            name: "nginx".into(),
            child,
            address: loopback(port),
            log,
        },
        binary: binary.to_path_buf(),
        prefix,
    };
    let mut request = Vec::new();
    request_bytes(&mut request, "GET", ready_path, "127.0.0.1", None);
    let started = Instant::now();
    while started.elapsed() < READY_TIMEOUT {
        if let Ok(Some(status)) = nginx.process.child.try_wait() {
            let log = fs::read_to_string(&nginx.process.log).unwrap_or_default();
            return Err(format!("nginx exited ({status}): {}", log.trim()));
        }
        if let Ok(200) = Client::new(nginx.process.address).send(&request) {
            return Ok(nginx);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("nginx did not answer in time".into())
}

// ---------------------------------------------------------------------------------------
// PostgreSQL: a throwaway cluster for the store phase
// ---------------------------------------------------------------------------------------

/// How long `initdb` and `pg_ctl start` may take, each.
const POSTGRES_START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long stopping the cluster may take before its postmaster is killed.
const POSTGRES_STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Statements slower than this are written to the cluster's log, and counted.
const SLOW_STATEMENT_MS: u32 = 250;
/// The role the benchmark's cluster is made with.
const POSTGRES_USER: &str = "bench";

/// What stopping the cluster takes: kept where the Ctrl-C handler finds it.
#[derive(Clone)]
struct ClusterStop {
    pg_ctl: PathBuf,
    data: PathBuf,
    as_postgres: bool,
}

/// The cluster to stop when the run is interrupted (see [`remove_when_interrupted`]).
static CLUSTER_TO_STOP: std::sync::Mutex<Option<ClusterStop>> = std::sync::Mutex::new(None);

fn cluster_to_stop() -> std::sync::MutexGuard<'static, Option<ClusterStop>> {
    CLUSTER_TO_STOP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ClusterStop {
    /// `pg_ctl stop -m MODE`, bounded by [`POSTGRES_STOP_TIMEOUT`]; a postmaster still
    /// running after that (ours: its command line names our data directory) is killed.
    fn stop(&self, mode: &str) {
        let child = postgres_command(&self.pg_ctl, self.as_postgres)
            .args(["stop", "-w", "-t", "10", "-m", mode, "-D"])
            .arg(&self.data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(mut child) = child {
            let deadline = Instant::now() + POSTGRES_STOP_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Ok(None) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    _ => break,
                }
            }
        }
        if let Some(pid) = self.running_postmaster() {
            eprintln!("bench: PostgreSQL did not stop in time; killing its postmaster ({pid})");
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }

    /// The postmaster's pid, if `postmaster.pid` names a live process whose command line
    /// names our data directory (Linux; elsewhere `None`).
    fn running_postmaster(&self) -> Option<u32> {
        let text = fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        let pid: u32 = text.lines().next()?.trim().parse().ok()?;
        let command_line = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let data = self.data.display().to_string();
        String::from_utf8_lossy(&command_line)
            .contains(&data)
            .then_some(pid)
    }
}

/// `program`, run as the `postgres` user when `as_postgres` (PostgreSQL refuses root).
fn postgres_command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// The directory holding `initdb` and `pg_ctl`: `PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`, else one on `PATH`.
fn find_postgres() -> Result<PathBuf, String> {
    let has_both = |dir: &Path| {
        ["initdb", "pg_ctl"].iter().all(|name| {
            dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
                .is_file()
        })
    };
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|dir| !dir.is_empty()) {
        let dir = PathBuf::from(dir);
        return if has_both(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "PG_BIN={} holds no initdb and pg_ctl",
                dir.display()
            ))
        };
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| has_both(dir))
        .ok_or_else(|| {
            "PostgreSQL is not installed (no initdb and pg_ctl in PG_BIN, \
             /usr/lib/postgresql/*/bin or PATH; apt-get install postgresql)"
                .to_string()
        })
}

/// Whether this program runs as root (Unix).
fn running_as_root() -> bool {
    cfg!(unix)
        && Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// `id -u postgres` and `id -g postgres`.
fn postgres_ids() -> Result<(u32, u32), String> {
    let id = |flag: &str| {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|error| format!("cannot run id: {error}"))?;
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse::<u32>()
            .map_err(|_| {
                "running as root, and there is no 'postgres' user to run PostgreSQL as".to_string()
            })
    };
    Ok((id("-u")?, id("-g")?))
}

/// Hands `path` to the `postgres` user (Unix).
fn give_to_postgres(path: &Path, ids: (u32, u32), mode: u32) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::os::unix::fs::chown(path, Some(ids.0), Some(ids.1))
            .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)))
            .map_err(|error| format!("cannot hand {} to postgres: {error}", path.display()))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, ids, mode);
        Ok(())
    }
}

/// Runs `command` with its output in `log`, for at most `limit`; `Err` says why it failed.
fn run_bounded(command: &mut Command, limit: Duration, log: &Path) -> Result<(), String> {
    let file = fs::File::create(log).map_err(|error| error.to_string())?;
    let copy = file.try_clone().map_err(|error| error.to_string())?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(copy)
        .stderr(file)
        .spawn()
        .map_err(|error| format!("cannot run {command:?}: {error}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{command:?} took over {} s", limit.as_secs()));
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let text = fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "{command:?} failed ({status}): {}",
        tail.join(" / ")
    ))
}

fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).map_err(|error| format!("no randomness: {error}"))?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// A PostgreSQL cluster in the run's directory, on 127.0.0.1, stopped when dropped.
struct Cluster {
    stop: ClusterStop,
    port: u16,
    password: String,
    log: PathBuf,
    /// A connection to the `postgres` database, to create databases and read statistics.
    admin: Option<postgres::Client>,
    version: String,
    version_number: u32,
    /// Whether pg_stat_statements is loaded (`--pg-statements`).
    statements: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.admin.take();
        self.stop.stop("fast");
        cluster_to_stop().take();
    }
}

impl Cluster {
    /// initdb and pg_ctl start in `dir/postgres`: a random password for the role
    /// [`POSTGRES_USER`], scram-sha-256, UTF8 and the C locale; durability as shipped (fsync
    /// and synchronous_commit on). `statements` loads pg_stat_statements.
    fn start(dir: &Path, statements: bool) -> Result<Cluster, String> {
        let bin = find_postgres()?;
        let as_postgres = running_as_root();
        let ids = if as_postgres {
            Some(postgres_ids()?)
        } else {
            None
        };
        let home = dir.join("postgres");
        fs::create_dir_all(&home).map_err(|error| error.to_string())?;
        let data = home.join("data");
        let password = random_hex(24)?;
        let password_file = home.join("password");
        fs::write(&password_file, &password).map_err(|error| error.to_string())?;
        if let Some(ids) = ids {
            // The postgres user must reach its directory inside the run's.
            give_to_postgres(&home, ids, 0o700)?;
            give_to_postgres(&password_file, ids, 0o600)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
                    .map_err(|error| error.to_string())?;
            }
        }
        let stop = ClusterStop {
            pg_ctl: bin.join("pg_ctl"),
            data: data.clone(),
            as_postgres,
        };
        // From here on, an interruption stops the cluster (nothing, while there is none).
        *cluster_to_stop() = Some(stop.clone());
        let mut cluster = Cluster {
            stop,
            port: free_ports(1)[0],
            password,
            log: home.join("postgres.log"),
            admin: None,
            version: String::new(),
            version_number: 0,
            statements,
        };
        // --no-sync: initdb's own final flush of the template files only (a throwaway
        // cluster); the server runs with fsync on.
        run_bounded(
            postgres_command(&bin.join("initdb"), as_postgres)
                .current_dir(&home)
                .arg("-D")
                .arg(&data)
                .args(["-U", POSTGRES_USER, "--auth=scram-sha-256"])
                .arg(format!("--pwfile={}", password_file.display()))
                .args(["-E", "UTF8", "--locale=C", "--no-sync"]),
            POSTGRES_START_TIMEOUT,
            &dir.join("initdb.log"),
        )?;
        let _ = fs::remove_file(&password_file);
        let mut settings = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} \
             -c max_connections=100 -c log_min_duration_statement={SLOW_STATEMENT_MS} \
             -c log_lock_waits=on",
            cluster.port,
            data.display()
        );
        if statements {
            settings.push_str(" -c shared_preload_libraries=pg_stat_statements");
        }
        run_bounded(
            postgres_command(&bin.join("pg_ctl"), as_postgres)
                .current_dir(&home)
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(&data)
                .arg("-l")
                .arg(&cluster.log)
                .arg("-o")
                .arg(settings),
            POSTGRES_START_TIMEOUT,
            &dir.join("pg_ctl.log"),
        )?;
        let mut config = postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(cluster.port)
            .user(POSTGRES_USER)
            .password(&cluster.password)
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(10))
            .options("-c statement_timeout=60000");
        let mut admin = config
            .connect(postgres::NoTls)
            .map_err(|error| format!("cannot connect to it: {error}"))?;
        let row = admin
            .query_one(
                "SELECT current_setting('server_version'), \
                 current_setting('server_version_num')::int, current_setting('fsync'), \
                 current_setting('synchronous_commit'), current_setting('wal_sync_method')",
                &[],
            )
            .map_err(|error| error.to_string())?;
        let (fsync, synchronous_commit, sync_method): (String, String, String) =
            (row.get(2), row.get(3), row.get(4));
        cluster.version = format!(
            "PostgreSQL {} ({}), fsync {fsync}, synchronous_commit {synchronous_commit}, wal_sync_method {sync_method}",
            row.get::<_, String>(0),
            bin.display()
        );
        cluster.version_number = row.get::<_, i32>(1).max(0) as u32;
        if statements {
            admin
                .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .map_err(|error| error.to_string())?;
        }
        cluster.admin = Some(admin);
        Ok(cluster)
    }

    fn admin(&mut self) -> Result<&mut postgres::Client, String> {
        self.admin
            .as_mut()
            .ok_or_else(|| "no connection to the cluster".to_string())
    }

    /// Creates the database `name` (fresh, from template1).
    fn create_database(&mut self, name: &str) -> Result<(), String> {
        self.admin()?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|error| format!("CREATE DATABASE {name}: {error}"))
    }

    /// Where the cluster listens.
    fn address(&self) -> SocketAddr {
        loopback(self.port)
    }

    /// The `DATABASE_URL` of database `name`, reached at `address`: the cluster's own, or a
    /// relay's in front of it.
    fn database_url(&self, name: &str, address: SocketAddr) -> String {
        format!(
            "postgres://{POSTGRES_USER}:{}@{address}/{name}",
            self.password
        )
    }

    /// Connections the echo services hold open to database `name` now (they name themselves
    /// in `application_name`).
    fn echo_connections(&mut self, name: &str) -> Option<u64> {
        let row = self
            .admin()
            .ok()?
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'echo-service' AND datname = $1",
                &[&name],
            )
            .ok()?;
        Some(row.get::<_, i64>(0).max(0) as u64)
    }

    /// CPU time of the postmaster and of its sessions that have ended, in seconds (Linux).
    fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds_with_children(self.stop.running_postmaster()?)
    }

    /// WAL syncs so far, cluster-wide (`pg_stat_wal.wal_sync`, PostgreSQL 14 and later).
    fn wal_syncs(&mut self) -> Option<u64> {
        if self.version_number < 140000 {
            return None;
        }
        let row = self
            .admin()
            .ok()?
            .query_one("SELECT wal_sync FROM pg_stat_wal", &[])
            .ok()?;
        Some(row.get::<_, i64>(0).max(0) as u64)
    }

    /// Transactions committed in database `name`, once its sessions have ended (a session
    /// reports its counts when it ends, at the latest), waiting at most 5 s for that.
    fn commits(&mut self, name: &str) -> Option<u64> {
        let admin = self.admin().ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let row = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                    &[&name],
                )
                .ok()?;
            if row.get::<_, i64>(0) == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let row = admin
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
                &[&name],
            )
            .ok()?;
        Some(row.get::<_, i64>(0).max(0) as u64)
    }

    /// With `--pg-statements`: the statements of the store's databases by total time
    /// (calls, mean ms, total s), summed over every database but `postgres`.
    fn statement_times(&mut self) -> Vec<(String, u64, f64, f64)> {
        if !self.statements {
            return Vec::new();
        }
        let Ok(admin) = self.admin() else {
            return Vec::new();
        };
        let rows = admin.query(
            "SELECT regexp_replace(query, '\\s+', ' ', 'g'), sum(calls)::bigint,
                sum(total_exec_time) / greatest(sum(calls), 1), sum(total_exec_time) / 1000
             FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
             WHERE d.datname LIKE 'bench_%'
             GROUP BY 1 ORDER BY 4 DESC LIMIT 16",
            &[],
        );
        rows.map(|rows| {
            rows.iter()
                .map(|row| {
                    let query: String = row.get(0);
                    let shown: String = query.chars().take(90).collect();
                    (
                        shown,
                        row.get::<_, i64>(1).max(0) as u64,
                        row.get(2),
                        row.get(3),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
    }

    /// Statements the cluster logged as slower than [`SLOW_STATEMENT_MS`], errors it logged,
    /// and a few of each.
    fn log_findings(&self) -> (usize, usize, Vec<String>) {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let slow: Vec<&str> = text
            .lines()
            .filter(|line| line.contains("LOG:  duration:"))
            .collect();
        let errors: Vec<&str> = text
            .lines()
            .filter(|line| line.contains("ERROR:") || line.contains("FATAL:"))
            .collect();
        let examples = slow
            .iter()
            .take(3)
            .chain(errors.iter().take(3))
            .map(|line| line.chars().take(200).collect())
            .collect();
        (slow.len(), errors.len(), examples)
    }
}

// ---------------------------------------------------------------------------------------
// A delaying relay: the database across a network, on loopback
// ---------------------------------------------------------------------------------------

/// Chunks a relay holds per direction of a connection, read and not yet delivered: a
/// reader this far ahead waits, and TCP's flow control holds its sender back.
const RELAY_QUEUE_CHUNKS: usize = 64;
/// The largest chunk a relay reads at once: with [`RELAY_QUEUE_CHUNKS`], at most 1 MiB
/// held per direction of a connection.
const RELAY_CHUNK_BYTES: usize = 16 * 1024;
/// The most connections one relay forwards over its life (an echo service opens at most 8
/// per process and keeps them); it refuses any more.
const RELAY_MAX_CONNECTIONS: usize = 64;
/// How often a relay's waiting threads look whether it is stopping.
const RELAY_STOP_POLL: Duration = Duration::from_millis(50);
/// How long a relay waits for a new connection before it looks again.
const RELAY_ACCEPT_POLL: Duration = Duration::from_millis(5);
/// How long connecting to the database, or one delivery to a side that does not read, may
/// take before the relay gives up that connection.
const RELAY_IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How the relay's threads' names begin, so that their CPU time can be told from the load
/// generator's, in the same process.
const RELAY_THREAD_PREFIX: &str = "relay-";

/// What a relay's threads share: where they forward to, the delay, the stop flag, and the
/// delay they really applied.
struct RelayShared {
    upstream: SocketAddr,
    one_way: Duration,
    stopping: AtomicBool,
    connections: AtomicU64,
    chunks: AtomicU64,
    /// From each chunk's read to the end of its delivery, summed.
    delivered_after_ns: AtomicU64,
}

/// Bytes read from one side, due on the other side at `due`.
struct DelayedChunk {
    read_at: Instant,
    due: Instant,
    bytes: Vec<u8>,
}

/// A TCP relay in this process, on 127.0.0.1, that forwards each connection to `upstream`
/// and delays every chunk half the round trip in each direction, in order: what a database
/// on another host adds to each statement, where the kernel's netem is not at hand. Stopped
/// (every thread joined) when dropped.
struct DelayRelay {
    address: SocketAddr,
    shared: Arc<RelayShared>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

/// What a relay did: connections, chunks, and the mean one-way delay it applied.
#[derive(Debug, Clone, Copy)]
struct RelayCounts {
    connections: u64,
    chunks: u64,
    mean_one_way_ms: f64,
}

impl DelayRelay {
    fn start(upstream: SocketAddr, round_trip: Duration) -> io::Result<DelayRelay> {
        if !upstream.ip().is_loopback() {
            return Err(io::Error::other(format!(
                "the relay forwards to loopback only, not {upstream}"
            )));
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        // Not blocking, so that the acceptor sees the stop flag between connections.
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let shared = Arc::new(RelayShared {
            upstream,
            one_way: round_trip / 2,
            stopping: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            delivered_after_ns: AtomicU64::new(0),
        });
        let acceptor_shared = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name(format!("{RELAY_THREAD_PREFIX}accept"))
            .spawn(move || accept_relayed(listener, &acceptor_shared))?;
        Ok(DelayRelay {
            address,
            shared,
            acceptor: Some(acceptor),
        })
    }

    fn counts(&self) -> RelayCounts {
        let chunks = self.shared.chunks.load(Ordering::Relaxed);
        let total_ns = self.shared.delivered_after_ns.load(Ordering::Relaxed);
        RelayCounts {
            connections: self.shared.connections.load(Ordering::Relaxed),
            chunks,
            mean_one_way_ms: if chunks == 0 {
                f64::NAN
            } else {
                total_ns as f64 / chunks as f64 / 1e6
            },
        }
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// The relay's accepting thread: each connection gets its threads, all joined when the
/// relay stops.
fn accept_relayed(listener: TcpListener, shared: &Arc<RelayShared>) {
    let mut threads = Vec::new();
    while !shared.stopping.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((client, _)) => {
                if shared.connections.load(Ordering::Relaxed) as usize >= RELAY_MAX_CONNECTIONS {
                    eprintln!("  note: the database relay refused a connection over its {RELAY_MAX_CONNECTIONS}");
                    continue;
                }
                match relay_connection(client, shared) {
                    Ok(started) => {
                        shared.connections.fetch_add(1, Ordering::Relaxed);
                        threads.extend(started);
                    }
                    Err(error) => {
                        eprintln!("  note: the database relay dropped a connection: {error}")
                    }
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(RELAY_ACCEPT_POLL)
            }
            Err(error) => {
                eprintln!("  note: the database relay could not accept: {error}");
                std::thread::sleep(RELAY_ACCEPT_POLL);
            }
        }
    }
    for thread in threads {
        let _ = thread.join();
    }
}

/// Connects `client` to the relay's upstream and starts both directions.
fn relay_connection(
    client: TcpStream,
    shared: &Arc<RelayShared>,
) -> io::Result<Vec<std::thread::JoinHandle<()>>> {
    // An accepted socket may inherit the listener's non-blocking mode on some systems.
    client.set_nonblocking(false)?;
    let server = TcpStream::connect_timeout(&shared.upstream, RELAY_IO_TIMEOUT)?;
    for stream in [&client, &server] {
        // Each chunk leaves when it is due, not when Nagle's algorithm lets it.
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(RELAY_STOP_POLL))?;
        stream.set_write_timeout(Some(RELAY_IO_TIMEOUT))?;
    }
    let mut threads = relay_direction("to-db", client.try_clone()?, server.try_clone()?, shared)?;
    threads.extend(relay_direction("from-db", server, client, shared)?);
    Ok(threads)
}

/// One direction of a connection: a reader that stamps each chunk with when it is due and
/// queues it, and the direction's delivering thread, which writes each chunk at its time in
/// the order read. Two threads, because a read timeout has the kernel's tick as its
/// resolution (4 ms at 250 Hz): one thread waiting both for input and for a chunk due in
/// 0.25 ms would deliver late.
fn relay_direction(
    name: &str,
    source: TcpStream,
    sink: TcpStream,
    shared: &Arc<RelayShared>,
) -> io::Result<Vec<std::thread::JoinHandle<()>>> {
    let (queue, due_chunks) = std::sync::mpsc::sync_channel(RELAY_QUEUE_CHUNKS);
    let reader_shared = Arc::clone(shared);
    let reader = std::thread::Builder::new()
        .name(format!("{RELAY_THREAD_PREFIX}{name}-read"))
        .spawn(move || read_into_queue(source, &queue, &reader_shared))?;
    let deliverer_shared = Arc::clone(shared);
    let deliverer = std::thread::Builder::new()
        .name(format!("{RELAY_THREAD_PREFIX}{name}"))
        .spawn(move || deliver_when_due(&due_chunks, sink, &deliverer_shared))?;
    Ok(vec![reader, deliverer])
}

/// Reads `source` until it ends, the relay stops or the delivering side is gone. The queue
/// is bounded: when it is full, this waits, and stops reading.
fn read_into_queue(
    mut source: TcpStream,
    queue: &std::sync::mpsc::SyncSender<DelayedChunk>,
    shared: &RelayShared,
) {
    let mut buffer = vec![0u8; RELAY_CHUNK_BYTES];
    while !shared.stopping.load(Ordering::Relaxed) {
        match source.read(&mut buffer) {
            Ok(0) => return,
            Ok(read) => {
                let read_at = Instant::now();
                let chunk = DelayedChunk {
                    read_at,
                    due: read_at + shared.one_way,
                    bytes: buffer[..read].to_vec(),
                };
                if queue.send(chunk).is_err() {
                    return;
                }
            }
            Err(error) if is_timeout(&error) => {}
            Err(_) => return,
        }
    }
}

/// Writes each queued chunk to `sink` once it is due; when the reading side has ended and
/// everything is delivered, passes the end on (a half close), as the sender closed it.
fn deliver_when_due(
    due_chunks: &std::sync::mpsc::Receiver<DelayedChunk>,
    mut sink: TcpStream,
    shared: &RelayShared,
) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        match due_chunks.recv_timeout(RELAY_STOP_POLL) {
            Ok(chunk) => {
                let now = Instant::now();
                if chunk.due > now {
                    std::thread::sleep(chunk.due - now);
                }
                if sink.write_all(&chunk.bytes).is_err() {
                    return;
                }
                let after = chunk.read_at.elapsed().as_nanos() as u64;
                shared.chunks.fetch_add(1, Ordering::Relaxed);
                shared
                    .delivered_after_ns
                    .fetch_add(after, Ordering::Relaxed);
            }
            Err(RecvTimeoutError::Timeout) => {
                if shared.stopping.load(Ordering::Relaxed) {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = sink.shutdown(std::net::Shutdown::Write);
}

/// Whether a read ended because its timeout passed (the error's kind differs by system).
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

// ---------------------------------------------------------------------------------------
// The store phase: the echo service's journal and PostgreSQL side by side
// ---------------------------------------------------------------------------------------

/// The store phase's configurations, by label.
const STORE_JOURNAL: &str = "journal";
const STORE_POSTGRES: &str = "postgres";
const STORE_POSTGRES_FAR: &str = "postgres-far";
const STORE_POSTGRES_ONE_PROXIED: &str = "postgres-x1-proxied";
const STORE_POSTGRES_TWO: &str = "postgres-x2";

/// What stands between a configuration's broker and its echo services.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StoreFront {
    /// A broker straight in front of each echo service.
    Broker,
    /// One broker, and nginx in front of the echo services; left out without nginx.
    Nginx,
    /// nginx as above when it is installed; else a broker in front of each echo service, the
    /// load generator's connections split between the brokers.
    NginxElseBrokers,
}

/// One configuration of the store phase.
#[derive(Debug, Clone, Copy)]
struct StoreConfig {
    label: &'static str,
    /// A fresh PostgreSQL database each round; else a fresh DATA_DIR per echo service.
    on_postgres: bool,
    /// Its echo services reach the database through a [`DelayRelay`] (`--db-delay-ms`).
    database_far: bool,
    echo_services: usize,
    front: StoreFront,
}

impl StoreConfig {
    /// PostgreSQL's configurations need the cluster, and [`StoreFront::Nginx`] needs nginx.
    fn can_run(&self, has_cluster: bool, has_nginx: bool) -> bool {
        (has_cluster || !self.on_postgres) && (has_nginx || self.front != StoreFront::Nginx)
    }
}

const STORE_CONFIGS: [StoreConfig; 5] = [
    StoreConfig {
        label: STORE_JOURNAL,
        on_postgres: false,
        database_far: false,
        echo_services: 1,
        front: StoreFront::Broker,
    },
    StoreConfig {
        label: STORE_POSTGRES,
        on_postgres: true,
        database_far: false,
        echo_services: 1,
        front: StoreFront::Broker,
    },
    StoreConfig {
        label: STORE_POSTGRES_FAR,
        on_postgres: true,
        database_far: true,
        echo_services: 1,
        front: StoreFront::Broker,
    },
    // The one-instance counterpart of postgres-x2, with the same nginx hop, so that their
    // ratio shows what the second instance brings and nothing else.
    StoreConfig {
        label: STORE_POSTGRES_ONE_PROXIED,
        on_postgres: true,
        database_far: false,
        echo_services: 1,
        front: StoreFront::Nginx,
    },
    StoreConfig {
        label: STORE_POSTGRES_TWO,
        on_postgres: true,
        database_far: false,
        echo_services: 2,
        front: StoreFront::NginxElseBrokers,
    },
];

/// One configuration's round.
struct StoreSample {
    sample: Sample,
    /// The highest peak resident memory among its echo services, in kB.
    echo_peak_kb: Option<u64>,
    /// The highest resident memory among its echo services once started, in kB.
    echo_start_kb: Option<u64>,
    /// CPU seconds of its echo services, and of PostgreSQL (its sessions), over the
    /// warm-up and the run.
    echo_cpu: Option<f64>,
    postgres_cpu: Option<f64>,
    /// CPU seconds of its broker(s), of nginx in front of the echo services, and of this
    /// program (the load generator, and the relay when there is one), likewise.
    broker_cpu: Option<f64>,
    nginx_cpu: Option<f64>,
    client_cpu: Option<f64>,
    /// CPU seconds of the relay's threads in this program, likewise.
    relay_cpu: Option<f64>,
    /// Cycles that succeeded, warm-up included: what `fsyncs` and `commits` cover.
    cycles: u64,
    /// The journal's fsyncs, or the cluster's WAL syncs, over the warm-up and the run.
    fsyncs: Option<u64>,
    /// Transactions committed in the round's database (PostgreSQL).
    commits: Option<u64>,
    /// Its echo services' database pool counters, summed (PostgreSQL): connections
    /// opened, connect failures, calls timed out, calls that found every connection busy.
    pool: Option<[u64; 4]>,
    /// Connections its echo services held to the round's database at the end of the
    /// measured window (PostgreSQL).
    database_connections: Option<u64>,
    /// What the relay in front of the database did, over the warm-up and the run.
    relay: Option<RelayCounts>,
    /// Lines its echo services logged at LOG_LEVEL=warn, and the first few.
    echo_log_lines: usize,
    echo_log_examples: Vec<String>,
}

type StoreResults = BTreeMap<&'static str, Vec<StoreSample>>;

/// One round of the store phase: each configuration that can run started afresh, warmed up
/// and measured, in an order that rotates with the round.
fn store_round(
    results: &mut StoreResults,
    binaries: &Binaries,
    dir: &Path,
    mut cluster: Option<&mut Cluster>,
    nginx: Option<&Path>,
    options: &Options,
    round: usize,
) {
    let configs: Vec<StoreConfig> = STORE_CONFIGS
        .into_iter()
        .filter(|config| config.can_run(cluster.is_some(), nginx.is_some()))
        .collect();
    for offset in 0..configs.len() {
        let config = configs[(offset + round) % configs.len()];
        let cluster = cluster.as_deref_mut().filter(|_| config.on_postgres);
        let sample = store_run(config, binaries, dir, cluster, nginx, options, round);
        results.entry(config.label).or_default().push(sample);
    }
}

/// The round's database, fresh, and the `DATABASE_URL` its echo services get: the
/// cluster's own address, or a delaying relay's in front of it when `far`.
fn round_database(
    cluster: &mut Cluster,
    database: &str,
    far: bool,
    round_trip: Duration,
) -> (String, Option<DelayRelay>) {
    cluster
        .create_database(database)
        .unwrap_or_else(|problem| panic!("PostgreSQL: {problem}"));
    if !far {
        return (cluster.database_url(database, cluster.address()), None);
    }
    let relay = DelayRelay::start(cluster.address(), round_trip)
        .unwrap_or_else(|error| panic!("cannot start the relay in front of PostgreSQL: {error}"));
    (cluster.database_url(database, relay.address), Some(relay))
}

/// `config`'s echo services, each on a free port, on `database_url` or a fresh DATA_DIR.
fn start_store_echos(
    config: StoreConfig,
    binaries: &Binaries,
    dir: &Path,
    name: &str,
    database_url: Option<&str>,
) -> Vec<Process> {
    (0..config.echo_services)
        .map(|index| {
            let port = free_ports(1)[0];
            let echo_name = format!("{name}-echo{}", index + 1);
            start_echo(binaries, dir, &echo_name, port, database_url)
        })
        .collect()
}

/// What stands in front of `echos` for `config`: nginx and one broker, or a broker for each.
fn start_store_front(
    config: StoreConfig,
    binaries: &Binaries,
    dir: &Path,
    name: &str,
    echos: &[Process],
    nginx: Option<&Path>,
) -> (Option<Nginx>, Vec<Process>) {
    let nginx = nginx.filter(|_| config.front != StoreFront::Broker);
    let Some(nginx) = nginx else {
        let brokers = echos
            .iter()
            .enumerate()
            .map(|(index, echo)| {
                let port = free_ports(1)[0];
                let broker_name = if echos.len() == 1 {
                    name.to_string()
                } else {
                    format!("{name}-broker{}", index + 1)
                };
                let echo_port = echo.address.port();
                start_broker(binaries, dir, &broker_name, port, echo_port, "warn")
            })
            .collect();
        return (None, brokers);
    };
    let ports: Vec<u16> = echos.iter().map(|echo| echo.address.port()).collect();
    let proxy = start_nginx_proxy(nginx, dir, &format!("{name}-nginx"), &ports)
        .unwrap_or_else(|problem| panic!("nginx in front of the echo services: {problem}"));
    let base = proxy.process.address.port();
    let port = free_ports(1)[0];
    let broker = start_broker(binaries, dir, name, port, base, "warn");
    (Some(proxy), vec![broker])
}

/// `config`'s round: a fresh DATA_DIR or database (and the relay in front of it), its echo
/// services (with `DATABASE_URL` when `cluster` is given) and what stands in front of them,
/// a warm-up, the measured run, the counts.
fn store_run(
    config: StoreConfig,
    binaries: &Binaries,
    dir: &Path,
    mut cluster: Option<&mut Cluster>,
    nginx: Option<&Path>,
    options: &Options,
    round: usize,
) -> StoreSample {
    let label = config.label;
    let name = format!("store-r{}-{label}", round + 1);
    let database = format!("bench_r{}_{}", round + 1, label.replace('-', "_"));
    let (url, relay) = match cluster.as_deref_mut() {
        Some(cluster) => {
            let (url, relay) =
                round_database(cluster, &database, config.database_far, options.db_delay);
            (Some(url), relay)
        }
        None => (None, None),
    };
    let wal_before = cluster.as_deref_mut().and_then(Cluster::wal_syncs);
    let postgres_cpu_before = cluster.as_deref().and_then(Cluster::cpu_seconds);
    let echos = start_store_echos(config, binaries, dir, &name, url.as_deref());
    let echo_pids: Vec<u32> = echos.iter().map(Process::pid).collect();
    let echo_start_kb = echos
        .iter()
        .filter_map(|echo| status_kb(echo.pid(), "VmRSS"))
        .max();
    let echo_cpu_before = total_cpu(&echo_pids);
    let (proxy, brokers) = start_store_front(config, binaries, dir, &name, &echos, nginx);
    let target = Target {
        label,
        address: brokers[0].address,
        more: brokers[1..].iter().map(|broker| broker.address).collect(),
        pids: brokers.iter().chain(&echos).map(Process::pid).collect(),
    };
    let broker_pids: Vec<u32> = brokers.iter().map(Process::pid).collect();
    let broker_cpu_before = total_cpu(&broker_pids);
    // nginx's master and its workers (Linux).
    let nginx_pids: Vec<u32> = proxy.as_ref().map_or_else(Vec::new, |nginx| {
        let master = nginx.process.pid();
        let mut pids = vec![master];
        pids.extend(children(master));
        pids
    });
    let nginx_cpu_before = total_cpu(&nginx_pids);
    let client_cpu_before = cpu_seconds(std::process::id());
    let relay_cpu_of = || {
        relay
            .as_ref()
            .and_then(|_| own_threads_cpu(RELAY_THREAD_PREFIX))
    };
    let relay_cpu_before = relay_cpu_of();
    let warm = (options.secs / 2.0).clamp(0.2, 1.0);
    let warm_tag = format!("{name}-warm");
    let warmed = run_load(
        &target.addresses(),
        Work::LifecycleMessage,
        LIFECYCLE_CONNS,
        warm,
        u64::MAX,
        &warm_tag,
    );
    let sample = measure(
        &target,
        Work::LifecycleMessage,
        LIFECYCLE_CONNS,
        options.secs,
        &name,
    );
    // Read now, while the echo services still run as they did in the measured window.
    let database_connections = cluster
        .as_deref_mut()
        .and_then(|cluster| cluster.echo_connections(&database));
    if sample.errors + warmed.errors > 0 || sample.elapsed > options.secs + 1.0 {
        eprintln!(
            "  note: {label} store round {}: {} errors in {} requests {:?} (warm-up: {} errors {:?}), {:.1} s",
            round + 1,
            sample.errors,
            sample.requests,
            sample.error_kinds,
            warmed.errors,
            warmed.error_kinds,
            sample.elapsed
        );
    }
    let echo_peak_kb = echos
        .iter()
        .filter_map(|echo| status_kb(echo.pid(), "VmHWM"))
        .max();
    let used = |before: Option<f64>, after: Option<f64>| Some(after? - before?);
    let echo_cpu = used(echo_cpu_before, total_cpu(&echo_pids));
    let broker_cpu = used(broker_cpu_before, total_cpu(&broker_pids));
    let nginx_cpu = used(nginx_cpu_before, total_cpu(&nginx_pids));
    let client_cpu = used(client_cpu_before, cpu_seconds(std::process::id()));
    let relay_cpu = used(relay_cpu_before, relay_cpu_of());
    let journal_fsyncs = (!config.on_postgres)
        .then(|| {
            let metrics = echo_metrics(echos[0].address)?;
            metric(&metrics, "echo_service_journal_fsyncs_total")
        })
        .flatten();
    let pool = config.on_postgres.then(|| pool_counters(&echos)).flatten();
    drop(brokers);
    drop(proxy);
    let (echo_log_lines, echo_log_examples) = echo_log_lines(&echos);
    drop(echos);
    let relay_counts = relay.as_ref().map(DelayRelay::counts);
    // Stopped after the echo services, so that their sessions end as they close.
    drop(relay);
    let (fsyncs, commits, postgres_cpu) = match cluster {
        Some(cluster) => {
            let commits = cluster.commits(&database);
            let wal_after = cluster.wal_syncs();
            let fsyncs = wal_before.zip(wal_after).map(|(a, b)| b.saturating_sub(a));
            let cpu = used(postgres_cpu_before, cluster.cpu_seconds());
            (fsyncs, commits, cpu)
        }
        None => (journal_fsyncs.map(|count| count as u64), None, None),
    };
    StoreSample {
        cycles: warmed.operations + sample.operations,
        sample,
        echo_peak_kb,
        echo_start_kb,
        echo_cpu,
        postgres_cpu,
        broker_cpu,
        nginx_cpu,
        client_cpu,
        relay_cpu,
        fsyncs,
        commits,
        pool,
        database_connections,
        relay: relay_counts,
        echo_log_lines,
        echo_log_examples,
    }
}

/// The echo services' database pool counters ([`POOL_COUNTERS`]), summed; `None` if one
/// of them cannot say.
fn pool_counters(echos: &[Process]) -> Option<[u64; 4]> {
    let mut sums = [0u64; 4];
    for echo in echos {
        let metrics = echo_metrics(echo.address)?;
        for (sum, name) in sums.iter_mut().zip(POOL_COUNTERS) {
            *sum += metric(&metrics, name)? as u64;
        }
    }
    Some(sums)
}

/// How many lines the echo services logged (at LOG_LEVEL=warn, each is worth a look), and
/// the first few.
fn echo_log_lines(echos: &[Process]) -> (usize, Vec<String>) {
    let mut count = 0;
    let mut examples = Vec::new();
    for echo in echos {
        let log = fs::read_to_string(&echo.log).unwrap_or_default();
        for line in log.lines() {
            count += 1;
            if examples.len() < 3 {
                examples.push(line.chars().take(240).collect());
            }
        }
    }
    (count, examples)
}

/// The echo service's counters of its database connections (see [`StoreSample::pool`]).
const POOL_COUNTERS: [&str; 4] = [
    "echo_service_database_connects_total",
    "echo_service_database_connect_failures_total",
    "echo_service_database_timeouts_total",
    "echo_service_database_busy_total",
];

/// The echo service's `/metrics` (management credentials).
fn echo_metrics(address: SocketAddr) -> Option<String> {
    let mut client = Client::new(address);
    let authorization = echo_broker::http::basic_authorization(ECHO_USER, ECHO_PASSWORD);
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nAuthorization: {authorization}\r\n\r\n"
    );
    match client.send(request.as_bytes()) {
        Ok(200) => Some(String::from_utf8_lossy(&client.body).into_owned()),
        _ => None,
    }
}

/// The value of `name` in Prometheus text.
fn metric(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A ratio of two store configurations' figures, measured in the same rounds.
struct StoreRatio {
    /// Its name in `BENCH name=store_ratio id=...`.
    id: &'static str,
    what: &'static str,
    a: &'static str,
    b: &'static str,
    field: fn(&StoreSample) -> f64,
}

fn cycles_per_second(sample: &StoreSample) -> f64 {
    sample.sample.rate
}

fn echo_peak_kb(sample: &StoreSample) -> f64 {
    sample.echo_peak_kb.map_or(f64::NAN, |kb| kb as f64)
}

const POSTGRES_VS_JOURNAL: StoreRatio = StoreRatio {
    id: "postgres_vs_journal_cps",
    what: "cycles/s, postgres / journal",
    a: STORE_POSTGRES,
    b: STORE_JOURNAL,
    field: cycles_per_second,
};
const FAR_VS_NEAR: StoreRatio = StoreRatio {
    id: "far_vs_postgres_cps",
    what: "cycles/s, postgres-far / postgres (the database's round trip)",
    a: STORE_POSTGRES_FAR,
    b: STORE_POSTGRES,
    field: cycles_per_second,
};
const TWO_VS_ONE_PROXIED: StoreRatio = StoreRatio {
    id: "x2_vs_x1_proxied_cps",
    what: "cycles/s, postgres-x2 / postgres-x1-proxied (a second echo service)",
    a: STORE_POSTGRES_TWO,
    b: STORE_POSTGRES_ONE_PROXIED,
    field: cycles_per_second,
};
const PROXIED_VS_DIRECT: StoreRatio = StoreRatio {
    id: "x1_proxied_vs_postgres_cps",
    what: "cycles/s, postgres-x1-proxied / postgres (nginx's hop)",
    a: STORE_POSTGRES_ONE_PROXIED,
    b: STORE_POSTGRES,
    field: cycles_per_second,
};
const MEMORY_VS_JOURNAL: StoreRatio = StoreRatio {
    id: "postgres_vs_journal_echo_peak",
    what: "echo service peak memory, postgres / journal",
    a: STORE_POSTGRES,
    b: STORE_JOURNAL,
    field: echo_peak_kb,
};
const STORE_RATIOS: [StoreRatio; 5] = [
    POSTGRES_VS_JOURNAL,
    FAR_VS_NEAR,
    TWO_VS_ONE_PROXIED,
    PROXIED_VS_DIRECT,
    MEMORY_VS_JOURNAL,
];

/// Each round's `field(a) / field(b)`, over the rounds that ran both.
fn round_ratios(results: &StoreResults, ratio: &StoreRatio) -> Vec<f64> {
    let (Some(ours), Some(theirs)) = (results.get(ratio.a), results.get(ratio.b)) else {
        return Vec::new();
    };
    ours.iter()
        .zip(theirs)
        .map(|(ours, theirs)| (ratio.field)(ours) / (ratio.field)(theirs))
        .collect()
}

/// What the store phase found, for the report.
struct StoreReport {
    results: StoreResults,
    /// The cluster's description, or why PostgreSQL is left out.
    postgres: Result<String, String>,
    /// How two echo services share the load: `nginx` or `two-brokers`.
    two_mode: &'static str,
    /// Statements the cluster logged as slow, errors it logged, a few of them.
    log_findings: Option<(usize, usize, Vec<String>)>,
    /// With `--pg-statements`: (statement, calls, mean ms, total s).
    statements: Vec<(String, u64, f64, f64)>,
    warm: f64,
}

impl StoreReport {
    /// The median over rounds of `ratio`, each round's measured side by side.
    fn median_ratio(&self, ratio: &StoreRatio) -> f64 {
        median(round_ratios(&self.results, ratio))
    }

    fn errors(&self) -> u64 {
        self.results
            .values()
            .flatten()
            .map(|s| s.sample.errors)
            .sum()
    }

    fn print(&self, options: &Options, lines: &mut Vec<String>) {
        self.print_setup(options);
        self.print_configurations(lines);
        self.print_ratios(lines);
        self.print_relay(options, lines);
        self.print_database_findings(lines);
        lines.push(format!(
            "BENCH name=store_setup postgres={} two_instances={} db_delay_ms={}",
            if self.postgres.is_ok() { "yes" } else { "n/a" },
            if self.postgres.is_ok() {
                self.two_mode
            } else {
                "n/a"
            },
            trim(options.db_delay.as_secs_f64() * 1000.0)
        ));
    }

    /// The heading, and what each configuration is.
    fn print_setup(&self, options: &Options) {
        println!();
        println!(
            "## The echo service's store: journal and PostgreSQL ({LIFECYCLE_CONNS} connections, medians of {} rounds of {} s)",
            options.rounds, options.secs
        );
        println!();
        match &self.postgres {
            Ok(description) => println!("{description}."),
            Err(why) => println!("PostgreSQL columns n/a: {why}."),
        }
        if self.postgres.is_ok() {
            let round_trip = options.db_delay.as_secs_f64() * 1000.0;
            println!(
                "{STORE_POSTGRES_FAR}: as {STORE_POSTGRES}, its echo service reaching the database through a relay in this program that delays every chunk {} ms each way (--db-delay-ms {}, the round trip).",
                trim(round_trip / 2.0),
                trim(round_trip)
            );
            if self.two_mode == "nginx" {
                println!("{STORE_POSTGRES_ONE_PROXIED}: one echo service on the database behind nginx (keep-alive upstream), one broker.");
                println!("{STORE_POSTGRES_TWO}: two echo services on one database behind the same nginx (round robin), one broker.");
            } else {
                println!("{STORE_POSTGRES_ONE_PROXIED}: left out (it needs nginx).");
                println!("{STORE_POSTGRES_TWO}: two broker and echo service pairs on one database, the connections split between the brokers (nginx not used).");
            }
        }
        println!(
            "Each configuration starts afresh every round (new processes, a fresh DATA_DIR or database) and is warmed up for {} s first.",
            fmt(self.warm, 2)
        );
    }

    /// A row per configuration: its rate and latencies, per step, and where its CPU goes.
    fn print_configurations(&self, lines: &mut Vec<String>) {
        println!();
        println!(
            "| configuration | cycles/s | p50 ms | p99 ms | slowest ms | errors | database connections | echo service MiB at start / peak |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        // Steps in the order of a cycle: provision, bind, message, unbind, deprovision.
        let order = [0, 1, MESSAGE_STEP, 2, 3];
        let mut step_rows = Vec::new();
        let mut cost_rows = Vec::new();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for config in STORE_CONFIGS {
            let label = config.label;
            let samples: &[StoreSample] = self.results.get(label).map_or(&[], Vec::as_slice);
            let of =
                |field: &dyn Fn(&StoreSample) -> f64| median(samples.iter().map(field).collect());
            let per_cycle = |count: Option<f64>, cycles: u64| {
                count.map_or(f64::NAN, |count| count / cycles.max(1) as f64)
            };
            let as_f64 = |count: Option<u64>| count.map(|count| count as f64);
            let rate = of(&|s| s.sample.rate);
            let p50 = of(&|s| s.sample.p50);
            let p99 = of(&|s| s.sample.p99);
            let slowest = samples
                .iter()
                .map(|s| s.sample.max)
                .fold(f64::NAN, f64::max);
            let connections = of(&|s| as_f64(s.database_connections).unwrap_or(f64::NAN));
            let fsyncs = of(&|s| per_cycle(as_f64(s.fsyncs), s.cycles));
            let commits = of(&|s| per_cycle(as_f64(s.commits), s.cycles));
            let echo_cpu = of(&|s| per_cycle(s.echo_cpu, s.cycles) * 1e6);
            let postgres_cpu = of(&|s| per_cycle(s.postgres_cpu, s.cycles) * 1e6);
            let broker_cpu = of(&|s| per_cycle(s.broker_cpu, s.cycles) * 1e6);
            let nginx_cpu = of(&|s| per_cycle(s.nginx_cpu, s.cycles) * 1e6);
            let relay_cpu = of(&|s| per_cycle(s.relay_cpu, s.cycles) * 1e6);
            // The relay runs in this program: what is left is the load generator's.
            let client_cpu = of(&|s| {
                let client = s.client_cpu.zip(s.relay_cpu.or(Some(0.0)));
                per_cycle(client.map(|(all, relay)| (all - relay).max(0.0)), s.cycles) * 1e6
            });
            let all_cpu = of(&|s| {
                let postgres = if config.on_postgres {
                    s.postgres_cpu
                } else {
                    Some(0.0)
                };
                let total = [
                    s.echo_cpu,
                    postgres,
                    s.broker_cpu,
                    s.client_cpu,
                    s.nginx_cpu.or(Some(0.0)),
                ]
                .into_iter()
                .sum::<Option<f64>>();
                per_cycle(total, s.cycles) * 1e6
            });
            let peak = of(&|s| as_f64(s.echo_peak_kb).unwrap_or(f64::NAN));
            let at_start = of(&|s| as_f64(s.echo_start_kb).unwrap_or(f64::NAN));
            let errors = if samples.is_empty() {
                "n/a".to_string()
            } else {
                samples
                    .iter()
                    .map(|s| s.sample.errors)
                    .sum::<u64>()
                    .to_string()
            };
            println!(
                "| {label} | {} | {} | {} | {} | {errors} | {} | {} / {} |",
                fmt(rate, 0),
                fmt(p50, 2),
                fmt(p99, 2),
                fmt(slowest, 1),
                fmt(connections, 0),
                fmt(at_start / 1024.0, 1),
                fmt(peak / 1024.0, 1),
            );
            cost_rows.push(format!(
                "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                fmt(client_cpu, 0),
                fmt(broker_cpu, 0),
                fmt(nginx_cpu, 0),
                fmt(relay_cpu, 0),
                fmt(echo_cpu, 0),
                fmt(postgres_cpu, 0),
                fmt(all_cpu, 0),
                fmt(cores as f64 * 1e6 / all_cpu, 0),
                fmt(fsyncs, 2),
                fmt(commits, 2),
            ));
            let mut line = format!(
                "BENCH name=store config={label} conns={LIFECYCLE_CONNS} cps={} p50_ms={} p99_ms={} max_ms={} errors={errors} db_connections={} echo_start_kb={} echo_peak_kb={} cpu_us_per_cycle_client={} cpu_us_per_cycle_broker={} cpu_us_per_cycle_nginx={} cpu_us_per_cycle_relay={} cpu_us_per_cycle_echo={} cpu_us_per_cycle_postgres={} cpu_us_per_cycle_all={} fsyncs_per_cycle={} commits_per_cycle={}",
                fmt(rate, 1),
                fmt(p50, 3),
                fmt(p99, 3),
                fmt(slowest, 1),
                fmt(connections, 0),
                fmt(at_start, 0),
                fmt(peak, 0),
                fmt(client_cpu, 1),
                fmt(broker_cpu, 1),
                fmt(nginx_cpu, 1),
                fmt(relay_cpu, 1),
                fmt(echo_cpu, 1),
                fmt(postgres_cpu, 1),
                fmt(all_cpu, 1),
                fmt(fsyncs, 3),
                fmt(commits, 3),
            );
            let mut cells = Vec::new();
            for &index in &order {
                let p50 = of(&|s| s.sample.step_p50[index]);
                let p99 = of(&|s| s.sample.step_p99[index]);
                cells.push(format!("{} / {}", fmt(p50, 2), fmt(p99, 2)));
                line.push_str(&format!(
                    " p50_{step}_ms={} p99_{step}_ms={}",
                    fmt(p50, 3),
                    fmt(p99, 3),
                    step = STEPS[index]
                ));
            }
            step_rows.push(format!("| {label} | {} |", cells.join(" | ")));
            line.push_str(&format!(" rounds={}", samples.len()));
            lines.push(line);
        }
        println!();
        println!(
            "Database connections: those of the round's database named 'echo-service' in pg_stat_activity at the end of the measured window (median over rounds)."
        );
        println!();
        println!("Per request, p50 / p99 ms:");
        println!();
        println!("| configuration | provision | bind | message | unbind | deprovision |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
        for row in step_rows {
            println!("{row}");
        }
        println!();
        println!(
            "Where a cycle's time goes: CPU us per cycle, and what the {cores} cores allow at that cost:"
        );
        println!();
        println!(
            "| configuration | load generator | broker | nginx | relay | echo service | PostgreSQL | all | cycles/s the CPU allows | fsyncs per cycle | commits per cycle |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for row in cost_rows {
            println!("{row}");
        }
        println!();
        println!(
            "One cycle: provision, bind, a message to the binding's uri with its credentials (as a bound app sends it), unbind, deprovision (5 requests; p50/p99 are per request)."
        );
        println!(
            "Per cycle, over warm-up and run: fsyncs are the journal's own count (echo_service_journal_fsyncs_total), for PostgreSQL the cluster's WAL syncs (pg_stat_wal.wal_sync); commits are pg_stat_database.xact_commit of the round's database (reads count too); PostgreSQL CPU is the postmaster's and its ended sessions' (Linux); nginx's is its master's and workers'; the relay's is its threads' in this program, apart from the load generator's, and in all since it takes this machine's cores (a network between hosts would not)."
        );
    }

    /// The ratios, each the median of the rounds' ratios, with each round's.
    fn print_ratios(&self, lines: &mut Vec<String>) {
        println!();
        println!("Ratios, measured side by side in each round (the median of the rounds' ratios):");
        println!();
        println!("| ratio | median | each round |");
        println!("| --- | ---: | --- |");
        for ratio in &STORE_RATIOS {
            let rounds = round_ratios(&self.results, ratio);
            let each: Vec<String> = rounds.iter().map(|value| fmt(*value, 2)).collect();
            let value = median(rounds);
            let (shown, listed) = if each.is_empty() {
                ("n/a".to_string(), "n/a".to_string())
            } else {
                (each.join(" "), each.join(","))
            };
            println!("| {} | {} | {shown} |", ratio.what, fmt(value, 2));
            lines.push(format!(
                "BENCH name=store_ratio id={} a={} b={} value={} rounds={listed}",
                ratio.id,
                ratio.a,
                ratio.b,
                fmt(value, 3),
            ));
        }
    }

    /// What the relay in front of the database did, summed over the rounds.
    fn print_relay(&self, options: &Options, lines: &mut Vec<String>) {
        let samples = self
            .results
            .get(STORE_POSTGRES_FAR)
            .map_or(&[][..], Vec::as_slice);
        let counts: Vec<RelayCounts> = samples.iter().filter_map(|s| s.relay).collect();
        if counts.is_empty() {
            return;
        }
        let connections: u64 = counts.iter().map(|c| c.connections).sum();
        let chunks: u64 = counts.iter().map(|c| c.chunks).sum();
        let mean = counts
            .iter()
            .map(|c| c.mean_one_way_ms * c.chunks as f64)
            .filter(|weighted| weighted.is_finite())
            .sum::<f64>()
            / chunks.max(1) as f64;
        let set = options.db_delay.as_secs_f64() * 1000.0 / 2.0;
        println!();
        println!(
            "{STORE_POSTGRES_FAR}'s relay over {} rounds: {connections} connections, {chunks} chunks, each delivered on average {} ms after it was read (set: {} ms each way; the rest is the wake-up).",
            counts.len(),
            fmt(mean, 3),
            trim(set)
        );
        lines.push(format!(
            "BENCH name=store_relay config={STORE_POSTGRES_FAR} one_way_ms_set={} one_way_ms_mean={} connections={connections} chunks={chunks} rounds={}",
            trim(set),
            fmt(mean, 3),
            counts.len()
        ));
    }

    /// The echo services' pools and logs, PostgreSQL's log, and its statements.
    fn print_database_findings(&self, lines: &mut Vec<String>) {
        println!();
        for (label, samples) in &self.results {
            let pools: Vec<[u64; 4]> = samples.iter().filter_map(|s| s.pool).collect();
            if !pools.is_empty() {
                let sum = |index: usize| pools.iter().map(|pool| pool[index]).sum::<u64>();
                println!(
                    "{label}: its echo services' database pools over {} rounds: {} connections opened, {} connect failures, {} calls timed out, {} found every connection busy.",
                    pools.len(),
                    sum(0),
                    sum(1),
                    sum(2),
                    sum(3)
                );
                lines.push(format!(
                    "BENCH name=store_pool config={label} connects={} connect_failures={} timeouts={} busy={} rounds={}",
                    sum(0),
                    sum(1),
                    sum(2),
                    sum(3),
                    pools.len()
                ));
            }
        }
        for (label, samples) in &self.results {
            let logged: usize = samples.iter().map(|s| s.echo_log_lines).sum();
            if logged > 0 {
                println!(
                    "{label}: its echo services logged {logged} lines at LOG_LEVEL=warn, e.g.:"
                );
                for example in samples.iter().flat_map(|s| &s.echo_log_examples).take(3) {
                    println!("    {example}");
                }
            }
        }
        if let Some((slow, errors, examples)) = &self.log_findings {
            println!(
                "PostgreSQL's log: {slow} statements slower than {SLOW_STATEMENT_MS} ms, {errors} ERROR or FATAL lines{}",
                if examples.is_empty() { "." } else { ", e.g.:" }
            );
            for example in examples {
                println!("    {example}");
            }
            lines.push(format!(
                "BENCH name=store_postgres_log slow_statements={slow} errors={errors} slow_ms={SLOW_STATEMENT_MS}"
            ));
        }
        if !self.statements.is_empty() {
            println!();
            println!("pg_stat_statements over every PostgreSQL round (warm-ups included):");
            println!();
            println!("| statement | calls | mean ms | total s |");
            println!("| --- | ---: | ---: | ---: |");
            for (statement, calls, mean, total) in &self.statements {
                println!(
                    "| `{}` | {calls} | {} | {} |",
                    statement.replace('|', "\\|"),
                    fmt(*mean, 3),
                    fmt(*total, 2)
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Measurements from /proc (Linux); elsewhere they are "n/a"
// ---------------------------------------------------------------------------------------

/// A `/proc/PID/status` field in kB (VmHWM: peak resident set; VmRSS: resident now).
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// User plus system CPU time of a process, in seconds (assumes USER_HZ = 100, as on Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_ticks(pid, 11..13)
}

/// The same plus the CPU time of its children that have ended (and been waited for).
fn cpu_seconds_with_children(pid: u32) -> Option<f64> {
    stat_ticks(pid, 11..15)
}

/// CPU seconds of this process's live threads whose names start with `prefix` (Linux). From
/// each thread's `schedstat` (nanoseconds on a CPU): a thread's `stat` counts clock ticks
/// that caught it running, and threads that run in bursts of microseconds were measured at 0
/// ticks after 150 ms on a CPU.
fn own_threads_cpu(prefix: &str) -> Option<f64> {
    let tasks = fs::read_dir(format!("/proc/{}/task", std::process::id())).ok()?;
    let mut nanoseconds: u64 = 0;
    for task in tasks.flatten() {
        let name = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !name.starts_with(prefix) {
            continue;
        }
        // A thread that ends meanwhile has no schedstat left: its time is not counted.
        let Ok(schedstat) = fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        nanoseconds += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(nanoseconds as f64 / 1e9)
}

/// The sum of `/proc/PID/stat` fields `range` (counted after the command name), in seconds.
fn stat_ticks(pid: u32, range: std::ops::Range<usize>) -> Option<f64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let mut ticks: u64 = 0;
    for index in range {
        ticks += fields.get(index)?.parse::<u64>().ok()?;
    }
    Some(ticks as f64 / 100.0)
}

/// The children of a process (Linux, `/proc/PID/task/PID/children`).
fn children(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|text| {
            text.split_whitespace()
                .filter_map(|child| child.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn total_cpu(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| cpu_seconds(pid)).sum()
}

fn mib(kb: Option<u64>) -> String {
    kb.map_or_else(|| "n/a".into(), |kb| format!("{:.1}", kb as f64 / 1024.0))
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
        .map_or_else(
            || "unknown CPU".to_string(),
            |(_, name)| name.trim().to_string(),
        );
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .map_or_else(
            || "unknown memory".to_string(),
            |kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0),
        );
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(
        |_| std::env::consts::OS.to_string(),
        |text| format!("{} {}", std::env::consts::OS, text.trim()),
    );
    format!("{cores} cores, {model}, {memory}, {kernel}")
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| {
            let parts: Vec<&str> = text.split_whitespace().take(3).collect();
            (parts.len() == 3).then(|| parts.join(" "))
        })
        .unwrap_or_else(|| "n/a".into())
}

// ---------------------------------------------------------------------------------------
// Rounds and results
// ---------------------------------------------------------------------------------------

/// One round's figures for one server.
#[derive(Debug, Clone)]
struct Sample {
    rate: f64,
    p50: f64,
    p99: f64,
    /// The slowest request, in milliseconds.
    max: f64,
    /// p50 and p99 by lifecycle step ([`STEPS`]: provision, bind, unbind, deprovision,
    /// message).
    step_p50: [f64; 5],
    step_p99: [f64; 5],
    /// Operations that succeeded (in the window or not).
    operations: u64,
    errors: u64,
    requests: u64,
    error_kinds: BTreeMap<String, u64>,
    /// How long the run really took (a stuck request makes it overrun).
    elapsed: f64,
    /// How long connecting took.
    setup: f64,
    /// Server CPU time (all its processes) per operation, in microseconds.
    cpu_us: Option<f64>,
    /// This program's own CPU time per operation, in microseconds.
    client_cpu_us: Option<f64>,
}

/// A server under test: where it listens and which processes do its work.
#[derive(Clone)]
struct Target {
    label: &'static str,
    address: SocketAddr,
    /// More addresses of the same service (a second broker): the connections are spread
    /// over `address` and these.
    more: Vec<SocketAddr>,
    pids: Vec<u32>,
}

impl Target {
    fn new(label: &'static str, address: SocketAddr, pids: Vec<u32>) -> Target {
        Target {
            label,
            address,
            more: Vec::new(),
            pids,
        }
    }

    fn addresses(&self) -> Vec<SocketAddr> {
        let mut all = vec![self.address];
        all.extend(&self.more);
        all
    }
}

/// Rows keyed by (phase, conns, server).
type Results = BTreeMap<(&'static str, usize, &'static str), Vec<Sample>>;

fn measure(target: &Target, work: Work, conns: usize, secs: f64, tag: &str) -> Sample {
    let own = std::process::id();
    let cpu_before = total_cpu(&target.pids);
    let own_before = cpu_seconds(own);
    let mut outcome = run_load(&target.addresses(), work, conns, secs, u64::MAX, tag);
    let cpu_after = total_cpu(&target.pids);
    let own_after = cpu_seconds(own);
    let operations = outcome.operations.max(1) as f64;
    let per_operation = |before: Option<f64>, after: Option<f64>| {
        Some((after? - before?) * 1e6 / operations).filter(|_| outcome.operations > 0)
    };
    let cpu_us = per_operation(cpu_before, cpu_after);
    let client_cpu_us = per_operation(own_before, own_after);
    let mut step_p50 = [f64::NAN; 5];
    let mut step_p99 = [f64::NAN; 5];
    for (step, values) in outcome.latencies.iter_mut().enumerate() {
        step_p50[step] = quantile_ms(values, 0.50);
        step_p99[step] = quantile_ms(values, 0.99);
    }
    let mut all: Vec<u32> = outcome.latencies.iter().flatten().copied().collect();
    Sample {
        rate: outcome.rate(),
        p50: quantile_ms(&mut all, 0.50),
        p99: quantile_ms(&mut all, 0.99),
        max: quantile_ms(&mut all, 1.0),
        step_p50,
        step_p99,
        operations: outcome.operations,
        errors: outcome.errors,
        requests: outcome.requests,
        error_kinds: std::mem::take(&mut outcome.error_kinds),
        elapsed: outcome.elapsed,
        setup: outcome.setup,
        cpu_us,
        client_cpu_us,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|value| value.is_finite());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

fn median_of(samples: &[Sample], field: impl Fn(&Sample) -> f64) -> f64 {
    median(samples.iter().map(field).collect())
}

/// The median over rounds of `server`'s rate divided by `ceiling`'s rate in the same round.
fn ratio(results: &Results, phase: &'static str, conns: usize, server: &str, ceiling: &str) -> f64 {
    let (Some(ours), Some(theirs)) = (
        results.get(&(phase, conns, server)),
        results.get(&(phase, conns, ceiling)),
    ) else {
        return f64::NAN;
    };
    median(
        ours.iter()
            .zip(theirs)
            .map(|(ours, theirs)| ours.rate / theirs.rate)
            .collect(),
    )
}

fn run_rounds(
    results: &mut Results,
    phase: &'static str,
    work: Work,
    conns: usize,
    targets: &[Target],
    options: &Options,
    round: usize,
) {
    // Rotate the order each round, so no server always runs first or last.
    for offset in 0..targets.len() {
        let target = &targets[(offset + round) % targets.len()];
        let tag = format!("{phase}-{conns}-{}-r{round}", target.label);
        let sample = measure(target, work, conns, options.secs, &tag);
        if sample.errors > 0 || sample.elapsed > options.secs + 1.0 || sample.setup > 1.0 {
            eprintln!(
                "  note: {} {phase} at {conns} conns, round {}: {} errors in {} requests {:?}, {:.1} s (+{:.1} s to connect)",
                target.label,
                round + 1,
                sample.errors,
                sample.requests,
                sample.error_kinds,
                sample.elapsed,
                sample.setup
            );
        }
        results
            .entry((phase, conns, target.label))
            .or_default()
            .push(sample);
    }
}

fn fmt(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "n/a".into()
    }
}

/// A goal and what was measured: pass or miss, and by how much.
struct Goal {
    id: &'static str,
    what: &'static str,
    goal: String,
    measured: String,
    /// Positive: better than the goal by this fraction; negative: worse.
    margin: f64,
    /// For a goal of no errors at all: how many there were.
    errors: Option<u64>,
}

fn no_errors(id: &'static str, what: &'static str, errors: Option<u64>) -> Goal {
    Goal {
        id,
        what,
        goal: "0".into(),
        measured: errors.map_or_else(|| "n/a".into(), |count| count.to_string()),
        margin: f64::NAN,
        errors,
    }
}

fn at_least(id: &'static str, what: &'static str, measured: f64, goal: f64, unit: &str) -> Goal {
    Goal {
        id,
        what,
        goal: format!(">= {}{unit}", trim(goal)),
        measured: with_unit(measured, unit),
        margin: measured / goal - 1.0,
        errors: None,
    }
}

fn at_most(id: &'static str, what: &'static str, measured: f64, goal: f64, unit: &str) -> Goal {
    Goal {
        id,
        what,
        goal: format!("<= {}{unit}", trim(goal)),
        measured: with_unit(measured, unit),
        margin: 1.0 - measured / goal,
        errors: None,
    }
}

/// `value` and its unit, or `n/a` alone.
fn with_unit(value: f64, unit: &str) -> String {
    if value.is_finite() {
        format!("{}{unit}", trim(value))
    } else {
        "n/a".into()
    }
}

fn trim(value: f64) -> String {
    if !value.is_finite() {
        "n/a".into()
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

// ---------------------------------------------------------------------------------------
// Start-up time
// ---------------------------------------------------------------------------------------

/// Milliseconds from `spawn` to the first 200 on `path`, polling every 100 µs.
fn time_to_first_200(mut process_for: impl FnMut() -> Process, path: &str) -> Option<f64> {
    let started = Instant::now();
    let mut process = process_for();
    let request = get_request(path, process.address);
    while started.elapsed() < READY_TIMEOUT {
        let mut client = Client::new(process.address);
        if let Ok(200) = client.send(&request) {
            return Some(started.elapsed().as_secs_f64() * 1000.0);
        }
        if let Ok(Some(_)) = process.child.try_wait() {
            return None;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    None
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

/// Stops nginx and PostgreSQL and removes the temporary directory. (The other processes
/// are locals of [`run`], killed when it returns or unwinds, before this is dropped.)
struct Fleet {
    dir: PathBuf,
    nginx: Option<Nginx>,
    postgres: Option<Cluster>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.nginx.take();
        self.postgres.take();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve-bare") {
        serve_bare(&args[1..]);
        return;
    }
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        print!("{USAGE}");
        return;
    }
    let options = Options::parse(&args).unwrap_or_else(|problem| {
        eprintln!("bench: {problem}");
        std::process::exit(2);
    });
    if let Some(address) = options.drive {
        drive(address, &options);
        return;
    }
    if cfg!(debug_assertions) {
        eprintln!("bench: run it with --release (cargo benchmark)");
        std::process::exit(2);
    }
    // This program is <target dir>/release/examples/bench: the binaries are built beside it.
    let binaries_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .expect("cannot find the release directory from this program's path");
    if options.build {
        let target_dir = binaries_dir
            .parent()
            .expect("the release directory is in a target directory");
        build(target_dir);
    }
    let dir = std::env::temp_dir().join(format!(
        "echo-broker-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |time| time.as_millis())
    ));
    fs::create_dir_all(&dir).expect("cannot create the temp dir");
    remove_when_interrupted(dir.clone());
    let mut fleet = Fleet {
        dir: dir.clone(),
        nginx: None,
        postgres: None,
    };
    let binaries = copy_binaries(&binaries_dir, &dir);
    let before = options.before.as_ref().map(|before_dir| {
        let copies = dir.join("before");
        fs::create_dir_all(&copies).expect("cannot create a directory in the temp dir");
        copy_binaries(before_dir, &copies)
    });
    run(&options, &binaries, before.as_ref(), &mut fleet);
}

/// On Ctrl-C (or SIGTERM), stops the PostgreSQL cluster if one runs (pg_ctl puts it in a
/// session of its own, out of the terminal's reach; bounded in time), removes the run's
/// directory and exits. The other servers it started got the same Ctrl-C from the terminal
/// and stop by themselves; their open files do not keep the directory from being removed,
/// but a file one of them creates meanwhile can make a removal fail, so it is tried a few
/// times.
fn remove_when_interrupted(dir: PathBuf) {
    let installed = ctrlc::set_handler(move || {
        if let Some(cluster) = cluster_to_stop().take() {
            cluster.stop("immediate");
            eprintln!("bench: interrupted; stopped PostgreSQL");
        }
        for _ in 0..20 {
            if fs::remove_dir_all(&dir).is_ok() || !dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("bench: interrupted; removed {}", dir.display());
        std::process::exit(130);
    });
    if let Err(error) = installed {
        eprintln!("bench: an interrupted run will leave its directory behind ({error})");
    }
}

/// Builds the release binaries into `target_dir`, the target directory this program was
/// built in (`target/bench` with `cargo benchmark`), so the usual `target/` is not touched.
fn build(target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    eprintln!(
        "bench: cargo build --release --bins --target-dir {}",
        target_dir.display()
    );
    let status: io::Result<ExitStatus> = Command::new(cargo)
        .args(["build", "--release", "--bins", "--manifest-path", manifest])
        .arg("--target-dir")
        .arg(target_dir)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => {
            eprintln!(
                "bench: the build failed ({status}); --no-build uses the binaries as they are"
            );
            std::process::exit(1);
        }
        Err(error) => {
            eprintln!("bench: cannot run cargo ({error}); build first and pass --no-build");
            std::process::exit(1);
        }
    }
}

/// Copies the binaries into the run's directory, so a rebuild during the run changes nothing.
fn copy_binaries(binaries_dir: &Path, dir: &Path) -> Binaries {
    let name = |base: &str| format!("{base}{}", std::env::consts::EXE_SUFFIX);
    let copy = |base: &str| {
        let original = binaries_dir.join(name(base));
        let copy = dir.join(name(base));
        fs::copy(&original, &copy).unwrap_or_else(|error| {
            panic!(
                "cannot copy {} ({error}); drop --no-build, or build the binaries there first",
                original.display()
            )
        });
        (copy, original)
    };
    let (broker, broker_original) = copy("echo-broker");
    let (echo, echo_original) = copy("echo-service");
    Binaries {
        broker,
        echo,
        broker_original,
        echo_original,
    }
}

/// `--drive`: only the load generator, against a server started by hand.
fn drive(address: SocketAddr, options: &Options) {
    if options.work == Work::Burst {
        let times = first_answers(address, options.conns);
        println!(
            "BENCH name=drive work=Burst conns={} {}",
            options.conns,
            burst_summary(&times)
        );
        return;
    }
    let target = Target::new("broker", address, Vec::new());
    let tag = format!(
        "drive{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |time| time.as_secs())
    );
    let sample = measure(&target, options.work, options.conns, options.secs, &tag);
    println!(
        "BENCH name=drive work={:?} conns={} rate={:.0} p50_ms={:.3} p99_ms={:.3} errors={} requests={} elapsed_s={:.2} setup_s={:.3} {:?}",
        options.work,
        options.conns,
        sample.rate,
        sample.p50,
        sample.p99,
        sample.errors,
        sample.requests,
        sample.elapsed,
        sample.setup,
        sample.error_kinds
    );
}

fn run(options: &Options, binaries: &Binaries, before: Option<&Binaries>, fleet: &mut Fleet) {
    let dir = fleet.dir.clone();
    let started = Instant::now();
    println!("# echo-broker benchmark");
    println!("machine: {}", machine());
    println!("load average at start: {}", load_average());
    println!(
        "settings: {} rounds x {} s per server and phase, {} start-ups, {} live instances, a database round trip of {} ms for {STORE_POSTGRES_FAR}{}",
        options.rounds,
        options.secs,
        options.starts,
        options.instances,
        trim(options.db_delay.as_secs_f64() * 1000.0),
        if options.quick { " (--quick)" } else { "" }
    );

    // Start-up first, while nothing else of ours runs.
    progress(started, "timing start-ups");
    let mut startup = Vec::new();
    let mut count = 0;
    let mut time_it = |label: &'static str, make: &mut dyn FnMut(usize) -> Process, path: &str| {
        let times: Vec<f64> = (0..options.starts)
            .filter_map(|_| {
                count += 1;
                let number = count;
                time_to_first_200(|| make(number), path)
            })
            .collect();
        startup.push((label, times));
    };
    time_it(
        "echo-broker (embedded echo service)",
        &mut |number| spawn_embedded(binaries, &dir, &format!("start{number}"), "info"),
        "/v2/catalog",
    );
    time_it(
        "echo-service",
        &mut |number| {
            let port = free_ports(1)[0];
            let data = dir.join(format!("start{number}-data"));
            create_data_dir(&data);
            // At the default LOG_LEVEL, as the start-up of a deployed echo service.
            spawn(
                "echo-service",
                &binaries.echo,
                &echo_environment(port, EchoStore::DataDir(&data), "info"),
                dir.join(format!("start{number}.log")),
                port,
            )
        },
        "/health",
    );

    // The servers under test.
    progress(started, "starting the servers");
    let Pair {
        echo: echo_a,
        broker: broker_a,
    } = start_pair(binaries, &dir, "broker");
    let info_port = free_ports(1)[0];
    let broker_info = start_broker(
        binaries,
        &dir,
        "broker-info",
        info_port,
        echo_a.address.port(),
        "info",
    );
    let Pair {
        echo: echo_b,
        broker: broker_b,
    } = start_pair(binaries, &dir, "broker-10k");
    let before_pair = before.map(|before| start_pair(before, &dir, "broker-before"));

    // The catalog's bytes, as the broker answers them, for the ceilings.
    let mut client = Client::new(broker_a.address);
    let status = client
        .send(&catalog_request(&broker_a.address.to_string()))
        .expect("cannot fetch the catalog from the broker");
    assert_eq!(status, 200, "the broker answered the catalog with {status}");
    let catalog_file = dir.join("catalog.json");
    fs::write(&catalog_file, &client.body).expect("cannot write the catalog to the temp dir");
    let catalog_bytes = client.body.len();
    let bare_oxhttp = start_bare(&dir, &catalog_file, BARE_OXHTTP);
    let bare_tiny_http = start_bare(&dir, &catalog_file, BARE_TINY_HTTP);
    let mut ceilings = vec![
        Target::new("bare-oxhttp", bare_oxhttp.address, vec![bare_oxhttp.pid()]),
        Target::new(
            "bare-tiny_http",
            bare_tiny_http.address,
            vec![bare_tiny_http.pid()],
        ),
    ];
    if options.nginx {
        match find_nginx() {
            Some(binary) => match start_nginx(&binary, &dir, &catalog_file) {
                Ok(nginx) => {
                    ceilings.push(Target::new("nginx", nginx.process.address, Vec::new()));
                    fleet.nginx = Some(nginx);
                }
                Err(problem) => eprintln!("bench: nginx left out: {problem}"),
            },
            None => eprintln!("bench: nginx is not installed; its column is left out"),
        }
    }
    let has_nginx = fleet.nginx.is_some();
    let wrk = if has_nginx { find_program("wrk") } else { None };
    if has_nginx && wrk.is_none() {
        eprintln!(
            "bench: wrk is not installed (apt-get install wrk); the catalog-wrk rows are left out"
        );
    }

    // The store phase's PostgreSQL cluster, and how two echo services share the load.
    let postgres = if !options.postgres {
        Err("left out (--no-postgres)".to_string())
    } else {
        progress(started, "starting PostgreSQL");
        match Cluster::start(&dir, options.pg_statements) {
            Ok(cluster) => {
                let description = cluster.version.clone();
                fleet.postgres = Some(cluster);
                Ok(description)
            }
            Err(why) => Err(why),
        }
    };
    if let Err(why) = &postgres {
        eprintln!("bench: PostgreSQL columns n/a: {why}");
    }
    let store_nginx = if options.nginx { find_nginx() } else { None };
    let two_mode = if store_nginx.is_some() {
        "nginx"
    } else {
        "two-brokers"
    };
    let mut store_results = StoreResults::new();
    let broker = Target::new(
        "broker",
        broker_a.address,
        vec![broker_a.pid(), echo_a.pid()],
    );
    let broker_logging = Target::new(
        "broker-info",
        broker_info.address,
        vec![broker_info.pid(), echo_a.pid()],
    );
    let broker_full = Target::new(
        "broker-10k",
        broker_b.address,
        vec![broker_b.pid(), echo_b.pid()],
    );
    let broker_before = before_pair.as_ref().map(|pair| {
        Target::new(
            "broker-before",
            pair.broker.address,
            vec![pair.broker.pid(), pair.echo.pid()],
        )
    });

    // 10,000 live instances in the second echo service, provisioned through its broker.
    progress(
        started,
        &format!("provisioning {} instances", options.instances),
    );
    let fill = run_load(
        &[broker_full.address],
        Work::Provision,
        LIFECYCLE_CONNS,
        120.0,
        options.instances,
        "fill",
    );
    let live = live_instances(echo_b.address);
    let echo_full_rss = status_kb(echo_b.pid(), "VmRSS");
    let echo_full_hwm = status_kb(echo_b.pid(), "VmHWM");
    println!(
        "prefill: {} instances provisioned in {:.1} s ({:.0}/s, {} errors); the echo service reports {} live",
        fill.operations,
        fill.elapsed,
        fill.operations as f64 / fill.elapsed.max(1e-9),
        fill.errors,
        live.map_or_else(|| "n/a".to_string(), |n| n.to_string())
    );

    // Warm-up: every server, both kinds of work, briefly.
    progress(started, "warming up");
    let warm = (options.secs / 2.0).clamp(0.2, 1.0);
    for target in ceilings
        .iter()
        .chain([&broker, &broker_logging])
        .chain(&broker_before)
    {
        run_load(
            &target.addresses(),
            Work::Catalog,
            16,
            warm,
            u64::MAX,
            "warm",
        );
    }
    for target in ceilings
        .iter()
        .chain([&broker, &broker_full])
        .chain(&broker_before)
    {
        run_load(
            &target.addresses(),
            Work::Lifecycle,
            16,
            warm,
            u64::MAX,
            "warm",
        );
    }

    let mut results = Results::new();
    for round in 0..options.rounds {
        progress(
            started,
            &format!("round {} of {}", round + 1, options.rounds),
        );
        for conns in CATALOG_CONNS {
            let mut targets = ceilings.clone();
            targets.push(broker.clone());
            targets.extend(broker_before.clone());
            if conns == 16 {
                targets.push(broker_logging.clone());
            }
            run_rounds(
                &mut results,
                "catalog",
                Work::Catalog,
                conns,
                &targets,
                options,
                round,
            );
        }
        if let Some(wrk) = &wrk {
            let mut targets: Vec<Target> = ceilings
                .iter()
                .filter(|target| target.label == "nginx")
                .cloned()
                .collect();
            targets.extend([broker.clone(), broker_logging.clone()]);
            wrk_round(&mut results, wrk, &targets, options, round);
        }
        let mut targets = ceilings.clone();
        targets.push(broker.clone());
        targets.push(broker_full.clone());
        targets.extend(broker_before.clone());
        run_rounds(
            &mut results,
            "lifecycle",
            Work::Lifecycle,
            LIFECYCLE_CONNS,
            &targets,
            options,
            round,
        );
        store_round(
            &mut store_results,
            binaries,
            &dir,
            fleet.postgres.as_mut(),
            store_nginx.as_deref(),
            options,
            round,
        );
    }
    let leaked = live_instances(echo_a.address);
    let store = StoreReport {
        results: store_results,
        postgres,
        two_mode,
        log_findings: fleet.postgres.as_ref().map(Cluster::log_findings),
        statements: fleet
            .postgres
            .as_mut()
            .map(Cluster::statement_times)
            .unwrap_or_default(),
        warm: (options.secs / 2.0).clamp(0.2, 1.0),
    };

    // New connections in a burst, after 6 s of idleness: every server's earlier
    // connections have been closed by the load generator, so each new one costs oxhttp a
    // thread start, and the broker's pooled connections to its echo service may have gone
    // idle. The tiny_http ceiling keeps a connection thread for 5 s after its connection
    // ends, and its pool can strand a new connection behind those for seconds: this phase
    // is where that shows. Not in --quick: it waits 6 s.
    let mut bursts = Vec::new();
    if !options.quick {
        progress(started, "bursts of new connections");
        std::thread::sleep(Duration::from_secs(6));
        for target in ceilings.iter().chain([&broker]).chain(&broker_before) {
            bursts.push((target.label, first_answers(target.address, BURST_CONNS)));
        }
    }

    // Memory after all of it.
    let mut memory = vec![
        (
            "echo-broker (SERVICE_BASE set), peak",
            status_kb(broker_a.pid(), "VmHWM"),
        ),
        ("echo-service, peak", status_kb(echo_a.pid(), "VmHWM")),
        (
            "echo-service holding the live instances, resident",
            echo_full_rss,
        ),
        (
            "echo-service holding the live instances, peak during prefill",
            echo_full_hwm,
        ),
        (
            "echo-service holding the live instances, peak after its lifecycles",
            status_kb(echo_b.pid(), "VmHWM"),
        ),
        (
            "echo-broker (LOG_LEVEL=info), peak",
            status_kb(broker_info.pid(), "VmHWM"),
        ),
        (
            "bare oxhttp server, peak",
            status_kb(bare_oxhttp.pid(), "VmHWM"),
        ),
        (
            "bare tiny_http server, peak",
            status_kb(bare_tiny_http.pid(), "VmHWM"),
        ),
    ];
    if let Some(pair) = &before_pair {
        memory.push((
            "echo-broker before (SERVICE_BASE set), peak",
            status_kb(pair.broker.pid(), "VmHWM"),
        ));
    }
    let log_bytes = fs::metadata(&broker_info.log).map_or(0, |meta| meta.len());

    // The default form, one process: peak memory after a short load of each kind.
    progress(started, "the embedded form");
    let mut embedded = spawn_embedded(binaries, &dir, "embedded", "warn");
    wait_ready(&mut embedded, "/v2/catalog");
    let embedded_target = Target::new("broker", embedded.address, vec![embedded.pid()]);
    let embedded_catalog = measure(&embedded_target, Work::Catalog, 16, options.secs, "emb-c");
    let embedded_lifecycle = measure(&embedded_target, Work::Lifecycle, 16, options.secs, "emb-l");
    let embedded_hwm = status_kb(embedded.pid(), "VmHWM");
    let load_at_end = load_average();
    let elapsed = started.elapsed().as_secs_f64();

    // ---- Report ----
    let sizes = [
        (
            "echo-broker",
            fs::metadata(&binaries.broker_original)
                .map(|m| m.len())
                .ok(),
        ),
        (
            "echo-service",
            fs::metadata(&binaries.echo_original).map(|m| m.len()).ok(),
        ),
    ];
    report(Report {
        options,
        results: &results,
        has_nginx,
        catalog_bytes,
        memory: &memory,
        embedded_hwm,
        embedded_catalog: &embedded_catalog,
        embedded_lifecycle: &embedded_lifecycle,
        startup: &startup,
        bursts: &bursts,
        sizes: &sizes,
        live,
        leaked,
        log_bytes,
        load_at_end,
        elapsed,
        store: &store,
    });
}

fn progress(started: Instant, what: &str) {
    eprintln!("bench: [{:5.1} s] {what}", started.elapsed().as_secs_f64());
}

/// `GET /echo` on an echo service: how many instances it holds (`None` if it cannot say).
fn live_instances(address: SocketAddr) -> Option<u64> {
    let mut client = Client::new(address);
    let authorization = echo_broker::http::basic_authorization(ECHO_USER, ECHO_PASSWORD);
    let request =
        format!("GET /echo HTTP/1.1\r\nHost: {address}\r\nAuthorization: {authorization}\r\n\r\n");
    match client.send(request.as_bytes()) {
        Ok(200) => {
            let body: serde_json::Value = serde_json::from_slice(&client.body).ok()?;
            body.get("instances")?.as_u64()
        }
        _ => None,
    }
}

struct Report<'a> {
    options: &'a Options,
    results: &'a Results,
    has_nginx: bool,
    catalog_bytes: usize,
    memory: &'a [(&'static str, Option<u64>)],
    embedded_hwm: Option<u64>,
    embedded_catalog: &'a Sample,
    embedded_lifecycle: &'a Sample,
    startup: &'a [(&'static str, Vec<f64>)],
    bursts: &'a [(&'static str, Vec<Option<f64>>)],
    sizes: &'a [(&'static str, Option<u64>)],
    live: Option<u64>,
    leaked: Option<u64>,
    log_bytes: u64,
    load_at_end: String,
    elapsed: f64,
    store: &'a StoreReport,
}

fn report(report: Report) {
    let Report {
        options,
        results,
        has_nginx,
        ..
    } = report;
    println!();
    println!(
        "## Throughput and latency (medians of {} rounds of {} s; catalog body {} bytes)",
        options.rounds, options.secs, report.catalog_bytes
    );
    println!();
    println!(
        "| phase | conns | server | rate/s | p50 ms | p99 ms | errors | server CPU us/op | vs oxhttp | vs tiny_http | vs nginx |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut lines = Vec::new();
    for ((phase, conns, server), samples) in results {
        let rate = median_of(samples, |s| s.rate);
        let p50 = median_of(samples, |s| s.p50);
        let p99 = median_of(samples, |s| s.p99);
        let errors: u64 = samples.iter().map(|s| s.errors).sum();
        let cpu = median_of(samples, |s| s.cpu_us.unwrap_or(f64::NAN));
        let client_cpu = median_of(samples, |s| s.client_cpu_us.unwrap_or(f64::NAN));
        let vs_oxhttp = ratio(results, phase, *conns, server, "bare-oxhttp");
        let vs_tiny_http = ratio(results, phase, *conns, server, "bare-tiny_http");
        let vs_nginx = ratio(results, phase, *conns, server, "nginx");
        let unit = if *phase == "lifecycle" {
            "cycles"
        } else {
            "req"
        };
        println!(
            "| {phase} | {conns} | {server} | {} {unit} | {} | {} | {errors} | {} | {} | {} | {} |",
            fmt(rate, 0),
            fmt(p50, 2),
            fmt(p99, 2),
            fmt(cpu, 0),
            fmt(vs_oxhttp, 2),
            fmt(vs_tiny_http, 2),
            if has_nginx {
                fmt(vs_nginx, 2)
            } else {
                "n/a".into()
            },
        );
        let mut line = format!(
            "BENCH name={phase} server={server} conns={conns} rps={} p50_ms={} p99_ms={} errors={errors} server_cpu_us_per_op={} client_cpu_us_per_op={} ratio_vs_oxhttp={} ratio_vs_tiny_http={} ratio_vs_nginx={} rounds={}",
            fmt(rate, 1),
            fmt(p50, 3),
            fmt(p99, 3),
            fmt(cpu, 1),
            fmt(client_cpu, 1),
            fmt(vs_oxhttp, 3),
            fmt(vs_tiny_http, 3),
            fmt(vs_nginx, 3),
            samples.len()
        );
        if *phase == "lifecycle" {
            let step = |i: usize| fmt(median_of(samples, |s| s.step_p99[i]), 3);
            line.push_str(&format!(
                " p99_provision_ms={} p99_bind_ms={} p99_unbind_ms={} p99_deprovision_ms={}",
                step(0),
                step(1),
                step(2),
                step(3)
            ));
        }
        lines.push(line);
    }
    println!();
    println!("Lifecycle rows: one cycle is provision, bind, unbind, deprovision (4 requests; p50/p99 are per request).");
    println!("catalog-wrk rows: wrk -t{WRK_THREADS} -c{WRK_CONNS} on the catalog (broker at LOG_LEVEL=warn, broker-info at the default info; errors are wrk's socket errors and non-2xx answers).");
    println!("The ceilings answer every lifecycle request with a canned {{}}, so their cycle rate is a quarter of their request rate.");
    if let (Some(live), Some(leaked)) = (report.live, report.leaked) {
        println!("Live instances: {live} in broker-10k's echo service; {leaked} left in broker's after its lifecycles.");
    }
    println!(
        "broker-info wrote {:.1} MB of log lines.",
        report.log_bytes as f64 / 1e6
    );

    println!();
    if report.bursts.is_empty() {
        println!("(The new-connection burst phase runs without --quick only.)");
    } else {
        println!(
            "## New connections: {BURST_CONNS} opened at once after 6 s idle, one catalog request each"
        );
        println!();
        println!(
            "| server | slowest first answer ms | median ms | unanswered in {} s |",
            CLIENT_TIMEOUT.as_secs()
        );
        println!("| --- | ---: | ---: | ---: |");
    }
    for (server, times) in report.bursts {
        let answered: Vec<f64> = times.iter().flatten().copied().collect();
        println!(
            "| {server} | {} | {} | {} |",
            fmt(answered.last().copied().unwrap_or(f64::NAN), 1),
            fmt(median(answered.clone()), 2),
            times.len() - answered.len()
        );
        lines.push(format!(
            "BENCH name=burst server={server} conns={BURST_CONNS} {}",
            burst_summary(times)
        ));
    }

    println!();
    println!("## Memory (MiB; VmHWM = peak resident, VmRSS = resident now)");
    println!();
    println!("| process | MiB |");
    println!("| --- | ---: |");
    for (what, kb) in report.memory {
        println!("| {what} | {} |", mib(*kb));
        lines.push(format!(
            "BENCH name=memory process=\"{what}\" kb={}",
            kb.map_or_else(|| "n/a".to_string(), |kb| kb.to_string())
        ));
    }
    println!(
        "| echo-broker, embedded echo service (default), peak after {} catalog/s and {} cycles/s | {} |",
        fmt(report.embedded_catalog.rate, 0),
        fmt(report.embedded_lifecycle.rate, 0),
        mib(report.embedded_hwm)
    );
    lines.push(format!(
        "BENCH name=memory process=\"echo-broker embedded, peak\" kb={} catalog_rps={} lifecycle_cps={}",
        report.embedded_hwm.map_or_else(|| "n/a".to_string(), |kb| kb.to_string()),
        fmt(report.embedded_catalog.rate, 1),
        fmt(report.embedded_lifecycle.rate, 1)
    ));

    println!();
    println!("## Start-up: spawn to the first 200 (ms)");
    println!();
    println!("| program | median | min | max | starts |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let mut startup_median = BTreeMap::new();
    for (label, times) in report.startup {
        let low = times.iter().copied().fold(f64::INFINITY, f64::min);
        let high = times.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mid = median(times.clone());
        startup_median.insert(*label, mid);
        println!(
            "| {label} | {} | {} | {} | {} |",
            fmt(mid, 1),
            fmt(low, 1),
            fmt(high, 1),
            times.len()
        );
        lines.push(format!(
            "BENCH name=startup program=\"{label}\" median_ms={} min_ms={} max_ms={} starts={}",
            fmt(mid, 2),
            fmt(low, 2),
            fmt(high, 2),
            times.len()
        ));
    }

    println!();
    println!("## Release binaries");
    println!();
    for (name, bytes) in report.sizes {
        let text = bytes.map_or_else(
            || "n/a".to_string(),
            |b| format!("{:.2} MiB ({b} bytes)", b as f64 / 1048576.0),
        );
        println!("- {name}: {text}");
        lines.push(format!(
            "BENCH name=size file={name} bytes={}",
            bytes.map_or_else(|| "n/a".to_string(), |b| b.to_string())
        ));
    }

    report.store.print(options, &mut lines);

    // ---- Targets ----
    let rate = |phase: &'static str, conns: usize, server: &'static str| {
        results
            .get(&(phase, conns, server))
            .map_or(f64::NAN, |samples| median_of(samples, |s| s.rate))
    };
    let p99 = |phase: &'static str, conns: usize, server: &'static str| {
        results
            .get(&(phase, conns, server))
            .map_or(f64::NAN, |samples| median_of(samples, |s| s.p99))
    };
    let lifecycle_errors: u64 = results
        .get(&("lifecycle", 16, "broker"))
        .map_or(0, |samples| samples.iter().map(|s| s.errors).sum());
    let kb_mib = |kb: Option<u64>| kb.map_or(f64::NAN, |kb| kb as f64 / 1024.0);
    // The ratios to the bare servers are in the table: the broker does more per request
    // (routing, auth, metrics, the conversation page); the targets are against nginx, and
    // against the build given with --before.
    let mut goals = Vec::new();
    if has_nginx {
        goals.push(at_least(
            "catalog16_vs_nginx",
            "catalog at 16 conns vs nginx (same bytes, same load generator)",
            ratio(results, "catalog", 16, "broker", "nginx"),
            1.0,
            "x",
        ));
    }
    if results.contains_key(&("catalog-wrk", WRK_CONNS, "broker-info")) {
        goals.push(at_least(
            "catalog16_wrk_default_vs_nginx",
            "catalog with wrk -t1 -c16, the default LOG_LEVEL=info (broker-info) vs nginx",
            ratio(results, "catalog-wrk", WRK_CONNS, "broker-info", "nginx"),
            0.9,
            "x",
        ));
    }
    if results.contains_key(&("lifecycle", 16, "broker-before")) {
        goals.push(at_least(
            "lifecycle16_vs_before",
            "lifecycles/s at 16 conns vs the --before build",
            ratio(results, "lifecycle", 16, "broker", "broker-before"),
            1.0,
            "x",
        ));
    }
    goals.extend([
        at_most(
            "catalog16_p99",
            "catalog p99 at 16 conns",
            p99("catalog", 16, "broker"),
            2.0,
            " ms",
        ),
        at_least(
            "lifecycle16_rate",
            "lifecycles/s at 16 conns (every change fsynced)",
            rate("lifecycle", 16, "broker"),
            2500.0,
            "/s",
        ),
        at_most(
            "lifecycle16_p99",
            "lifecycle p99 per request at 16 conns",
            p99("lifecycle", 16, "broker"),
            10.0,
            " ms",
        ),
        no_errors(
            "lifecycle16_errors",
            "lifecycle errors (non-2xx or failed)",
            Some(lifecycle_errors),
        ),
        at_least(
            "lifecycle10k_vs_empty",
            "lifecycles/s with 10k live vs empty",
            ratio(results, "lifecycle", 16, "broker-10k", "broker"),
            0.8,
            "x",
        ),
        at_most(
            "broker_rss",
            "broker peak RSS, whole run: 64 conns, and the burst unless --quick (own process)",
            kb_mib(report.memory[0].1),
            8.0,
            " MiB",
        ),
        at_most(
            "echo10k_rss",
            "echo service RSS holding 10k instances",
            kb_mib(report.memory[2].1),
            16.0,
            " MiB",
        ),
        at_most(
            "startup",
            "start-up to first 200 (embedded broker)",
            startup_median
                .get("echo-broker (embedded echo service)")
                .copied()
                .unwrap_or(f64::NAN),
            10.0,
            " ms",
        ),
    ]);
    let store = report.store;
    let store_ran = !store.results.is_empty();
    goals.extend([
        at_least(
            "store_postgres_vs_journal",
            "lifecycles/s with a message, postgres vs journal (same rounds)",
            store.median_ratio(&POSTGRES_VS_JOURNAL),
            0.5,
            "x",
        ),
        at_least(
            "store_far_vs_postgres",
            "lifecycles/s with a message, postgres-far (the database a round trip away) vs postgres",
            store.median_ratio(&FAR_VS_NEAR),
            0.5,
            "x",
        ),
        at_least(
            "store_x2_vs_x1_proxied",
            "lifecycles/s with a message, two echo services vs one, both behind nginx (postgres-x2 vs postgres-x1-proxied)",
            store.median_ratio(&TWO_VS_ONE_PROXIED),
            1.0,
            "x",
        ),
        at_most(
            "store_postgres_memory",
            "echo service peak memory, postgres vs journal",
            store.median_ratio(&MEMORY_VS_JOURNAL),
            1.0,
            "x",
        ),
        no_errors(
            "store_errors",
            "store phase errors, all configurations (non-2xx or failed)",
            store_ran.then(|| store.errors()),
        ),
    ]);
    println!();
    println!("## Targets");
    println!();
    println!("| target | goal | measured | result |");
    println!("| --- | --- | --- | --- |");
    for goal in &mut goals {
        let result = if let Some(errors) = goal.errors {
            goal.margin = if errors == 0 { 0.0 } else { -1.0 };
            if errors == 0 {
                "pass".to_string()
            } else {
                "MISS".to_string()
            }
        } else if !goal.margin.is_finite() {
            "n/a".to_string()
        } else if goal.margin >= 0.0 {
            format!("pass (by {:.0} %)", goal.margin * 100.0)
        } else {
            format!("MISS (by {:.0} %)", -goal.margin * 100.0)
        };
        println!(
            "| {} | {} | {} | {result} |",
            goal.what, goal.goal, goal.measured
        );
        lines.push(format!(
            "BENCH name=target id={} goal=\"{}\" measured=\"{}\" result={}",
            goal.id,
            goal.goal,
            goal.measured,
            result
                .split_whitespace()
                .next()
                .unwrap_or("n/a")
                .to_lowercase()
        ));
    }
    println!();
    for line in &lines {
        println!("{line}");
    }
    println!();
    println!(
        "load average at end: {}; the run took {:.0} s. Other work on the machine moves these figures: take them on a quiet machine.",
        report.load_at_end, report.elapsed
    );
}
