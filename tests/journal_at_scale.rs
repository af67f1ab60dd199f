//! The journal store at scale, on the real `echo-service`: 50,000 instances with one binding
//! each fit in 64 MiB resident, and a compaction of 300 MB of state holds the state so
//! briefly that no request waits on it.
//!
//! The journals are written beforehand through the journal's own interface (one fsync, not
//! 100,000), then the service starts on them, as after a restart.
//!
//! Linux only: resident memory comes from /proc.
#![cfg(target_os = "linux")]

mod common;
use common::*;
use echo_broker::echo::api::{BindingAttributes, InstanceAttributes};
use echo_broker::echo::journal::Journal;
use echo_broker::echo::journal_store::{Change, EchoState};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// The management credentials the services here are started with (`broker` /
/// `echo-secret`, as [`ECHO_CREDENTIAL_LINES`] sends them), on loopback.
const MANAGEMENT: [(&str, &str); 3] = [
    ("ECHO_USERNAME", "broker"),
    ("ECHO_PASSWORD", "echo-secret"),
    ("HOST", "127.0.0.1"),
];

/// A UUID-shaped id, as platforms make them, different for each `n` and `kind`.
fn uuid(kind: u32, n: u64) -> String {
    format!(
        "{kind:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        n >> 48,
        (n >> 36) & 0xfff,
        (n >> 24) & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

/// Writes `changes` into a fresh journal in `dir`, a flush every few thousand.
fn prefill(dir: &Path, changes: impl Iterator<Item = Change>) {
    let (journal, _) = Journal::<EchoState>::open(dir).expect("a fresh journal opens");
    let mut last = None;
    for (n, change) in changes.enumerate() {
        let ticket = journal.append(&change).expect("appended");
        if n % 2_000 == 1_999 {
            journal.wait_until_durable(ticket).expect("flushed");
        }
        last = Some(ticket);
    }
    if let Some(ticket) = last {
        journal.wait_until_durable(ticket).expect("flushed");
    }
}

fn instance_attributes(parameters: Option<Value>) -> InstanceAttributes {
    InstanceAttributes {
        service_id: "echo_service".into(),
        plan_id: "big_0001".into(),
        organization_guid: "HP".into(),
        space_guid: "IT".into(),
        context: None,
        parameters,
        // What the broker records of the catalog's plan at a provision.
        maintenance_info: Some(serde_json::json!({
            "version": "1.0.0",
            "description": "First release of the echo service"
        })),
    }
}

/// A provision and a bind for instance `n`, as the broker sends them for the tests'
/// provision and bind bodies.
fn provision_and_bind(n: u64) -> [Change; 2] {
    let instance_id = uuid(1, n);
    [
        Change::Provision {
            instance_id: instance_id.clone(),
            attributes: Some(instance_attributes(None)),
            dashboard_token: format!("{:032x}", n * 7919),
        },
        Change::Bind {
            instance_id,
            binding_id: uuid(2, n),
            attributes: Some(BindingAttributes {
                service_id: "echo_service".into(),
                plan_id: "big_0001".into(),
                app_guid: Some("otherappid".into()),
                bind_resource: None,
                parameters: None,
                predecessor_binding_id: None,
            }),
            username: format!("app-{:012x}", n),
            password: format!("{:032x}", n * 104_729),
            lifetime: None,
        },
    ]
}

/// A field of `/proc/PID/status` in KiB.
fn status_kib(process: &Process, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", process.child.id()))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn management(process: &Process, method: &str, path: &str, body: Option<&str>) -> Reply {
    let headers = [
        ("Authorization", "Basic YnJva2VyOmVjaG8tc2VjcmV0"),
        ("Content-Type", "application/json"),
    ];
    call(method, &format!("{}{path}", process.url), &headers, body)
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
}

/// A gauge or counter of the echo service's `/metrics`.
fn metric(process: &Process, name: &str) -> f64 {
    let text = management(process, "GET", "/metrics", None).text;
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.parse().ok())
        .unwrap_or(f64::NAN)
}

const INSTANCES: u64 = 50_000;

/// Whether these tests apply: they are about the journal, and the store matrix
/// (`ECHO_TEST_DATABASE_URL`) puts every echo service on PostgreSQL instead.
fn on_the_journal() -> bool {
    let store = store_under_test();
    if store != "journal" {
        println!(
            "*** SKIPPED: about the journal, and the echo services of this run are on {store}"
        );
    }
    store == "journal"
}

#[test]
fn fifty_thousand_instances_with_a_binding_each_take_at_most_64_mib() {
    if !on_the_journal() {
        return;
    }
    let data = TempDir::new("fifty-thousand");
    prefill(data.path(), (0..INSTANCES).flat_map(provision_and_bind));
    let data_dir = data.path().display().to_string();
    let mut env = vec![("DATA_DIR", data_dir.as_str()), ("LOG_LEVEL", "warn")];
    env.extend_from_slice(&MANAGEMENT);
    let echo = Process::start(ECHO_SERVICE, free_port(), &env);

    // Serving as usual: a read, a bind, a message; then the compaction that the replayed
    // log asks for has run.
    let totals = management(&echo, "GET", "/echo", None).json();
    assert_eq!(totals["instances"], INSTANCES, "{totals}");
    assert_eq!(totals["bindings"], INSTANCES, "{totals}");
    let instance = format!("/echo/{}", uuid(1, 77));
    assert_eq!(management(&echo, "GET", &instance, None).status, 200);
    let bind = r#"{"service_id": "echo_service", "plan_id": "big_0001", "app_guid": "another"}"#;
    let bound = management(&echo, "PUT", &format!("{instance}/extra"), Some(bind));
    assert_eq!(bound.status, 200, "{}", bound.text);
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&echo, "echo_service_journal_compactions_total") < 1.0 {
        assert!(Instant::now() < deadline, "no compaction within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }

    let resident_kib = status_kib(&echo, "VmRSS:");
    println!(
        "{INSTANCES} instances with a binding each: {:.1} MiB resident ({:.1} MiB at the peak)",
        resident_kib as f64 / 1024.0,
        status_kib(&echo, "VmHWM:") as f64 / 1024.0
    );
    assert!(
        resident_kib <= 64 * 1024,
        "{resident_kib} KiB resident for {INSTANCES} instances with a binding each"
    );
    assert_eq!(echo.stderr(), "");
}

/// Instances with 60 KB of parameters each: 5,000 of them make 300 MB of state.
const LARGE_INSTANCES: u64 = 5_000;
const PARAMETER_BYTES: usize = 60_000;

#[test]
fn a_compaction_of_300_mb_of_state_holds_it_for_at_most_50_ms() {
    if !on_the_journal() {
        return;
    }
    let data = TempDir::new("three-hundred-mb");
    let blob = "x".repeat(PARAMETER_BYTES);
    prefill(
        data.path(),
        (0..LARGE_INSTANCES).map(|n| Change::Provision {
            instance_id: uuid(3, n),
            attributes: Some(instance_attributes(Some(
                serde_json::json!({ "blob": blob }),
            ))),
            dashboard_token: format!("{:032x}", n),
        }),
    );
    let data_dir = data.path().display().to_string();
    let mut env = vec![("DATA_DIR", data_dir.as_str()), ("LOG_LEVEL", "warn")];
    env.extend_from_slice(&MANAGEMENT);
    let echo = Process::start(ECHO_SERVICE, free_port(), &env);

    // How long a read takes before, to judge what it takes during the compaction.
    let read = |n: u64| {
        let started = Instant::now();
        let path = format!("/echo/{}?", uuid(3, n % LARGE_INSTANCES));
        let reply = management(&echo, "GET", &path, None);
        assert_eq!(reply.status, 200, "{}", reply.text);
        started.elapsed()
    };
    let before = (0..20).map(read).max().unwrap_or_default();

    // The log (300 MB, and no snapshot yet) is due for compaction: the next change starts it.
    let trigger = r#"{"service_id": "echo_service", "plan_id": "big_0001", "organization_guid": "o", "space_guid": "s"}"#;
    let provisioned = management(&echo, "PUT", "/echo/trigger", Some(trigger));
    assert_eq!(provisioned.status, 200, "{}", provisioned.text);
    let started = Instant::now();
    let mut during = Duration::ZERO;
    let mut reads = 0;
    while metric(&echo, "echo_service_journal_compactions_total") < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no compaction within 120 s"
        );
        during = during.max(read(reads));
        reads += 1;
    }
    let compaction = started.elapsed();
    let held = metric(&echo, "echo_service_journal_compaction_hold_seconds");
    let snapshot = std::fs::metadata(data.path().join("state.snapshot"))
        .map(|metadata| metadata.len())
        .unwrap_or(0);
    println!(
        "a compaction of {:.0} MB took {compaction:?}; it held the state {:.1} ms; {reads} reads meanwhile, the slowest {during:?} (before: {before:?})",
        snapshot as f64 / 1e6,
        held * 1e3
    );
    assert!(snapshot > 300_000_000, "a snapshot of {snapshot} bytes");
    assert!(held <= 0.050, "the compaction held the state {held} s");
    assert!(reads > 0, "no read while the compaction ran");
    // A read during it may be slower than before only by what the machine is doing (one
    // core writes 300 MB): not by the seconds a compaction under the state's lock took.
    assert!(
        during < Duration::from_millis(500) + before * 10,
        "a read took {during:?} during the compaction (before: {before:?})"
    );
    // And the state is whole after a restart on the new snapshot.
    drop(echo);
    let echo = Process::start(ECHO_SERVICE, free_port(), &env);
    let totals = management(&echo, "GET", "/echo", None).json();
    assert_eq!(totals["instances"], LARGE_INSTANCES + 1, "{totals}");
}
