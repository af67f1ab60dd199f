//! A graceful stop: SIGTERM (what Cloud Foundry sends before SIGKILL 10 s later) while
//! clients provision in a loop. Every request the broker took gets a complete answer,
//! nothing is left half-done, and the process exits 0.
#![cfg(unix)]

mod common;
use common::*;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What one provision request got: a status, or `None` when no answer came back.
type Outcome = (String, Option<u16>);

fn provision_in_a_loop(
    base: &str,
    client: usize,
    signalled: &AtomicBool,
    outcomes: &Mutex<Vec<Outcome>>,
) {
    let give_up = Instant::now() + Duration::from_secs(20);
    for n in 0.. {
        let instance_id = format!("stop-{client}-{n}");
        let url = format!("{base}/v2/service_instances/{instance_id}");
        let status = call("PUT", &url, &platform_headers(), Some(PROVISION_ECHO))
            .ok()
            .map(|reply| reply.status);
        let failed = status.is_none();
        outcomes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((instance_id, status));
        if (failed && signalled.load(Ordering::SeqCst)) || Instant::now() > give_up {
            return;
        }
    }
}

#[test]
fn sigterm_under_load_answers_every_accepted_request_and_exits_0() {
    let data = TempDir::new("graceful");
    let data_dir = data.path().display().to_string();
    let echo_port = free_port().to_string();
    let env = [
        ("ECHO_PORT", echo_port.as_str()),
        ("DATA_DIR", data_dir.as_str()),
    ];
    let mut broker = Process::start(BROKER, free_port(), &env);
    let signalled = AtomicBool::new(false);
    let outcomes = Mutex::new(Vec::new());
    let status = std::thread::scope(|scope| {
        for client in 0..4 {
            let (base, signalled, outcomes) = (&broker.url, &signalled, &outcomes);
            scope.spawn(move || provision_in_a_loop(base, client, signalled, outcomes));
        }
        std::thread::sleep(Duration::from_millis(1500));
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
                "still running 10 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let log = broker.log();
    assert_eq!(status.code(), Some(0), "exit status; log:\n{log}");
    assert!(log.contains("stop requested"), "{log}");

    // Restarted on the same state: what was answered 201 is there, nothing else is.
    let restarted = Process::start(BROKER, free_port(), &env);
    let outcomes = outcomes
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let created = outcomes
        .iter()
        .filter(|(_, status)| *status == Some(201))
        .count();
    assert!(created > 0, "no provision succeeded before the stop");
    for (instance_id, status) in &outcomes {
        assert!(
            matches!(status, None | Some(201) | Some(503)),
            "{instance_id}: {status:?}"
        );
        let url = format!("{}/v2/service_instances/{instance_id}", restarted.url);
        let fetched = platform("GET", &url, None).status;
        let expected = if *status == Some(201) { 200 } else { 404 };
        assert_eq!(fetched, expected, "{instance_id} was answered {status:?}");
    }
}
