//! The journal store: the echo service's state in memory ([`EchoState`]), each change made
//! durable in a journal on a local disk before it is answered ([`crate::echo::journal`]).
//! One process owns a journal; this is the embedded default, which needs nothing else.
//!
//! A change that cannot be made durable is undone in memory and answered with a
//! [`StoreError`] that names storage, so reads only ever see what is on disk; the journal
//! recovers by itself once the disk does.
//!
//! Compaction (folding the log into a new snapshot) runs on a thread of its own and holds
//! the state only to switch logs and take a copy that shares every instance with the live
//! state ([`EchoState::freeze`]): requests go on while the snapshot is written, however
//! large the state.

use super::api::InstanceUpdate;
use super::journal::{Journal, JournalError, Ticket};
use super::store::{
    apply_update, refuse_other_service_or_plan, BindingLookup, BindingRecord, Bound, Caller,
    ClaimedIds, DashboardRecord, Deprovisioned, Figure, FigureKind, InstanceRecord, NewBinding,
    NewInstance, OtherIds, Provisioned, Store, StoreError, StoreResult, Totals, Unbound,
};
use std::collections::VecDeque;
use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use super::journal_state::{Binding, Change, EchoState, HeldInstance, Instance, Undo};

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

/// What a change-making call decided after looking at the state. (Short-lived, on the
/// stack: the size of a change does not matter here.)
#[allow(clippy::large_enum_variant)]
enum Decision<A> {
    /// Make this change; once durable, give this answer.
    Make(Change, A),
    /// Make no change: give this answer.
    Answer(A),
}

/// The longest a call waits for the disk: an fsync behind a compaction's on a slow disk.
const LONGEST_CALL: Duration = Duration::from_secs(3);

/// The echo service's state and its journal (none: in memory only, for unit tests).
pub struct JournalStore {
    /// Shared with a compaction's thread.
    live: Arc<Mutex<Live>>,
    journal: Option<Arc<Journal<EchoState>>>,
    compactions: Arc<Compactions>,
}

/// What compactions did, for `/metrics`.
#[derive(Default)]
struct Compactions {
    done: AtomicU64,
    /// The longest any held the state (microseconds): how long a request could wait on one.
    longest_hold_micros: AtomicU64,
}

impl JournalStore {
    /// Loads the state from the journal in `dir`. A journal that cannot be read stops
    /// start-up with the reason; it is never overwritten.
    pub fn open(dir: &Path) -> Result<JournalStore, JournalError> {
        let (journal, state) = Journal::open(dir)?;
        Ok(JournalStore::with(state, Some(journal)))
    }

    /// A store that keeps its state in memory only.
    pub fn in_memory() -> JournalStore {
        JournalStore::with(EchoState::default(), None)
    }

    fn with(state: EchoState, journal: Option<Journal<EchoState>>) -> JournalStore {
        JournalStore {
            live: Arc::new(Mutex::new(Live {
                state,
                undo: VecDeque::new(),
            })),
            journal: journal.map(Arc::new),
            compactions: Arc::default(),
        }
    }

