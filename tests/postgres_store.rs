//! The echo service on PostgreSQL: the store chosen from the environment, several
//! instances on one database behaving as one service, nothing acknowledged lost to a crash,
//! a database that stops or pauses, the schema made once, a journal moved in, and TLS.
//!
//! Each test starts a throwaway PostgreSQL cluster of its own (`testkit::Cluster`); where
//! PostgreSQL is not installed the tests say loudly that they skipped (and fail instead
//! when `ECHO_TEST_REQUIRE_POSTGRES` is set, as `.ci/run` does).

mod common;

use common::{call, free_port, run_to_end, spawn, Process, TempDir, BROKER, ECHO_SERVICE};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use testkit::Cluster;

const PROVISION: &str = r#"{"service_id": "echo_service", "plan_id": "big_0001", "organization_guid": "o", "space_guid": "s"}"#;
/// The platform's provision of `common::PROVISION_ECHO` with other parameters.
const PROVISION_OTHER_PARAMETERS: &str = r#"{"service_id": "echo_service", "plan_id": "big_0001", "organization_guid": "HP", "space_guid": "IT", "parameters": {"size": 2}}"#;
const BIND: &str = r#"{"service_id": "echo_service", "plan_id": "big_0001", "app_guid": "app"}"#;

/// An echo service on `database_url`, healthy.
fn echo_on(database_url: &str) -> Process {
    Process::start(ECHO_SERVICE, free_port(), &[("DATABASE_URL", database_url)])
}

fn put(url: &str, body: Option<&str>) -> common::Reply {
    call("PUT", url, &[], body).unwrap_or_else(|error| panic!("PUT {url}: {error}"))
}

fn get(url: &str) -> common::Reply {
    call("GET", url, &[], None).unwrap_or_else(|error| panic!("GET {url}: {error}"))
}

fn delete(url: &str) -> common::Reply {
    call("DELETE", url, &[], None).unwrap_or_else(|error| panic!("DELETE {url}: {error}"))
}

/// Posts a message with a binding's credentials (from its bind answer).
fn message(echo: &Process, instance: &str, binding: &Value, text: &str) -> common::Reply {
    use base64::Engine;
    let pair = format!(
        "{}:{}",
        binding["username"].as_str().unwrap_or_default(),
        binding["password"].as_str().unwrap_or_default()
    );
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    );
    let url = format!(
        "{}/echo/{instance}/{}",
        echo.url,
        binding["id"].as_str().unwrap_or_default()
    );
    let body = serde_json::json!({ "message": text }).to_string();
    call(
        "POST",
        &url,
        &[("Authorization", &authorization)],
        Some(&body),
    )
    .unwrap_or_else(|error| panic!("POST {url}: {error}"))
}

fn count(cluster: &Cluster, database: &str, sql: &str) -> i64 {
    cluster
        .client(database)
        .query_one(sql, &[])
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .get(0)
}

#[test]
fn the_start_up_line_names_the_store_where_it_came_from_and_the_database_never_the_password() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("named");
    let echo = echo_on(&url);
    let log = echo.log();
    let expected = format!(
        "state in PostgreSQL, database 'named' on 127.0.0.1:{} (DATABASE_URL)",
        cluster.port()
    );
    assert!(log.contains(&expected), "{log}");
    assert!(!log.contains(cluster.password()), "{log}");

    // A service bound on the platform, published with separate credentials and tags.
    let vcap = serde_json::json!({"a9s-postgresql11": [{
        "name": "echo-state",
        "tags": ["sql", "PostgreSQL"],
        "credentials": {"hostname": "127.0.0.1", "port": cluster.port(), "name": "named",
                        "username": testkit::SUPERUSER, "password": cluster.password()}
    }]})
    .to_string();
    let bound = Process::start(ECHO_SERVICE, free_port(), &[("VCAP_SERVICES", &vcap)]);
    assert!(
        bound.log().contains("(the bound service 'echo-state')"),
        "{}",
        bound.log()
    );

    // The broker's embedded echo service reads the same variable.
    let echo_port = free_port().to_string();
    let broker = Process::start(
        BROKER,
        free_port(),
        &[("DATABASE_URL", &url), ("ECHO_PORT", &echo_port)],
    );
    assert!(broker.log().contains(&expected), "{}", broker.log());
}

#[test]
fn a_database_that_refuses_stops_start_up_with_one_line_naming_the_variable() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let wrong = cluster.wrong_password_url("postgres");
    for binary in [ECHO_SERVICE, BROKER] {
        let (code, output) = run_to_end(binary, &[], &[("DATABASE_URL", &wrong)]);
        assert_eq!(code, Some(2), "{output}");
        // The broker logs its catalog first; the reason is one line, the last.
        let errors: Vec<&str> = output
            .lines()
            .filter(|line| line.starts_with("error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{output}");
        assert_eq!(output.trim().lines().last(), Some(errors[0]), "{output}");
        assert!(errors[0].starts_with("error: DATABASE_URL: "), "{output}");
        assert!(errors[0].contains("28P01"), "{output}");
    }
    let (code, output) = run_to_end(ECHO_SERVICE, &[], &[("DATABASE_URL", &wrong)]);
    assert_eq!(
        (code, output.trim().lines().count()),
        (Some(2), 1),
        "{output}"
    );
    let (code, output) = run_to_end(ECHO_SERVICE, &[], &[("DATABASE_URL", "mysql://u:p@h/d")]);
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.trim().starts_with("error: DATABASE_URL: "),
        "{output}"
    );
}

