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
//! | `POST /echo/{instance_id}/{binding_id}` (binding credentials) | 200 `{"response": ...}`, 401 (also for a binding that does not exist) |
//! | `GET /echo/dashboard/{instance_id}?token=...` | 200 HTML page, 404 |
//! | `GET /health` | 200 `{"status": "ok"}`; 503 while the journal cannot take changes |
//!
//! A change that cannot be made durable is answered 503 with a description that names
//! storage, and undone in memory, so reads only ever see what is on disk; the journal
//! recovers by itself once the disk does (see [`crate::echo::journal`]).

use super::api::{
    non_empty, BindingAttributes, BindingView, InstanceAttributes, InstanceUpdate, InstanceView,
};
use super::dashboard::{self, Dashboard};
use super::journal::{Journal, Recorded, Ticket};
use crate::http::{self, HttpRequest, HttpResponse};
use crate::metrics::{self, RequestMetrics};
use crate::server::{Answered, Handler};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

thread_local! {
    /// The last journal change the current request's handler could have seen (0: none).
    /// Per thread, because each worker thread handles one request at a time.
    static OBSERVED_CHANGE: Cell<u64> = const { Cell::new(0) };
}

/// How many of an instance's latest messages the dashboard shows (older ones are counted only).
const RECENT_MESSAGES: usize = 10;

/// The most of a message that is kept (in memory and in the journal), for the dashboard:
/// a bound app sending large messages must not fill the disk or the memory.
pub const PREVIEW_BYTES: usize = 200;

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
    /// A message was echoed: it is counted, and its preview shown on the dashboard.
    Message {
        instance_id: String,
        /// At most [`PREVIEW_BYTES`]. (Journals written before held the whole message.)
        #[serde(alias = "message")]
        preview: String,
    },
}

/// What puts the state back as it was before one change: a change that was applied but
/// could not be made durable is undone, so memory never holds what the disk does not.
#[derive(Debug)]
pub enum Undo {
    Nothing,
    RemoveInstance(String),
    RestoreInstance(String, Instance),
    RestoreAttributes(String, InstanceAttributes),
    RemoveBinding(String, String),
    RestoreBinding(String, String, Binding),
    UncountMessage {
        instance_id: String,
        /// The oldest preview, pushed out by the message's.
        pushed_out: Option<String>,
    },
}

/// The first [`PREVIEW_BYTES`] of `message` (cut at a character boundary, marked with `…`).
pub fn preview_of(message: &str) -> String {
    if message.len() <= PREVIEW_BYTES {
        return message.to_string();
    }
    let ellipsis = '…';
    let mut end = PREVIEW_BYTES - ellipsis.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &message[..end])
}

impl Recorded for EchoState {
    type Change = Change;

    /// Applies a change that was checked against this state (live, or replayed from disk).
    /// A change that no longer fits (say, a bind whose instance is gone) is ignored.
    fn apply(&mut self, change: Change) {
        let _ = self.apply_undoable(change);
    }
}

impl EchoState {
    /// [`Recorded::apply`], returning what undoes it.
    pub fn apply_undoable(&mut self, change: Change) -> Undo {
        match change {
            Change::Provision {
                instance_id,
                attributes,
                dashboard_token,
            } => self.provision(instance_id, attributes, dashboard_token),
            Change::Update {
                instance_id,
                update,
            } => self.update(instance_id, update),
            Change::Deprovision { instance_id } => match self.instances.remove(&instance_id) {
                Some(instance) => Undo::RestoreInstance(instance_id, instance),
                None => Undo::Nothing,
            },
            Change::Bind {
                instance_id,
                binding_id,
                attributes,
                username,
                password,
            } => {
                let binding = Binding {
                    attributes,
                    username,
                    password,
                };
                self.bind(instance_id, binding_id, binding)
            }
            Change::Unbind {
                instance_id,
                binding_id,
            } => self.unbind(instance_id, binding_id),
            Change::Message {
                instance_id,
                preview,
            } => self.count_message(instance_id, preview),
        }
    }

