//! The seam between the echo service's HTTP handling and where its state lives.
//!
//! [`crate::echo::service`] calls a [`Store`] and never learns which one it talks to. Two
//! implement it, side by side:
//! - [`crate::echo::journal_store`]: the state in memory, each change made durable in a
//!   journal on a local disk (one process; the embedded default);
//! - [`crate::echo::postgres`]: the state in a PostgreSQL database, so any number of echo
//!   service processes behave as one service.
//!
//! Each call is one whole change or one read: the store checks what the change needs (the
//! instance exists, the caller named its service and plan) in the same lock or transaction
//! that makes it, so two processes racing on one instance cannot both succeed. A change is
//! returned only once it is durable; a read returns only durable state.

use super::api::{BindingAttributes, BindingLifetime, InstanceAttributes, InstanceUpdate};

/// One provisioned instance, as the service answers with it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRecord {
    pub attributes: Option<InstanceAttributes>,
    pub dashboard_token: String,
    pub bindings: usize,
    pub messages: u64,
}

/// One binding, with the credentials unique to it.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingRecord {
    pub attributes: Option<BindingAttributes>,
    pub username: String,
    pub password: String,
    pub lifetime: Option<BindingLifetime>,
}

/// What a bound app's call is checked against, and what it gets.
#[derive(Debug, Clone)]
pub struct Caller {
    pub username: String,
    pub password: String,
    pub lifetime: Option<BindingLifetime>,
    /// The instance's service (`None` for an instance the original broker made).
    pub service_id: Option<String>,
}

/// What an instance's dashboard shows.
#[derive(Debug, Clone)]
pub struct DashboardRecord {
    pub instance: InstanceRecord,
    pub binding_ids: Vec<String>,
    /// The previews of the latest messages, oldest first.
    pub recent_messages: Vec<String>,
}

/// How much the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub instances: u64,
    pub bindings: u64,
    pub messages: u64,
}

/// What a new instance is made of.
#[derive(Debug, Clone)]
pub struct NewInstance {
    pub attributes: Option<InstanceAttributes>,
    pub dashboard_token: String,
}

/// What a new binding is made of.
#[derive(Debug, Clone)]
pub struct NewBinding {
    pub attributes: Option<BindingAttributes>,
    pub username: String,
    pub password: String,
    pub lifetime: Option<BindingLifetime>,
}

/// The `service_id` and `plan_id` a caller named for a bind or a delete, if any.
#[derive(Debug, Clone, Default)]
pub struct ClaimedIds {
    pub service_id: Option<String>,
    pub plan_id: Option<String>,
}

/// How a call ended, when the store could answer it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    /// Made (or read): the record as it now is.
    Done(T),
    /// Not made: one with this id already exists; the stored record.
    Exists(T),
    NoInstance,
    NoBinding,
    /// Not made: the caller named a service or plan that is not the instance's.
    OtherIds(String),
}

/// The store cannot answer now (a disk that refuses writes, a database away): the call was
/// not made, or, where the description says so, may or may not have been.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreError {
    /// For the caller: names the store and what to do.
    pub description: String,
}