#[test]
fn two_instances_on_one_database_are_one_service() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("shared");
    let (a, b) = (echo_on(&url), echo_on(&url));

    assert_eq!(
        put(&format!("{}/echo/i1", a.url), Some(PROVISION)).status,
        200
    );
    let fetched = get(&format!("{}/echo/i1", b.url));
    assert_eq!(fetched.status, 200, "{}", fetched.text);
    let binding = put(&format!("{}/echo/i1/b1", b.url), Some(BIND));
    assert_eq!(binding.status, 200, "{}", binding.text);
    let binding = binding.json();
    for (echo, text) in [(&a, "one"), (&b, "two"), (&a, "three")] {
        let echoed = message(echo, "i1", &binding, text);
        assert_eq!(echoed.status, 200, "{}", echoed.text);
        assert_eq!(echoed.json()["response"], text);
    }
    for echo in [&a, &b] {
        let record = get(&format!("{}/echo/i1", echo.url)).json();
        assert_eq!(
            (record["bindings"].as_u64(), record["messages"].as_u64()),
            (Some(1), Some(3))
        );
        let totals = get(&format!("{}/echo", echo.url)).json();
        assert_eq!(totals, serde_json::json!({"instances": 1, "bindings": 1}));
        let token = record["dashboard_token"].as_str().unwrap_or_default();
        let page = get(&format!("{}/echo/dashboard/i1?token={token}", echo.url));
        assert_eq!(page.status, 200);
        assert!(
            page.text.contains("three") && page.text.contains("b1"),
            "{}",
            page.text
        );
    }

    // Unbound through one, the credentials stop working through the other at once.
    assert_eq!(delete(&format!("{}/echo/i1/b1", a.url)).status, 200);
    assert_eq!(message(&b, "i1", &binding, "gone").status, 401);
    assert_eq!(delete(&format!("{}/echo/i1", b.url)).status, 200);
    assert_eq!(get(&format!("{}/echo/i1", a.url)).status, 404);
}

#[test]
fn the_same_provision_at_the_same_moment_on_two_instances_makes_one_instance() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("races");
    let (a, b) = (echo_on(&url), echo_on(&url));
    let urls = [a.url.clone(), b.url.clone()];
    for round in 0..20 {
        let path = format!("/echo/race-{round}");
        let answers = at_once(&urls, move |base| {
            put(&format!("{base}{path}"), Some(PROVISION))
        });
        let mut statuses: Vec<u16> = answers.iter().map(|reply| reply.status).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "round {round}: {answers:?}");
        let tokens: Vec<Value> = answers
            .iter()
            .map(|reply| reply.json()["dashboard_token"].clone())
            .collect();
        assert_eq!(tokens[0], tokens[1], "the 409 carries the stored record");

        let path = format!("/echo/race-{round}/binding");
        let answers = at_once(&urls, move |base| put(&format!("{base}{path}"), Some(BIND)));
        let mut statuses: Vec<u16> = answers.iter().map(|reply| reply.status).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "round {round}: {answers:?}");
        let passwords: Vec<Value> = answers
            .iter()
            .map(|r| r.json()["password"].clone())
            .collect();
        assert_eq!(passwords[0], passwords[1]);
    }
    assert_eq!(
        count(&cluster, "races", "SELECT count(*) FROM echo_instances"),
        20
    );
    assert_eq!(
        count(&cluster, "races", "SELECT count(*) FROM echo_bindings"),
        20
    );
}

#[test]
fn through_two_brokers_the_same_provision_is_one_201_and_one_200_or_a_409() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("brokers");
    let (a, b) = (echo_on(&url), echo_on(&url));
    let brokers: Vec<Process> = [&a, &b]
        .iter()
        .map(|echo| Process::start(BROKER, free_port(), &[("SERVICE_BASE", &echo.url)]))
        .collect();
    let urls: Vec<String> = brokers.iter().map(|broker| broker.url.clone()).collect();
    let provision = |base: &String, round: usize, body: &str| {
        let url = format!("{base}/v2/service_instances/broker-race-{round}");
        common::platform("PUT", &url, Some(body))
    };
    for round in 0..10 {
        let answers = at_once(&urls, move |base| {
            provision(base, round, common::PROVISION_ECHO)
        });
        let mut statuses: Vec<u16> = answers.iter().map(|reply| reply.status).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 201], "round {round}: {answers:?}");
    }
    for round in 10..20 {
        let bodies = [common::PROVISION_ECHO, PROVISION_OTHER_PARAMETERS];
        let answers: Vec<common::Reply> = {
            let barrier = Arc::new(Barrier::new(2));
            let threads: Vec<_> = urls
                .iter()
                .zip(bodies)
                .map(|(base, body)| {
                    let (barrier, base) = (Arc::clone(&barrier), base.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let url = format!("{base}/v2/service_instances/broker-race-{round}");
                        common::platform("PUT", &url, Some(body))
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("a client"))
                .collect()
        };
        let mut statuses: Vec<u16> = answers.iter().map(|reply| reply.status).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}: {answers:?}");
    }
    assert_eq!(
        count(&cluster, "brokers", "SELECT count(*) FROM echo_instances"),
        20
    );
}

