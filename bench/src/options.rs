//! The command line: `cargo benchmark [OPTIONS]`, its help text and what it parses into.

use crate::load::Work;
use crate::processes::DB_CONNECTIONS;
use crate::LIFECYCLE_CONNS;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
bench: throughput, latency, memory, start-up time and size of echo-broker and echo-service,
next to a bare oxhttp server, a bare tiny_http server and nginx serving the same bytes.

Usage: cargo benchmark [OPTIONS]
  (an alias for: cargo run --release --target-dir target/bench --package echo-bench --)

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
cluster in a temporary directory of its own, from initdb and pg_ctl in PG_BIN, else the
newest /usr/lib/postgresql/*/bin, else PATH (run as the postgres user when the benchmark
runs as root); stopped at the end and on Ctrl-C.
";

#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub rounds: usize,
    pub secs: f64,
    pub starts: usize,
    pub instances: u64,
    pub build: bool,
    pub nginx: bool,
    /// Whether the store phase may start a PostgreSQL cluster.
    pub postgres: bool,
    /// Load pg_stat_statements into it and report the statements' times.
    pub pg_statements: bool,
    /// The round trip the relay in front of the database adds for `postgres-far`.
    pub db_delay: Duration,
    /// Another build's `target/release`, measured beside this one as `broker-before`.
    pub before: Option<PathBuf>,
    pub drive: Option<SocketAddr>,
    pub work: Work,
    pub conns: usize,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options, String> {
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
