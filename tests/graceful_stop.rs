//! A graceful stop: SIGTERM (what Cloud Foundry sends before SIGKILL 10 s later) while
//! eight clients provision in a loop, five times. Every request the broker read gets a
//! complete answer; the others are refused before a byte is read (the listener is closed,
//! or the connection reset), so the platform's router can retry them elsewhere; nothing is
//! left half-done, and the process exits 0.
#![cfg(unix)]

mod common;
use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
