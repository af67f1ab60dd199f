//! Closed-loop load: one thread per connection, each with one request in flight, bounded in
//! time and in count; the catalog and lifecycle work, and the burst of new connections.

use crate::client::{request_bytes, Client};
use crate::report::fmt;
use crate::rounds::median;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const PROVISION_BODY: &str = r#"{"service_id":"echo_service","plan_id":"big_0001","organization_guid":"o","space_guid":"s"}"#;
const BIND_BODY: &str = r#"{"service_id":"echo_service","plan_id":"big_0001","app_guid":"a"}"#;
const IDS_QUERY: &str = "service_id=echo_service&plan_id=big_0001";
/// Hard caps on any one load run, whatever the clock says.
const MAX_REQUESTS_PER_RUN: u64 = 5_000_000;

/// What each connection does in a loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Work {
    /// `GET /v2/catalog`.
    Catalog,
    /// Provision, bind, unbind, deprovision, with fresh ids every cycle.
    Lifecycle,
    /// Provision, bind, a message with the binding's credentials to its `uri`, unbind,
    /// deprovision: every kind of change the echo service's store makes.
    LifecycleMessage,
    /// Provision only, numbered from a shared counter (to fill an echo service).
    Provision,
    /// `--drive` only: open the connections at once, one catalog request each.
    Burst,
}

/// What one load run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// From the common start to the last connection's stop.
    pub elapsed: f64,
    /// From the first connect to the common start (every connection made and answered once).
    pub setup: f64,
    /// Catalog answers or provisions that were 2xx, or lifecycles whose four answers were.
    pub operations: u64,
    /// Those of `operations` that ended before the deadline: what the rate counts.
    in_window: u64,
    /// The run's planned length in seconds (the rate's denominator).
    window: f64,
    /// Every request answered or failed.
    pub requests: u64,
    /// Non-2xx answers plus requests that failed (refused, reset, timed out, garbage).
    pub errors: u64,
    /// Microseconds per request, by lifecycle step (catalog and provision use index 0; see
    /// [`STEPS`]).
    pub latencies: [Vec<u32>; 5],
    /// Errors by kind: `status 404`, or the I/O error's kind (`TimedOut`, `UnexpectedEof`...).
    pub error_kinds: BTreeMap<String, u64>,
}

impl Outcome {
    /// Counts an operation that has just ended.
    fn count(&mut self, ok: bool, deadline: Instant) {
        if ok {
            self.operations += 1;
            if Instant::now() <= deadline {
                self.in_window += 1;
            }
        }
    }

    /// Operations per second within the planned window. A request still running at the
    /// deadline (say one stuck for seconds) makes the run overrun, but neither it nor the
    /// time it overran counts: its connection simply did less in the window.
    pub fn rate(&self) -> f64 {
        if self.window > 0.0 {
            self.in_window as f64 / self.window
        } else {
            0.0
        }
    }
}

/// The lifecycle steps, by their index in [`Outcome::latencies`].
pub const STEPS: [&str; 5] = ["provision", "bind", "unbind", "deprovision", "message"];
pub const MESSAGE_STEP: usize = 4;

/// One run: `conns` connections, each looping `work` until `secs` have passed (or the run
/// has made its share of [`MAX_REQUESTS_PER_RUN`], or a `Provision` counter reaches `limit`).
/// Connection `i` goes to `addresses[i % addresses.len()]` (two brokers share the load).
///
/// The connections are opened one after another before the clock starts, each answered once,
/// so that the rate measures answering, not connecting (opening many connections at once is
/// the `burst` phase's work, see [`first_answers`]).
pub fn run_load(
    addresses: &[SocketAddr],
    work: Work,
    conns: usize,
    secs: f64,
    limit: u64,
    tag: &str,
) -> Outcome {
    let begun = Instant::now();
    let clients: Vec<Client> = (0..conns)
        .map(|index| {
            let address = addresses[index % addresses.len()];
            let mut client = Client::new(address);
            // A failure here shows up again, as errors, in the loop.
            let _ = client.send(&catalog_request(&address.to_string()));
            client
        })
        .collect();
    let barrier = Arc::new(Barrier::new(conns + 1));
    let counter = Arc::new(AtomicU64::new(0));
    let per_connection = (MAX_REQUESTS_PER_RUN / conns as u64).max(1);
    let duration = Duration::from_secs_f64(secs);
    let (start, results) = std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(index, client)| {
                let barrier = Arc::clone(&barrier);
                let counter = Arc::clone(&counter);
                let tag = format!("{tag}-{index}");
                scope.spawn(move || {
                    barrier.wait();
                    let plan = Plan {
                        work,
                        tag: &tag,
                        deadline: Instant::now() + duration,
                        max_requests: per_connection,
                        counter: &counter,
                        limit,
                    };
                    connection_loop(client, &plan)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<_> = handles
            .into_iter()
            .map(|handle| handle.join().expect("a load thread panicked"))
            .collect();
        (start, results)
    });
    let mut outcome = Outcome::default();
    let mut last = start;
    for (finished, part) in results {
        last = last.max(finished);
        outcome.operations += part.operations;
        outcome.in_window += part.in_window;
        outcome.requests += part.requests;
        outcome.errors += part.errors;
        for (kind, count) in part.error_kinds {
            *outcome.error_kinds.entry(kind).or_default() += count;
        }
        for (all, some) in outcome.latencies.iter_mut().zip(part.latencies) {
            all.extend(some);
        }
    }
    outcome.elapsed = last.duration_since(start).as_secs_f64();
    outcome.setup = start.duration_since(begun).as_secs_f64();
    outcome.window = secs;
    outcome
}

/// What one connection does in a run.
struct Plan<'a> {
    work: Work,
    /// Makes the ids of this connection's instances unique in the whole benchmark.
    tag: &'a str,
    deadline: Instant,
    max_requests: u64,
    /// Numbers `Provision`s across connections, up to `limit`.
    counter: &'a AtomicU64,
    limit: u64,
}

