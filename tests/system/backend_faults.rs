//! Faults in the backend: the echo service down, too slow, or answering 500 or garbage. The
//! broker answers a 5xx JSON error with a useful description within its timeout, records
//! nothing, and recovers by itself when the backend returns. A provision the backend never
//! confirmed is cleaned up by the platform's orphan mitigation (a deprovision).

use crate::common::*;
use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// The broker's backend timeout plus slack for a loaded machine.
const WITHIN_TIMEOUT: Duration = Duration::from_secs(9);

fn broker_with_backend(service_base: &str) -> Process {
    Process::start(BROKER, free_port(), &[("SERVICE_BASE", service_base)])
}

/// A fake backend on a loopback port that reads each whole request and answers it with
/// `reply` (or, with `None`, accepts and never answers). Reading the request first matters
/// on Windows (see `read_http_message`). Its threads end with the test process.
fn misbehaving_backend(reply: Option<&'static [u8]>) -> u16 {
    match reply {
        Some(bytes) => fake_backend(bytes, false),
        None => fake_backend(b"", true),
    }
}

/// [`misbehaving_backend`] that writes `reply` and then, with `keep_open`, holds the
/// connection open without another byte.
fn fake_backend(reply: &'static [u8], keep_open: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
    let port = listener.local_addr().expect("it has an address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            if let Ok(clone) = stream.try_clone() {
                let _ = read_http_message(&mut BufReader::new(clone));
            }
            let _ = stream.write_all(reply);
            if keep_open {
                held.push(stream);
            }
        }
    });
    port
}

/// The seconds a 504's description says the echo service was given (`within N s`).
fn stated_timeout(description: &str) -> Duration {
    let seconds = description
        .split("within ")
        .nth(1)
        .and_then(|rest| rest.split(" s").next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no 'within N s' in {description}"));
    Duration::from_secs(seconds)
}

fn provision(broker: &Process, instance_id: &str) -> (Reply, Duration) {
    let started = Instant::now();
    let url = format!("{}/v2/service_instances/{instance_id}", broker.url);
    let reply = platform("PUT", &url, Some(PROVISION_ECHO));
    (reply, started.elapsed())
}

#[test]
fn a_backend_refusing_connections_is_a_503_with_a_description() {
    let port = free_port();
    let broker = broker_with_backend(&format!("http://127.0.0.1:{port}"));
    let (reply, took) = provision(&broker, "refused");
    let body = reply.assert_error(503);
    assert!(
        body["description"]
            .as_str()
            .unwrap_or("")
            .contains("cannot be reached"),
        "{body}"
    );
    assert!(took < WITHIN_TIMEOUT, "took {took:?}");
    // The catalog does not need the backend.
    assert_eq!(
        platform("GET", &format!("{}/v2/catalog", broker.url), None).status,
        200
    );
}

#[test]
fn a_backend_that_never_answers_is_a_504_within_the_timeout() {
    let port = misbehaving_backend(None);
    let broker = broker_with_backend(&format!("http://127.0.0.1:{port}"));
    let (reply, took) = provision(&broker, "silent");
    let body = reply.assert_error(504);
    let description = body["description"].as_str().unwrap_or("");
    assert!(description.contains("did not answer"), "{body}");
    assert!(took >= stated_timeout(description), "took {took:?}: {body}");
    assert!(took < WITHIN_TIMEOUT, "took {took:?}");
}

#[test]
fn a_backend_that_stops_in_the_middle_of_its_answer_is_a_504_naming_the_time_it_had() {
    let port = fake_backend(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"half\":",
        true,
    );
    let broker = broker_with_backend(&format!("http://127.0.0.1:{port}"));
    let (reply, took) = provision(&broker, "half-answer");
    let body = reply.assert_error(504);
    let description = body["description"].as_str().unwrap_or("");
    assert!(description.contains("whole answer"), "{body}");
    // The time it names is the time it waited, not a longer one.
    assert!(took >= stated_timeout(description), "took {took:?}: {body}");
    assert!(took < WITHIN_TIMEOUT, "took {took:?}");
}

#[test]
fn a_backend_answering_500_is_a_502_that_says_so() {
    let port = misbehaving_backend(Some(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 17\r\nConnection: close\r\n\r\n{\"error\": \"boom\"}",
    ));
    let broker = broker_with_backend(&format!("http://127.0.0.1:{port}"));
    let (reply, _) = provision(&broker, "five-hundred");
    let body = reply.assert_error(502);
    let description = body["description"].as_str().unwrap_or("");
    assert!(
        description.contains("500") && description.contains("boom"),
        "{body}"
    );
}

#[test]
fn a_backend_answering_garbage_is_a_502() {
    let port = misbehaving_backend(Some(b"this is not HTTP at all\r\n\r\n"));
    let broker = broker_with_backend(&format!("http://127.0.0.1:{port}"));
    let (reply, took) = provision(&broker, "garbage");
    reply.assert_error(502);
    assert!(took < WITHIN_TIMEOUT, "took {took:?}");

    let port = misbehaving_backend(Some(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot json!",
    ));
    let broker = broker_with_backend(&format!("http://127.0.0.1:{port}"));
    let (reply, _) = provision(&broker, "garbage-body");
    reply.assert_error(502);
}

#[test]
fn the_broker_recovers_when_the_backend_returns_and_a_failed_provision_left_nothing() {
    let echo_port = free_port();
    let broker = broker_with_backend(&format!("http://127.0.0.1:{echo_port}"));
    let (reply, _) = provision(&broker, "orphan");
    reply.assert_error(503);

    let data = TempDir::new("recover");
    let data_dir = data.path().display().to_string();
    let _echo = Process::start(ECHO_SERVICE, echo_port, &[("DATA_DIR", &data_dir)]);

    // Orphan mitigation: the platform deprovisions what it never saw confirmed. Nothing was
    // created, so the answer is 410, which the platform takes as success.
    let url = format!("{}/v2/service_instances/orphan?{ECHO_IDS}", broker.url);
    assert_eq!(platform("DELETE", &url, None).status, 410);
    let fetched = platform(
        "GET",
        &format!("{}/v2/service_instances/orphan", broker.url),
        None,
    );
    assert_eq!(fetched.status, 404);

    // The backend is back: the same broker process serves again without a restart.
    let (reply, _) = provision(&broker, "orphan");
    assert_eq!(reply.status, 201, "{}", reply.text);
}

/// The provision reaches the echo service, but its answer comes too late: the broker says
/// 504, the instance exists anyway, and the platform's orphan mitigation removes it.
#[cfg(unix)]
#[test]
fn a_provision_answered_too_late_is_removed_by_orphan_mitigation() {
    let echo_port = free_port();
    let data = TempDir::new("late");
    let data_dir = data.path().display().to_string();
    let echo = Process::start(ECHO_SERVICE, echo_port, &[("DATA_DIR", &data_dir)]);
    let broker = broker_with_backend(&format!("http://127.0.0.1:{echo_port}"));
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &echo.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    };

    signal("-STOP");
    let (reply, took) = provision(&broker, "late");
    signal("-CONT");
    reply.assert_error(504);
    assert!(took < WITHIN_TIMEOUT, "took {took:?}");

    // The stopped echo service now handles the PUT it had queued.
    let url = format!("{}/v2/service_instances/late", broker.url);
    let deadline = Instant::now() + Duration::from_secs(5);
    while platform("GET", &url, None).status != 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let deprovisioned = platform("DELETE", &format!("{url}?{ECHO_IDS}"), None);
    assert_eq!(deprovisioned.status, 200, "{}", deprovisioned.text);
    assert_eq!(platform("GET", &url, None).status, 404);
}
