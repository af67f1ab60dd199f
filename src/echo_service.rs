//! The echo service: the backend the broker provisions and binds.
//!
//! It speaks the original echo service's wire API (same paths, same status codes) and adds
//! what a real service needs: it stores each instance's and binding's attributes so the
//! broker can answer repeated requests as the spec says, gives every binding its own
//! credentials, protects its management API, and keeps its state in a journal on disk.
//!
//! | call | answer |
//! | --- | --- |
//! | `GET /echo` (management) | 200 `{"instances": N, "bindings": M}` |
//! | `PUT /echo/{instance_id}` (management) | 200 provisioned, 409 exists (with the stored record) |
//! | `GET /echo/{instance_id}` (management) | 200 the record, 404 |
//! | `PATCH /echo/{instance_id}` (management) | 200 the updated record, 404 |
//! | `DELETE /echo/{instance_id}` (management) | 200 with counts, 404 |
//! | `PUT /echo/{instance_id}/{binding_id}` (management) | 200 with credentials, 409 exists, 404 no instance |
//! | `GET /echo/{instance_id}/{binding_id}` (management) | 200 the binding, 404 |
//! | `DELETE /echo/{instance_id}/{binding_id}` (management) | 200, 404 |
//! | `POST /echo/{instance_id}/{binding_id}` (binding credentials) | 200 `{"response": ...}` |
//! | `GET /echo/dashboard/{instance_id}?token=...` | 200 HTML page, 404 |
//! | `GET /health` | 200 `{"status": "ok"}` |

use crate::echo_api::{
    non_empty, BindingAttributes, BindingView, InstanceAttributes, InstanceUpdate, InstanceView,
};
use crate::http::{self, HttpRequest, HttpResponse};
use crate::journal::{Journal, Ticket};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

thread_local! {
    /// The last journal change the current request's handler could have seen (0: none).
    /// Per thread, because each worker thread handles one request at a time.
    static OBSERVED_CHANGE: Cell<u64> = const { Cell::new(0) };
}

/// How many of an instance's latest messages the dashboard shows (older ones are counted only).
const RECENT_MESSAGES: usize = 10;

/// The service whose instances answer with the message reversed.
const INVERT_SERVICE_ID: &str = "invert_service";

/// How the echo service is set up.
#[derive(Debug, Clone, Default)]
pub struct EchoConfig {
    /// The user and password the broker must send to the management API; `None` leaves it
    /// open, which start-up allows only on a loopback address.
    pub management_credentials: Option<(String, String)>,
    /// Where the journal lives; `None` keeps everything in memory only.
    pub data_dir: Option<PathBuf>,
}

/// One provisioned instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    pub attributes: Option<InstanceAttributes>,
    pub dashboard_token: String,
    pub bindings: BTreeMap<String, Binding>,
    pub recent_messages: VecDeque<String>,
    pub message_count: u64,
}

/// One binding, with the credentials unique to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Binding {
    pub attributes: Option<BindingAttributes>,
    pub username: String,
    pub password: String,
}

/// Everything the echo service knows; what the journal's snapshot holds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct EchoState {
    pub instances: HashMap<String, Instance>,
}

/// One change to the state: what the journal records, and what replay applies again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Provision {
        instance_id: String,
        attributes: Option<InstanceAttributes>,
        dashboard_token: String,
    },
    Update {
        instance_id: String,
        update: InstanceUpdate,
    },
    Deprovision {
        instance_id: String,
    },
    Bind {
        instance_id: String,
        binding_id: String,
        attributes: Option<BindingAttributes>,
        username: String,
        password: String,
    },
    Unbind {
        instance_id: String,
        binding_id: String,
    },
    Message {
        instance_id: String,
        message: String,
    },
}