    /// Puts back what [`EchoState::apply_undoable`] changed.
    pub fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Nothing => {}
            Undo::RemoveInstance(instance_id) => {
                self.instances.remove(&instance_id);
            }
            Undo::RestoreInstance(instance_id, instance) => {
                self.instances.insert(instance_id, instance);
            }
            Undo::RestoreAttributes(instance_id, attributes) => {
                if let Some(instance) = self.instances.get_mut(&instance_id) {
                    instance.attributes = Some(attributes);
                }
            }
            Undo::RemoveBinding(instance_id, binding_id) => {
                if let Some(instance) = self.instances.get_mut(&instance_id) {
                    instance.bindings.remove(&binding_id);
                }
            }
            Undo::RestoreBinding(instance_id, binding_id, binding) => {
                if let Some(instance) = self.instances.get_mut(&instance_id) {
                    instance.bindings.insert(binding_id, binding);
                }
            }
            Undo::UncountMessage {
                instance_id,
                pushed_out,
            } => {
                if let Some(instance) = self.instances.get_mut(&instance_id) {
                    instance.message_count -= 1;
                    instance.recent_messages.pop_back();
                    if let Some(preview) = pushed_out {
                        instance.recent_messages.push_front(preview);
                    }
                }
            }
        }
    }

    fn provision(
        &mut self,
        instance_id: String,
        attributes: Option<InstanceAttributes>,
        dashboard_token: String,
    ) -> Undo {
        if self.instances.contains_key(&instance_id) {
            return Undo::Nothing;
        }
        let instance = Instance {
            attributes,
            dashboard_token,
            bindings: BTreeMap::new(),
            recent_messages: VecDeque::new(),
            message_count: 0,
        };
        self.instances.insert(instance_id.clone(), instance);
        Undo::RemoveInstance(instance_id)
    }

    fn update(&mut self, instance_id: String, update: InstanceUpdate) -> Undo {
        let Some(attributes) = self
            .instances
            .get_mut(&instance_id)
            .and_then(|instance| instance.attributes.as_mut())
        else {
            return Undo::Nothing;
        };
        let before = attributes.clone();
        apply_update(attributes, update);
        Undo::RestoreAttributes(instance_id, before)
    }

    fn bind(&mut self, instance_id: String, binding_id: String, binding: Binding) -> Undo {
        let Some(instance) = self.instances.get_mut(&instance_id) else {
            return Undo::Nothing;
        };
        if instance.bindings.contains_key(&binding_id) {
            return Undo::Nothing;
        }
        instance.bindings.insert(binding_id.clone(), binding);
        Undo::RemoveBinding(instance_id, binding_id)
    }

    fn unbind(&mut self, instance_id: String, binding_id: String) -> Undo {
        let removed = self
            .instances
            .get_mut(&instance_id)
            .and_then(|instance| instance.bindings.remove(&binding_id));
        match removed {
            Some(binding) => Undo::RestoreBinding(instance_id, binding_id, binding),
            None => Undo::Nothing,
        }
    }

    /// Counts a message and keeps its preview (bounded again here: older journals held whole
    /// messages).
    fn count_message(&mut self, instance_id: String, preview: String) -> Undo {
        let Some(instance) = self.instances.get_mut(&instance_id) else {
            return Undo::Nothing;
        };
        let pushed_out = if instance.recent_messages.len() >= RECENT_MESSAGES {
            instance.recent_messages.pop_front()
        } else {
            None
        };
        instance.recent_messages.push_back(preview_of(&preview));
        instance.message_count += 1;
        Undo::UncountMessage {
            instance_id,
            pushed_out,
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

/// The state in memory, with what undoes the changes that are not durable yet.
struct Live {
    state: EchoState,
    /// `(sequence number, undo)` of changes applied but maybe not on disk, oldest first.
    undo: VecDeque<(u64, Undo)>,
}

impl Live {
    /// Drops the undo of every change up to `durable`: those stay.
    fn forget_undo_up_to(&mut self, durable: u64) {
        while self
            .undo
            .front()
            .is_some_and(|(sequence, _)| *sequence <= durable)
        {
            self.undo.pop_front();
        }
    }

    /// Undoes, newest first, every change after `durable`.
    fn roll_back_to(&mut self, durable: u64) {
        while self
            .undo
            .back()
            .is_some_and(|(sequence, _)| *sequence > durable)
        {
            if let Some((_, undo)) = self.undo.pop_back() {
                self.state.undo(undo);
            }
        }
        self.undo.clear();
    }
}

impl Deref for Live {
    type Target = EchoState;

    fn deref(&self) -> &EchoState {
        &self.state
    }
}

/// The echo service: its state, its journal, and who may manage it.
pub struct EchoService {
    state: Mutex<Live>,
    journal: Option<Journal<EchoState>>,
    management_credentials: Option<(String, String)>,
    /// Requests answered, for `/metrics`.
    requests: RequestMetrics,
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
            state: Mutex::new(Live {
                state,
                undo: VecDeque::new(),
            }),
            journal,
            management_credentials: config.management_credentials,
            requests: RequestMetrics::default(),
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
                Err(_) => {
                    self.roll_back_undurable(journal);
                    storage_unavailable()
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
            ("GET", ["health"]) => self.health(),
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
            (_, ["echo"] | ["echo", _] | ["echo", _, _] | ["metrics"])
                if !self.may_manage(request) =>
            {
                management_unauthorized()
            }
            ("GET", ["metrics"]) => self.metrics(),
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

    /// `GET /health`: 200, or 503 while the journal cannot take changes (after trying to
    /// recover), so that a platform stops routing to it or restarts it.
    fn health(&self) -> HttpResponse {
        if let Some(journal) = &self.journal {
            if journal.health().is_err() {
                let mut live = self.lock_live();
                if self.ready_for_changes(&mut live, journal).is_err() {
                    return HttpResponse::json(
                        503,
                        &json!({"status": "unavailable", "description": STORAGE_UNAVAILABLE}),
                    );
                }
            }
        }
        HttpResponse::json(200, &json!({"status": "ok"}))
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

    /// `GET /metrics` (management credentials): the Prometheus text format.
    fn metrics(&self) -> HttpResponse {
        let mut out = String::new();
        self.requests.render("echo_service", &mut out);
        let (instances, bindings, messages) = {
            let state = self.lock();
            let bindings: usize = state.instances.values().map(|i| i.bindings.len()).sum();
            let messages: u64 = state.instances.values().map(|i| i.message_count).sum();
            (state.instances.len(), bindings, messages)
        };
        metrics::single(
            &mut out,
            "echo_service_instances",
            "gauge",
            "Instances held.",
            instances,
        );
        metrics::single(
            &mut out,
            "echo_service_bindings",
            "gauge",
            "Bindings held.",
            bindings,
        );
        let help = "Messages echoed, over all instances held.";
        metrics::single(&mut out, "echo_service_messages", "gauge", help, messages);
        if let Some(journal) = &self.journal {
            render_journal_metrics(journal, &mut out);
        }
        HttpResponse {
            status: 200,
            content_type: metrics::CONTENT_TYPE,
            headers: Vec::new(),
            body: out.into_bytes(),
        }
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
        if let Err(refusal) = check_binding_caller(&state, request, instance_id, binding_id) {
            return refusal;
        }
        let inverts = state.instances[instance_id]
            .attributes
            .as_ref()
            .is_some_and(|attributes| attributes.service_id == INVERT_SERVICE_ID);
        let change = Change::Message {
            instance_id: instance_id.to_string(),
            preview: preview_of(&message),
        };
        let response = if inverts {
            message.chars().rev().collect()
        } else {
            message
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
                HttpResponse::page(dashboard::render(&dashboard_of(instance_id, instance)))
            }
            _ => not_found(&format!(
                "no dashboard for instance '{instance_id}' with this token"
            )),
        }
    }

    /// The state, locked. Also notes (for [`EchoService::handle`]) the last change appended
    /// so far: whatever the caller reads was made by it or by changes before it.
    fn lock(&self) -> MutexGuard<'_, Live> {
        let live = self.lock_live();
        if let Some(journal) = &self.journal {
            let Ticket(appended) = journal.last_appended();
            OBSERVED_CHANGE.with(|observed| observed.set(observed.get().max(appended)));
        }
        live
    }

    /// The state, locked, without noting what was seen (for rolling back and recovering).
    fn lock_live(&self) -> MutexGuard<'_, Live> {
        // A panic while holding the lock leaves a state that is still consistent: every
        // change is applied by one call to `apply_undoable`.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `change` to the journal, applies it, builds the answer from the new state, and
    /// returns that answer once the change is on disk (other requests' changes share the
    /// flush). A change that cannot be made durable is undone and answered 503.
    fn commit(
        &self,
        mut live: MutexGuard<'_, Live>,
        change: Change,
        answer: impl FnOnce(&EchoState) -> HttpResponse,
    ) -> HttpResponse {
        let Some(journal) = &self.journal else {
            live.state.apply(change);
            return answer(&live.state);
        };
        if self.ready_for_changes(&mut live, journal).is_err() {
            return storage_unavailable();
        }
        let Ok(ticket) = journal.append(&change) else {
            return storage_unavailable();
        };
        live.forget_undo_up_to(journal.durable());
        let undo = live.state.apply_undoable(change);
        live.undo.push_back((ticket.0, undo));
        let response = answer(&live.state);
        if journal.wants_compaction() {
            journal.compact(&live.state);
        }
        drop(live);
        if journal.wait_until_durable(ticket).is_err() {
            self.roll_back_undurable(journal);
            return storage_unavailable();
        }
        response
    }

    /// `Ok` if the journal takes changes. After a failure, first undoes in memory what did
    /// not reach the disk, then lets the journal try to recover (at most every
    /// [`crate::echo::journal::RECOVERY_INTERVAL`]).
    fn ready_for_changes(
        &self,
        live: &mut Live,
        journal: &Journal<EchoState>,
    ) -> Result<(), String> {
        match journal.discard_undurable() {
            None => Ok(()),
            Some(durable) => {
                live.roll_back_to(durable);
                journal.recover(&live.state)
            }
        }
    }

    /// After a failed flush: undoes in memory what did not reach the disk, at once, so reads
    /// answer from durable state while the journal is failed.
    fn roll_back_undurable(&self, journal: &Journal<EchoState>) {
        let mut live = self.lock_live();
        if let Some(durable) = journal.discard_undurable() {
            live.roll_back_to(durable);
        }
    }
}

/// The description of every 503 for a change the journal could not take (the details are
/// in the log): it names storage, so the platform's user and the operator know where to look.
const STORAGE_UNAVAILABLE: &str = "storage unavailable: the echo service cannot write its journal (disk full, read-only or DATA_DIR removed); the change was not made, try again later";

fn storage_unavailable() -> HttpResponse {
    HttpResponse::error(503, "StorageUnavailable", STORAGE_UNAVAILABLE)
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

/// What the dashboard page shows of `instance`.
fn dashboard_of<'a>(instance_id: &'a str, instance: &'a Instance) -> Dashboard<'a> {
    let attributes = instance.attributes.as_ref();
    Dashboard {
        instance_id,
        service_id: attributes.map(|attributes| attributes.service_id.as_str()),
        plan_id: attributes.map(|attributes| attributes.plan_id.as_str()),
        binding_ids: instance.bindings.keys().map(String::as_str).collect(),
        recent_messages: instance
            .recent_messages
            .iter()
            .map(String::as_str)
            .collect(),
        message_count: instance.message_count,
    }
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

/// The journal's size and its group commit: fsyncs, and the changes they made durable.
fn render_journal_metrics(journal: &Journal<EchoState>, out: &mut String) {
    let (fsyncs, changes) = journal.flush_statistics();
    let help = "The journal's size on disk (snapshot and log).";
    metrics::single(
        out,
        "echo_service_journal_bytes",
        "gauge",
        help,
        journal.size_bytes(),
    );
    let help = "Flushes of the journal (a write and an fsync each).";
    metrics::single(
        out,
        "echo_service_journal_fsyncs_total",
        "counter",
        help,
        fsyncs,
    );
    let help = "Changes made durable by those fsyncs.";
    metrics::single(
        out,
        "echo_service_journal_changes_total",
        "counter",
        help,
        changes,
    );
    let per_fsync = if fsyncs == 0 {
        0.0
    } else {
        changes as f64 / fsyncs as f64
    };
    let help = "Changes per fsync since start (the group commit's batching).";
    metrics::single(
        out,
        "echo_service_journal_changes_per_fsync",
        "gauge",
        help,
        per_fsync,
    );
}

/// The route a request took, for the `route` label of `/metrics`.
fn route_of(method: &str, segments: &[&str]) -> &'static str {
    match (method, segments) {
        ("GET", ["health"]) => "health",
        ("GET", ["metrics"]) => "metrics",
        ("GET", ["echo"]) => "totals",
        ("GET", ["echo", "dashboard", _]) => "dashboard",
        ("POST", ["echo", _, _]) => "message",
        ("PUT", ["echo", _]) => "provision",
        ("GET", ["echo", _]) => "fetch_instance",
        ("PATCH", ["echo", _]) => "update",
        ("DELETE", ["echo", _]) => "deprovision",
        ("PUT", ["echo", _, _]) => "bind",
        ("GET", ["echo", _, _]) => "fetch_binding",
        ("DELETE", ["echo", _, _]) => "unbind",
        _ => "other",
    }
}

/// A bound app's call must carry its binding's credentials. A binding that does not exist
/// (or no longer does) gets the same 401 as wrong credentials, after the same comparison:
/// a caller without credentials learns nothing about which instances and bindings exist.
fn check_binding_caller(
    state: &EchoState,
    request: &HttpRequest,
    instance_id: &str,
    binding_id: &str,
) -> Result<(), HttpResponse> {
    let binding = state
        .instances
        .get(instance_id)
        .and_then(|instance| instance.bindings.get(binding_id));
    let (username, password) = binding.map_or(("", ""), |binding| {
        (binding.username.as_str(), binding.password.as_str())
    });
    let matches = http::credentials_match(request.header("Authorization"), username, password);
    if matches && binding.is_some() {
        Ok(())
    } else {
        Err(
            HttpResponse::error(401, "Unauthorized", "use the binding's credentials")
                .with_header("WWW-Authenticate", "Basic realm=\"echo\"".into()),
        )
    }
}

fn management_unauthorized() -> HttpResponse {
    HttpResponse::error(
        401,
        "Unauthorized",
        "the management API needs the broker's credentials",
    )
    .with_header("WWW-Authenticate", "Basic realm=\"echo-service\"".into())
}

/// How `server.rs` serves the echo service: a request that may carry a body is read only
/// from a caller with credentials (a bound app's message with its binding's, anything else
/// with the management API's); the route then checks again against the state it locks.
impl Handler for EchoService {
    fn admit(&self, head: &HttpRequest) -> Result<(), HttpResponse> {
        let segments = head.path_segments().unwrap_or_default();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (head.method.as_str(), segments.as_slice()) {
            ("GET", _) => Ok(()),
            ("POST", ["echo", instance_id, binding_id]) => {
                check_binding_caller(&self.lock(), head, instance_id, binding_id)
            }
            _ if self.may_manage(head) => Ok(()),
            _ => Err(management_unauthorized()),
        }
    }

    fn handle(&self, request: &HttpRequest) -> HttpResponse {
        EchoService::handle(self, request)
    }

    /// The platform's request identity, which the broker forwards on its management calls,
    /// so one platform request can be followed through the broker's log and this one.
    fn observe(&self, answered: &Answered) {
        let request = answered.request;
        let segments = request.path_segments().unwrap_or_default();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let route = route_of(&request.method, &segments);
        self.requests
            .record(route, answered.response.status, answered.elapsed);
    }

    fn log_context(&self, request: &HttpRequest) -> crate::logging::RequestContext {
        crate::logging::RequestContext {
            request_identity: request
                .header(super::api::REQUEST_IDENTITY_HEADER)
                .map(str::to_string),
            user: None,
        }
    }
}

/// Changes for the unit tests of the service and of its journal (whose tenant, in its
/// tests, is this service's state).
#[cfg(test)]
pub(crate) mod test_changes {
    use super::*;

    pub(crate) fn provision(instance_id: &str) -> Change {
        Change::Provision {
            instance_id: instance_id.into(),
            attributes: Some(InstanceAttributes {
                service_id: "echo_service".into(),
                plan_id: "big_0001".into(),
                organization_guid: "o".into(),
                space_guid: "s".into(),
                context: None,
                parameters: None,
            }),
            dashboard_token: format!("token-{instance_id}"),
        }
    }

    /// A password with a newline, quotes and a non-ASCII letter, for the journal's framing.
    pub(crate) fn bind(instance_id: &str, binding_id: &str) -> Change {
        Change::Bind {
            instance_id: instance_id.into(),
            binding_id: binding_id.into(),
            attributes: None,
            username: format!("user-{binding_id}"),
            password: "secret \n \"quoted\" ü".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_changes::{bind, provision};
    use super::*;

    fn message(instance_id: &str, text: &str) -> Change {
        Change::Message {
            instance_id: instance_id.into(),
            preview: preview_of(text),
        }
    }

    fn as_json(state: &EchoState) -> serde_json::Value {
        serde_json::to_value(state).expect("state serialises")
    }

    #[test]
    fn undoing_changes_newest_first_restores_the_state() {
        let mut state = EchoState::default();
        for change in [provision("kept"), bind("kept", "b1")] {
            state.apply(change);
        }
        for i in 0..RECENT_MESSAGES {
            state.apply(message("kept", &format!("old {i}")));
        }
        let before = as_json(&state);
        let update = InstanceUpdate {
            plan_id: Some("small_0001".into()),
            ..Default::default()
        };
        let changes = vec![
            provision("new"),
            bind("new", "b"),
            message("kept", "pushes the oldest preview out"),
            Change::Update {
                instance_id: "kept".into(),
                update,
            },
            Change::Unbind {
                instance_id: "kept".into(),
                binding_id: "b1".into(),
            },
            Change::Deprovision {
                instance_id: "kept".into(),
            },
            provision("new"), // already there: changes nothing
        ];
        let undos: Vec<Undo> = changes
            .into_iter()
            .map(|change| state.apply_undoable(change))
            .collect();
        assert_ne!(as_json(&state), before);
        for undo in undos.into_iter().rev() {
            state.undo(undo);
        }
        assert_eq!(as_json(&state), before);
    }

    #[test]
    fn previews_are_bounded_at_a_character_boundary() {
        assert_eq!(preview_of("short"), "short");
        let long = "ü".repeat(PREVIEW_BYTES);
        let preview = preview_of(&long);
        assert!(preview.len() <= PREVIEW_BYTES, "{}", preview.len());
        assert!(preview.ends_with('…'));
        assert_eq!(
            preview_of(&preview),
            preview,
            "a preview is its own preview"
        );
    }
}
