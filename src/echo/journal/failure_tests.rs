//! The journal's promises about failures, kept on a disk that fails as each test asks
//! ([`FailingDisk`]): a change whose write or fsync fails is never acknowledged and the
//! journal refuses changes until it recovers; a write cut short leaves a journal that reads
//! up to its last whole line; a compaction that fails at any step leaves a journal that
//! loads whole; and a flush costs one write and one fsync.

use super::test_disk::{FailingDisk, Operation, TestDir};
use super::tests::{as_json, assert_reopens_as, changes, commit, limits, log_lines, open, run};
use super::*;
use crate::echo::journal_state::test_changes::provision;
use crate::echo::journal_state::{Change, EchoState};
use std::error::Error;

type Journal = super::Journal<EchoState>;

/// The journal in `dir` on a disk that fails when told to, and that disk.
fn open_failing(dir: &TestDir) -> (Journal, EchoState, Arc<FailingDisk>) {
    let disk = FailingDisk::new();
    let (journal, state) =
        Journal::open_with(&dir.0, disk.clone(), limits(1_000_000)).expect("the journal opens");
    (journal, state, disk)
}

/// Appends `change`, applies it, and waits for it as the store does: whether it was
/// acknowledged (made durable).
fn try_commit(
    journal: &Journal,
    state: &Mutex<EchoState>,
    change: Change,
) -> Result<(), JournalError> {
    let mut guard = state.lock().expect("state lock");
    let ticket = journal.append(&change)?;
    guard.apply(change);
    drop(guard);
    journal.wait_until_durable(ticket)
}

#[test]
fn a_change_whose_fsync_fails_is_not_acknowledged_and_changes_wait_for_recovery() {
    let dir = TestDir::new("fsync-fails");
    let (journal, state, disk) = open_failing(&dir);
    let state = Mutex::new(state);
    commit(&journal, &state, provision("kept"));
    let durable_state = state.lock().expect("state").clone();

    disk.fail(Operation::SyncData);
    let refused = try_commit(&journal, &state, provision("lost"))
        .expect_err("a change whose fsync failed is not acknowledged");
    let log = dir.file(&log_name(0)).display().to_string();
    assert!(refused.to_string().contains(&log), "{refused}");
    assert!(refused.source().is_some(), "the disk's error is kept");
    // Failed: nothing is taken, and the health check says so.
    assert!(journal.append(&provision("refused")).is_err());
    assert!(journal.health().is_err());
    // The caller rolls back to what is durable: the change before the failure.
    assert_eq!(journal.discard_undurable(), Some(1));

    // Recovery writes a snapshot: it fails while the disk does.
    disk.fail(Operation::SyncAll);
    assert!(journal.recover(&durable_state).is_err());
    assert!(journal.append(&provision("still refused")).is_err());

    disk.heal();
    std::thread::sleep(RECOVERY_INTERVAL);
    journal
        .recover(&durable_state)
        .expect("recovered once the disk works");
    let state = Mutex::new(durable_state);
    commit(&journal, &state, provision("later"));
    {
        let acknowledged = state.lock().expect("state");
        assert!(acknowledged.instances.get("kept").is_some());
        assert!(acknowledged.instances.get("lost").is_none());
    }
    assert_reopens_as(&dir, journal, state);
}

#[test]
fn a_write_cut_short_leaves_a_log_that_reads_up_to_its_last_whole_line() {
    // The failed log is cut back to its acknowledged lines; when even that fails, the next
    // start cuts the torn tail off.
    for cut_back_fails in [false, true] {
        let dir = TestDir::new("write-cut-short");
        let acknowledged = as_json(&run(&dir, 1_000_000, changes("i", 2)));
        // Read while no journal holds the log (Windows' locks bar reads).
        let whole_lines = log_lines(&dir, 0).concat();
        let (journal, state, disk) = open_failing(&dir);
        let state = Mutex::new(state);

        disk.fail_writes_after(20);
        if cut_back_fails {
            disk.fail(Operation::SetLen);
        }
        assert!(try_commit(&journal, &state, provision("torn")).is_err());
        drop(journal);
        let on_disk = std::fs::read(dir.file(&log_name(0))).expect("the log reads");
        let torn = if cut_back_fails { 20 } else { 0 };
        assert_eq!(
            on_disk.len(),
            whole_lines.len() + torn,
            "cut back: {cut_back_fails}"
        );
        assert!(on_disk.starts_with(&whole_lines));

        let (_, reopened) = open(&dir, 1_000_000);
        assert_eq!(
            as_json(&reopened),
            acknowledged,
            "cut back: {cut_back_fails}"
        );
        assert_eq!(log_lines(&dir, 0).concat(), whole_lines);
    }
}

