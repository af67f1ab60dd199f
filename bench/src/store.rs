//! The store phase: the echo service's journal and PostgreSQL side by side, each
//! configuration started afresh every round, and the ratios between them.

use crate::client::Client;
use crate::database::Cluster;
use crate::load::{run_load, Work};
use crate::nginx::{start_nginx_proxy, Nginx};
use crate::options::Options;
use crate::processes::{
    free_ports, start_broker, start_echo, Binaries, Process, ECHO_PASSWORD, ECHO_USER,
};
use crate::relay::{DelayRelay, RelayCounts, RELAY_THREAD_PREFIX};
use crate::rounds::{measure, Sample, Target};
use crate::usage::{children, cpu_seconds, own_threads_cpu, status_kb, total_cpu};
use crate::LIFECYCLE_CONNS;
use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The store phase's configurations, by label.
const STORE_JOURNAL: &str = "journal";
pub const STORE_POSTGRES: &str = "postgres";
pub const STORE_POSTGRES_FAR: &str = "postgres-far";
pub const STORE_POSTGRES_ONE_PROXIED: &str = "postgres-x1-proxied";
pub const STORE_POSTGRES_TWO: &str = "postgres-x2";

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
pub struct StoreConfig {
    pub label: &'static str,
    /// A fresh PostgreSQL database each round; else a fresh DATA_DIR per echo service.
    pub on_postgres: bool,
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

pub const STORE_CONFIGS: [StoreConfig; 5] = [
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
pub struct StoreSample {
    pub sample: Sample,
    /// The highest peak resident memory among its echo services, in kB.
    pub echo_peak_kb: Option<u64>,
    /// The highest resident memory among its echo services once started, in kB.
    pub echo_start_kb: Option<u64>,
    /// CPU seconds of its echo services, and of PostgreSQL (its sessions), over the
    /// warm-up and the run.
    pub echo_cpu: Option<f64>,
    pub postgres_cpu: Option<f64>,
    /// CPU seconds of its broker(s), of nginx in front of the echo services, and of this
    /// program (the load generator, and the relay when there is one), likewise.
    pub broker_cpu: Option<f64>,
    pub nginx_cpu: Option<f64>,
    pub client_cpu: Option<f64>,
    /// CPU seconds of the relay's threads in this program, likewise.
    pub relay_cpu: Option<f64>,
    /// Cycles that succeeded, warm-up included: what `fsyncs` and `commits` cover.
    pub cycles: u64,
    /// The journal's fsyncs, or the cluster's WAL syncs, over the warm-up and the run.
    pub fsyncs: Option<u64>,
    /// Transactions committed in the round's database (PostgreSQL).
    pub commits: Option<u64>,
    /// Its echo services' database pool counters, summed (PostgreSQL): connections
    /// opened, connect failures, calls timed out, calls that found every connection busy.
    pub pool: Option<[u64; 4]>,
    /// Connections its echo services held to the round's database at the end of the
    /// measured window (PostgreSQL).
    pub database_connections: Option<u64>,
    /// What the relay in front of the database did, over the warm-up and the run.
    pub relay: Option<RelayCounts>,
    /// Lines its echo services logged at LOG_LEVEL=warn, and the first few.
    pub echo_log_lines: usize,
    pub echo_log_examples: Vec<String>,
}

pub type StoreResults = BTreeMap<&'static str, Vec<StoreSample>>;

/// One round of the store phase: each configuration that can run started afresh, warmed up
/// and measured, in an order that rotates with the round.
pub fn store_round(
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
pub struct StoreRatio {
    /// Its name in `BENCH name=store_ratio id=...`.
    pub id: &'static str,
    pub what: &'static str,
    pub a: &'static str,
    pub b: &'static str,
    field: fn(&StoreSample) -> f64,
}

fn cycles_per_second(sample: &StoreSample) -> f64 {
    sample.sample.rate
}

fn echo_peak_kb(sample: &StoreSample) -> f64 {
    sample.echo_peak_kb.map_or(f64::NAN, |kb| kb as f64)
}

pub const POSTGRES_VS_JOURNAL: StoreRatio = StoreRatio {
    id: "postgres_vs_journal_cps",
    what: "cycles/s, postgres / journal",
    a: STORE_POSTGRES,
    b: STORE_JOURNAL,
    field: cycles_per_second,
};

pub const FAR_VS_NEAR: StoreRatio = StoreRatio {
    id: "far_vs_postgres_cps",
    what: "cycles/s, postgres-far / postgres (the database's round trip)",
    a: STORE_POSTGRES_FAR,
    b: STORE_POSTGRES,
    field: cycles_per_second,
};

pub const TWO_VS_ONE_PROXIED: StoreRatio = StoreRatio {
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

pub const MEMORY_VS_JOURNAL: StoreRatio = StoreRatio {
    id: "postgres_vs_journal_echo_peak",
    what: "echo service peak memory, postgres / journal",
    a: STORE_POSTGRES,
    b: STORE_JOURNAL,
    field: echo_peak_kb,
};

pub const STORE_RATIOS: [StoreRatio; 5] = [
    POSTGRES_VS_JOURNAL,
    FAR_VS_NEAR,
    TWO_VS_ONE_PROXIED,
    PROXIED_VS_DIRECT,
    MEMORY_VS_JOURNAL,
];

/// Each round's `field(a) / field(b)`, over the rounds that ran both.
pub fn round_ratios(results: &StoreResults, ratio: &StoreRatio) -> Vec<f64> {
    let (Some(ours), Some(theirs)) = (results.get(ratio.a), results.get(ratio.b)) else {
        return Vec::new();
    };
    ours.iter()
        .zip(theirs)
        .map(|(ours, theirs)| (ratio.field)(ours) / (ratio.field)(theirs))
        .collect()
}