impl StoreError {
    pub fn new(description: impl Into<String>) -> StoreError {
        StoreError {
            description: description.into(),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Everything the echo service asks of where its state lives.
pub trait Store: Send + Sync {
    /// Creates the instance, or answers [`Outcome::Exists`] with the one stored.
    fn provision(
        &self,
        instance_id: &str,
        new: NewInstance,
    ) -> StoreResult<Outcome<InstanceRecord>>;
    fn instance(&self, instance_id: &str) -> StoreResult<Outcome<InstanceRecord>>;
    fn update(
        &self,
        instance_id: &str,
        update: InstanceUpdate,
    ) -> StoreResult<Outcome<InstanceRecord>>;
    /// Removes the instance with its bindings and messages; answers what it held.
    fn deprovision(
        &self,
        instance_id: &str,
        claimed: &ClaimedIds,
    ) -> StoreResult<Outcome<InstanceRecord>>;
    /// Creates the binding, or answers [`Outcome::Exists`] with the one stored.
    fn bind(
        &self,
        instance_id: &str,
        binding_id: &str,
        claimed: &ClaimedIds,
        new: NewBinding,
    ) -> StoreResult<Outcome<BindingRecord>>;
    fn binding(&self, instance_id: &str, binding_id: &str) -> StoreResult<Outcome<BindingRecord>>;
    /// Removes the binding: its credentials stop working at once. Answers what it was.
    fn unbind(
        &self,
        instance_id: &str,
        binding_id: &str,
        claimed: &ClaimedIds,
    ) -> StoreResult<Outcome<BindingRecord>>;
    /// The credentials a bound app must send, `None` if there is no such binding.
    fn caller(&self, instance_id: &str, binding_id: &str) -> StoreResult<Option<Caller>>;
    /// Counts a message and keeps its preview among the instance's latest
    /// [`RECENT_MESSAGES`]; [`Outcome::NoBinding`] if the binding went away meanwhile.
    fn record_message(
        &self,
        instance_id: &str,
        binding_id: &str,
        preview: &str,
    ) -> StoreResult<Outcome<()>>;
    fn dashboard(&self, instance_id: &str) -> StoreResult<Outcome<DashboardRecord>>;
    fn totals(&self) -> StoreResult<Totals>;
    /// `Ok` while the store takes changes (after trying to recover from a failure).
    fn health(&self) -> StoreResult<()>;
    /// The store's own figures for `/metrics`, in the Prometheus text format.
    fn render_metrics(&self, out: &mut String);
}

/// How many of an instance's latest messages are kept for the dashboard (older ones are
/// counted only).
pub const RECENT_MESSAGES: usize = 10;

/// The most of a message that is kept, for the dashboard: a bound app sending large
/// messages must not fill the disk, the database or the memory.
pub const PREVIEW_BYTES: usize = 200;

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

/// Why a caller may not bind or delete through `claimed` ids: the ones it named are not the
/// instance's (checked only where both are known). A platform must not act on an instance
/// through the wrong service or plan.
pub fn refuse_other_ids(
    attributes: Option<&InstanceAttributes>,
    claimed: &ClaimedIds,
) -> Option<String> {
    let attributes = attributes?;
    refuse_other_service_or_plan(&attributes.service_id, &attributes.plan_id, claimed)
}

/// [`refuse_other_ids`] for an instance of `service_id` and `plan_id`.
pub fn refuse_other_service_or_plan(
    service_id: &str,
    plan_id: &str,
    claimed: &ClaimedIds,
) -> Option<String> {
    if let Some(claimed_service_id) = claimed.service_id.as_deref().filter(|id| *id != service_id) {
        return Some(format!(
            "service_id '{claimed_service_id}' is not the instance's service ('{service_id}')"
        ));
    }
    if let Some(claimed_plan_id) = claimed.plan_id.as_deref().filter(|id| *id != plan_id) {
        return Some(format!(
            "plan_id '{claimed_plan_id}' is not the instance's plan ('{plan_id}')"
        ));
    }
    None
}

/// Applies an update to an instance's attributes: absent fields stay as they are, an empty
/// object clears.
pub fn apply_update(attributes: &mut InstanceAttributes, update: InstanceUpdate) {
    if let Some(plan_id) = update.plan_id {
        attributes.plan_id = plan_id;
    }
    if let Some(parameters) = update.parameters {
        attributes.parameters = super::api::non_empty(Some(parameters));
    }
    if let Some(context) = update.context {
        attributes.context = super::api::non_empty(Some(context));
    }
    if let Some(maintenance_info) = update.maintenance_info {
        attributes.maintenance_info = super::api::non_empty(Some(maintenance_info));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
