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
//! instance exists, the caller named its service and plan) with the rules of this file, on
//! the instance as the change finds it (under the journal's lock; in PostgreSQL, by a
//! statement that makes the change only on the instance as checked), so two processes
//! racing on one instance cannot both succeed. A change is returned only once it is
//! durable; a read returns only durable state. `tests/store_contract.rs` holds both stores
//! to the same answers.

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

/// Not made: the caller named a service or plan that is not the instance's. The one rule
/// that decides it is [`refuse_other_ids`], which both stores call.
#[derive(Debug, Clone, PartialEq)]
pub struct OtherIds(pub String);

impl std::fmt::Display for OtherIds {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        out.write_str(&self.0)
    }
}

/// How a provision ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Provisioned {
    Made(InstanceRecord),
    /// Not made: an instance with this id exists; the stored record.
    Exists(InstanceRecord),
}

/// How a deprovision ended: the instance as it was, or why nothing was removed.
// One answer per request, on the stack: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Deprovisioned {
    Removed(InstanceRecord),
    NoInstance,
    OtherIds(OtherIds),
}

/// How a bind ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Made(BindingRecord),
    /// Not made: a binding with this id exists; the stored record.
    Exists(BindingRecord),
    NoInstance,
    OtherIds(OtherIds),
}

/// How an unbind ended: the binding as it was, or why nothing was removed.
// One answer per request, on the stack: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Unbound {
    Removed(BindingRecord),
    NoInstance,
    NoBinding,
    OtherIds(OtherIds),
}

/// A binding looked up: found, or which part is missing.
// One answer per request, on the stack: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum BindingLookup {
    Found(BindingRecord),
    NoInstance,
    NoBinding,
}

/// The store cannot answer now (a disk that refuses writes, a database away): the call was
/// not made, or, where the description says so, may or may not have been. The description
/// is for the platform's user: it names the failing part, never where it is (a host, a
/// port, a database's name); the store's own log line has the details.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreError {
    pub description: String,
}

impl StoreError {
    pub fn new(description: impl Into<String>) -> StoreError {
        StoreError {
            description: description.into(),
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        out.write_str(&self.description)
    }
}

impl std::error::Error for StoreError {}

pub type StoreResult<T> = Result<T, StoreError>;

/// One of a store's own figures for `/metrics` (the service formats them).
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The metric's name, `echo_service_...`.
    pub name: String,
    pub kind: FigureKind,
    pub help: &'static str,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FigureKind {
    Gauge,
    Counter,
}

/// Everything the echo service asks of where its state lives. Each call returns exactly
/// the outcomes it can have; the service checks what it is sent (ids, bodies, lifetimes)
/// before it calls, so a store sees only what both stores can keep.
pub trait Store: Send + Sync {
    /// Creates the instance, or answers [`Provisioned::Exists`] with the one stored.
    fn provision(&self, instance_id: &str, new: NewInstance) -> StoreResult<Provisioned>;
    fn instance(&self, instance_id: &str) -> StoreResult<Option<InstanceRecord>>;
    /// Applies the update (see [`apply_update`]); `None` if there is no such instance.
    fn update(
        &self,
        instance_id: &str,
        update: InstanceUpdate,
    ) -> StoreResult<Option<InstanceRecord>>;
    /// Removes the instance with its bindings and messages; answers what it held.
    fn deprovision(&self, instance_id: &str, claimed: &ClaimedIds) -> StoreResult<Deprovisioned>;
    /// Creates the binding, or answers [`Bound::Exists`] with the one stored.
    fn bind(
        &self,
        instance_id: &str,
        binding_id: &str,
        claimed: &ClaimedIds,
        new: NewBinding,
    ) -> StoreResult<Bound>;
    fn binding(&self, instance_id: &str, binding_id: &str) -> StoreResult<BindingLookup>;
    /// Removes the binding: its credentials stop working at once. Answers what it was.
    fn unbind(
        &self,
        instance_id: &str,
        binding_id: &str,
        claimed: &ClaimedIds,
    ) -> StoreResult<Unbound>;
    /// The credentials a bound app must send, `None` if there is no such binding.
    fn caller(&self, instance_id: &str, binding_id: &str) -> StoreResult<Option<Caller>>;
    /// Counts a message and keeps its preview (made by [`preview_of`]) among the
    /// instance's latest [`RECENT_MESSAGES`]; `false` if the binding went away meanwhile.
    fn record_message(
        &self,
        instance_id: &str,
        binding_id: &str,
        preview: &str,
    ) -> StoreResult<bool>;
    fn dashboard(&self, instance_id: &str) -> StoreResult<Option<DashboardRecord>>;
    fn totals(&self) -> StoreResult<Totals>;
    /// `Ok` while the store takes changes (after trying to recover from a failure).
    fn health(&self) -> StoreResult<()>;
    /// The store's own figures for `/metrics`.
    fn figures(&self) -> Vec<Figure>;
    /// The longest one call may take: the server lets a request this long to finish when
    /// it stops.
    fn longest_call(&self) -> std::time::Duration;
}