/// Where a compaction fails: each leaves it to be tried again, with the journal working.
const COMPACTION_FAULTS: [Operation; 4] = [
    Operation::Create,
    Operation::SyncAll,
    Operation::Write,
    Operation::Rename,
];

#[test]
fn a_compaction_that_fails_leaves_the_old_snapshot_and_the_journal_working() {
    for fault in COMPACTION_FAULTS {
        let dir = TestDir::new("compaction-fails");
        let (journal, state, disk) = open_failing(&dir);
        let state = Mutex::new(state);
        for change in changes("a", 2) {
            commit(&journal, &state, change);
        }
        journal.compact(&state.lock().expect("state"));
        commit(&journal, &state, provision("b"));
        // (The snapshot is read, not the logs, which Windows' locks bar from reads.)
        let snapshot = || std::fs::read(dir.file(SNAPSHOT)).expect("the snapshot reads");
        let old_snapshot = snapshot();

        disk.fail(fault);
        journal.compact(&state.lock().expect("state"));
        disk.heal();
        assert_eq!(
            snapshot(),
            old_snapshot,
            "{fault:?}: the old snapshot stays"
        );
        assert!(!dir.file(SNAPSHOT_TMP).exists(), "{fault:?}");
        // Changes go on.
        commit(&journal, &state, provision("after"));
        drop(journal);

        let (journal, reopened) = open(&dir, 1_000_000);
        let expected = as_json(&state.into_inner().expect("state"));
        assert_eq!(as_json(&reopened), expected, "{fault:?}");
        // And a later compaction succeeds.
        journal.compact(&reopened);
        drop(journal);
        assert_ne!(snapshot(), old_snapshot, "{fault:?}");
        assert_eq!(as_json(&open(&dir, 1_000_000).1), expected, "{fault:?}");
    }
}

#[test]
fn a_snapshot_renamed_but_not_made_durable_fails_the_journal_until_recovered() {
    let dir = TestDir::new("compaction-dir-fsync");
    let (journal, state, disk) = open_failing(&dir);
    let state = Mutex::new(state);
    for change in changes("a", 2) {
        commit(&journal, &state, change);
    }
    journal.lock().compacting = true;
    let next = journal.prepare_compaction().expect("the next log");
    let switched = journal.switch_log(next).expect("switched");
    let frozen = state.lock().expect("state").freeze();

    disk.fail(Operation::SyncDir);
    assert!(!journal.finish_compaction(switched, &frozen));
    // The new snapshot may be the one on disk, or not: no change is taken until a fresh
    // snapshot is durable.
    let refused = journal.append(&provision("refused")).expect_err("failed");
    assert!(refused.to_string().contains("durable"), "{refused}");
    disk.heal();
    journal.recover(&frozen).expect("recovered");
    commit(&journal, &state, provision("later"));
    assert_reopens_as(&dir, journal, state);
}

#[test]
fn a_flush_is_one_write_and_one_fsync_through_the_disk() {
    let dir = TestDir::new("flush-cost");
    let (journal, state, disk) = open_failing(&dir);
    let state = Mutex::new(state);
    let before = |operation| disk.calls(operation);
    let (writes, fsyncs, full_fsyncs) = (
        before(Operation::Write),
        before(Operation::SyncData),
        before(Operation::SyncAll),
    );
    let all = changes("i", 3);
    let count = all.len() as u64;
    for change in all {
        commit(&journal, &state, change);
    }
    assert_eq!(disk.calls(Operation::Write) - writes, count);
    assert_eq!(disk.calls(Operation::SyncData) - fsyncs, count);
    assert_eq!(disk.calls(Operation::SyncAll) - full_fsyncs, 0);
}