/// Calls `call` with each of `urls` on its own thread, released at the same moment.
fn at_once(
    urls: &[String],
    call: impl Fn(&String) -> common::Reply + Send + Sync + Clone + 'static,
) -> Vec<common::Reply> {
    let barrier = Arc::new(Barrier::new(urls.len()));
    let threads: Vec<_> = urls
        .iter()
        .map(|base| {
            let (barrier, base, call) = (Arc::clone(&barrier), base.clone(), call.clone());
            std::thread::spawn(move || {
                barrier.wait();
                call(&base)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|thread| thread.join().expect("a client thread"))
        .collect()
}

#[test]
fn the_schema_is_made_once_when_several_instances_start_at_the_same_moment() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("fresh");
    let dir = TempDir::new("schema");
    let mut children: Vec<(std::process::Child, u16, std::path::PathBuf)> = (0..4)
        .map(|n| {
            let port = free_port();
            let log = dir.path().join(format!("echo-{n}.log"));
            let port_text = port.to_string();
            let env = [("PORT", port_text.as_str()), ("DATABASE_URL", url.as_str())];
            (spawn(ECHO_SERVICE, &[], &env, &log), port, log)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    for (child, port, log) in &mut children {
        loop {
            let health = call("GET", &format!("http://127.0.0.1:{port}/health"), &[], None);
            if health.is_ok_and(|reply| reply.status == 200) {
                break;
            }
            let exited = child.try_wait().ok().flatten();
            let log = std::fs::read_to_string(&*log).unwrap_or_default();
            assert!(exited.is_none(), "an instance exited: {log}");
            assert!(
                Instant::now() < deadline,
                "an instance never became healthy: {log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let logs: Vec<String> = children
        .iter()
        .map(|(_, _, log)| std::fs::read_to_string(log).unwrap_or_default())
        .collect();
    let creators = logs
        .iter()
        .filter(|log| log.contains("schema is now at version 1"))
        .count();
    assert_eq!(creators, 1, "{logs:#?}");
    assert_eq!(
        count(
            &cluster,
            "fresh",
            "SELECT count(*)::bigint FROM echo_schema_version"
        ),
        1
    );
    for (child, _, _) in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn kill_9_of_one_instance_loses_no_acknowledged_change() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("crash");
    let mut victim = echo_on(&url);
    let survivor = echo_on(&url);
    let urls = [victim.url.clone(), survivor.url.clone()];
    // Four clients provision as fast as they can through both instances for at most 3 s
    // (and at most 2,000 calls each); the victim is killed 1 s in.
    let stop_at = Instant::now() + Duration::from_secs(3);
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let base = urls[client % 2].clone();
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for n in 0..2_000 {
                    if Instant::now() > stop_at {
                        break;
                    }
                    let id = format!("c{client}-{n}");
                    let answer = call("PUT", &format!("{base}/echo/{id}"), &[], Some(PROVISION));
                    if answer.is_ok_and(|reply| reply.status == 200) {
                        acknowledged.push(id);
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    victim.kill();
    let acknowledged: Vec<String> = clients
        .into_iter()
        .flat_map(|client| client.join().expect("a client thread"))
        .collect();
    assert!(
        acknowledged.len() > 20,
        "too little load: {}",
        acknowledged.len()
    );
    for id in &acknowledged {
        let fetched = get(&format!("{}/echo/{id}", survivor.url));
        assert_eq!(
            fetched.status, 200,
            "acknowledged {id} is lost: {}",
            fetched.text
        );
    }
}

#[test]
fn a_stopped_database_is_named_in_503s_without_where_it_is_and_the_service_recovers_without_a_restart(
) {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("outage");
    let echo = echo_on(&url);
    assert_eq!(
        put(&format!("{}/echo/before", echo.url), Some(PROVISION)).status,
        200
    );

    // Four clients provision and read throughout (at most 12 s and 1,500 calls each) while
    // the database stops and starts again.
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (base, finished) = (echo.url.clone(), Arc::clone(&finished));
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let give_up = Instant::now() + Duration::from_secs(12);
                for n in 0..1_500 {
                    if finished.load(std::sync::atomic::Ordering::Relaxed)
                        || Instant::now() > give_up
                    {
                        break;
                    }
                    let started = Instant::now();
                    let id = format!("load-{client}-{n}");
                    let reply = put(&format!("{base}/echo/{id}"), Some(PROVISION));
                    seen.push((id, reply, started.elapsed()));
                    std::thread::sleep(Duration::from_millis(20));
                }
                seen
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(500));
    cluster.stop();
    let refused = put(&format!("{}/echo/during", echo.url), Some(PROVISION));
    let description = refused.assert_error(503)["description"].clone();
    assert!(
        description.as_str().is_some_and(|d| d.contains("database")),
        "{description}"
    );
    // Platforms show a broker's errors to their users: the failing part, never its place.
    let places = ["outage", "127.0.0.1", &cluster.port().to_string()];
    for place in places {
        assert!(!refused.text.contains(place), "{place}: {}", refused.text);
    }
    let health = get(&format!("{}/health", echo.url));
    assert_eq!(health.status, 503, "{}", health.text);
    assert!(health.text.contains("database"), "{}", health.text);
    assert_eq!(get(&format!("{}/echo/before", echo.url)).status, 503);
    std::thread::sleep(Duration::from_secs(1));

    cluster.start_again();
    let back = Instant::now();
    while get(&format!("{}/health", echo.url)).status != 200 {
        let waited = back.elapsed();
        assert!(
            waited < Duration::from_secs(10),
            "not healthy again: {}",
            echo.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("healthy {:?} after the database's return", back.elapsed());
    std::thread::sleep(Duration::from_millis(500));
    finished.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen: Vec<_> = clients
        .into_iter()
        .flat_map(|client| client.join().expect("a client thread"))
        .collect();

    let refusals = seen
        .iter()
        .filter(|(_, reply, _)| reply.status == 503)
        .count();
    assert!(refusals > 0, "the outage was seen by the clients");
    for (id, reply, took) in &seen {
        assert!(*took < Duration::from_secs(5), "{id} took {took:?}");
        match reply.status {
            // Acknowledged: there after the outage.
            200 => assert_eq!(get(&format!("{}/echo/{id}", echo.url)).status, 200, "{id}"),
            503 => {
                reply.assert_error(503);
            }
            other => panic!("{id}: {other} {}", reply.text),
        }
    }
    assert_eq!(
        put(&format!("{}/echo/after", echo.url), Some(PROVISION)).status,
        200
    );
    assert_eq!(get(&format!("{}/echo/before", echo.url)).status, 200);
    assert_eq!(get(&format!("{}/echo/during", echo.url)).status, 404);
}

#[test]
fn a_paused_database_holds_no_request_past_its_deadline() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("paused");
    let echo = echo_on(&url);
    assert_eq!(
        put(&format!("{}/echo/before", echo.url), Some(PROVISION)).status,
        200
    );

    cluster.pause();
    // More callers than the store has connections, so some wait for one as well.
    let base = echo.url.clone();
    let callers: Vec<_> = (0..12)
        .map(|n| {
            let base = base.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let (method, path, body) = match n % 3 {
                    0 => ("GET", "/health".to_string(), None),
                    1 => ("GET", "/echo/before".to_string(), None),
                    _ => ("PUT", format!("/echo/p{n}"), Some(PROVISION)),
                };
                let answer = call(method, &format!("{base}{path}"), &[], body);
                (
                    path,
                    answer.map(|reply| reply.status).ok(),
                    started.elapsed(),
                )
            })
        })
        .collect();
    let answers: Vec<_> = callers
        .into_iter()
        .map(|caller| caller.join().expect("a caller"))
        .collect();
    cluster.resume();
    for (path, status, took) in &answers {
        assert_eq!(*status, Some(503), "{path}: {answers:?}");
        assert!(*took < Duration::from_secs(5), "{path} took {took:?}");
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&format!("{}/health", echo.url)).status != 200 {
        assert!(
            Instant::now() < deadline,
            "not healthy again: {}",
            echo.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        put(&format!("{}/echo/after", echo.url), Some(PROVISION)).status,
        200
    );
}

#[test]
fn the_latest_messages_are_bounded_by_the_database_whoever_writes_them() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("ring");
    let (a, b) = (echo_on(&url), echo_on(&url));
    assert_eq!(
        put(&format!("{}/echo/i", a.url), Some(PROVISION)).status,
        200
    );
    let binding = Arc::new(put(&format!("{}/echo/i/b", a.url), Some(BIND)).json());
    let echoes = Arc::new([a, b]);
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (echoes, binding) = (Arc::clone(&echoes), Arc::clone(&binding));
            std::thread::spawn(move || {
                for n in 0..10 {
                    let echo = &echoes[writer % 2];
                    let text = format!("w{writer}-{n}");
                    assert_eq!(message(echo, "i", &binding, &text).status, 200);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("a writer");
    }
    assert_eq!(
        count(
            &cluster,
            "ring",
            "SELECT count(*) FROM echo_recent_messages"
        ),
        10
    );
    let record = get(&format!("{}/echo/i", echoes[1].url)).json();
    assert_eq!(record["messages"], 40);
    let sequences = count(
        &cluster,
        "ring",
        "SELECT min(sequence) FROM echo_recent_messages",
    );
    assert_eq!(sequences, 31, "the ring holds the newest ten");
}

#[test]
fn a_journal_is_imported_once_and_a_conflict_is_reported_not_overwritten() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("moved");
    let data = TempDir::new("journal");
    let data_dir = data.path().display().to_string();
    let binding = {
        let journal = Process::start(ECHO_SERVICE, free_port(), &[("DATA_DIR", &data_dir)]);
        assert_eq!(
            put(&format!("{}/echo/kept", journal.url), Some(PROVISION)).status,
            200
        );
        let binding = put(&format!("{}/echo/kept/b", journal.url), Some(BIND)).json();
        for text in ["one", "two", "three"] {
            assert_eq!(message(&journal, "kept", &binding, text).status, 200);
        }
        binding
    };

    let import = |expected: i32| {
        let (code, output) = run_to_end(
            ECHO_SERVICE,
            &["--import-journal", &data_dir],
            &[("DATABASE_URL", &url)],
        );
        assert_eq!(code, Some(expected), "{output}");
        output
    };
    let first = import(0);
    assert!(
        first.contains("imported 1 instance(s), 1 binding(s) and 3 message(s); 0 record(s) already there; 0 conflict(s)"),
        "{first}"
    );
    let again = import(0);
    assert!(
        again.contains("imported 0 instance(s), 0 binding(s) and 0 message(s); 2 record(s) already there; 0 conflict(s)"),
        "{again}"
    );

    let echo = echo_on(&url);
    let echoed = message(&echo, "kept", &binding, "after the move");
    assert_eq!(
        echoed.status, 200,
        "the binding's credentials moved with it"
    );
    assert_eq!(
        get(&format!("{}/echo/kept", echo.url)).json()["messages"],
        4
    );

    cluster
        .client("moved")
        .execute("UPDATE echo_bindings SET password = 'changed-here'", &[])
        .expect("the test changes a password");
    let conflict = import(1);
    assert!(
        conflict.contains("binding 'b' of instance 'kept'"),
        "{conflict}"
    );
    let kept: String = cluster
        .client("moved")
        .query_one("SELECT password FROM echo_bindings", &[])
        .expect("the binding")
        .get(0);
    assert_eq!(kept, "changed-here", "a conflict is never overwritten");
}

/// Every file in `dir`, by name, with its bytes.
fn files_in(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("the directory lists")
        .map(|entry| {
            let entry = entry.expect("an entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(entry.path()).expect("the file reads"))
        })
        .collect()
}

#[test]
fn an_import_reads_the_journal_without_writing_to_it_even_while_it_is_in_use() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("read");
    let data = TempDir::new("journal-read");
    let data_dir = data.path().display().to_string();
    let import = || {
        run_to_end(
            ECHO_SERVICE,
            &["--import-journal", &data_dir],
            &[("DATABASE_URL", &url)],
        )
    };

    let journal = Process::start(ECHO_SERVICE, free_port(), &[("DATA_DIR", &data_dir)]);
    assert_eq!(
        put(&format!("{}/echo/first", journal.url), Some(PROVISION)).status,
        200
    );
    let in_use = files_in(data.path());
    let (code, output) = import();
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("imported 1 instance(s)"), "{output}");
    assert_eq!(
        files_in(data.path()),
        in_use,
        "the journal in use is left as it was"
    );
    assert_eq!(
        put(&format!("{}/echo/second", journal.url), Some(PROVISION)).status,
        200,
        "its service goes on"
    );
    drop(journal);

    // Stopped while it wrote: a torn last line, and no lock file.
    let mut stopped = files_in(data.path());
    stopped.remove("journal.lock");
    stopped
        .get_mut("changes.0.log")
        .expect("the log")
        .extend_from_slice(b"0badc0de 3 {\"change\":");
    for entry in std::fs::read_dir(data.path()).expect("the directory lists") {
        std::fs::remove_file(entry.expect("an entry").path()).expect("a file is removed");
    }
    for (name, bytes) in &stopped {
        std::fs::write(data.path().join(name), bytes).expect("a file is written");
    }
    let (code, output) = import();
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("changes.0.log: an incomplete last line (21 bytes"),
        "{output}"
    );
    assert!(
        output.contains(
            "imported 1 instance(s), 0 binding(s) and 0 message(s); 1 record(s) already there"
        ),
        "{output}"
    );
    assert_eq!(
        files_in(data.path()),
        stopped,
        "the torn tail is left in place"
    );
}

#[test]
fn tls_to_the_database_is_verified_against_the_same_trust_store() {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("a CA certificate");
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let key = rcgen::KeyPair::generate().expect("a server key");
    let cert = rcgen::CertificateParams::new(names)
        .expect("server params")
        .signed_by(&key, &ca)
        .expect("a server certificate");
    let Some(cluster) = Cluster::start_with_tls(&cert.pem(), &key.serialize_pem()) else {
        return;
    };
    let dir = TempDir::new("tls");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("the CA file is written");
    let ca_path = ca_file.display().to_string();
    let url = format!("{}?sslmode=require", cluster.create_database("secure"));

    let echo = Process::start(
        ECHO_SERVICE,
        free_port(),
        &[("DATABASE_URL", &url), ("SSL_CERT_FILE", &ca_path)],
    );
    assert!(echo.log().contains("over TLS"), "{}", echo.log());
    assert_eq!(
        put(&format!("{}/echo/i", echo.url), Some(PROVISION)).status,
        200
    );
    let encrypted = count(
        &cluster,
        "postgres",
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.application_name = 'echo-service' AND s.ssl",
    );
    assert!(encrypted >= 1, "the echo service's connections use TLS");

    // Without the test CA the server's certificate is not trusted: start-up stops.
    let (code, output) = run_to_end(ECHO_SERVICE, &[], &[("DATABASE_URL", &url)]);
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains("DATABASE_URL: ") && output.contains("certificate"),
        "{output}"
    );
}

#[test]
fn a_database_of_an_older_schema_is_upgraded_in_place_and_a_newer_one_is_refused() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("versions");
    let binding = {
        let echo = echo_on(&url);
        assert_eq!(
            put(&format!("{}/echo/kept", echo.url), Some(PROVISION)).status,
            200
        );
        put(&format!("{}/echo/kept/b", echo.url), Some(BIND)).json()
    };
    // Back to version 1, as an echo service from before bindings expired left it.
    cluster
        .client("versions")
        .batch_execute(
            "ALTER TABLE echo_bindings DROP COLUMN expires_at, DROP COLUMN renew_before;
             DROP FUNCTION echo_deprovision(text, text);
             UPDATE echo_schema_version SET version = 1",
        )
        .expect("the test winds the schema back");
    let echo = echo_on(&url);
    assert!(
        echo.log().contains("schema is now at version 3"),
        "{}",
        echo.log()
    );
    assert_eq!(message(&echo, "kept", &binding, "still here").status, 200);
    drop(echo);

    cluster
        .client("versions")
        .execute("UPDATE echo_schema_version SET version = 99", &[])
        .expect("the test sets a future version");
    let (code, output) = run_to_end(ECHO_SERVICE, &[], &[("DATABASE_URL", &url)]);
    assert_eq!(code, Some(2), "{output}");
    assert!(output.contains("schema version 99"), "{output}");
}

#[test]
fn an_expired_binding_is_refused_on_postgresql_too() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("expiry");
    let (a, b) = (echo_on(&url), echo_on(&url));
    assert_eq!(
        put(&format!("{}/echo/i", a.url), Some(PROVISION)).status,
        200
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let body = serde_json::json!({
        "service_id": "echo_service", "plan_id": "big_0001",
        "lifetime": {"expires_at": now + 2, "renew_before": now + 1},
    })
    .to_string();
    let binding = put(&format!("{}/echo/i/short", a.url), Some(&body)).json();
    assert_eq!(binding["lifetime"]["expires_at"], now + 2, "{binding}");
    assert_eq!(message(&b, "i", &binding, "in time").status, 200);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(message(&b, "i", &binding, "too late").status, 401);
    let fetched = get(&format!("{}/echo/i/short", b.url)).json();
    assert_eq!(fetched["lifetime"], binding["lifetime"], "kept as it was");
}

/// The `message_count` of `instance` in `database`.
fn messages_counted(cluster: &Cluster, database: &str, instance: &str) -> i64 {
    cluster
        .client(database)
        .query_one(
            "SELECT message_count FROM echo_instances WHERE instance_id = $1",
            &[&instance],
        )
        .unwrap_or_else(|error| panic!("the count of {instance}: {error}"))
        .get(0)
}

/// Provisions `instance` with one binding `b` and answers the binding (with credentials).
fn provision_and_bind(echo: &Process, instance: &str) -> Value {
    let url = format!("{}/echo/{instance}", echo.url);
    assert_eq!(put(&url, Some(PROVISION)).status, 200);
    let bound = put(&format!("{url}/b"), Some(BIND));
    assert_eq!(bound.status, 200, "{}", bound.text);
    bound.json()
}

/// A TCP relay in front of the database that, once armed, cuts the connection whose answer
/// reports one row inserted (`INSERT 0 1`, the tag of a message's counting statement): the
/// server has committed, and the echo service never hears so.
struct CuttingRelay {
    port: u16,
    armed: Arc<AtomicBool>,
}

impl CuttingRelay {
    fn start(database_port: u16) -> CuttingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port for the relay");
        let port = listener.local_addr().expect("the relay's address").port();
        let armed = Arc::new(AtomicBool::new(false));
        let cut = Arc::clone(&armed);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if let Ok(server) = TcpStream::connect(("127.0.0.1", database_port)) {
                    relay_connection(client, server, Arc::clone(&cut));
                }
            }
        });
        CuttingRelay { port, armed }
    }

    /// `url` (of the database) through this relay.
    fn in_front_of(&self, url: &str, database_port: u16) -> String {
        url.replace(&format!(":{database_port}/"), &format!(":{}/", self.port))
    }
}

