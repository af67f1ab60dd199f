//! The broker in front of the *original* echo service's wire API (2014): no attributes, no
//! credentials, no fetch. Repeated provisions and binds fall back to the original broker's
//! behaviour (an existing instance or binding is a 200), and bindings carry only a `uri`.
//!
//! The original was a Python program we do not ship; a small stand-in here answers exactly
//! what `ORIGINAL-SYSTEM.md` records it answering.

use crate::common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// instance id -> binding ids, as the original kept them.
type Instances = Arc<Mutex<HashMap<String, Vec<String>>>>;

fn original_echo_service() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
    let port = listener.local_addr().expect("it has an address").port();
    let instances: Instances = Arc::default();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let instances = Arc::clone(&instances);
            std::thread::spawn(move || serve_connection(stream, &instances));
        }
    });
    port
}

fn serve_connection(stream: TcpStream, instances: &Instances) {
    let mut reader = BufReader::new(stream.try_clone().expect("the stream clones"));
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; content_length];
        let _ = reader.read_exact(&mut body);
        let mut words = request_line.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let path = path.split('?').next().unwrap_or("");
        let (status, answer) = answer(method, path, &mut instances.lock().expect("not poisoned"));
        let reply = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// The original echo service's answers (ORIGINAL-SYSTEM.md).
fn answer(method: &str, path: &str, instances: &mut HashMap<String, Vec<String>>) -> (u16, String) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segments.as_slice()) {
        ("PUT", ["echo", instance]) if instances.contains_key(*instance) => {
            (409, r#"{"error": "exists"}"#.into())
        }
        ("PUT", ["echo", instance]) => {
            instances.insert(instance.to_string(), Vec::new());
            (
                200,
                format!(
                    r#"{{"instance_id": "{instance}", "state": "provision_success", "dashboard_url": "x"}}"#
                ),
            )
        }
        ("DELETE", ["echo", instance]) => match instances.remove(*instance) {
            Some(_) => (
                200,
                format!(
                    r#"{{"id": "{instance}", "state": "deprovision_success", "bindings": 0, "messages": 0}}"#
                ),
            ),
            None => (404, r#"{"error": "missing"}"#.into()),
        },
        ("PUT", ["echo", instance, binding]) => {
            let bindings = instances.entry(instance.to_string()).or_default();
            if bindings.iter().any(|b| b == binding) {
                return (409, r#"{"error": "exists"}"#.into());
            }
            bindings.push(binding.to_string());
            (
                200,
                format!(r#"{{"id": "{binding}", "app": "{instance}", "state": "bind_success"}}"#),
            )
        }
        ("DELETE", ["echo", instance, binding]) => {
            let bindings = instances.entry(instance.to_string()).or_default();
            match bindings.iter().position(|b| b == binding) {
                Some(at) => {
                    bindings.remove(at);
                    (
                        200,
                        format!(
                            r#"{{"id": "{binding}", "app": "{instance}", "state": "unbind_success"}}"#
                        ),
                    )
                }
                None => (404, r#"{"error": "missing"}"#.into()),
            }
        }
        _ => (404, r#"{"error": "not found"}"#.into()),
    }
}

#[test]
fn against_the_original_echo_service_repeats_are_200_and_bindings_carry_a_uri() {
    let port = original_echo_service();
    let service_base = format!("http://127.0.0.1:{port}");
    let broker = Process::start(BROKER, free_port(), &[("SERVICE_BASE", &service_base)]);
    let instance = format!("{}/v2/service_instances/old", broker.url);
    let binding = format!("{instance}/service_bindings/b");

    let provisioned = platform("PUT", &instance, Some(PROVISION_ECHO));
    assert_eq!(provisioned.status, 201, "{}", provisioned.text);
    assert_eq!(
        provisioned.json()["dashboard_url"],
        format!("{service_base}/echo/dashboard/old")
    );
    let other_plan = PROVISION_ECHO.replace("\"IT\"", "\"other-space\"");
    let repeated = platform("PUT", &instance, Some(&other_plan));
    assert_eq!(
        (repeated.status, repeated.json()),
        (200, provisioned.json()),
        "nothing stored to compare"
    );

    let bound = platform("PUT", &binding, Some(BIND_ECHO));
    assert_eq!(bound.status, 201, "{}", bound.text);
    let credentials = serde_json::json!({ "uri": format!("{service_base}/echo/old/b") });
    assert_eq!(bound.json()["credentials"], credentials);
    assert_eq!(platform("PUT", &binding, Some(BIND_ECHO)).status, 200);

    assert_eq!(
        platform("DELETE", &format!("{binding}?{ECHO_IDS}"), None).status,
        200
    );
    assert_eq!(
        platform("DELETE", &format!("{binding}?{ECHO_IDS}"), None).status,
        410
    );
    assert_eq!(
        platform("DELETE", &format!("{instance}?{ECHO_IDS}"), None).status,
        200
    );
    assert_eq!(
        platform("DELETE", &format!("{instance}?{ECHO_IDS}"), None).status,
        410
    );
}
