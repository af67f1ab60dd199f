//! The echo service's durability, black-box: `kill -9` under concurrent load loses no change
//! that was answered 200, a corrupt journal stops start-up (exit code 2, one line naming the
//! file and line) without being touched, and a removed lock file lets no second writer in.

mod common;
use common::*;
use echo_broker::echo::api::InstanceAttributes;
use echo_broker::echo::journal::{Journal, COMPACT_AFTER_ENTRIES};
use echo_broker::echo::journal_store::{Change, EchoState};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const INSTANCE: &str = r#"{"service_id":"echo_service","plan_id":"big_0001","organization_guid":"o","space_guid":"s"}"#;
const BINDING: &str = r#"{"service_id":"echo_service","plan_id":"big_0001"}"#;

const ROUNDS: usize = 4;
const CLIENTS: usize = 8;
/// A round's load is killed once this many changes were answered 200 (or after `ROUND_TIME`).
const ACKED_PER_ROUND: usize = 600;
const ROUND_TIME: Duration = Duration::from_millis(1_000);
const ITERATIONS_PER_CLIENT: usize = 2_000;

/// What a path must answer after a restart, as far as the answers before the kill tell.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Present,
    Absent,
}

/// Everything the clients learnt from the answers they got.
#[derive(Debug, Default)]
struct Expectations {
    paths: HashMap<String, Expect>,
    /// An instance's message count: at least the answered ones, at most the sent ones.
    messages: HashMap<String, (u64, u64)>,
    /// How many changes were answered 200.
    acked: usize,
}

impl Expectations {
    fn merge(&mut self, other: Expectations) {
        self.paths.extend(other.paths);
        self.messages.extend(other.messages);
        self.acked += other.acked;
    }

    /// An answer that was lost in the kill: the change may or may not have been made.
    fn unknown(&mut self, paths: &[&str]) {
        for path in paths {
            self.paths.remove(*path);
            self.messages.remove(*path);
        }
    }
}

/// A client that keeps its connection open (the harness's `call` opens one per request).
struct Client(ureq::Agent);

impl Client {
    fn new() -> Client {
        Client(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into(),
        )
    }

    /// Status and body; `Err` when there is no answer (the service was killed).
    fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Result<(u16, String), ureq::Error> {
        let mut request = ureq::http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(body.unwrap_or("").as_bytes().to_vec())
            .expect("the test builds a valid request");
        let mut response = self.0.run(request)?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string()?;
        Ok((status, text))
    }
}

fn env<'a>(port: &'a str, dir: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![("PORT", port), ("DATA_DIR", dir), ("LOG_LEVEL", "warn")]
}

fn start(dir: &Path) -> Process {
    let port = free_port();
    let port_text = port.to_string();
    let dir_text = dir.display().to_string();
    Process::start(ECHO_SERVICE, port, &env(&port_text, &dir_text))
}