fn relay_connection(client: TcpStream, server: TcpStream, armed: Arc<AtomicBool>) {
    let (Ok(mut from_client), Ok(mut to_server)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let (mut from_server, mut to_client) = (server, client);
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(read @ 1..) = from_server.read(&mut buffer) {
            let answer = &buffer[..read];
            let inserted = answer.windows(11).any(|window| window == b"INSERT 0 1\0");
            if inserted && armed.swap(false, Ordering::SeqCst) {
                break;
            }
            if to_client.write_all(answer).is_err() {
                break;
            }
        }
        let _ = to_client.shutdown(Shutdown::Both);
        let _ = from_server.shutdown(Shutdown::Both);
    });
}

#[test]
fn a_message_whose_answer_was_cut_after_its_commit_is_counted_once_and_told_it_may_be_made() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("cut");
    let relay = CuttingRelay::start(cluster.port());
    let echo = echo_on(&relay.in_front_of(&url, cluster.port()));
    let binding = provision_and_bind(&echo, "cut");
    assert_eq!(message(&echo, "cut", &binding, "first").status, 200);

    relay.armed.store(true, Ordering::SeqCst);
    let cut = message(&echo, "cut", &binding, "second");
    assert!(
        !relay.armed.load(Ordering::SeqCst),
        "the relay cut an answer"
    );
    let description = cut.assert_error(503)["description"].clone();
    assert!(
        description
            .as_str()
            .is_some_and(|d| d.contains("may or may not have been made")),
        "{description}"
    );
    // Made once: the store did not run the change again on another connection.
    assert_eq!(messages_counted(&cluster, "cut", "cut"), 2);
    assert_eq!(message(&echo, "cut", &binding, "third").status, 200);
    assert_eq!(messages_counted(&cluster, "cut", "cut"), 3);
}