impl EchoState {
    /// Applies a change that was checked against this state (live, or replayed from disk).
    /// A change that no longer fits (say, a bind whose instance is gone) is ignored.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Provision {
                instance_id,
                attributes,
                dashboard_token,
            } => {
                self.instances.entry(instance_id).or_insert(Instance {
                    attributes,
                    dashboard_token,
                    bindings: BTreeMap::new(),
                    recent_messages: VecDeque::new(),
                    message_count: 0,
                });
            }
            Change::Update {
                instance_id,
                update,
            } => {
                if let Some(attributes) = self
                    .instances
                    .get_mut(&instance_id)
                    .and_then(|instance| instance.attributes.as_mut())
                {
                    apply_update(attributes, update);
                }
            }
            Change::Deprovision { instance_id } => {
                self.instances.remove(&instance_id);
            }
            Change::Bind {
                instance_id,
                binding_id,
                attributes,
                username,
                password,
            } => {
                if let Some(instance) = self.instances.get_mut(&instance_id) {
                    let binding = Binding {
                        attributes,
                        username,
                        password,
                    };
                    instance.bindings.entry(binding_id).or_insert(binding);
                }
            }
            Change::Unbind {
                instance_id,
                binding_id,
            } => {
                if let Some(instance) = self.instances.get_mut(&instance_id) {
                    instance.bindings.remove(&binding_id);
                }
            }
            Change::Message {
                instance_id,
                message,
            } => {
                if let Some(instance) = self.instances.get_mut(&instance_id) {
                    if instance.recent_messages.len() == RECENT_MESSAGES {
                        instance.recent_messages.pop_front();
                    }
                    instance.recent_messages.push_back(message);
                    instance.message_count += 1;
                }
            }
        }
    }
}

fn apply_update(attributes: &mut InstanceAttributes, update: InstanceUpdate) {
    if let Some(plan_id) = update.plan_id {
        attributes.plan_id = plan_id;
    }
    if let Some(parameters) = update.parameters {
        attributes.parameters = non_empty(Some(parameters));
    }
    if let Some(context) = update.context {
        attributes.context = non_empty(Some(context));
    }
}

/// The echo service: its state, its journal, and who may manage it.
pub struct EchoService {
    state: Mutex<EchoState>,
    journal: Option<Journal>,
    management_credentials: Option<(String, String)>,
}

impl EchoService {
    /// Loads the state from `config.data_dir` (if any). A journal that cannot be read stops
    /// start-up with the reason; it is never overwritten.
    pub fn new(config: EchoConfig) -> Result<EchoService, String> {
        let (state, journal) = match &config.data_dir {
            Some(dir) => {
                let (journal, state) = Journal::open(dir)?;
                (state, Some(journal))
            }
            None => (EchoState::default(), None),
        };
        Ok(EchoService {
            state: Mutex::new(state),
            journal,
            management_credentials: config.management_credentials,
        })
    }

    /// How many instances are held (for the start-up log line).
    pub fn instance_count(&self) -> usize {
        self.lock().instances.len()
    }

    /// Answers one request.
    /// Answers one request, but never with state that is not on disk yet: the answer waits
    /// until every change the handler could have seen is durable. (A change's own request
    /// already waits for it; this covers answers that only read, such as a 409 for an
    /// instance whose provision is still being flushed, which a crash could otherwise undo
    /// after the broker had answered 200.)
    pub fn handle(&self, request: &HttpRequest) -> HttpResponse {
        OBSERVED_CHANGE.with(|observed| observed.set(0));
        let response = self.route(request);
        let observed = OBSERVED_CHANGE.with(Cell::get);
        match &self.journal {
            Some(journal) if observed > 0 => match journal.wait_until_durable(Ticket(observed)) {
                Ok(()) => response,
                Err(error) => {
                    log::error!("journal: {error}");
                    unavailable("the state could not be confirmed on disk")
                }
            },
            _ => response,
        }
    }