fn connection_loop(mut client: Client, plan: &Plan) -> (Instant, Outcome) {
    let host = client.address.to_string();
    let tag = plan.tag;
    let mut outcome = Outcome::default();
    let capacity = (plan.max_requests as usize).min(256 * 1024);
    outcome.latencies[0].reserve(capacity);
    let mut request = Vec::with_capacity(512);
    let catalog = catalog_request(&host);
    let mut cycle: u64 = 0;
    // The bound app's keep-alive connection to the echo service (LifecycleMessage).
    let mut app: Option<Client> = None;
    while Instant::now() < plan.deadline && outcome.requests < plan.max_requests {
        match plan.work {
            Work::Catalog => {
                let ok = timed(&mut client, &catalog, &mut outcome, 0);
                outcome.count(ok, plan.deadline);
            }
            Work::Burst => break,
            Work::Provision => {
                let number = plan.counter.fetch_add(1, Ordering::Relaxed);
                if number >= plan.limit {
                    break;
                }
                let path = format!("/v2/service_instances/{tag}-{number:08}");
                request_bytes(&mut request, "PUT", &path, &host, Some(PROVISION_BODY));
                let ok = timed(&mut client, &request, &mut outcome, 0);
                outcome.count(ok, plan.deadline);
            }
            Work::Lifecycle => {
                let instance = format!("/v2/service_instances/{tag}-{cycle:08}");
                let binding = format!("{instance}/service_bindings/{tag}-{cycle:08}-b");
                let steps: [(&str, String, Option<&str>); 4] = [
                    ("PUT", instance.clone(), Some(PROVISION_BODY)),
                    ("PUT", binding.clone(), Some(BIND_BODY)),
                    ("DELETE", format!("{binding}?{IDS_QUERY}"), None),
                    ("DELETE", format!("{instance}?{IDS_QUERY}"), None),
                ];
                let mut all_ok = true;
                for (step, (method, path, body)) in steps.iter().enumerate() {
                    request_bytes(&mut request, method, path, &host, *body);
                    all_ok &= timed(&mut client, &request, &mut outcome, step);
                }
                outcome.count(all_ok, plan.deadline);
                cycle += 1;
            }
            Work::LifecycleMessage => {
                let instance = format!("/v2/service_instances/{tag}-{cycle:08}");
                let binding = format!("{instance}/service_bindings/{tag}-{cycle:08}-b");
                let mut all_ok = true;
                request_bytes(&mut request, "PUT", &instance, &host, Some(PROVISION_BODY));
                all_ok &= timed(&mut client, &request, &mut outcome, 0);
                request_bytes(&mut request, "PUT", &binding, &host, Some(BIND_BODY));
                let bound = timed(&mut client, &request, &mut outcome, 1);
                all_ok &= bound;
                match binding_credentials(&client.body).filter(|_| bound) {
                    Some(credentials) => {
                        if app
                            .as_ref()
                            .is_some_and(|app| app.address != credentials.address)
                        {
                            app = None;
                        }
                        let app = app.get_or_insert_with(|| Client::new(credentials.address));
                        message_request(&mut request, &credentials);
                        all_ok &= timed(app, &request, &mut outcome, MESSAGE_STEP);
                    }
                    None => {
                        all_ok = false;
                        outcome.requests += 1;
                        outcome.errors += 1;
                        *outcome
                            .error_kinds
                            .entry("message not sent: no credentials in the bind answer".into())
                            .or_default() += 1;
                    }
                }
                let unbind = format!("{binding}?{IDS_QUERY}");
                request_bytes(&mut request, "DELETE", &unbind, &host, None);
                all_ok &= timed(&mut client, &request, &mut outcome, 2);
                let deprovision = format!("{instance}?{IDS_QUERY}");
                request_bytes(&mut request, "DELETE", &deprovision, &host, None);
                all_ok &= timed(&mut client, &request, &mut outcome, 3);
                outcome.count(all_ok, plan.deadline);
                cycle += 1;
            }
        }
    }
    (Instant::now(), outcome)
}