/// What the writers of [`a_crashing_database_never_hears_not_made_of_a_change_it_made`] were
/// told.
#[derive(Default)]
struct Told {
    made: AtomicU64,
    not_made: AtomicU64,
    maybe_made: AtomicU64,
}

#[test]
fn a_crashing_database_never_hears_not_made_of_a_change_it_made() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("crashes");
    let echo = echo_on(&url);
    let binding = provision_and_bind(&echo, "busy");
    let told = Told::default();
    let writing = AtomicBool::new(true);
    std::thread::scope(|scope| {
        for writer in 0..3 {
            let (echo, binding, told, writing) = (&echo, &binding, &told, &writing);
            scope.spawn(move || {
                let give_up = Instant::now() + Duration::from_secs(30);
                for n in 0..3_000 {
                    if !writing.load(Ordering::SeqCst) || Instant::now() > give_up {
                        break;
                    }
                    let reply = message(echo, "busy", binding, &format!("{writer}-{n}"));
                    let counter = match (reply.status, reply.text.contains("may or may not")) {
                        (200, _) => &told.made,
                        (503, true) => &told.maybe_made,
                        (503, false) => &told.not_made,
                        (status, _) => panic!("{status}: {}", reply.text),
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(600));
            cluster.crash();
            std::thread::sleep(Duration::from_millis(200));
            cluster.start_again();
        }
        std::thread::sleep(Duration::from_millis(600));
        writing.store(false, Ordering::SeqCst);
    });
    let made = told.made.load(Ordering::SeqCst) as i64;
    let maybe_made = told.maybe_made.load(Ordering::SeqCst) as i64;
    let not_made = told.not_made.load(Ordering::SeqCst);
    let counted = messages_counted(&cluster, "crashes", "busy");
    println!("told made {made}, maybe made {maybe_made}, not made {not_made}; counted {counted}");
    assert!(maybe_made + not_made as i64 > 0, "the crashes were seen");
    assert!(counted >= made, "every message answered 200 is counted");
    assert!(
        counted <= made + maybe_made,
        "a message answered 'not made' was counted: {counted} > {made} + {maybe_made}"
    );
}

/// The connections the echo services hold on `cluster`.
fn echo_connections(cluster: &Cluster) -> i64 {
    count(
        cluster,
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'echo-service'",
    )
}

#[test]
fn a_small_plan_serves_three_echo_services_closes_idle_connections_and_lets_a_fourth_start() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    // A small plan: 9 connections in all, one of them the test's own, for three echo
    // services that would each open 4.
    let mut admin = cluster.client("postgres");
    for setting in [
        "ALTER SYSTEM SET max_connections = 9",
        "ALTER SYSTEM SET superuser_reserved_connections = 0",
    ] {
        admin.batch_execute(setting).expect("a smaller plan");
    }
    drop(admin);
    cluster.stop();
    cluster.start_again();
    let url = cluster.create_database("small_plan");
    // The test's own connection, opened before the echo services take the rest.
    let mut watcher = cluster.client("small_plan");
    let mut count_of = |sql: &str| -> i64 {
        watcher
            .query_one(sql, &[])
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
            .get(0)
    };
    let budget = [
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_MAX_CONNECTIONS", "4"),
        ("DATABASE_IDLE_SECONDS", "2"),
    ];
    let echoes: Vec<Process> = (0..3)
        .map(|_| Process::start(ECHO_SERVICE, free_port(), &budget))
        .collect();
    let refused = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for (n, echo) in echoes.iter().enumerate() {
            for thread in 0..6 {
                let refused = &refused;
                scope.spawn(move || {
                    for change in 0..8 {
                        let id = format!("e{n}-t{thread}-c{change}");
                        let reply = put(&format!("{}/echo/{id}", echo.url), Some(PROVISION));
                        if reply.status != 200 {
                            refused.fetch_add(1, Ordering::SeqCst);
                            println!("{id}: {} {}", reply.status, reply.text);
                        }
                    }
                });
            }
        }
    });
    assert_eq!(
        refused.load(Ordering::SeqCst),
        0,
        "every change of the burst was made"
    );
    assert_eq!(count_of("SELECT count(*) FROM echo_instances"), 144);
    let waited_for_their_own = echoes
        .iter()
        .any(|echo| echo.log().contains("going on with the"));
    assert!(
        waited_for_their_own,
        "the server ran out of room in the burst"
    );
    // Waiting for their own connections, not knocking on the server's door again and again.
    for echo in &echoes {
        let metrics = get(&format!("{}/metrics", echo.url)).text;
        let refused: f64 = metrics
            .lines()
            .find_map(|line| line.strip_prefix("echo_service_database_connect_failures_total "))
            .and_then(|value| value.trim().parse().ok())
            .expect("the connect failures counted");
        println!("{} connections refused", refused);
        assert!(refused <= 10.0, "{refused} connections refused: {metrics}");
    }

    let at_rest = Instant::now() + Duration::from_secs(10);
    let echo_connections =
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'echo-service'";
    while count_of(echo_connections) > 0 {
        assert!(Instant::now() < at_rest, "idle connections stayed open");
        std::thread::sleep(Duration::from_millis(200));
    }
    let fourth = Process::start(ECHO_SERVICE, free_port(), &budget);
    assert_eq!(
        put(&format!("{}/echo/fourth", fourth.url), Some(PROVISION)).status,
        200
    );

    // With every slot taken from outside, an echo service holding none says so and
    // answers 503; it serves again, without a restart, once there is room.
    let hoard: Vec<_> = std::iter::from_fn(|| {
        let mut config: ::postgres::Config = url.parse().expect("the URL parses");
        config.connect_timeout(Duration::from_secs(5));
        config.connect(::postgres::NoTls).ok()
    })
    .take(20)
    .collect();
    let full = put(&format!("{}/echo/full", echoes[0].url), Some(PROVISION));
    let description = full.assert_error(503)["description"].clone();
    assert!(description.to_string().contains("no room"), "{description}");
    assert!(
        echoes[0].log().contains("DATABASE_MAX_CONNECTIONS=4"),
        "{}",
        echoes[0].log()
    );
    drop(hoard);
    assert_eq!(
        put(&format!("{}/echo/full", echoes[0].url), Some(PROVISION)).status,
        200
    );
}

