//! Slow and hostile clients: connections that send nothing, bodies that stall, bodies that
//! are too large. None of them may pin the broker or keep others from being served.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).expect("the broker accepts connections")
}

/// Opens a PUT whose declared body is larger than tiny_http buffers up front, sends a few
/// bytes of it, and stalls.
fn stalled_body(port: u16) -> TcpStream {
    let mut stream = connect(port);
    let head = "PUT /v2/service_instances/stalled HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\
                X-Broker-API-Version: 2.17\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"serv";
    stream.write_all(head.as_bytes()).expect("the head is sent");
    stream
}

#[test]
fn idle_connections_and_stalled_bodies_do_not_block_other_requests() {
    let system = System::start();
    let port = system.broker.port;
    let idle: Vec<TcpStream> = (0..200).map(|_| connect(port)).collect();
    let stalled: Vec<TcpStream> = (0..20).map(|_| stalled_body(port)).collect();
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    let catalog = platform("GET", &system.url("/v2/catalog"), None);
    assert_eq!(catalog.status, 200);
    // Far below the 10 s client timeout: the request was not queued behind the stalled ones.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "catalog took {:?}",
        started.elapsed()
    );
    drop(idle);
    drop(stalled);
}

#[test]
fn a_stalled_body_is_answered_408_and_its_connection_closed_in_bounded_time() {
    let system = System::start();
    let mut stream = stalled_body(system.broker.port);
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout is set");
    let started = Instant::now();
    let mut answer = Vec::new();
    // Reads until the broker closes the connection (or 60 s pass and the read fails).
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"description\""), "{answer}");
    // 408 after one idle timeout (10 s); tiny_http then waits one more for the rest of the
    // body and one for a next request before it closes: three timeouts, never forever.
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "closed after {:?}",
        started.elapsed()
    );
    // Nothing was provisioned from the half body.
    let fetched = platform("GET", &system.url("/v2/service_instances/stalled"), None);
    assert_eq!(fetched.status, 404);
}

#[test]
fn an_idle_connection_is_closed_in_bounded_time_and_the_server_keeps_accepting() {
    let system = System::start();
    let mut idle = connect(system.broker.port);
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout is set");
    let started = Instant::now();
    let mut buffer = [0u8; 16];
    let read = idle.read(&mut buffer).unwrap_or(0);
    assert_eq!(
        read, 0,
        "the broker closes an idle connection without answering"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "closed after {:?}",
        started.elapsed()
    );
    // Ten quiet seconds passed: the accept loop is still alive.
    assert_eq!(
        platform("GET", &system.url("/v2/catalog"), None).status,
        200
    );
}

#[test]
fn a_body_over_64_kib_is_answered_413_without_being_read() {
    let system = System::start();
    let mut stream = connect(system.broker.port);
    let head = "PUT /v2/service_instances/big HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\
                X-Broker-API-Version: 2.17\r\nContent-Length: 10000000\r\n\r\n";
    stream.write_all(head.as_bytes()).expect("the head is sent");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout is set");
    let mut answer = [0u8; 512];
    let read = stream
        .read(&mut answer)
        .expect("the broker answers before the body is sent");
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // The same through a client that sends the whole (chunked, so undeclared) body.
    let huge = format!(
        "{{\"parameters\": {{\"x\": \"{}\"}}}}",
        "a".repeat(70 * 1024)
    );
    let reply = platform("PUT", &system.url("/v2/service_instances/big"), Some(&huge));
    reply.assert_error(413);
}
