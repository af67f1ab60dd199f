//! Property-based tests: random and adversarial methods, paths, headers and bodies thrown at
//! the request-handling functions of both servers. Whatever comes in, the answer is one of
//! the expected statuses with a JSON error body, and nothing panics.
//!
//! The broker under test talks to a real echo service running in this process on a loopback
//! port, so its backend calls are real HTTP.

use echo_broker::broker::{Broker, BrokerConfig};
use echo_broker::catalog::Catalog;
use echo_broker::echo::journal_store::JournalStore;
use echo_broker::echo::service::EchoService;
use echo_broker::http::{self, HttpRequest, HttpResponse};
use echo_broker::server::{self, Handler};
use proptest::prelude::*;
use std::sync::{Arc, OnceLock};

const MANAGEMENT: (&str, &str) = ("broker", "management-secret");

fn echo_service() -> Arc<EchoService> {
    static ECHO: OnceLock<Arc<EchoService>> = OnceLock::new();
    ECHO.get_or_init(|| {
        let credentials = Some((MANAGEMENT.0.to_string(), MANAGEMENT.1.to_string()));
        let store = Box::new(JournalStore::in_memory());
        Arc::new(EchoService::new(store, credentials))
    })
    .clone()
}

/// The broker, wired to the echo service above, served on a loopback port by this process.
fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| {
        // Left running for the rest of the tests.
        let echo = server::serve("echo", "127.0.0.1:0", echo_service(), 4)
            .expect("the echo service listens");
        let catalog = Catalog::load(None)
            .expect("the embedded catalog loads")
            .catalog;
        Broker::new(BrokerConfig {
            catalog,
            login: ("user".into(), "pass".into()),
            service_base: format!("http://{}", echo.address()),
            echo_login: Some((MANAGEMENT.0.to_string(), MANAGEMENT.1.to_string())),
            tls_roots: Default::default(),
        })
    })
}

/// Path segments a platform or an attacker might send.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("v2".to_string()),
        1 => Just("catalog".to_string()),
        4 => Just("service_instances".to_string()),
        4 => Just("service_bindings".to_string()),
        1 => Just("last_operation".to_string()),
        1 => Just("echo".to_string()),
        1 => Just("dashboard".to_string()),
        1 => Just("health".to_string()),
        1 => Just("..".to_string()),
        1 => Just("%2e%2e".to_string()),
        1 => Just("a%2Fb".to_string()),
        1 => Just("%3Cscript%3E".to_string()),
        1 => Just("%zz".to_string()),
        1 => Just("%ff%fe".to_string()),
        1 => Just("%00".to_string()),
        1 => Just("x".repeat(300)),
        4 => Just("inst-1".to_string()),
        4 => Just("bind-1".to_string()),
        1 => "[a-zA-Z0-9%._~-]{0,12}",
    ]
}

fn url() -> impl Strategy<Value = String> {
    let query = prop_oneof![
        Just(String::new()),
        Just("?service_id=echo_service&plan_id=big_0001".to_string()),
        Just("?service_id=invert_service&plan_id=small_0001".to_string()),
        Just("?service_id=&plan_id=".to_string()),
        Just("?accepts_incomplete=true".to_string()),
        Just("?token=%zz".to_string()),
        "\\?[a-z_=&%0-9]{0,30}",
    ];
    let random = prop::collection::vec(segment(), 0..7).prop_map(|segments| segments.join("/"));
    let routes =
        (0..9usize, segment(), segment()).prop_map(|(route, instance, binding)| match route {
            0 => "v2/catalog".to_string(),
            1 => format!("v2/service_instances/{instance}"),
            2 => format!("v2/service_instances/{instance}/last_operation"),
            3 => format!("v2/service_instances/{instance}/service_bindings/{binding}"),
            4 => {
                format!("v2/service_instances/{instance}/service_bindings/{binding}/last_operation")
            }
            5 => format!("echo/{instance}"),
            6 => format!("echo/{instance}/{binding}"),
            7 => format!("echo/dashboard/{instance}"),
            _ => "health".to_string(),
        });
    let path = prop_oneof![3 => routes, 1 => random];
    (path, query).prop_map(|(path, query)| format!("/{path}{query}"))
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just("GET".to_string()),
        4 => Just("PUT".to_string()),
        1 => Just("PATCH".to_string()),
        1 => Just("DELETE".to_string()),
        1 => Just("POST".to_string()),
        1 => "[A-Z]{1,8}",
    ]
}

fn authorization() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        12 => Just(Some("Basic dXNlcjpwYXNz".to_string())),
        1 => Just(Some(http::basic_authorization(MANAGEMENT.0, MANAGEMENT.1))),
        1 => Just(Some("Basic dXNlcjpwYXNzeA==".to_string())),
        1 => Just(Some("Basic !!!".to_string())),
        1 => Just(Some("Basic /w==".to_string())),
        1 => Just(Some("Bearer x".to_string())),
        1 => Just(None),
        1 => ".{0,40}".prop_map(Some),
    ]
}