#[test]
fn an_echo_service_started_before_its_database_waits_for_it_within_a_limit() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("late");
    cluster.stop();
    let echo = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_secs(2));
            cluster.start_again();
        });
        echo_on(&url)
    });
    assert!(echo.log().contains("waiting up to"), "{}", echo.log());
    assert_eq!(
        put(&format!("{}/echo/late", echo.url), Some(PROVISION)).status,
        200
    );

    cluster.stop();
    let started = Instant::now();
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_START_SECONDS", "1"),
    ];
    let (code, output) = run_to_end(ECHO_SERVICE, &[], &env);
    assert_eq!(code, Some(2), "{output}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let last = output.trim().lines().last().unwrap_or_default();
    assert!(last.starts_with("error: DATABASE_URL: "), "{output}");
}

#[test]
fn a_row_an_operator_broke_answers_503_for_its_instance_and_costs_no_connection() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("broken_row");
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_MAX_CONNECTIONS", "2"),
    ];
    let echo = Process::start(ECHO_SERVICE, free_port(), &env);
    for instance in ["broken", "fine"] {
        assert_eq!(
            put(&format!("{}/echo/{instance}", echo.url), Some(PROVISION)).status,
            200
        );
    }
    cluster
        .client("broken_row")
        .batch_execute(
            "ALTER TABLE echo_instances ALTER COLUMN dashboard_token DROP NOT NULL;
             UPDATE echo_instances SET dashboard_token = NULL WHERE instance_id = 'broken'",
        )
        .expect("an operator's change");
    for _ in 0..6 {
        get(&format!("{}/echo/broken", echo.url)).assert_error(503);
        assert_eq!(get(&format!("{}/echo/fine", echo.url)).status, 200);
    }
    assert!(echo_connections(&cluster) <= 2);
}

