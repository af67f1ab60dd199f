//! One contract, two stores: every scenario here runs on the journal store and on the
//! PostgreSQL store, through the echo service's own request handling, and both must give
//! the same answer to every request (status and body, with the values each store draws at
//! random masked), and the answer the scenario expects, so that two stores wrong in the
//! same way do not pass either.
//!
//! The journal runs in a temp dir of the test's own. PostgreSQL runs on a throwaway cluster
//! (`testkit::Cluster`) that the tests running at the same moment share, with a fresh
//! database per scenario. Where PostgreSQL is not installed, each test runs its journal half
//! and says loudly that its PostgreSQL half was skipped; with `ECHO_TEST_REQUIRE_POSTGRES`
//! set it fails instead.
//!
//! Requests take the path the server gives them: [`Handler::admit`] on the head, then
//! [`EchoService::handle`]. The echo service has no management credentials, as on loopback.
//! The races run on each store and check what must hold whoever wins, not a transcript.

mod common;

use base64::Engine;
use common::TempDir;
use echo_broker::echo::journal_store::JournalStore;
use echo_broker::echo::postgres::PostgresStore;
use echo_broker::echo::service::EchoService;
use echo_broker::http::{self, HttpRequest, HttpResponse};
use echo_broker::server::Handler;
use echo_broker::settings::{DatabaseSettings, TlsRoots};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier, Mutex, Weak};
use std::time::Duration;
use testkit::Cluster;

const SERVICE_ID: &str = "echo_service";
const PLAN_ID: &str = "big_0001";
const OTHER_PLAN_ID: &str = "small_0001";
/// The ids a platform sends with a delete of an instance on [`PLAN_ID`].
const RIGHT_IDS: &str = "service_id=echo_service&plan_id=big_0001";

/// The characters a text column, a log line or a page may choke on: NUL, C0 controls (tab,
/// line feed, carriage return, escape), DEL, C1 controls, a line separator, a byte-order
/// mark and a noncharacter.
const HOSTILE: &str =
    "\0nul\u{1}\u{8}\t\n\r\u{1b}\u{1f}\u{7f}\u{80}\u{9f}\u{2028}\u{feff}\u{fffe}end";

/// The last second of the year 9999: the latest expiry a binding may have.
const END_OF_YEAR_9999: u64 = 253_402_300_799;

/// How many requests each race sends at the same moment.
const RACERS: usize = 8;

// ---------------------------------------------------------------------------------------
// The stores under test
// ---------------------------------------------------------------------------------------

/// An echo service on one store, and what that store needs until the service is dropped
/// (fields drop in order: the service first, then its journal's directory or the cluster).
struct ServiceUnderTest {
    store: &'static str,
    echo: EchoService,
    _journal_dir: Option<TempDir>,
    _cluster: Option<Arc<Cluster>>,
}

/// The echo service on a journal in a fresh temp dir.
fn on_journal() -> ServiceUnderTest {
    let dir = TempDir::new("contract-journal");
    let store = JournalStore::open(dir.path()).expect("a journal opens in an empty temp dir");
    ServiceUnderTest {
        store: "the journal",
        echo: EchoService::new(Box::new(store), None),
        _journal_dir: Some(dir),
        _cluster: None,
    }
}

/// The echo service on a fresh database of the shared cluster, with the connection budget
/// a deployment has by default; `None` where PostgreSQL cannot run (the cluster said so).
fn on_postgres() -> Option<ServiceUnderTest> {
    static DATABASES: AtomicU32 = AtomicU32::new(0);
    let cluster = shared_cluster()?;
    let database = format!("contract_{}", DATABASES.fetch_add(1, Ordering::SeqCst));
    let url = cluster.create_database(&database);
    let settings = DatabaseSettings {
        max_connections: 4,
        idle: Duration::from_secs(10),
        start_wait: Duration::from_secs(10),
    };
    let store = PostgresStore::open(&url, &TlsRoots::System, settings)
        .unwrap_or_else(|problem| panic!("the store opens on database {database}: {problem}"));
    Some(ServiceUnderTest {
        store: "PostgreSQL",
        echo: EchoService::new(Box::new(store), None),
        _journal_dir: None,
        _cluster: Some(cluster),
    })
}

/// The cluster the tests running now share. It is stopped and removed when the last test
/// using it ends: a cluster held by a static would never be dropped, and would outlive the
/// test process.
fn shared_cluster() -> Option<Arc<Cluster>> {
    static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
    let mut shared = SHARED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(cluster) = shared.upgrade() {
        return Some(cluster);
    }
    let cluster = Arc::new(Cluster::start()?);
    *shared = Arc::downgrade(&cluster);
    Some(cluster)
}

/// Runs `scenario` on the journal and on PostgreSQL and asserts that every request got the
/// same answer on both.
fn on_both_stores(scenario: fn(&mut Session)) {
    // The database first: holding the shared cluster through the journal's half too lets
    // the tests running meanwhile find it up.
    let postgres = on_postgres();
    let journal = transcript_of(scenario, &on_journal());
    let Some(postgres) = postgres else {
        return said_only_the_journal_ran();
    };
    assert_same_answers(&journal, &transcript_of(scenario, &postgres));
}

/// Runs `race` on the journal, then on PostgreSQL.
fn on_each_store(race: fn(&ServiceUnderTest)) {
    let postgres = on_postgres();
    race(&on_journal());
    match postgres {
        Some(postgres) => race(&postgres),
        None => said_only_the_journal_ran(),
    }
}

/// After the cluster's own line that the test skipped: its journal half did run.
fn said_only_the_journal_ran() {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    // To the handle, not with eprintln!, which the harness captures for passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "*** {test}: its journal half ran; only its PostgreSQL half was skipped. ***\n"
    );
}