fn version() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        12 => Just(Some("2.17".to_string())),
        1 => Just(Some("2.3".to_string())),
        1 => Just(Some("2.2".to_string())),
        1 => Just(Some("".to_string())),
        1 => Just(None),
        1 => "[0-9.a-z]{0,6}".prop_map(Some),
    ]
}

fn originating_identity() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        8 => Just(None),
        1 => Just(Some("cloudfoundry eyJ1c2VyX2lkIjoiYWJjIn0=".to_string())),
        1 => Just(Some("cloudfoundry !!!".to_string())),
        1 => Just(Some(" eyJ1c2VyX2lkIjoiYWJjIn0=".to_string())),
        1 => ".{0,30}".prop_map(Some),
    ]
}

/// Bodies: valid requests with random values, broken JSON, deep nesting, duplicate keys,
/// wrong types, invalid UTF-8 and plain noise.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let id = prop_oneof![
        Just("echo_service".to_string()),
        Just("invert_service".to_string()),
        Just("big_0001".to_string()),
        Just("small_0001".to_string()),
        Just(String::new()),
        "[a-z\\u{0}-\\u{1f}<>\"]{0,8}",
    ];
    let catalog_pair = prop_oneof![
        Just(("echo_service".to_string(), "big_0001".to_string())),
        Just(("invert_service".to_string(), "small_0001".to_string())),
    ];
    let pair = prop_oneof![4 => catalog_pair, 1 => (id.clone(), id.clone())];
    let organization = prop_oneof![4 => Just("org".to_string()), 1 => id];
    let valid =
        (pair, organization, any::<bool>()).prop_map(|((service, plan), other, with_extras)| {
            let mut body = serde_json::json!({
                "service_id": service, "plan_id": plan, "organization_guid": other,
                "space_guid": "s", "app_guid": "a",
            });
            if with_extras {
                body["parameters"] = serde_json::json!({"k": [1, 2, {"x": null}]});
                body["maintenance_info"] = serde_json::json!({"version": "1.0.0"});
                body["bind_resource"] = serde_json::json!({});
                body["x-vendor"] = serde_json::json!(true);
            }
            body.to_string().into_bytes()
        });
    prop_oneof![
        8 => valid,
        1 => Just(b"{\"service_id\": \"echo_service\", \"service_id\": \"x\"}".to_vec()),
        1 => Just(format!("{}{}", "[".repeat(500), "]".repeat(500)).into_bytes()),
        1 => Just(format!("{{\"parameters\": {}1{}}}", "{\"a\":".repeat(100), "}".repeat(100)).into_bytes()),
        1 => Just(b"{\"service_id\": 5, \"plan_id\": [], \"parameters\": \"x\"}".to_vec()),
        1 => Just(b"[]".to_vec()),
        1 => Just(b"null".to_vec()),
        1 => Just(vec![0xff, 0xfe, b'{', b'}']),
        1 => Just(b"{\"message\": \"hello\"}".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn request() -> impl Strategy<Value = HttpRequest> {
    (
        method(),
        url(),
        authorization(),
        version(),
        originating_identity(),
        body(),
    )
        .prop_map(|(method, url, authorization, version, identity, body)| {
            let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
            let optional = [
                ("Authorization", authorization),
                ("X-Broker-API-Version", version),
                ("X-Broker-API-Originating-Identity", identity),
            ];
            for (name, value) in optional {
                if let Some(value) = value {
                    headers.push((name.to_string(), value));
                }
            }
            HttpRequest {
                method,
                url,
                headers,
                body,
            }
        })
}

/// Every error answer is JSON with a non-empty description (410's body is the spec's `{}`).
fn assert_well_formed(response: &HttpResponse) {
    if response.content_type != http::JSON {
        return;
    }
    let body: serde_json::Value = serde_json::from_slice(&response.body).expect("the body is JSON");
    if response.status >= 400 && response.status != 410 {
        let description = body["description"].as_str().unwrap_or("");
        assert!(!description.is_empty(), "no description: {body}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn broker_answers_any_request_with_an_expected_status(request in request()) {
        // As the server calls it: the checks on the head, then the route.
        let broker = broker();
        let response = match broker.admit(&request) {
            Ok(admitted) => broker.handle(&request, admitted),
            Err(refusal) => refusal,
        };
        let expected = [200, 201, 400, 401, 404, 405, 409, 410, 412, 422];
        prop_assert!(expected.contains(&response.status), "{} for {request:?}: {}",
            response.status, String::from_utf8_lossy(&response.body));
        // Only the pages for people (the conversation, metrics) answer in another format.
        let for_people = response.status == 200 && matches!(request.path(), "/" | "/metrics");
        prop_assert!(for_people || response.content_type == http::JSON);
        assert_well_formed(&response);
    }

    #[test]
    fn echo_service_answers_any_request_with_an_expected_status(request in request()) {
        let response = echo_service().handle(&request);
        let expected = [200, 400, 401, 404, 405, 409];
        prop_assert!(expected.contains(&response.status), "{} for {request:?}: {}",
            response.status, String::from_utf8_lossy(&response.body));
        assert_well_formed(&response);
    }
}