#[test]
fn one_instance_locked_from_outside_leaves_other_tenants_under_a_second() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("locked");
    let echo = echo_on(&url);
    for instance in ["hot", "cold"] {
        assert_eq!(
            put(&format!("{}/echo/{instance}", echo.url), Some(PROVISION)).status,
            200
        );
    }
    let mut operator = cluster.client("locked");
    let mut lock = operator.transaction().expect("a transaction");
    lock.execute(
        "SELECT 1 FROM echo_instances WHERE instance_id = 'hot' FOR UPDATE",
        &[],
    )
    .expect("the row locked");
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                let update = r#"{"parameters": {"size": 3}}"#;
                let reply = call(
                    "PATCH",
                    &format!("{}/echo/hot", echo.url),
                    &[],
                    Some(update),
                )
                .expect("an answer");
                assert_eq!(reply.status, 503, "{}", reply.text);
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        for n in 0..8 {
            let started = Instant::now();
            assert_eq!(get(&format!("{}/echo/cold", echo.url)).status, 200);
            let id = format!("other-{n}");
            assert_eq!(
                put(&format!("{}/echo/{id}", echo.url), Some(PROVISION)).status,
                200
            );
            let took = started.elapsed();
            assert!(
                took < Duration::from_secs(1),
                "another tenant waited {took:?}"
            );
        }
    });
    lock.commit().expect("the lock released");
    let update = r#"{"parameters": {"size": 3}}"#;
    let reply = call(
        "PATCH",
        &format!("{}/echo/hot", echo.url),
        &[],
        Some(update),
    )
    .expect("an answer");
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[test]
fn nul_from_a_platform_or_an_app_never_reaches_postgresql_as_an_error() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("nul");
    let echo = echo_on(&url);
    let instance = format!("{}/echo/nul", echo.url);
    let with_nul = r#"{"service_id": "echo_service", "plan_id": "big_0001", "organization_guid": "o\u0000", "space_guid": "s", "parameters": {"x": "\u0000", "\u0000": 1}, "context": {"y": ["\u0000"]}}"#;
    assert_eq!(put(&instance, Some(with_nul)).status, 200);
    let patch = r#"{"plan_id": "big_0001", "context": {"z": "\u0000"}}"#;
    assert_eq!(
        call("PATCH", &instance, &[], Some(patch))
            .expect("PATCH")
            .status,
        200
    );
    let bound = put(&format!("{instance}/b"), Some(BIND));
    assert_eq!(bound.status, 200, "{}", bound.text);
    let reply = message(&echo, "nul", &bound.json(), "a\u{0}b");
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["response"], "a\u{0}b");
    assert_eq!(delete(&format!("{instance}/b?service_id=%00")).status, 400);
    assert_eq!(delete(&format!("{instance}/b")).status, 200);
    assert_eq!(delete(&instance).status, 200);

    // A caller without credentials never reaches the database, whatever the ids.
    cluster.stop();
    let anonymous = call(
        "POST",
        &format!("{}/echo/%00/x", echo.url),
        &[],
        Some(r#"{"message": "m"}"#),
    )
    .expect("an answer");
    assert_eq!(anonymous.status, 401, "{}", anonymous.text);
}