fn transcript_of(scenario: fn(&mut Session), service: &ServiceUnderTest) -> Vec<Step> {
    let mut session = Session {
        service,
        transcript: Vec::new(),
    };
    scenario(&mut session);
    session.transcript
}

/// Fails at the first request the stores answered differently, showing both answers.
fn assert_same_answers(journal: &[Step], postgres: &[Step]) {
    for (index, (on_journal, on_postgres)) in journal.iter().zip(postgres).enumerate() {
        assert!(
            on_journal == on_postgres,
            "request {index} was answered differently:\n  journal:    {} -> {} {}\n  PostgreSQL: {} -> {} {}",
            on_journal.request,
            on_journal.status,
            excerpt(&on_journal.body.to_string()),
            on_postgres.request,
            on_postgres.status,
            excerpt(&on_postgres.body.to_string()),
        );
    }
    assert_eq!(
        journal.len(),
        postgres.len(),
        "the scenario sent a different number of requests on each store"
    );
}

// ---------------------------------------------------------------------------------------
// Requests and answers
// ---------------------------------------------------------------------------------------

/// One request of a scenario and its answer, as the stores' transcripts are compared.
#[derive(Debug, PartialEq)]
struct Step {
    request: String,
    status: u16,
    /// The JSON body with random values masked (see [`masked`]), or a page as a string.
    body: Value,
}

/// A scenario's requests to one echo service, and the transcript of their answers.
struct Session<'a> {
    service: &'a ServiceUnderTest,
    transcript: Vec<Step>,
}

impl Session<'_> {
    fn get(&mut self, path: &str) -> Answer {
        self.send("GET", path, None, "")
    }

    fn delete(&mut self, path: &str) -> Answer {
        self.send("DELETE", path, None, "")
    }

    fn put(&mut self, path: &str, body: &Value) -> Answer {
        self.send("PUT", path, None, &body.to_string())
    }

    fn patch(&mut self, path: &str, body: &Value) -> Answer {
        self.send("PATCH", path, None, &body.to_string())
    }

    /// A bound app's message to `path` (`/echo/{instance_id}/{binding_id}`).
    fn message(&mut self, path: &str, credentials: Option<&Credentials>, message: &str) -> Answer {
        let authorization = credentials.map(Credentials::authorization);
        let body = json!({ "message": message }).to_string();
        self.send("POST", path, authorization.as_deref(), &body)
    }

    /// The dashboard of `instance_id`, with the token its provision answered.
    fn dashboard(&mut self, instance_id: &str, provisioned: &Answer) -> Answer {
        let token = provisioned.text("dashboard_token");
        self.get(&format!("/echo/dashboard/{instance_id}?token={token}"))
    }

    /// Sends one request the way the server does, and records its answer.
    fn send(
        &mut self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: &str,
    ) -> Answer {
        let request = request(method, path, authorization, body);
        let answer = Answer::of(self.service, &request, serve(&self.service.echo, &request));
        self.transcript.push(Step {
            request: answer.request.clone(),
            status: answer.status,
            body: masked(&answer.body),
        });
        answer
    }
}