    fn route(&self, request: &HttpRequest) -> HttpResponse {
        let Some(segments) = request.path_segments() else {
            return bad_request("the path is not valid percent-encoded UTF-8");
        };
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        if let Some(id) = segments
            .iter()
            .skip(1)
            .find(|id| http::id_problem(id).is_some())
        {
            let problem = http::id_problem(id).unwrap_or_default();
            return bad_request(&format!("an id in the path {problem}"));
        }
        let method = request.method.as_str();
        match (method, segments.as_slice()) {
            ("GET", ["health"]) => HttpResponse::json(200, &json!({"status": "ok"})),
            // `/echo/dashboard/X` is also binding X of an instance named "dashboard": a
            // management caller without a token fetches that binding.
            ("GET", ["echo", "dashboard", instance_id])
                if request.query("token").is_some() || !self.may_manage(request) =>
            {
                self.dashboard(request, instance_id)
            }
            ("POST", ["echo", instance_id, binding_id]) => {
                self.echo(request, instance_id, binding_id)
            }
            (_, ["echo"] | ["echo", _] | ["echo", _, _]) if !self.may_manage(request) => {
                HttpResponse::error(
                    401,
                    "Unauthorized",
                    "the management API needs the broker's credentials",
                )
                .with_header("WWW-Authenticate", "Basic realm=\"echo-service\"".into())
            }
            ("GET", ["echo"]) => self.totals(),
            ("PUT", ["echo", instance_id]) => self.provision(request, instance_id),
            ("GET", ["echo", instance_id]) => self.fetch_instance(instance_id),
            ("PATCH", ["echo", instance_id]) => self.update(request, instance_id),
            ("DELETE", ["echo", instance_id]) => self.deprovision(request, instance_id),
            ("PUT", ["echo", instance_id, binding_id]) => {
                self.bind(request, instance_id, binding_id)
            }
            ("GET", ["echo", instance_id, binding_id]) => {
                self.fetch_binding(instance_id, binding_id)
            }
            ("DELETE", ["echo", instance_id, binding_id]) => {
                self.unbind(request, instance_id, binding_id)
            }
            (
                _,
                ["health"] | ["echo"] | ["echo", "dashboard", _] | ["echo", _] | ["echo", _, _],
            ) => HttpResponse::error(
                405,
                "MethodNotAllowed",
                &format!("{method} is not allowed here"),
            ),
            _ => not_found("no such resource"),
        }
    }

    fn may_manage(&self, request: &HttpRequest) -> bool {
        match &self.management_credentials {
            None => true,
            Some((user, password)) => {
                http::credentials_match(request.header("Authorization"), user, password)
            }
        }
    }

    /// `GET /echo`: how many instances and bindings are held (for operators and load tests).
    fn totals(&self) -> HttpResponse {
        let state = self.lock();
        let bindings: usize = state
            .instances
            .values()
            .map(|instance| instance.bindings.len())
            .sum();
        HttpResponse::json(
            200,
            &json!({"instances": state.instances.len(), "bindings": bindings}),
        )
    }

    /// `PUT /echo/{instance_id}` with the instance's attributes (or no body, as the
    /// original broker sent).
    fn provision(&self, request: &HttpRequest, instance_id: &str) -> HttpResponse {
        let attributes = match optional_body::<InstanceAttributes>(&request.body) {
            Ok(attributes) => attributes.map(normalise_instance),
            Err(response) => return response,
        };
        let Ok(dashboard_token) = http::random_token() else {
            return unavailable("no randomness available for the dashboard token");
        };
        let state = self.lock();
        if let Some(instance) = state.instances.get(instance_id) {
            let view = instance_view(instance_id, instance, "exists");
            let mut body = serde_json::to_value(&view).unwrap_or_default();
            body["error"] = json!("Conflict");
            body["description"] = json!(format!("instance '{instance_id}' already exists"));
            body["dashboard_url"] = json!(dashboard_url(request, instance_id, instance));
            return HttpResponse::json(409, &body);
        }
        let change = Change::Provision {
            instance_id: instance_id.to_string(),
            attributes,
            dashboard_token,
        };
        self.commit(state, change, |state| {
            let instance = &state.instances[instance_id];
            let view = instance_view(instance_id, instance, "provision_success");
            let mut body = serde_json::to_value(view).unwrap_or_default();
            body["dashboard_url"] = json!(dashboard_url(request, instance_id, instance));
            HttpResponse::json(200, &body)
        })
    }

    /// `GET /echo/{instance_id}`.
    fn fetch_instance(&self, instance_id: &str) -> HttpResponse {
        match self.lock().instances.get(instance_id) {
            Some(instance) => {
                HttpResponse::json(200, &instance_view(instance_id, instance, "provisioned"))
            }
            None => not_found(&format!("instance '{instance_id}' does not exist")),
        }
    }

    /// `PATCH /echo/{instance_id}` with an [`InstanceUpdate`].
    fn update(&self, request: &HttpRequest, instance_id: &str) -> HttpResponse {
        let update = match optional_body::<InstanceUpdate>(&request.body) {
            Ok(update) => update.unwrap_or_default(),
            Err(response) => return response,
        };
        let state = self.lock();
        if !state.instances.contains_key(instance_id) {
            return not_found(&format!("instance '{instance_id}' does not exist"));
        }
        let change = Change::Update {
            instance_id: instance_id.to_string(),
            update,
        };
        self.commit(state, change, |state| {
            let instance = &state.instances[instance_id];
            HttpResponse::json(200, &instance_view(instance_id, instance, "update_success"))
        })
    }