/// Writes a journal in `dir` as an echo service of any version may have: instances `ids`,
/// each with a message holding NUL (kept whole, as journals before previews did).
fn journal_with_nul_messages(dir: &std::path::Path, ids: &[&str]) {
    use echo_broker::echo::journal::Journal;
    use echo_broker::echo::journal_state::{Change, EchoState};
    let (journal, _) = Journal::<EchoState>::open(dir).expect("a new journal");
    for id in ids {
        let changes = [
            Change::Provision {
                instance_id: id.to_string(),
                attributes: serde_json::from_str(PROVISION).ok(),
                dashboard_token: "token".into(),
            },
            Change::Message {
                instance_id: id.to_string(),
                preview: "before\u{0}after".into(),
            },
        ];
        for change in &changes {
            let ticket = journal.append(change).expect("appended");
            journal.wait_until_durable(ticket).expect("durable");
        }
    }
}

#[test]
fn an_import_takes_every_record_a_journal_holds_and_reports_one_the_database_refuses() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("every_record");
    let echo = echo_on(&url);
    cluster
        .client("every_record")
        .batch_execute(
            "ALTER TABLE echo_instances ADD CONSTRAINT not_this_one CHECK (instance_id <> 'refused')",
        )
        .expect("a constraint of the operator's");
    let data = TempDir::new("nul-journal");
    journal_with_nul_messages(data.path(), &["first", "refused", "last"]);
    let data_dir = data.path().display().to_string();
    let (code, output) = run_to_end(
        ECHO_SERVICE,
        &["--import-journal", &data_dir],
        &[("DATABASE_URL", &url)],
    );
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("imported 2 instance(s)"), "{output}");
    assert!(output.contains("1 refused"), "{output}");
    assert!(output.contains("instance 'refused'"), "{output}");
    for id in ["first", "last"] {
        let shown = get(&format!("{}/echo/{id}", echo.url));
        assert_eq!(shown.json()["messages"], 1, "{}", shown.text);
    }
    let previews: Vec<String> = cluster
        .client("every_record")
        .query(
            "SELECT preview FROM echo_recent_messages ORDER BY instance_id",
            &[],
        )
        .expect("the previews")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(previews, ["before\u{2400}after", "before\u{2400}after"]);
}

#[test]
fn what_one_echo_service_remembers_of_an_instance_never_decides_after_another_changed_it() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("remembered");
    let (first, second) = (echo_on(&url), echo_on(&url));
    let on = |echo: &Process, path: &str| format!("{}/echo/{path}", echo.url);
    assert_eq!(put(&on(&first, "moved"), Some(PROVISION)).status, 200);
    let to_small = r#"{"plan_id": "small_0001"}"#;
    let patched = call("PATCH", &on(&second, "moved"), &[], Some(to_small)).expect("PATCH");
    assert_eq!(patched.status, 200, "{}", patched.text);

    // The first still remembers plan big_0001: a bind naming the new plan is made, one
    // naming the old plan is refused, each as the database has it now.
    let small_bind = r#"{"service_id": "echo_service", "plan_id": "small_0001", "app_guid": "a"}"#;
    assert_eq!(put(&on(&first, "moved/b"), Some(small_bind)).status, 200);
    assert_eq!(put(&on(&first, "moved/c"), Some(BIND)).status, 400);
    let old_ids = "moved?service_id=echo_service&plan_id=big_0001";
    assert_eq!(delete(&on(&first, old_ids)).status, 400);

    // Deleted through the second: the first answers that the instance is gone.
    let new_ids = "moved?service_id=echo_service&plan_id=small_0001";
    assert_eq!(delete(&on(&second, new_ids)).status, 200);
    let gone = delete(&on(&first, "moved/b"));
    let description = gone.assert_error(404)["description"].clone();
    assert!(
        description
            .to_string()
            .contains("instance 'moved' does not exist"),
        "{description}"
    );
    assert_eq!(delete(&on(&first, new_ids)).status, 404);
}