fn request(method: &str, path: &str, authorization: Option<&str>, body: &str) -> HttpRequest {
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    if let Some(authorization) = authorization {
        headers.push(("Authorization".to_string(), authorization.to_string()));
    }
    HttpRequest {
        method: method.to_string(),
        url: path.to_string(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

/// What the server does with a request: admits its head (a bound app's credentials are
/// checked there), then hands the whole request to the service.
fn serve(echo: &EchoService, request: &HttpRequest) -> HttpResponse {
    match Handler::admit(echo, request) {
        Ok(admitted) => Handler::handle(echo, request, admitted),
        Err(refusal) => refusal,
    }
}

/// An answer as a scenario looks at it.
struct Answer {
    /// Which store answered, and the request, for failure messages.
    store: &'static str,
    request: String,
    status: u16,
    /// The JSON body, or a page as a string.
    body: Value,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn of(service: &ServiceUnderTest, request: &HttpRequest, response: HttpResponse) -> Answer {
        let body = if response.content_type == http::JSON {
            serde_json::from_slice(&response.body).unwrap_or_else(|error| {
                panic!(
                    "on {}, {} answered JSON that does not parse ({error})",
                    service.store, request.url
                )
            })
        } else {
            Value::String(String::from_utf8_lossy(&response.body).into_owned())
        };
        Answer {
            store: service.store,
            request: summary(request),
            status: response.status,
            body,
            headers: response.headers,
        }
    }

    /// The answer, after checking that its status is `expected`.
    fn expect_status(self, expected: u16) -> Answer {
        assert_eq!(
            self.status,
            expected,
            "on {}, {} was answered {} (expected {expected}): {}",
            self.store,
            self.request,
            self.status,
            excerpt(&self.body.to_string())
        );
        self
    }

    /// A string field of the JSON body.
    fn text(&self, field: &str) -> &str {
        self.body[field].as_str().unwrap_or_else(|| {
            panic!(
                "on {}, the answer to {} has no string '{field}': {}",
                self.store,
                self.request,
                excerpt(&self.body.to_string())
            )
        })
    }

    /// The page of an HTML answer.
    fn page(&self) -> &str {
        self.body.as_str().unwrap_or_else(|| {
            panic!(
                "on {}, {} answered JSON, not a page",
                self.store, self.request
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A request as a transcript names it: method, path and the start of its body, with a
/// dashboard token (random on each store) masked.
fn summary(request: &HttpRequest) -> String {
    let url = match request.url.split_once("token=") {
        Some((before, _)) => format!("{before}token=<random>"),
        None => request.url.clone(),
    };
    let body = String::from_utf8_lossy(&request.body);
    let body: String = body.chars().take(120).collect();
    format!("{} {url} {body}", request.method)
}

/// The body with the values each store draws at random (the dashboard's token, a binding's
/// username and password) replaced by `<random>`. They sit at the top of an answer; the
/// same names deeper down are the platform's own parameters and stay.
fn masked(body: &Value) -> Value {
    let Value::Object(fields) = body else {
        return body.clone();
    };
    let masked_fields = fields.iter().map(|(name, value)| {
        let value = match name.as_str() {
            "dashboard_token" | "username" | "password" => json!("<random>"),
            "dashboard_url" => json!(value
                .as_str()
                .and_then(|url| url.split_once("token="))
                .map(|(before, _)| format!("{before}token=<random>"))),
            _ => value.clone(),
        };
        (name.clone(), value)
    });
    Value::Object(masked_fields.collect())
}

/// At most 2,000 characters of `text`, for failure messages about large bodies.
fn excerpt(text: &str) -> String {
    const SHOWN: usize = 2000;
    if text.chars().count() <= SHOWN {
        return text.to_string();
    }
    let shown: String = text.chars().take(SHOWN).collect();
    format!("{shown}... ({} bytes in all)", text.len())
}

/// A binding's credentials, as its bind answered them.
struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    fn of(bound: &Answer) -> Credentials {
        Credentials {
            username: bound.text("username").to_string(),
            password: bound.text("password").to_string(),
        }
    }

    fn authorization(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

// ---------------------------------------------------------------------------------------
// Bodies and pages
// ---------------------------------------------------------------------------------------

/// A platform's provision of an instance on [`PLAN_ID`].
fn instance_attributes() -> Value {
    json!({
        "service_id": SERVICE_ID,
        "plan_id": PLAN_ID,
        "organization_guid": "org",
        "space_guid": "space",
        "context": {"platform": "cloudfoundry"},
        "parameters": {"size": 2},
    })
}

/// A platform's bind on `plan_id`.
fn binding_attributes(plan_id: &str) -> Value {
    json!({"service_id": SERVICE_ID, "plan_id": plan_id, "app_guid": "app"})
}

/// `body` with `field` set to `value`.
fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

/// JSON nested `depth` levels deep (objects and arrays by turns).
fn nested(depth: usize) -> Value {
    match depth {
        0 => json!("leaf"),
        _ if depth.is_multiple_of(2) => json!([nested(depth - 1)]),
        _ => json!({ "next": nested(depth - 1) }),
    }
}

/// The previews the dashboard lists, as it lists them (newest first).
fn recent_messages_on(page: &str) -> Vec<String> {
    let heading = "<h2>Recent messages, newest first</h2>";
    let list = page
        .split_once(heading)
        .and_then(|(_, rest)| rest.split_once("</ul>"))
        .map_or("", |(list, _)| list);
    list.split("<li>")
        .skip(1)
        .map(|item| item.trim_end_matches("</li>").to_string())
        .collect()
}

/// The message count the dashboard shows.
fn message_count_on(page: &str) -> u64 {
    let row = "<th scope=\"row\">Messages</th><td>";
    page.split_once(row)
        .and_then(|(_, rest)| rest.split_once("</td>"))
        .and_then(|(count, _)| count.parse().ok())
        .unwrap_or_else(|| panic!("the dashboard shows no message count:\n{page}"))
}

// ---------------------------------------------------------------------------------------
// Every call's outcomes
// ---------------------------------------------------------------------------------------

#[test]
fn every_call_answers_each_of_its_outcomes_alike() {
    on_both_stores(every_call_and_its_outcomes);
}

fn every_call_and_its_outcomes(session: &mut Session) {
    provision_and_fetch_outcomes(session);
    update_outcomes(session);
    let credentials = bind_and_fetch_outcomes(session);
    session
        .message("/echo/outcomes/kept", Some(&credentials), "hello")
        .expect_status(200);
    unbind_outcomes(session);
    deprovision_outcomes(session);
    let totals = session.get("/echo").expect_status(200);
    assert_eq!(totals.body, json!({"instances": 0, "bindings": 0}));
}

fn provision_and_fetch_outcomes(session: &mut Session) {
    let made = session
        .put("/echo/outcomes", &instance_attributes())
        .expect_status(200);
    assert_eq!(made.body["state"], "provision_success");
    let again = session
        .put("/echo/outcomes", &instance_attributes())
        .expect_status(409);
    assert_eq!(again.body["attributes"], instance_attributes());
    assert_eq!(
        again.text("dashboard_token"),
        made.text("dashboard_token"),
        "a repeated provision answers the stored record"
    );
    let fetched = session.get("/echo/outcomes").expect_status(200);
    assert_eq!(fetched.body["attributes"], instance_attributes());
    session.get("/echo/missing").expect_status(404);
}

fn update_outcomes(session: &mut Session) {
    let new_plan = session
        .patch("/echo/outcomes", &json!({"plan_id": OTHER_PLAN_ID}))
        .expect_status(200);
    assert_eq!(new_plan.body["attributes"]["plan_id"], OTHER_PLAN_ID);
    assert_eq!(
        new_plan.body["attributes"]["parameters"],
        json!({"size": 2})
    );
    let cleared = session
        .patch("/echo/outcomes", &json!({"parameters": {}}))
        .expect_status(200);
    assert_eq!(cleared.body["attributes"].get("parameters"), None);
    session
        .patch("/echo/missing", &json!({"plan_id": PLAN_ID}))
        .expect_status(404);
}

/// Binds `once` (and `kept`, which stays for the deprovision); answers `kept`'s credentials.
fn bind_and_fetch_outcomes(session: &mut Session) -> Credentials {
    let on_the_plan = binding_attributes(OTHER_PLAN_ID);
    let made = session
        .put("/echo/outcomes/once", &on_the_plan)
        .expect_status(200);
    let again = session
        .put("/echo/outcomes/once", &on_the_plan)
        .expect_status(409);
    assert_eq!(again.text("password"), made.text("password"));
    session
        .put("/echo/missing/once", &on_the_plan)
        .expect_status(404);
    let other_plan = session
        .put("/echo/outcomes/other", &binding_attributes(PLAN_ID))
        .expect_status(400);
    assert!(other_plan.text("description").contains(PLAN_ID));
    session.get("/echo/outcomes/once").expect_status(200);
    session.get("/echo/outcomes/missing").expect_status(404);
    session.get("/echo/missing/once").expect_status(404);
    let kept = session
        .put("/echo/outcomes/kept", &on_the_plan)
        .expect_status(200);
    Credentials::of(&kept)
}

fn unbind_outcomes(session: &mut Session) {
    let other_service = session
        .delete("/echo/outcomes/once?service_id=other_service")
        .expect_status(400);
    assert!(other_service.text("description").contains("other_service"));
    session
        .delete(&format!("/echo/outcomes/once?plan_id={PLAN_ID}"))
        .expect_status(400);
    let removed = session
        .delete(&format!(
            "/echo/outcomes/once?service_id={SERVICE_ID}&plan_id={OTHER_PLAN_ID}"
        ))
        .expect_status(200);
    assert_eq!(removed.body["state"], "unbind_success");
    session.delete("/echo/outcomes/once").expect_status(404);
    session.delete("/echo/missing/once").expect_status(404);
}

fn deprovision_outcomes(session: &mut Session) {
    let other_service = session
        .delete(&format!(
            "/echo/outcomes?service_id=other_service&plan_id={OTHER_PLAN_ID}"
        ))
        .expect_status(400);
    assert!(other_service.text("description").contains("other_service"));
    let other_plan = session
        .delete(&format!("/echo/outcomes?{RIGHT_IDS}"))
        .expect_status(400);
    assert!(other_plan.text("description").contains(PLAN_ID));
    let removed = session
        .delete(&format!(
            "/echo/outcomes?service_id={SERVICE_ID}&plan_id={OTHER_PLAN_ID}"
        ))
        .expect_status(200);
    assert_eq!(
        removed.body,
        json!({"id": "outcomes", "state": "deprovision_success", "bindings": 1, "messages": 1})
    );
    session.delete("/echo/outcomes").expect_status(404);
}

// ---------------------------------------------------------------------------------------
// Control characters and lone surrogates
// ---------------------------------------------------------------------------------------

#[test]
fn control_characters_in_every_field_leave_instances_usable_and_deletable_alike() {
    on_both_stores(control_characters_everywhere);
}

fn control_characters_everywhere(session: &mut Session) {
    let cases = [
        ("parameters", json!({"value": HOSTILE, "list": [HOSTILE]})),
        (
            "context",
            json!({"platform": "cloudfoundry", "nested": {"deeper": {"value": HOSTILE}}}),
        ),
        ("context", json!({ HOSTILE: "a key", "\0": "a NUL key" })),
        ("organization_guid", json!(HOSTILE)),
        ("space_guid", json!(HOSTILE)),
    ];
    for (case, (field, value)) in cases.into_iter().enumerate() {
        let instance_id = format!("control-{case}");
        let attributes = with(instance_attributes(), field, value);
        let made = session
            .put(&format!("/echo/{instance_id}"), &attributes)
            .expect_status(200);
        assert_eq!(made.body["attributes"], attributes);
        a_whole_life_after(session, &instance_id, &made);
    }
    ids_with_control_characters_are_refused(session);
}

/// What the platform and a bound app do with an instance, all of it with control characters
/// where the platform may put them: each step answered as on a plain instance, and the
/// instance deleted at the end.
fn a_whole_life_after(session: &mut Session, instance_id: &str, made: &Answer) {
    let path = format!("/echo/{instance_id}");
    let fetched = session.get(&path).expect_status(200);
    assert_eq!(fetched.body["attributes"], made.body["attributes"]);
    let bind = json!({
        "service_id": SERVICE_ID,
        "plan_id": PLAN_ID,
        "app_guid": HOSTILE,
        "bind_resource": {"app_guid": HOSTILE, HOSTILE: HOSTILE},
        "parameters": {"\0": ["\0", HOSTILE]},
    });
    let bound = session
        .put(&format!("{path}/hostile"), &bind)
        .expect_status(200);
    assert_eq!(bound.body["attributes"], bind);
    let read_back = session.get(&format!("{path}/hostile")).expect_status(200);
    assert_eq!(read_back.body["attributes"], bind);
    a_message_with_control_characters(session, instance_id, made, &Credentials::of(&bound));
    let hostile_plan =
        json!({"plan_id": HOSTILE, "parameters": {"\0": HOSTILE}, "context": {"\0": {"\0": "\0"}}});
    let updated = session.patch(&path, &hostile_plan).expect_status(200);
    assert_eq!(updated.body["attributes"]["plan_id"], HOSTILE);
    session
        .put(
            &format!("{path}/after-update"),
            &binding_attributes(HOSTILE),
        )
        .expect_status(200);
    let refused = session
        .delete(&format!("{path}/hostile?service_id=%00"))
        .expect_status(400);
    assert!(refused.text("description").contains("'\0'"));
    session
        .delete(&format!("{path}/hostile"))
        .expect_status(200);
    session
        .delete(&format!("{path}/after-update"))
        .expect_status(200);
    deleted_with_control_characters_in_its_ids(session, instance_id);
}

fn a_message_with_control_characters(
    session: &mut Session,
    instance_id: &str,
    made: &Answer,
    credentials: &Credentials,
) {
    let message = "line one\nline two\0three\r\n";
    let echoed = session
        .message(
            &format!("/echo/{instance_id}/hostile"),
            Some(credentials),
            message,
        )
        .expect_status(200);
    assert_eq!(echoed.body, json!({ "response": message }));
    let dashboard = session.dashboard(instance_id, made).expect_status(200);
    assert_eq!(
        recent_messages_on(dashboard.page()),
        ["line one\u{240a}line two\u{2400}three\u{240d}\u{240a}"],
        "the preview shows each control character as its symbol"
    );
}

/// A delete whose query names `\0` as the service is refused; one with the instance's own
/// ids (its plan is [`HOSTILE`] now) removes it.
fn deleted_with_control_characters_in_its_ids(session: &mut Session, instance_id: &str) {
    let path = format!("/echo/{instance_id}");
    let refused = session
        .delete(&format!("{path}?service_id=%00&plan_id=%00"))
        .expect_status(400);
    assert!(refused.text("description").contains("'\0'"));
    let own_ids = format!(
        "service_id={SERVICE_ID}&plan_id={}",
        http::percent_encode(HOSTILE)
    );
    let removed = session
        .delete(&format!("{path}?{own_ids}"))
        .expect_status(200);
    assert_eq!(removed.body["bindings"], 0);
    assert_eq!(removed.body["messages"], 1);
    session.get(&path).expect_status(404);
}

fn ids_with_control_characters_are_refused(session: &mut Session) {
    session
        .put("/echo/%00", &instance_attributes())
        .expect_status(400);
    session
        .put("/echo/plain", &instance_attributes())
        .expect_status(200);
    session
        .put("/echo/plain/%00", &binding_attributes(PLAN_ID))
        .expect_status(400);
    session
        .put("/echo/plain/%0a", &binding_attributes(PLAN_ID))
        .expect_status(400);
    session
        .delete(&format!("/echo/plain?{RIGHT_IDS}"))
        .expect_status(200);
}

#[test]
fn lone_surrogates_are_refused_alike_and_change_nothing() {
    on_both_stores(lone_surrogates);
}

fn lone_surrogates(session: &mut Session) {
    let made = session
        .put("/echo/surrogates", &instance_attributes())
        .expect_status(200);
    let bound = session
        .put("/echo/surrogates/app", &binding_attributes(PLAN_ID))
        .expect_status(200);
    let provision = |field: &str, value: &str| {
        format!(
            r#"{{"service_id": "{SERVICE_ID}", "plan_id": "{PLAN_ID}", "organization_guid": "o", "space_guid": "s", "{field}": {value}}}"#
        )
    };
    let refused = [
        ("PUT", "/echo/lone", provision("parameters", r#"{"v": "\ud800"}"#)),
        ("PUT", "/echo/lone", provision("context", r#"{"\udc00": 1}"#)),
        ("PUT", "/echo/lone", provision("maintenance_info", r#"{"version": "\ud800\ud800"}"#)),
        (
            "PUT",
            "/echo/lone",
            r#"{"service_id": "echo_service", "plan_id": "big_0001", "organization_guid": "\ud800", "space_guid": "s"}"#.to_string(),
        ),
        (
            "PUT",
            "/echo/surrogates/lone",
            r#"{"service_id": "echo_service", "plan_id": "big_0001", "app_guid": "\udfff"}"#.to_string(),
        ),
        ("PATCH", "/echo/surrogates", r#"{"plan_id": "\ud800"}"#.to_string()),
        ("PATCH", "/echo/surrogates", r#"{"parameters": {"\ud800": "x"}}"#.to_string()),
    ];
    for (method, path, body) in refused {
        let refused = session.send(method, path, None, &body).expect_status(400);
        assert_refused_as_invalid_json(&refused);
    }
    let authorization = Credentials::of(&bound).authorization();
    let lone_message = r#"{"message": "\ud800"}"#;
    let refused = session
        .send(
            "POST",
            "/echo/surrogates/app",
            Some(&authorization),
            lone_message,
        )
        .expect_status(400);
    assert_refused_as_invalid_json(&refused);
    let untouched = session.get("/echo/surrogates").expect_status(200);
    assert_eq!(untouched.body["attributes"], instance_attributes());
    session.get("/echo/lone").expect_status(404);
    session.get("/echo/surrogates/lone").expect_status(404);
    a_surrogate_pair_is_one_character(session, &made);
    session
        .delete(&format!("/echo/surrogates?{RIGHT_IDS}"))
        .expect_status(200);
}

fn assert_refused_as_invalid_json(refused: &Answer) {
    let description = refused.text("description");
    assert!(
        description.starts_with("the body is not valid JSON"),
        "on {}, {}: {description}",
        refused.store,
        refused.request
    );
}

/// Escaped as a pair, a character beyond the Basic Multilingual Plane is what it always was.
fn a_surrogate_pair_is_one_character(session: &mut Session, made: &Answer) {
    let paired = session
        .send(
            "PATCH",
            "/echo/surrogates",
            None,
            r#"{"parameters": {"emoji": "\ud83d\ude00"}}"#,
        )
        .expect_status(200);
    assert_eq!(
        paired.body["attributes"]["parameters"],
        json!({"emoji": "\u{1f600}"})
    );
    session.dashboard("surrogates", made).expect_status(200);
}

// ---------------------------------------------------------------------------------------
// Huge and deep values
// ---------------------------------------------------------------------------------------

#[test]
fn huge_values_are_kept_whole_alike() {
    on_both_stores(huge_values);
}

/// About 900 KB of parameters. The server refuses bodies over `http::MAX_BODY_BYTES` (64 KiB)
/// before the service sees them; called in process, the service has no limit of its own, and
/// the stores must still agree.
fn huge_values(session: &mut Session) {
    let parameters = json!({
        "blob": "x".repeat(230_000),
        "list": (0..10_000).map(|n| format!("item {n:05}: {HOSTILE}")).collect::<Vec<_>>(),
    });
    let attributes = with(instance_attributes(), "parameters", parameters.clone());
    let size = attributes.to_string().len();
    assert!((900_000..1_000_000).contains(&size), "{size} bytes");
    session.put("/echo/huge", &attributes).expect_status(200);
    let fetched = session.get("/echo/huge").expect_status(200);
    assert_eq!(fetched.body["attributes"]["parameters"], parameters);
    let updated = session
        .patch("/echo/huge", &json!({"context": parameters}))
        .expect_status(200);
    assert_eq!(updated.body["attributes"]["context"], parameters);
    let bind = with(binding_attributes(PLAN_ID), "bind_resource", parameters);
    session.put("/echo/huge/app", &bind).expect_status(200);
    session
        .delete(&format!("/echo/huge?{RIGHT_IDS}"))
        .expect_status(200);
}

#[test]
fn bodies_nested_32_levels_are_kept_and_deeper_ones_refused_alike() {
    on_both_stores(deep_values);
}

/// A body is nested one level more than the value placed in it: 31 levels inside make the
/// 32 that `http::MAX_JSON_DEPTH` allows.
fn deep_values(session: &mut Session) {
    let deepest_kept = nested(31);
    for too_deep in [nested(32), nested(33), nested(200)] {
        let refused = session
            .put(
                "/echo/deep",
                &with(instance_attributes(), "parameters", too_deep),
            )
            .expect_status(400);
        assert!(refused.text("description").contains("deeper than 32"));
    }
    let attributes = with(instance_attributes(), "parameters", deepest_kept.clone());
    let made = session.put("/echo/deep", &attributes).expect_status(200);
    assert_eq!(made.body["attributes"]["parameters"], deepest_kept);
    let fetched = session.get("/echo/deep").expect_status(200);
    assert_eq!(fetched.body["attributes"]["parameters"], deepest_kept);
    session
        .patch("/echo/deep", &json!({ "context": nested(32) }))
        .expect_status(400);
    session
        .patch("/echo/deep", &json!({ "context": deepest_kept }))
        .expect_status(200);
    let bind = binding_attributes(PLAN_ID);
    session
        .put(
            "/echo/deep/app",
            &with(bind.clone(), "parameters", nested(32)),
        )
        .expect_status(400);
    let bound = session
        .put(
            "/echo/deep/app",
            &with(bind, "bind_resource", deepest_kept.clone()),
        )
        .expect_status(200);
    assert_eq!(bound.body["attributes"]["bind_resource"], deepest_kept);
    session
        .delete(&format!("/echo/deep?{RIGHT_IDS}"))
        .expect_status(200);
}

#[test]
fn a_long_message_is_answered_whole_and_previewed_in_200_bytes_alike() {
    on_both_stores(long_message);
}

fn long_message(session: &mut Session) {
    let made = session
        .put("/echo/long", &instance_attributes())
        .expect_status(200);
    let bound = session
        .put("/echo/long/app", &binding_attributes(PLAN_ID))
        .expect_status(200);
    // 10,000 characters, 29,998 bytes: the cut at 200 bytes falls inside a `€`.
    let message = format!("x{}", "€".repeat(9_999));
    let echoed = session
        .message("/echo/long/app", Some(&Credentials::of(&bound)), &message)
        .expect_status(200);
    assert_eq!(echoed.text("response"), message);
    let dashboard = session.dashboard("long", &made).expect_status(200);
    let preview = format!("x{}…", "€".repeat(65));
    assert_eq!(preview.len(), 199);
    assert_eq!(recent_messages_on(dashboard.page()), [preview]);
    session
        .delete(&format!("/echo/long?{RIGHT_IDS}"))
        .expect_status(200);
}

// ---------------------------------------------------------------------------------------
// Lifetimes at the limits
// ---------------------------------------------------------------------------------------

#[test]
fn lifetimes_at_their_limits_are_kept_or_refused_alike() {
    on_both_stores(lifetimes_at_the_limits);
}

fn lifetimes_at_the_limits(session: &mut Session) {
    session
        .put("/echo/lifetimes", &instance_attributes())
        .expect_status(200);
    let latest = json!({"expires_at": END_OF_YEAR_9999, "renew_before": END_OF_YEAR_9999 - 86_400});
    let bound = bind_with_lifetime(session, "latest", &latest).expect_status(200);
    assert_eq!(bound.body["lifetime"], latest);
    let read_back = session.get("/echo/lifetimes/latest").expect_status(200);
    assert_eq!(read_back.body["lifetime"], latest);
    session
        .message(
            "/echo/lifetimes/latest",
            Some(&Credentials::of(&bound)),
            "still valid",
        )
        .expect_status(200);
    let renew_at_expiry = json!({"expires_at": 2_000_000_000u64, "renew_before": 2_000_000_000u64});
    bind_with_lifetime(session, "renew-at-expiry", &renew_at_expiry).expect_status(200);
    lifetimes_that_cannot_be_kept(session);
    expired_credentials_are_refused(session);
    session
        .delete(&format!("/echo/lifetimes?{RIGHT_IDS}"))
        .expect_status(200);
}

fn bind_with_lifetime(session: &mut Session, binding_id: &str, lifetime: &Value) -> Answer {
    let body = with(binding_attributes(PLAN_ID), "lifetime", lifetime.clone());
    session.put(&format!("/echo/lifetimes/{binding_id}"), &body)
}

fn lifetimes_that_cannot_be_kept(session: &mut Session) {
    let past_the_year_9999 = json!({"expires_at": END_OF_YEAR_9999 + 1, "renew_before": 0});
    let refused = bind_with_lifetime(session, "too-late", &past_the_year_9999).expect_status(400);
    assert!(refused.text("description").contains("253402300800"));
    let largest = json!({"expires_at": u64::MAX, "renew_before": 0});
    bind_with_lifetime(session, "too-late", &largest).expect_status(400);
    let negative = json!({"expires_at": -1, "renew_before": -2});
    bind_with_lifetime(session, "too-late", &negative).expect_status(400);
    let renew_after_expiry =
        json!({"expires_at": 2_000_000_000u64, "renew_before": 2_000_000_001u64});
    bind_with_lifetime(session, "too-late", &renew_after_expiry).expect_status(400);
    session.get("/echo/lifetimes/too-late").expect_status(404);
}

/// A lifetime that has ended is kept as given; the credentials it came with are refused.
fn expired_credentials_are_refused(session: &mut Session) {
    for (binding_id, expires_at) in [("expired", 1_000_000_000u64), ("at-the-epoch", 0)] {
        let lifetime = json!({"expires_at": expires_at, "renew_before": expires_at});
        let bound = bind_with_lifetime(session, binding_id, &lifetime).expect_status(200);
        let read_back = session
            .get(&format!("/echo/lifetimes/{binding_id}"))
            .expect_status(200);
        assert_eq!(read_back.body["lifetime"], lifetime);
        let refused = session
            .message(
                &format!("/echo/lifetimes/{binding_id}"),
                Some(&Credentials::of(&bound)),
                "too late",
            )
            .expect_status(401);
        assert_eq!(refused.body["error"], "Unauthorized");
    }
}

// ---------------------------------------------------------------------------------------
// Rotation
// ---------------------------------------------------------------------------------------

#[test]
fn a_rotated_binding_outlives_its_predecessor_alike() {
    on_both_stores(rotation);
}

fn rotation(session: &mut Session) {
    session
        .put("/echo/rotated", &instance_attributes())
        .expect_status(200);
    let first = session
        .put("/echo/rotated/first", &binding_attributes(PLAN_ID))
        .expect_status(200);
    let successor = with(
        binding_attributes(PLAN_ID),
        "predecessor_binding_id",
        json!("first"),
    );
    let second = session
        .put("/echo/rotated/second", &successor)
        .expect_status(200);
    assert_eq!(second.body["attributes"]["predecessor_binding_id"], "first");
    session
        .delete(&format!("/echo/rotated/first?{RIGHT_IDS}"))
        .expect_status(200);
    let fetched = session.get("/echo/rotated/second").expect_status(200);
    assert_eq!(fetched.body["attributes"], successor);
    session
        .message(
            "/echo/rotated/second",
            Some(&Credentials::of(&second)),
            "rotated",
        )
        .expect_status(200);
    session
        .message(
            "/echo/rotated/first",
            Some(&Credentials::of(&first)),
            "retired",
        )
        .expect_status(401);
    let removed = session
        .delete(&format!("/echo/rotated?{RIGHT_IDS}"))
        .expect_status(200);
    assert_eq!(removed.body["bindings"], 1);
}

// ---------------------------------------------------------------------------------------
// The message ring
// ---------------------------------------------------------------------------------------

#[test]
fn the_dashboard_shows_the_latest_10_of_25_messages_alike() {
    on_both_stores(message_ring);
}

fn message_ring(session: &mut Session) {
    let made = session
        .put("/echo/ring", &instance_attributes())
        .expect_status(200);
    let bound = session
        .put("/echo/ring/app", &binding_attributes(PLAN_ID))
        .expect_status(200);
    let credentials = Credentials::of(&bound);
    for n in 1..=25 {
        session
            .message(
                "/echo/ring/app",
                Some(&credentials),
                &format!("message {n}"),
            )
            .expect_status(200);
    }
    let dashboard = session.dashboard("ring", &made).expect_status(200);
    let newest_first: Vec<String> = (16..=25).rev().map(|n| format!("message {n}")).collect();
    assert_eq!(recent_messages_on(dashboard.page()), newest_first);
    assert_eq!(message_count_on(dashboard.page()), 25);
    let fetched = session.get("/echo/ring").expect_status(200);
    assert_eq!(fetched.body["messages"], 25);
    let removed = session
        .delete(&format!("/echo/ring?{RIGHT_IDS}"))
        .expect_status(200);
    assert_eq!(removed.body["messages"], 25);
}

// ---------------------------------------------------------------------------------------
// Races
// ---------------------------------------------------------------------------------------

/// Sends `requests` at the same moment, one thread each; answers in the same order.
fn at_once(service: &ServiceUnderTest, requests: &[HttpRequest]) -> Vec<Answer> {
    let start = Barrier::new(requests.len());
    std::thread::scope(|scope| {
        let racers: Vec<_> = requests
            .iter()
            .map(|request| {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    Answer::of(service, request, serve(&service.echo, request))
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|racer| racer.join().expect("a racing request does not panic"))
            .collect()
    })
}

/// One request through [`serve`], outside any transcript.
fn send_alone(service: &ServiceUnderTest, method: &str, path: &str, body: &str) -> Answer {
    let request = request(method, path, None, body);
    Answer::of(service, &request, serve(&service.echo, &request))
}

/// How many of `answers` have `status`, after checking that every status is one of `allowed`.
fn count_of(answers: &[Answer], status: u16, allowed: &[u16]) -> usize {
    for answer in answers {
        assert!(
            allowed.contains(&answer.status),
            "on {}, {} was answered {} (expected one of {allowed:?}): {}",
            answer.store,
            answer.request,
            answer.status,
            excerpt(&answer.body.to_string())
        );
    }
    answers
        .iter()
        .filter(|answer| answer.status == status)
        .count()
}

#[test]
fn of_eight_provisions_at_once_one_is_made_and_seven_get_its_record() {
    on_each_store(provisions_at_once);
}

fn provisions_at_once(service: &ServiceUnderTest) {
    let body = instance_attributes().to_string();
    let requests = vec![request("PUT", "/echo/raced", None, &body); RACERS];
    let answers = at_once(service, &requests);
    assert_eq!(
        count_of(&answers, 200, &[200, 409]),
        1,
        "on {}",
        service.store
    );
    let tokens: Vec<&str> = answers
        .iter()
        .map(|answer| answer.text("dashboard_token"))
        .collect();
    assert!(
        tokens.iter().all(|token| *token == tokens[0]),
        "on {}, the provisions answered different tokens: {tokens:?}",
        service.store
    );
}

#[test]
fn of_eight_binds_at_once_one_is_made_and_seven_get_its_credentials() {
    on_each_store(binds_at_once);
}

fn binds_at_once(service: &ServiceUnderTest) {
    send_alone(
        service,
        "PUT",
        "/echo/raced",
        &instance_attributes().to_string(),
    )
    .expect_status(200);
    let body = binding_attributes(PLAN_ID).to_string();
    let requests = vec![request("PUT", "/echo/raced/app", None, &body); RACERS];
    let answers = at_once(service, &requests);
    assert_eq!(
        count_of(&answers, 200, &[200, 409]),
        1,
        "on {}",
        service.store
    );
    let pairs: Vec<(&str, &str)> = answers
        .iter()
        .map(|answer| (answer.text("username"), answer.text("password")))
        .collect();
    assert!(
        pairs.iter().all(|pair| *pair == pairs[0]),
        "on {}, the binds answered different credentials: {pairs:?}",
        service.store
    );
}

/// How many rounds each deprovision race runs: a race lost in one may be won in the next.
const ROUNDS: usize = 10;

#[test]
fn a_deprovision_racing_binds_leaves_no_binding_without_its_instance() {
    on_each_store(deprovision_racing_binds_leaves_no_binding_behind);
}

/// Whoever wins, no binding is left without its instance, and an instance made again under
/// the same id has none of the old bindings.
fn deprovision_racing_binds_leaves_no_binding_behind(service: &ServiceUnderTest) {
    for round in 0..ROUNDS {
        deprovision_among_binds(service);
        let totals = send_alone(service, "GET", "/echo", "").expect_status(200);
        assert_eq!(
            totals.body,
            json!({"instances": 0, "bindings": 0}),
            "on {} (round {round})",
            service.store
        );
        no_old_binding_under_a_new_instance(service);
    }
}

#[test]
fn a_deprovision_racing_binds_counts_every_bind_answered_200() {
    on_each_store(deprovision_racing_binds_counts_them);
}

/// A bind answered 200 was made before the instance was removed, so the deprovision's
/// answer counts it among the bindings removed with the instance.
fn deprovision_racing_binds_counts_them(service: &ServiceUnderTest) {
    for round in 0..ROUNDS {
        let (removed, bound) = deprovision_among_binds(service);
        assert_eq!(
            removed.body["bindings"], bound,
            "on {} (round {round}), the deprovision counted other bindings than the {bound} binds answered 200",
            service.store
        );
    }
}

/// One deprovision sent at the same moment as [`RACERS`] binds to the same instance: its
/// answer (checked 200), and how many binds were answered 200 (the others 404).
fn deprovision_among_binds(service: &ServiceUnderTest) -> (Answer, usize) {
    let provision = instance_attributes().to_string();
    send_alone(service, "PUT", "/echo/contested", &provision).expect_status(200);
    let bind = binding_attributes(PLAN_ID).to_string();
    let mut requests: Vec<HttpRequest> = (0..RACERS)
        .map(|n| request("PUT", &format!("/echo/contested/b{n}"), None, &bind))
        .collect();
    let deprovision = format!("/echo/contested?{RIGHT_IDS}");
    requests.insert(RACERS / 2, request("DELETE", &deprovision, None, ""));
    let mut answers = at_once(service, &requests);
    let removed = answers.remove(RACERS / 2).expect_status(200);
    (removed, count_of(&answers, 200, &[200, 404]))
}

fn no_old_binding_under_a_new_instance(service: &ServiceUnderTest) {
    let provision = instance_attributes().to_string();
    send_alone(service, "PUT", "/echo/contested", &provision).expect_status(200);
    for n in 0..RACERS {
        send_alone(service, "GET", &format!("/echo/contested/b{n}"), "").expect_status(404);
    }
    let path = format!("/echo/contested?{RIGHT_IDS}");
    let removed = send_alone(service, "DELETE", &path, "").expect_status(200);
    assert_eq!(removed.body["bindings"], 0, "on {}", service.store);
}

// ---------------------------------------------------------------------------------------
// Anonymous and bad callers of the bound-app route
// ---------------------------------------------------------------------------------------

#[test]
fn anonymous_and_bad_callers_of_a_binding_get_the_same_401_alike() {
    on_both_stores(anonymous_and_bad_callers);
}

fn anonymous_and_bad_callers(session: &mut Session) {
    session
        .put("/echo/guarded", &instance_attributes())
        .expect_status(200);
    let bound = session
        .put("/echo/guarded/app", &binding_attributes(PLAN_ID))
        .expect_status(200);
    let right = Credentials::of(&bound);
    let wrong = Credentials {
        username: right.username.clone(),
        password: "not-the-password".to_string(),
    };
    let refusals = [
        session.message("/echo/%00/x", None, "anonymous"),
        session.message("/echo/%00/x", Some(&right), "a NUL instance id"),
        session.message("/echo/guarded/%00", Some(&right), "a NUL binding id"),
        session.message("/echo/guarded/app", None, "anonymous"),
        session.message("/echo/guarded/app", Some(&wrong), "a wrong password"),
        session.message("/echo/guarded/missing", Some(&right), "no such binding"),
        session.message("/echo/missing/app", Some(&right), "no such instance"),
    ];
    for refusal in refusals {
        let refusal = refusal.expect_status(401);
        assert_eq!(
            refusal.body,
            json!({"error": "Unauthorized", "description": "use the binding's credentials"}),
            "on {}, {}",
            refusal.store,
            refusal.request
        );
        assert_eq!(
            refusal.header("WWW-Authenticate"),
            Some("Basic realm=\"echo\"")
        );
    }
    session
        .message("/echo/guarded/app", Some(&right), "let in")
        .expect_status(200);
    session
        .delete(&format!("/echo/guarded?{RIGHT_IDS}"))
        .expect_status(200);
}