/// Where a bound app sends its messages, from a bind answer's `credentials.uri`
/// (`http://USER:PASSWORD@127.0.0.1:PORT/echo/INSTANCE/BINDING`).
struct AppCredentials {
    address: SocketAddr,
    host: String,
    path: String,
    authorization: String,
}

const MESSAGE_BODY: &str = r#"{"message":"Hello, echo service"}"#;

/// The credentials of a bind answer, if they name a loopback address.
fn binding_credentials(body: &[u8]) -> Option<AppCredentials> {
    let answer: serde_json::Value = serde_json::from_slice(body).ok()?;
    let uri = answer.get("credentials")?.get("uri")?.as_str()?;
    let rest = uri.strip_prefix("http://")?;
    let (authority, path) = rest.split_at(rest.find('/')?);
    let (login, host) = authority.rsplit_once('@')?;
    let (user, password) = login.split_once(':')?;
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .ok()
            .map(|text| text.into_owned())
    };
    let address: SocketAddr = host.parse().ok()?;
    if !address.ip().is_loopback() {
        return None;
    }
    Some(AppCredentials {
        address,
        host: host.to_string(),
        path: path.to_string(),
        authorization: echo_broker::http::basic_authorization(&decode(user)?, &decode(password)?),
    })
}

/// A bound app's message: `POST uri` with the binding's basic-auth pair.
fn message_request(buffer: &mut Vec<u8>, credentials: &AppCredentials) {
    buffer.clear();
    write!(
        buffer,
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{MESSAGE_BODY}",
        credentials.path,
        credentials.host,
        credentials.authorization,
        MESSAGE_BODY.len()
    )
    .expect("a Vec<u8> takes every write");
}

/// `slowest_ms=.. median_ms=.. unanswered=..` of [`first_answers`].
pub fn burst_summary(times: &[Option<f64>]) -> String {
    let answered: Vec<f64> = times.iter().flatten().copied().collect();
    let slowest = answered.last().copied().unwrap_or(f64::NAN);
    format!(
        "slowest_ms={} median_ms={} unanswered={}",
        fmt(slowest, 1),
        fmt(median(answered.clone()), 2),
        times.len() - answered.len()
    )
}

/// Opens `conns` connections at once (one thread each, released together) and sends one
/// catalog request on each: the milliseconds each took to be answered, sorted, with
/// `None` for one that failed or was not answered within [`CLIENT_TIMEOUT`].
pub fn first_answers(address: SocketAddr, conns: usize) -> Vec<Option<f64>> {
    let barrier = Arc::new(Barrier::new(conns));
    let request = catalog_request(&address.to_string());
    let mut times: Vec<Option<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..conns)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let request = &request;
                scope.spawn(move || {
                    barrier.wait();
                    let started = Instant::now();
                    let mut client = Client::new(address);
                    let time = match client.send(request) {
                        Ok(200) => Some(started.elapsed().as_secs_f64() * 1000.0),
                        _ => None,
                    };
                    // Kept open until every connection is answered, as a platform's
                    // keep-alive connections would be: a closing one frees its thread.
                    (time, client)
                })
            })
            .collect();
        let results: Vec<(Option<f64>, Client)> = handles
            .into_iter()
            .map(|handle| handle.join().expect("a burst thread panicked"))
            .collect();
        results.into_iter().map(|(time, _client)| time).collect()
    });
    times.sort_by(|a, b| match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    times
}

pub fn catalog_request(host: &str) -> Vec<u8> {
    let mut request = Vec::new();
    request_bytes(&mut request, "GET", "/v2/catalog", host, None);
    request
}

/// Sends one request, records its latency, and tells whether it was answered 2xx.
fn timed(client: &mut Client, request: &[u8], outcome: &mut Outcome, step: usize) -> bool {
    let started = Instant::now();
    let result = client.send(request);
    let micros = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
    outcome.requests += 1;
    outcome.latencies[step].push(micros);
    let ok = matches!(result, Ok(status) if (200..300).contains(&status));
    if !ok {
        outcome.errors += 1;
        let kind = match &result {
            Ok(status) => format!("status {status}"),
            Err(error) => format!("{:?}", error.kind()),
        };
        if std::env::var_os("BENCH_DEBUG").is_some() {
            eprintln!(
                "DEBUG error {kind} at request {} after {micros} us",
                outcome.requests
            );
        }
        *outcome.error_kinds.entry(kind).or_default() += 1;
        if result.is_err() {
            // A refused or broken connection fails fast; do not spin on it.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    ok
}

/// The value at quantile `q` of `values` (sorted in place), in milliseconds.
pub fn quantile_ms(values: &mut [u32], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    f64::from(values[rank - 1]) / 1000.0
}
