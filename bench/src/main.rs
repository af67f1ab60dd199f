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
//! `cargo run --release --target-dir target/bench --package echo-bench --`: the benchmark and the
//! release binaries it measures are built in a target directory of their own, so switching
//! between it and the usual builds recompiles nothing. How long each takes is in
//! docs/performance.md.
//!
//! It builds the release binaries first (`cargo build --release --bins --package
//! echo-broker`, into the target directory it was itself built in; `--no-build` skips
//! that), copies them into a fresh temporary directory, starts everything it measures on free
//! loopback ports (127.0.0.1 only), and stops and removes all of it at the end, also when
//! interrupted (Ctrl-C). Every load loop is bounded in time and in count. The load generator
//! is part of this program (`load.rs`, over the client of `client.rs`): one thread per
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
//! a bound app sends it), unbind, deprovision. PostgreSQL is a throwaway cluster of the test
//! kit (`testkit/`, the tests' own) made from the system's packages (`initdb` and `pg_ctl`
//! from `PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else `PATH`; as the
//! `postgres` user when running as root) in a temporary directory, listening on 127.0.0.1,
//! with durability on (fsync, synchronous commit), stopped at the end and on Ctrl-C. Without PostgreSQL (or with
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

mod ceilings;
mod client;
mod database;
mod load;
mod nginx;
mod options;
mod processes;
mod relay;
mod report;
mod rounds;
mod store;
mod store_report;
mod usage;
mod wrk;

use crate::ceilings::{serve_bare, start_bare, BARE_OXHTTP, BARE_TINY_HTTP};
use crate::client::Client;
use crate::database::{stop_interrupted_cluster, Cluster};
use crate::load::{burst_summary, catalog_request, first_answers, run_load, Work};
use crate::nginx::{find_nginx, start_nginx, Nginx};
use crate::options::{Options, USAGE};
use crate::processes::{
    build, copy_binaries, create_data_dir, echo_environment, find_program, free_ports, spawn,
    spawn_embedded, start_broker, start_pair, time_to_first_200, wait_ready, Binaries, EchoStore,
    Pair, Process, ECHO_PASSWORD, ECHO_USER,
};
use crate::report::{report, trim, Report};
use crate::rounds::{measure, run_rounds, Results, Target};
use crate::store::{store_round, StoreResults, STORE_POSTGRES_FAR};
use crate::store_report::StoreReport;
use crate::usage::{load_average, machine, status_kb};
use crate::wrk::wrk_round;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The connection counts of the catalog phase.
const CATALOG_CONNS: [usize; 3] = [1, 16, 64];
pub const LIFECYCLE_CONNS: usize = 16;
/// How many connections the burst phase opens at once.
pub const BURST_CONNS: usize = 16;

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
    // This program is <target dir>/release/echo-bench: the binaries are built beside it.
    let binaries_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.to_path_buf()))
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
        if stop_interrupted_cluster() {
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
        match Cluster::start(options.pg_statements) {
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