    /// `DELETE /echo/{instance_id}`: drops the instance with its bindings and messages.
    fn deprovision(&self, request: &HttpRequest, instance_id: &str) -> HttpResponse {
        let state = self.lock();
        let Some(instance) = state.instances.get(instance_id) else {
            return not_found(&format!("instance '{instance_id}' does not exist"));
        };
        if let Some(refusal) = refuse_other_ids(instance, &ids_in_query(request)) {
            return refusal;
        }
        let body = json!({
            "id": instance_id,
            "state": "deprovision_success",
            "bindings": instance.bindings.len(),
            "messages": instance.message_count,
        });
        let change = Change::Deprovision {
            instance_id: instance_id.to_string(),
        };
        self.commit(state, change, |_| HttpResponse::json(200, &body))
    }

    /// `PUT /echo/{instance_id}/{binding_id}`: creates the binding and its credentials.
    fn bind(&self, request: &HttpRequest, instance_id: &str, binding_id: &str) -> HttpResponse {
        let attributes = match optional_body::<BindingAttributes>(&request.body) {
            Ok(attributes) => attributes.map(normalise_binding),
            Err(response) => return response,
        };
        let (Ok(user_token), Ok(password)) = (http::random_token(), http::random_token()) else {
            return unavailable("no randomness available for the binding's credentials");
        };
        let state = self.lock();
        let Some(instance) = state.instances.get(instance_id) else {
            return not_found(&format!("instance '{instance_id}' does not exist"));
        };
        if let Some(attributes) = &attributes {
            let ids = (
                Some(attributes.service_id.clone()),
                Some(attributes.plan_id.clone()),
            );
            if let Some(refusal) = refuse_other_ids(instance, &ids) {
                return refusal;
            }
        }
        if let Some(binding) = instance.bindings.get(binding_id) {
            let mut body = serde_json::to_value(binding_view(binding_id, binding, "exists"))
                .unwrap_or_default();
            body["error"] = json!("Conflict");
            body["description"] = json!(format!("binding '{binding_id}' already exists"));
            return HttpResponse::json(409, &body);
        }
        let change = Change::Bind {
            instance_id: instance_id.to_string(),
            binding_id: binding_id.to_string(),
            attributes,
            username: format!("app-{}", &user_token[..12]),
            password,
        };
        self.commit(state, change, |state| {
            let binding = &state.instances[instance_id].bindings[binding_id];
            HttpResponse::json(200, &binding_view(binding_id, binding, "bind_success"))
        })
    }

    /// `GET /echo/{instance_id}/{binding_id}`.
    fn fetch_binding(&self, instance_id: &str, binding_id: &str) -> HttpResponse {
        let state = self.lock();
        match state
            .instances
            .get(instance_id)
            .and_then(|i| i.bindings.get(binding_id))
        {
            Some(binding) => HttpResponse::json(200, &binding_view(binding_id, binding, "bound")),
            None => not_found(&format!(
                "binding '{binding_id}' of instance '{instance_id}' does not exist"
            )),
        }
    }

    /// `DELETE /echo/{instance_id}/{binding_id}`: the binding's credentials stop working at once.
    fn unbind(&self, request: &HttpRequest, instance_id: &str, binding_id: &str) -> HttpResponse {
        let state = self.lock();
        let Some(instance) = state.instances.get(instance_id) else {
            return not_found(&format!("instance '{instance_id}' does not exist"));
        };
        if let Some(refusal) = refuse_other_ids(instance, &ids_in_query(request)) {
            return refusal;
        }
        let Some(binding) = instance.bindings.get(binding_id) else {
            return not_found(&format!("binding '{binding_id}' does not exist"));
        };
        let body = json!({"id": binding_id, "app": app_of(binding), "state": "unbind_success"});
        let change = Change::Unbind {
            instance_id: instance_id.to_string(),
            binding_id: binding_id.to_string(),
        };
        self.commit(state, change, |_| HttpResponse::json(200, &body))
    }

