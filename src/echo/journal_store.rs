//! The journal store: the echo service's state in memory, each change made durable in a
//! journal on a local disk before it is answered ([`crate::echo::journal`]). One process
//! owns a journal; this is the embedded default, which needs nothing else.
//!
//! A change that cannot be made durable is undone in memory and answered with a
//! [`StoreError`] that names storage, so reads only ever see what is on disk; the journal
//! recovers by itself once the disk does.

// A `Decision`'s outcome (its `Err`) is as large as a record; it lives for one call, on the
// stack, so its size does not matter.
#![allow(clippy::result_large_err)]

use super::api::{BindingAttributes, BindingLifetime};
use super::api::{InstanceAttributes, InstanceUpdate};
use super::journal::{Journal, Recorded, Ticket};
use super::store::{
    apply_update, preview_of, refuse_other_ids, BindingRecord, Caller, ClaimedIds, DashboardRecord,
    InstanceRecord, NewBinding, NewInstance, Outcome, Store, StoreError, StoreResult, Totals,
    RECENT_MESSAGES,
};
use crate::metrics;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Deref;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

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
    /// (Journals written before bindings expired have none.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<BindingLifetime>,
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lifetime: Option<BindingLifetime>,
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
                lifetime,
            } => {
                let binding = Binding {
                    attributes,
                    username,
                    password,
                    lifetime,
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

/// The description of every error for a change the journal could not take (the details are
/// in the log): it names storage, so the platform's user and the operator know where to look.
const STORAGE_UNAVAILABLE: &str = "storage unavailable: the echo service cannot write its journal (disk full, read-only or DATA_DIR removed); the change was not made, try again later";

fn storage_unavailable() -> StoreError {
    StoreError::new(STORAGE_UNAVAILABLE)
}

/// What a change-making call decides after looking at the state: the change to make and the
/// record to answer once it is durable, or, making none, the answer.
type Decision<T> = Result<(Change, T), Outcome<T>>;

/// The echo service's state and its journal (none: in memory only, for unit tests).
pub struct JournalStore {
    live: Mutex<Live>,
    journal: Option<Journal<EchoState>>,
}

impl JournalStore {
    /// Loads the state from the journal in `dir`. A journal that cannot be read stops
    /// start-up with the reason; it is never overwritten.
    pub fn open(dir: &Path) -> Result<JournalStore, String> {
        let (journal, state) = Journal::open(dir)?;
        Ok(JournalStore::with(state, Some(journal)))
    }

    /// A store that keeps its state in memory only.
    pub fn in_memory() -> JournalStore {
        JournalStore::with(EchoState::default(), None)
    }

    fn with(state: EchoState, journal: Option<Journal<EchoState>>) -> JournalStore {
        JournalStore {
            live: Mutex::new(Live {
                state,
                undo: VecDeque::new(),
            }),
            journal,
        }
    }

    /// Everything held, for `echo-service --import-journal`.
    pub fn into_state(self) -> EchoState {
        self.live
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .state
    }

    /// Reads the state, and returns what was read only once every change it could have
    /// seen is durable (a change's own call already waits for it; this covers reads, such
    /// as a 409 for an instance whose provision is still being flushed, which a crash could
    /// otherwise undo after the broker had answered 200).
    fn read<T>(&self, read: impl FnOnce(&EchoState) -> T) -> StoreResult<T> {
        let live = self.lock_live();
        let seen = read(&live.state);
        let last_appended = self.journal.as_ref().map(Journal::last_appended);
        drop(live);
        match (&self.journal, last_appended) {
            (Some(journal), Some(Ticket(appended))) if appended > 0 => {
                self.wait_until_durable(journal, Ticket(appended))?;
                Ok(seen)
            }
            _ => Ok(seen),
        }
    }

    /// Decides on the locked state whether to make a change, and makes it: writes it to
    /// the journal, applies it, and returns once it is on disk (other calls' changes share
    /// the flush). A change that cannot be made durable is undone.
    fn change<T>(&self, decide: impl FnOnce(&EchoState) -> Decision<T>) -> StoreResult<Outcome<T>> {
        let mut live = self.lock_live();
        let (change, made) = match decide(&live.state) {
            Ok(change_and_made) => change_and_made,
            Err(outcome) => {
                drop(live);
                return self.read(|_| outcome);
            }
        };
        let Some(journal) = &self.journal else {
            live.state.apply(change);
            return Ok(Outcome::Done(made));
        };
        if self.ready_for_changes(&mut live, journal).is_err() {
            return Err(storage_unavailable());
        }
        let Ok(ticket) = journal.append(&change) else {
            return Err(storage_unavailable());
        };
        live.forget_undo_up_to(journal.durable());
        let undo = live.state.apply_undoable(change);
        live.undo.push_back((ticket.0, undo));
        if journal.wants_compaction() {
            journal.compact(&live.state);
        }
        drop(live);
        self.wait_until_durable(journal, ticket)?;
        Ok(Outcome::Done(made))
    }

    fn wait_until_durable(&self, journal: &Journal<EchoState>, ticket: Ticket) -> StoreResult<()> {
        journal.wait_until_durable(ticket).map_err(|_| {
            self.roll_back_undurable(journal);
            storage_unavailable()
        })
    }

    fn lock_live(&self) -> MutexGuard<'_, Live> {
        // A panic while holding the lock leaves a state that is still consistent: every
        // change is applied by one call to `apply_undoable`.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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

impl Store for JournalStore {
    fn provision(
        &self,
        instance_id: &str,
        new: NewInstance,
    ) -> StoreResult<Outcome<InstanceRecord>> {
        self.change(|state| match state.instances.get(instance_id) {
            Some(instance) => Err(Outcome::Exists(instance.record())),
            None => {
                let record = InstanceRecord {
                    attributes: new.attributes.clone(),
                    dashboard_token: new.dashboard_token.clone(),
                    bindings: 0,
                    messages: 0,
                };
                let change = Change::Provision {
                    instance_id: instance_id.to_string(),
                    attributes: new.attributes,
                    dashboard_token: new.dashboard_token,
                };
                Ok((change, record))
            }
        })
    }

    fn instance(&self, instance_id: &str) -> StoreResult<Outcome<InstanceRecord>> {
        self.read(|state| match state.instances.get(instance_id) {
            Some(instance) => Outcome::Done(instance.record()),
            None => Outcome::NoInstance,
        })
    }

    fn update(
        &self,
        instance_id: &str,
        update: InstanceUpdate,
    ) -> StoreResult<Outcome<InstanceRecord>> {
        self.change(|state| {
            let Some(instance) = state.instances.get(instance_id) else {
                return Err(Outcome::NoInstance);
            };
            let mut record = instance.record();
            if let Some(attributes) = record.attributes.as_mut() {
                apply_update(attributes, update.clone());
            }
            let change = Change::Update {
                instance_id: instance_id.to_string(),
                update,
            };
            Ok((change, record))
        })
    }

    fn deprovision(
        &self,
        instance_id: &str,
        claimed: &ClaimedIds,
    ) -> StoreResult<Outcome<InstanceRecord>> {
        self.change(|state| {
            let instance = claimed_instance(state, instance_id, claimed)?;
            let change = Change::Deprovision {
                instance_id: instance_id.to_string(),
            };
            Ok((change, instance.record()))
        })
    }

    fn bind(
        &self,
        instance_id: &str,
        binding_id: &str,
        claimed: &ClaimedIds,
        new: NewBinding,
    ) -> StoreResult<Outcome<BindingRecord>> {
        self.change(|state| {
            let instance = claimed_instance(state, instance_id, claimed)?;
            if let Some(binding) = instance.bindings.get(binding_id) {
                return Err(Outcome::Exists(binding.record()));
            }
            let record = BindingRecord {
                attributes: new.attributes.clone(),
                username: new.username.clone(),
                password: new.password.clone(),
                lifetime: new.lifetime,
            };
            let change = Change::Bind {
                instance_id: instance_id.to_string(),
                binding_id: binding_id.to_string(),
                attributes: new.attributes,
                username: new.username,
                password: new.password,
                lifetime: new.lifetime,
            };
            Ok((change, record))
        })
    }

    fn binding(&self, instance_id: &str, binding_id: &str) -> StoreResult<Outcome<BindingRecord>> {
        self.read(|state| match state.instances.get(instance_id) {
            None => Outcome::NoInstance,
            Some(instance) => match instance.bindings.get(binding_id) {
                Some(binding) => Outcome::Done(binding.record()),
                None => Outcome::NoBinding,
            },
        })
    }

    fn unbind(
        &self,
        instance_id: &str,
        binding_id: &str,
        claimed: &ClaimedIds,
    ) -> StoreResult<Outcome<BindingRecord>> {
        self.change(|state| {
            let instance = claimed_instance(state, instance_id, claimed)?;
            let Some(binding) = instance.bindings.get(binding_id) else {
                return Err(Outcome::NoBinding);
            };
            let change = Change::Unbind {
                instance_id: instance_id.to_string(),
                binding_id: binding_id.to_string(),
            };
            Ok((change, binding.record()))
        })
    }

    fn caller(&self, instance_id: &str, binding_id: &str) -> StoreResult<Option<Caller>> {
        self.read(|state| {
            let instance = state.instances.get(instance_id)?;
            let binding = instance.bindings.get(binding_id)?;
            Some(Caller {
                username: binding.username.clone(),
                password: binding.password.clone(),
                lifetime: binding.lifetime,
                service_id: instance.attributes.as_ref().map(|a| a.service_id.clone()),
            })
        })
    }

    fn record_message(
        &self,
        instance_id: &str,
        binding_id: &str,
        preview: &str,
    ) -> StoreResult<Outcome<()>> {
        self.change(|state| {
            let bound = state
                .instances
                .get(instance_id)
                .is_some_and(|instance| instance.bindings.contains_key(binding_id));
            if !bound {
                return Err(Outcome::NoBinding);
            }
            let change = Change::Message {
                instance_id: instance_id.to_string(),
                preview: preview_of(preview),
            };
            Ok((change, ()))
        })
    }

    fn dashboard(&self, instance_id: &str) -> StoreResult<Outcome<DashboardRecord>> {
        self.read(|state| match state.instances.get(instance_id) {
            None => Outcome::NoInstance,
            Some(instance) => Outcome::Done(DashboardRecord {
                instance: instance.record(),
                binding_ids: instance.bindings.keys().cloned().collect(),
                recent_messages: instance.recent_messages.iter().cloned().collect(),
            }),
        })
    }

    fn totals(&self) -> StoreResult<Totals> {
        self.read(|state| Totals {
            instances: state.instances.len() as u64,
            bindings: state
                .instances
                .values()
                .map(|i| i.bindings.len() as u64)
                .sum(),
            messages: state.instances.values().map(|i| i.message_count).sum(),
        })
    }

    fn health(&self) -> StoreResult<()> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        if journal.health().is_ok() {
            return Ok(());
        }
        let mut live = self.lock_live();
        self.ready_for_changes(&mut live, journal)
            .map_err(|_| storage_unavailable())
    }

    /// The journal's size and its group commit: fsyncs, and the changes they made durable.
    fn render_metrics(&self, out: &mut String) {
        let Some(journal) = &self.journal else {
            return;
        };
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
}

/// The instance a change to it or its bindings acts on: it must exist, and the caller must
/// have named its service and plan, if any.
fn claimed_instance<'a, T>(
    state: &'a EchoState,
    instance_id: &str,
    claimed: &ClaimedIds,
) -> Result<&'a Instance, Outcome<T>> {
    let instance = state
        .instances
        .get(instance_id)
        .ok_or(Outcome::NoInstance)?;
    match refuse_other_ids(instance.attributes.as_ref(), claimed) {
        Some(refusal) => Err(Outcome::OtherIds(refusal)),
        None => Ok(instance),
    }
}

impl Instance {
    pub(super) fn record(&self) -> InstanceRecord {
        InstanceRecord {
            attributes: self.attributes.clone(),
            dashboard_token: self.dashboard_token.clone(),
            bindings: self.bindings.len(),
            messages: self.message_count,
        }
    }
}

impl Binding {
    pub(super) fn record(&self) -> BindingRecord {
        BindingRecord {
            attributes: self.attributes.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            lifetime: self.lifetime,
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
                maintenance_info: None,
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
            lifetime: None,
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
}