/// How many of an instance's latest messages are kept for the dashboard (older ones are
/// counted only).
pub const RECENT_MESSAGES: usize = 10;

/// The most of a message that is kept, for the dashboard: a bound app sending large
/// messages must not fill the disk, the database or the memory.
pub const PREVIEW_BYTES: usize = 200;

/// What the dashboard keeps of `message`: its first [`PREVIEW_BYTES`] (cut at a character
/// boundary, marked with `…`), with each control character shown as its visible symbol
/// (U+0000 as `␀`, a line feed as `␊`, DEL as `␡`; U+0080 to U+009F as `�`). A preview is
/// for reading on a page, not a copy: the message itself is answered unchanged, and a text
/// column refuses NUL, so the one preview both stores keep is the shown one.
pub fn preview_of(message: &str) -> String {
    // One character more than fits is enough to know whether it must be cut.
    let shown: String = message
        .chars()
        .take(PREVIEW_BYTES + 1)
        .map(visible)
        .collect();
    if shown.len() <= PREVIEW_BYTES {
        return shown;
    }
    let ellipsis = '…';
    let mut end = PREVIEW_BYTES - ellipsis.len_utf8();
    while !shown.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &shown[..end])
}

/// A control character as the symbol that shows it (Unicode's Control Pictures block).
fn visible(character: char) -> char {
    match character {
        '\0'..='\u{1f}' => char::from_u32(0x2400 + character as u32).unwrap_or('\u{fffd}'),
        '\u{7f}' => '\u{2421}',
        '\u{80}'..='\u{9f}' => '\u{fffd}',
        other => other,
    }
}

/// Why a caller may not bind or delete through `claimed` ids: the ones it named are not the
/// instance's (checked only where both are known). A platform must not act on an instance
/// through the wrong service or plan.
pub fn refuse_other_ids(
    attributes: Option<&InstanceAttributes>,
    claimed: &ClaimedIds,
) -> Option<OtherIds> {
    let attributes = attributes?;
    refuse_other_service_or_plan(&attributes.service_id, &attributes.plan_id, claimed)
}

/// [`refuse_other_ids`] for an instance of `service_id` and `plan_id`.
pub fn refuse_other_service_or_plan(
    service_id: &str,
    plan_id: &str,
    claimed: &ClaimedIds,
) -> Option<OtherIds> {
    if let Some(claimed_service_id) = claimed.service_id.as_deref().filter(|id| *id != service_id) {
        return Some(OtherIds(format!(
            "service_id '{claimed_service_id}' is not the instance's service ('{service_id}')"
        )));
    }
    if let Some(claimed_plan_id) = claimed.plan_id.as_deref().filter(|id| *id != plan_id) {
        return Some(OtherIds(format!(
            "plan_id '{claimed_plan_id}' is not the instance's plan ('{plan_id}')"
        )));
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