    /// `POST /echo/{instance_id}/{binding_id}` with `{"message": "..."}`: what a bound app
    /// calls, with its binding's credentials. Instances of the invert service answer the
    /// message reversed.
    /// The body is parsed as JSON whatever its `Content-Type`, as the broker does (the
    /// original answered 415 without `application/json`; curl's `-d` sends a form type).
    fn echo(&self, request: &HttpRequest, instance_id: &str, binding_id: &str) -> HttpResponse {
        let message = match http::parse_json_object(&request.body) {
            Ok(body) => match body.get("message") {
                Some(serde_json::Value::String(message)) => message.clone(),
                _ => return bad_request("the body needs a string field \"message\""),
            },
            Err(problem) => return bad_request(&problem),
        };
        let state = self.lock();
        let binding = state
            .instances
            .get(instance_id)
            .and_then(|i| i.bindings.get(binding_id));
        let Some(binding) = binding else {
            return not_found("no such instance or binding");
        };
        if !http::credentials_match(
            request.header("Authorization"),
            &binding.username,
            &binding.password,
        ) {
            return HttpResponse::error(401, "Unauthorized", "use the binding's credentials")
                .with_header("WWW-Authenticate", "Basic realm=\"echo\"".into());
        }
        let inverts = state.instances[instance_id]
            .attributes
            .as_ref()
            .is_some_and(|attributes| attributes.service_id == INVERT_SERVICE_ID);
        let response = if inverts {
            message.chars().rev().collect()
        } else {
            message.clone()
        };
        let change = Change::Message {
            instance_id: instance_id.to_string(),
            message,
        };
        self.commit(state, change, |_| {
            HttpResponse::json(200, &json!({ "response": response }))
        })
    }

    /// `GET /echo/dashboard/{instance_id}?token=...`: a small HTML page. A wrong or missing
    /// token is answered like a missing instance, so ids cannot be probed.
    fn dashboard(&self, request: &HttpRequest, instance_id: &str) -> HttpResponse {
        let token = request.query("token").unwrap_or_default();
        let state = self.lock();
        match state.instances.get(instance_id) {
            Some(instance)
                if http::constant_time_eq(
                    token.as_bytes(),
                    instance.dashboard_token.as_bytes(),
                ) =>
            {
                // The page needs nothing from elsewhere, and its URL holds the token.
                HttpResponse::html(200, crate::dashboard::render(instance_id, instance))
                    .with_header(
                        "Content-Security-Policy",
                        "default-src 'none'; style-src 'unsafe-inline'".into(),
                    )
                    .with_header("X-Content-Type-Options", "nosniff".into())
                    .with_header("Referrer-Policy", "no-referrer".into())
            }
            _ => not_found(&format!(
                "no dashboard for instance '{instance_id}' with this token"
            )),
        }
    }

    /// The state, locked. Also notes (for [`EchoService::handle`]) the last change appended
    /// so far: whatever the caller reads was made by it or by changes before it.
    fn lock(&self) -> MutexGuard<'_, EchoState> {
        // A panic while holding the lock leaves a state that is still consistent: every
        // change is applied by one call to `apply`, after it was written.
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(journal) = &self.journal {
            let Ticket(appended) = journal.last_appended();
            OBSERVED_CHANGE.with(|observed| observed.set(observed.get().max(appended)));
        }
        state
    }

    /// Writes `change` to the journal, applies it, builds the answer from the new state, and
    /// returns that answer once the change is on disk (other requests' changes share the
    /// flush). If the change cannot be written, nothing is applied and the answer is a 503.
    fn commit(
        &self,
        mut state: MutexGuard<'_, EchoState>,
        change: Change,
        answer: impl FnOnce(&EchoState) -> HttpResponse,
    ) -> HttpResponse {
        let ticket = match self.journal.as_ref().map(|journal| journal.append(&change)) {
            Some(Err(error)) => {
                log::error!("journal: {error}");
                return unavailable("the change could not be written to disk");
            }
            Some(Ok(ticket)) => Some(ticket),
            None => None,
        };
        state.apply(change);
        let response = answer(&state);
        if let Some(journal) = &self.journal {
            if journal.wants_compaction() {
                journal.compact(&state);
            }
        }
        drop(state);
        if let (Some(journal), Some(ticket)) = (&self.journal, ticket) {
            if let Err(error) = journal.wait_until_durable(ticket) {
                log::error!("journal: {error}");
                return unavailable("the change could not be flushed to disk");
            }
        }
        response
    }
}