/// One client: provisions, binds, sends a message, binds and unbinds a second binding, and
/// deprovisions every third instance, until the service stops answering (or the bounds).
fn client(url: String, prefix: String, acked: Arc<AtomicUsize>) -> Expectations {
    let mut known = Expectations::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    let agent = Client::new();
    let send = |method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>| {
        match agent.send(method, &format!("{url}{path}"), headers, body) {
            Ok((200, text)) => {
                acked.fetch_add(1, Ordering::SeqCst);
                Some(text)
            }
            Ok((status, text)) => panic!("{method} {path}: {status} {text}"),
            Err(_) => None, // killed: the answer is lost
        }
    };
    let json = [("Content-Type", "application/json")];
    for i in 0..ITERATIONS_PER_CLIENT {
        if Instant::now() > deadline {
            break;
        }
        let instance = format!("/echo/{prefix}-{i}");
        let first = format!("{instance}/first");
        let second = format!("{instance}/second");

        if send("PUT", &instance, &json, Some(INSTANCE)).is_none() {
            known.unknown(&[&instance]);
            break;
        }
        known.paths.insert(instance.clone(), Expect::Present);
        known.messages.insert(instance.clone(), (0, 0));
        known.acked += 1;

        let Some(bound) = send("PUT", &first, &json, Some(BINDING)) else {
            known.unknown(&[&first]);
            break;
        };
        known.paths.insert(first.clone(), Expect::Present);
        known.acked += 1;

        let binding: serde_json::Value = serde_json::from_str(&bound).expect("a binding is JSON");
        let credentials = format!(
            "{}:{}",
            binding["username"].as_str().unwrap_or_default(),
            binding["password"].as_str().unwrap_or_default()
        );
        let authorization = {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
            format!("Basic {encoded}")
        };
        let headers = [
            ("Content-Type", "application/json"),
            ("Authorization", authorization.as_str()),
        ];
        let echoed = send("POST", &first, &headers, Some(r#"{"message":"hi"}"#));
        let count = known.messages.entry(instance.clone()).or_insert((0, 0));
        count.1 += 1;
        if echoed.is_none() {
            break;
        }
        count.0 += 1;
        known.acked += 1;

        if i % 2 == 0 {
            if send("PUT", &second, &json, Some(BINDING)).is_none() {
                known.unknown(&[&second]);
                break;
            }
            known.paths.insert(second.clone(), Expect::Present);
            if send("DELETE", &second, &[], None).is_none() {
                known.unknown(&[&second]);
                break;
            }
            known.paths.insert(second.clone(), Expect::Absent);
            known.acked += 2;
        }

        if i % 3 == 2 {
            if send("DELETE", &instance, &[], None).is_none() {
                known.unknown(&[&instance, &first, &second]);
                break;
            }
            known.messages.remove(&instance);
            known.paths.insert(instance.clone(), Expect::Absent);
            known.paths.insert(first.clone(), Expect::Absent);
            known.paths.insert(second.clone(), Expect::Absent);
            known.acked += 1;
        }
    }
    known
}

/// Runs `CLIENTS` clients against `service` and kills it with SIGKILL mid-load.
fn load_and_kill(service: &mut Process, round: usize) -> Expectations {
    let acked = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let url = service.url.clone();
            let acked = Arc::clone(&acked);
            std::thread::spawn(move || client(url, format!("r{round}c{c}"), acked))
        })
        .collect();
    let started = Instant::now();
    // A different moment in each round, so the kill lands in different places.
    let target = ACKED_PER_ROUND + round * 137;
    while acked.load(Ordering::SeqCst) < target && started.elapsed() < ROUND_TIME {
        std::thread::sleep(Duration::from_millis(2));
    }
    service.kill();
    let mut known = Expectations::default();
    for client in clients {
        known.merge(client.join().expect("client thread finishes"));
    }
    known
}

/// A path, what it must answer, and the range its message count must be in.
type Check = (String, Expect, Option<(u64, u64)>);

/// Checks every expectation against the running service, with a few clients at once.
fn verify(service: &Process, known: &Expectations) {
    let checks: Vec<Check> = known
        .paths
        .iter()
        .map(|(path, expect)| (path.clone(), *expect, known.messages.get(path).copied()))
        .collect();
    let chunks: Vec<Vec<_>> = checks
        .chunks(checks.len() / CLIENTS + 1)
        .map(<[_]>::to_vec)
        .collect();
    let checkers: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let url = service.url.clone();
            std::thread::spawn(move || {
                let agent = Client::new();
                for (path, expect, messages) in chunk {
                    let (status, text) = agent
                        .send("GET", &format!("{url}{path}"), &[], None)
                        .unwrap_or_else(|error| panic!("GET {path}: {error}"));
                    let wanted = if expect == Expect::Present { 200 } else { 404 };
                    assert_eq!(
                        status, wanted,
                        "GET {path} after a kill -9: an acknowledged change was lost ({text})"
                    );
                    if let Some((at_least, at_most)) = messages {
                        let reply: serde_json::Value =
                            serde_json::from_str(&text).expect("an instance is JSON");
                        let count = reply["messages"].as_u64().unwrap_or(u64::MAX);
                        assert!(
                            (at_least..=at_most).contains(&count),
                            "{path}: {count} messages, {at_least} were acknowledged, {at_most} sent"
                        );
                    }
                }
            })
        })
        .collect();
    for checker in checkers {
        checker.join().expect("every acknowledged change is there");
    }
}