    /// Reads the state, and returns what was read only once every change it could have
    /// seen is durable (a change's own call already waits for it; this covers reads, such
    /// as a 409 for an instance whose provision is still being flushed, which a crash could
    /// otherwise undo after the broker had answered 200).
    fn read<T>(&self, read: impl FnOnce(&EchoState) -> T) -> StoreResult<T> {
        let live = self.lock_live();
        let seen = read(&live.state);
        let last_appended = self.journal.as_deref().map(Journal::last_appended);
        drop(live);
        match (self.journal.as_deref(), last_appended) {
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
    fn change<A>(&self, decide: impl FnOnce(&EchoState) -> Decision<A>) -> StoreResult<A> {
        let mut live = self.lock_live();
        let (change, made) = match decide(&live.state) {
            Decision::Make(change, made) => (change, made),
            Decision::Answer(answer) => {
                drop(live);
                return self.read(|_| answer);
            }
        };
        let Some(journal) = self.journal.as_deref() else {
            live.state.apply_undoable(change);
            return Ok(made);
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
        drop(live);
        self.wait_until_durable(journal, ticket)?;
        self.compact_if_due();
        Ok(made)
    }

    /// Starts a compaction on a thread of its own when the log has grown enough and none is
    /// under way.
    fn compact_if_due(&self) {
        let Some(journal) = &self.journal else {
            return;
        };
        if !journal.claim_compaction() {
            return;
        }
        let (live, compacting) = (Arc::clone(&self.live), Arc::clone(journal));
        let compactions = Arc::clone(&self.compactions);
        let started = std::thread::Builder::new()
            .name("echo-compaction".into())
            .spawn(move || compact(&live, &compacting, &compactions));
        if let Err(error) = started {
            log::warn!("journal: cannot start a compaction ({error}); trying again later");
            journal.release_compaction();
        }
    }

    fn wait_until_durable(&self, journal: &Journal<EchoState>, ticket: Ticket) -> StoreResult<()> {
        journal.wait_until_durable(ticket).map_err(|_| {
            self.roll_back_undurable(journal);
            storage_unavailable()
        })
    }

    fn lock_live(&self) -> MutexGuard<'_, Live> {
        lock(&self.live)
    }

    /// `Ok` if the journal takes changes. After a failure, first undoes in memory what did
    /// not reach the disk, then lets the journal try to recover (at most every
    /// [`crate::echo::journal::RECOVERY_INTERVAL`]).
    fn ready_for_changes(
        &self,
        live: &mut Live,
        journal: &Journal<EchoState>,
    ) -> Result<(), JournalError> {
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

fn lock(live: &Mutex<Live>) -> MutexGuard<'_, Live> {
    // A panic while holding the lock leaves a state that is still consistent: every change
    // is applied by one call to `apply_undoable`.
    live.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One compaction, on its own thread: the next log is made ready without the state; the
/// state is held only to switch logs and take a copy of it (a table of shared pointers);
/// the copy is written as the new snapshot while requests go on.
fn compact(live: &Mutex<Live>, journal: &Journal<EchoState>, compactions: &Compactions) {
    let Some(next_log) = journal.prepare_compaction() else {
        return;
    };
    let held_since = Instant::now();
    let switched = {
        let live = lock(live);
        journal
            .switch_log(next_log)
            .map(|switched| (switched, live.state.freeze()))
    };
    let held = u64::try_from(held_since.elapsed().as_micros()).unwrap_or(u64::MAX);
    compactions
        .longest_hold_micros
        .fetch_max(held, Ordering::Relaxed);
    if let Some((switched, frozen)) = switched {
        if journal.finish_compaction(switched, &frozen) {
            compactions.done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Store for JournalStore {
    fn provision(&self, instance_id: &str, new: NewInstance) -> StoreResult<Provisioned> {
        self.change(|state| match state.instances.get(instance_id) {
            Some(instance) => Decision::Answer(Provisioned::Exists(instance.record())),
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
                Decision::Make(change, Provisioned::Made(record))
            }
        })
    }

    fn instance(&self, instance_id: &str) -> StoreResult<Option<InstanceRecord>> {
        self.read(|state| state.instances.get(instance_id).map(HeldInstance::record))
    }

    fn update(
        &self,
        instance_id: &str,
        update: InstanceUpdate,
    ) -> StoreResult<Option<InstanceRecord>> {
        self.change(|state| {
            let Some(instance) = state.instances.get(instance_id) else {
                return Decision::Answer(None);
            };
            let mut record = instance.record();
            if let Some(attributes) = record.attributes.as_mut() {
                apply_update(attributes, update.clone());
            }
            let change = Change::Update {
                instance_id: instance_id.to_string(),
                update,
            };
            Decision::Make(change, Some(record))
        })
    }

    fn deprovision(&self, instance_id: &str, claimed: &ClaimedIds) -> StoreResult<Deprovisioned> {
        self.change(
            |state| match claimed_instance(state, instance_id, claimed) {
                Claimed::Instance(instance) => {
                    let change = Change::Deprovision {
                        instance_id: instance_id.to_string(),
                    };
                    Decision::Make(change, Deprovisioned::Removed(instance.record()))
                }
                Claimed::NoInstance => Decision::Answer(Deprovisioned::NoInstance),
                Claimed::OtherIds(refusal) => Decision::Answer(Deprovisioned::OtherIds(refusal)),
            },
        )
    }

    fn bind(
        &self,
        instance_id: &str,
        binding_id: &str,
        claimed: &ClaimedIds,
        new: NewBinding,
    ) -> StoreResult<Bound> {
        self.change(|state| {
            let instance = match claimed_instance(state, instance_id, claimed) {
                Claimed::Instance(instance) => instance,
                Claimed::NoInstance => return Decision::Answer(Bound::NoInstance),
                Claimed::OtherIds(refusal) => return Decision::Answer(Bound::OtherIds(refusal)),
            };
            if let Some(binding) = instance.binding(binding_id) {
                return Decision::Answer(Bound::Exists(binding.record()));
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
            Decision::Make(change, Bound::Made(record))
        })
    }

    fn binding(&self, instance_id: &str, binding_id: &str) -> StoreResult<BindingLookup> {
        self.read(|state| match state.instances.get(instance_id) {
            None => BindingLookup::NoInstance,
            Some(instance) => match instance.binding(binding_id) {
                Some(binding) => BindingLookup::Found(binding.record()),
                None => BindingLookup::NoBinding,
            },
        })
    }

    fn unbind(
        &self,
        instance_id: &str,
        binding_id: &str,
        claimed: &ClaimedIds,
    ) -> StoreResult<Unbound> {
        self.change(|state| {
            let instance = match claimed_instance(state, instance_id, claimed) {
                Claimed::Instance(instance) => instance,
                Claimed::NoInstance => return Decision::Answer(Unbound::NoInstance),
                Claimed::OtherIds(refusal) => return Decision::Answer(Unbound::OtherIds(refusal)),
            };
            let Some(binding) = instance.binding(binding_id) else {
                return Decision::Answer(Unbound::NoBinding);
            };
            let change = Change::Unbind {
                instance_id: instance_id.to_string(),
                binding_id: binding_id.to_string(),
            };
            Decision::Make(change, Unbound::Removed(binding.record()))
        })
    }

    fn caller(&self, instance_id: &str, binding_id: &str) -> StoreResult<Option<Caller>> {
        self.read(|state| {
            let instance = state.instances.get(instance_id)?;
            let binding = instance.binding(binding_id)?;
            Some(Caller {
                username: binding.username().to_string(),
                password: binding.password().to_string(),
                lifetime: binding.lifetime(),
                service_id: instance
                    .service_and_plan()
                    .map(|(service_id, _)| service_id.to_string()),
            })
        })
    }

    fn record_message(
        &self,
        instance_id: &str,
        binding_id: &str,
        preview: &str,
    ) -> StoreResult<bool> {
        self.change(|state| {
            let bound = state
                .instances
                .get(instance_id)
                .is_some_and(|instance| instance.binding(binding_id).is_some());
            if !bound {
                return Decision::Answer(false);
            }
            let change = Change::Message {
                instance_id: instance_id.to_string(),
                preview: preview.to_string(),
            };
            Decision::Make(change, true)
        })
    }

    fn dashboard(&self, instance_id: &str) -> StoreResult<Option<DashboardRecord>> {
        self.read(|state| {
            state
                .instances
                .get(instance_id)
                .map(|instance| DashboardRecord {
                    instance: instance.record(),
                    binding_ids: instance.binding_ids(),
                    recent_messages: instance.recent_messages(),
                })
        })
    }

    fn totals(&self) -> StoreResult<Totals> {
        self.read(|state| Totals {
            instances: state.instances.len() as u64,
            bindings: state
                .instances
                .values()
                .map(|instance| instance.binding_count() as u64)
                .sum(),
            messages: state
                .instances
                .values()
                .map(HeldInstance::message_count)
                .sum(),
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

    /// The journal's size, its group commit (fsyncs, and the changes they made durable) and
    /// its compactions.
    fn figures(&self) -> Vec<Figure> {
        let Some(journal) = &self.journal else {
            return Vec::new();
        };
        let (fsyncs, changes) = journal.flush_statistics();
        let per_fsync = if fsyncs == 0 {
            0.0
        } else {
            changes as f64 / fsyncs as f64
        };
        let held =
            Duration::from_micros(self.compactions.longest_hold_micros.load(Ordering::Relaxed));
        let figure = |name: &str, kind, help, value| Figure {
            name: name.to_string(),
            kind,
            help,
            value,
        };
        vec![
            figure(
                "echo_service_journal_bytes",
                FigureKind::Gauge,
                "The journal's size on disk (snapshot and log).",
                journal.size_bytes() as f64,
            ),
            figure(
                "echo_service_journal_fsyncs_total",
                FigureKind::Counter,
                "Flushes of the journal (a write and an fsync each).",
                fsyncs as f64,
            ),
            figure(
                "echo_service_journal_changes_total",
                FigureKind::Counter,
                "Changes made durable by those fsyncs.",
                changes as f64,
            ),
            figure(
                "echo_service_journal_changes_per_fsync",
                FigureKind::Gauge,
                "Changes per fsync since start (the group commit's batching).",
                per_fsync,
            ),
            figure(
                "echo_service_journal_compactions_total",
                FigureKind::Counter,
                "Compactions of the log into a new snapshot since start.",
                self.compactions.done.load(Ordering::Relaxed) as f64,
            ),
            figure(
                "echo_service_journal_compaction_hold_seconds",
                FigureKind::Gauge,
                "The longest a compaction held the state (to switch logs and copy the table of instances): the most a request waited on one.",
                held.as_secs_f64(),
            ),
        ]
    }

    fn longest_call(&self) -> Duration {
        LONGEST_CALL
    }
}

/// The instance a change to it or its bindings acts on, if it exists and the ids the
/// caller named are its own (see `store::refuse_other_ids`).
enum Claimed<'a> {
    Instance(&'a HeldInstance),
    NoInstance,
    OtherIds(OtherIds),
}

fn claimed_instance<'a>(
    state: &'a EchoState,
    instance_id: &str,
    claimed: &ClaimedIds,
) -> Claimed<'a> {
    let Some(instance) = state.instances.get(instance_id) else {
        return Claimed::NoInstance;
    };
    let refusal = instance
        .service_and_plan()
        .and_then(|(service_id, plan_id)| {
            refuse_other_service_or_plan(service_id, plan_id, claimed)
        });
    match refusal {
        Some(refusal) => Claimed::OtherIds(refusal),
        None => Claimed::Instance(instance),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo::journal::test_disk::{FailingDisk, Operation, TestDir};
    use crate::echo::journal::RECOVERY_INTERVAL;

    fn provision(store: &JournalStore, instance_id: &str) -> StoreResult<Provisioned> {
        let new = NewInstance {
            attributes: None,
            dashboard_token: format!("token-{instance_id}"),
        };
        store.provision(instance_id, new)
    }

    fn exists(store: &JournalStore, instance_id: &str) -> bool {
        let found = store.instance(instance_id).expect("a read is answered");
        found.is_some()
    }

    #[test]
    fn a_change_the_disk_refuses_is_answered_as_storage_unavailable_and_undone_in_memory() {
        let dir = TestDir::new("store-refused");
        let disk = FailingDisk::new();
        let (journal, state) = Journal::open_on(&dir.0, disk.clone()).expect("the journal opens");
        let store = JournalStore::with(state, Some(journal));
        assert!(matches!(
            provision(&store, "kept"),
            Ok(Provisioned::Made(_))
        ));

        // The fsync fails, and so does every snapshot recovery would write.
        disk.fail(Operation::SyncData);
        disk.fail(Operation::SyncAll);
        let refused = provision(&store, "lost").expect_err("not acknowledged");
        assert_eq!(refused.description, STORAGE_UNAVAILABLE);
        assert!(!exists(&store, "lost"), "undone in memory");
        assert!(exists(&store, "kept"));
        assert!(store.health().is_err());
        assert!(provision(&store, "meanwhile").is_err());

        disk.heal();
        std::thread::sleep(RECOVERY_INTERVAL);
        assert!(store.health().is_ok(), "recovered without a restart");
        assert!(matches!(
            provision(&store, "later"),
            Ok(Provisioned::Made(_))
        ));
        drop(store);

        let reopened = JournalStore::open(&dir.0).expect("the journal opens");
        for (instance_id, acknowledged) in [
            ("kept", true),
            ("lost", false),
            ("meanwhile", false),
            ("later", true),
        ] {
            assert_eq!(
                exists(&reopened, instance_id),
                acknowledged,
                "{instance_id}"
            );
        }
    }
}