/// The `service_id` and `plan_id` query parameters of a delete, if the caller sent them.
fn ids_in_query(request: &HttpRequest) -> (Option<String>, Option<String>) {
    (request.query("service_id"), request.query("plan_id"))
}

/// A 400 if the caller names a service or plan that is not the instance's (when both are
/// known): a platform must not delete or bind through the wrong service.
fn refuse_other_ids(
    instance: &Instance,
    (service_id, plan_id): &(Option<String>, Option<String>),
) -> Option<HttpResponse> {
    let attributes = instance.attributes.as_ref()?;
    if let Some(service_id) = service_id
        .as_deref()
        .filter(|id| *id != attributes.service_id)
    {
        return Some(bad_request(&format!(
            "service_id '{service_id}' is not the instance's service ('{}')",
            attributes.service_id
        )));
    }
    if let Some(plan_id) = plan_id.as_deref().filter(|id| *id != attributes.plan_id) {
        return Some(bad_request(&format!(
            "plan_id '{plan_id}' is not the instance's plan ('{}')",
            attributes.plan_id
        )));
    }
    None
}

fn normalise_instance(mut attributes: InstanceAttributes) -> InstanceAttributes {
    attributes.context = non_empty(attributes.context);
    attributes.parameters = non_empty(attributes.parameters);
    attributes
}

fn normalise_binding(mut attributes: BindingAttributes) -> BindingAttributes {
    attributes.bind_resource = non_empty(attributes.bind_resource);
    attributes.parameters = non_empty(attributes.parameters);
    attributes
}

fn instance_view(instance_id: &str, instance: &Instance, state: &str) -> InstanceView {
    InstanceView {
        instance_id: instance_id.to_string(),
        state: Some(state.to_string()),
        attributes: instance.attributes.clone(),
        dashboard_token: Some(instance.dashboard_token.clone()),
        bindings: instance.bindings.len(),
        messages: instance.message_count,
    }
}

fn binding_view(binding_id: &str, binding: &Binding, state: &str) -> BindingView {
    BindingView {
        id: binding_id.to_string(),
        app: app_of(binding),
        state: Some(state.to_string()),
        attributes: binding.attributes.clone(),
        username: Some(binding.username.clone()),
        password: Some(binding.password.clone()),
    }
}

fn app_of(binding: &Binding) -> Option<String> {
    binding.attributes.as_ref().and_then(|a| a.app_guid.clone())
}

/// The dashboard's address as seen by the caller, as the original echo service answered it.
fn dashboard_url(request: &HttpRequest, instance_id: &str, instance: &Instance) -> String {
    let host = request.header("Host").unwrap_or("localhost");
    format!(
        "http://{host}/echo/dashboard/{}?token={}",
        http::percent_encode(instance_id),
        instance.dashboard_token
    )
}

/// Parses an optional JSON body: empty means `None` (the original broker sent none).
fn optional_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Option<T>, HttpResponse> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let object = http::parse_json_object(body).map_err(|problem| bad_request(&problem))?;
    serde_json::from_value(serde_json::Value::Object(object))
        .map(Some)
        .map_err(|error| bad_request(&format!("the body does not fit: {error}")))
}

fn bad_request(description: &str) -> HttpResponse {
    HttpResponse::error(400, "BadRequest", description)
}

fn not_found(description: &str) -> HttpResponse {
    HttpResponse::error(404, "NotFound", description)
}

fn unavailable(description: &str) -> HttpResponse {
    HttpResponse::error(503, "Unavailable", description)
}

impl http::Handler for EchoService {
    fn handle(&self, request: &HttpRequest) -> HttpResponse {
        EchoService::handle(self, request)
    }

    /// The platform's request identity, which the broker forwards on its management calls,
    /// so one platform request can be followed through the broker's log and this one.
    fn log_context(&self, request: &HttpRequest) -> crate::logging::RequestContext {
        crate::logging::RequestContext {
            request_identity: request
                .header(crate::echo_client::REQUEST_IDENTITY_HEADER)
                .map(str::to_string),
            user: None,
        }
    }
}