/// Writes changes straight into the journal, so the service compacts soon after it starts.
fn prefill(dir: &Path, count: u64) {
    let (journal, _) = Journal::<EchoState>::open(dir).expect("a fresh journal opens");
    let mut last = None;
    for i in 0..count {
        let change = Change::Provision {
            instance_id: format!("prefilled-{i}"),
            attributes: Some(InstanceAttributes {
                service_id: "echo_service".into(),
                plan_id: "big_0001".into(),
                organization_guid: "o".into(),
                space_guid: "s".into(),
                context: None,
                parameters: None,
                maintenance_info: None,
            }),
            dashboard_token: format!("token-{i}"),
        };
        last = Some(journal.append(&change).expect("appended"));
    }
    if let Some(ticket) = last {
        journal.wait_until_durable(ticket).expect("flushed");
    }
}

fn log_generations(dir: &Path) -> Vec<u64> {
    std::fs::read_dir(dir)
        .expect("DATA_DIR lists")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("changes.")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_change() {
    let data = TempDir::new("durability");
    // Close to the compaction threshold: the first round compacts under load.
    let prefilled = COMPACT_AFTER_ENTRIES - 300;
    prefill(data.path(), prefilled);
    let mut known = Expectations::default();
    for i in [0, prefilled - 1] {
        known
            .paths
            .insert(format!("/echo/prefilled-{i}"), Expect::Present);
    }

    for round in 0..ROUNDS {
        let mut service = start(data.path());
        verify(&service, &known);
        let learnt = load_and_kill(&mut service, round);
        assert!(
            learnt.acked > 0,
            "round {round}: no change was answered; the log:\n{}",
            service.log()
        );
        known.merge(learnt);
    }
    let service = start(data.path());
    verify(&service, &known);
    assert!(
        log_generations(data.path()).iter().any(|&g| g > 0),
        "the journal was compacted during the rounds"
    );
    let log = service.log();
    assert!(!log.contains("ERROR"), "{log}");
}

/// Starts the service on `dir`, makes three instances, and kills it.
fn journal_with_three_instances(dir: &Path) {
    let mut service = start(dir);
    for id in ["one", "two", "three"] {
        provision(&service, id);
    }
    service.kill();
}

/// Runs the service on `dir` expecting it to refuse to start because of `file`, `line`.
fn assert_refuses_to_start(dir: &Path, file: &str, line: usize) {
    let path = dir.join(file);
    let before = std::fs::read(&path).expect("the journal file reads");
    let port = free_port().to_string();
    let dir_text = dir.display().to_string();
    let env = [
        ("PORT", port.as_str()),
        ("DATA_DIR", dir_text.as_str()),
        ("LOG_LEVEL", "error"),
    ];
    let (code, output) = run_to_end(ECHO_SERVICE, &[], &env);
    assert_eq!(code, Some(2), "{output}");
    let output = output.trim_end();
    assert_eq!(output.lines().count(), 1, "one line: {output}");
    assert!(
        output.contains(&format!("{} line {line}: ", path.display())),
        "names the file and line: {output}"
    );
    assert!(output.contains("corrupt"), "{output}");
    assert_eq!(
        std::fs::read(&path).expect("the journal file reads"),
        before,
        "the corrupt file is left as it was"
    );
}

fn instance_exists(service: &Process, id: &str) -> bool {
    let reply = call("GET", &format!("{}/echo/{id}", service.url), &[], None)
        .expect("the echo service answers");
    reply.status == 200
}

#[test]
fn a_corrupt_journal_stops_start_up_and_is_left_untouched() {
    let data = TempDir::new("corrupt");
    journal_with_three_instances(data.path());
    let log_path = data.path().join("changes.0.log");
    let original = std::fs::read(&log_path).expect("the log reads");
    let mut lines: Vec<Vec<u8>> = original
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(lines.len(), 3);

    // A torn last line (a write the kill cut short) is not corruption: it is cut off.
    let mut torn = original.clone();
    torn.extend_from_slice(&lines[2][..lines[2].len() / 2]);
    std::fs::write(&log_path, &torn).expect("the log is written");
    let service = start(data.path());
    assert!(["one", "two", "three"]
        .iter()
        .all(|id| instance_exists(&service, id)));
    drop(service);
    assert_eq!(std::fs::read(&log_path).expect("the log reads"), original);

    // A changed byte in the middle is.
    let at = lines[1].len() - 10;
    lines[1][at] ^= 0x04;
    std::fs::write(&log_path, lines.concat()).expect("the log is written");
    assert_refuses_to_start(data.path(), "changes.0.log", 2);

    // So is a bad snapshot.
    std::fs::write(&log_path, &original).expect("the log is written");
    {
        let (journal, state) = Journal::<EchoState>::open(data.path()).expect("the journal opens");
        journal.compact(&state);
    }
    let snapshot_path = data.path().join("state.snapshot");
    let mut snapshot = std::fs::read(&snapshot_path).expect("a snapshot was written");
    let middle = snapshot.len() / 2;
    snapshot[middle] ^= 0x01;
    std::fs::write(&snapshot_path, &snapshot).expect("the snapshot is written");
    assert_refuses_to_start(data.path(), "state.snapshot", 1);

    snapshot[middle] ^= 0x01;
    std::fs::write(&snapshot_path, &snapshot).expect("the snapshot is written");
    let service = start(data.path());
    assert!(instance_exists(&service, "two"));
}

fn provision(service: &Process, id: &str) {
    let reply = call(
        "PUT",
        &format!("{}/echo/{id}", service.url),
        &[("Content-Type", "application/json")],
        Some(INSTANCE),
    )
    .expect("the echo service answers");
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[test]
fn a_removed_lock_file_lets_no_second_writer_in() {
    let data = TempDir::new("lock-removed");
    let mut first = start(data.path());
    let ids: Vec<String> = (0..100).map(|n| format!("lock-{n}")).collect();
    for id in &ids[..50] {
        provision(&first, id);
    }

    // A "stale lock" clean-up while the service runs.
    std::fs::remove_file(data.path().join("journal.lock")).expect("the lock file is removed");
    let port = free_port().to_string();
    let dir_text = data.path().display().to_string();
    let env = [
        ("PORT", port.as_str()),
        ("DATA_DIR", dir_text.as_str()),
        ("LOG_LEVEL", "error"),
    ];
    let (code, output) = run_to_end(ECHO_SERVICE, &[], &env);
    assert_eq!(
        code,
        Some(2),
        "the second service refuses to start: {output}"
    );
    let output = output.trim_end();
    assert_eq!(output.lines().count(), 1, "one line: {output}");
    // Windows may keep a removed open file as "delete pending", which cannot be opened.
    let lock_file_unusable = cfg!(windows) && output.contains("journal.lock");
    assert!(
        output.contains("another process") || lock_file_unusable,
        "{output}"
    );

    // The first goes on acknowledging, and keeps everything it acknowledged.
    for id in &ids[50..] {
        provision(&first, id);
    }
    first.kill();
    let restarted = start(data.path());
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| !instance_exists(&restarted, id))
        .collect();
    assert!(missing.is_empty(), "lost after a restart: {missing:?}");
}
