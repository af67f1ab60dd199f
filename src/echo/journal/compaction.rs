//! Compaction: the logs folded into a new snapshot of the state, while changes go on.
//!
//! Once the logs hold [`COMPACT_AFTER_ENTRIES`] changes, or [`COMPACT_AFTER_BYTES`] bytes, and
//! are at least as big as the snapshot, the caller claims a compaction
//! ([`Journal::claim_compaction`]) and runs its three steps, holding its state lock for the
//! second only:
//!
//! 1. [`Journal::prepare_compaction`] creates the empty log of the next generation and makes
//!    it durable (file and directory);
//! 2. [`Journal::switch_log`], under the state lock: every change appended so far is made
//!    durable in the current log, and new changes go to the new one from now on; the caller
//!    takes a copy of its state as it is at that point (cheap: see
//!    `journal_state::EchoState::freeze`);
//! 3. [`Journal::finish_compaction`], without the lock, while changes go on: the copy is
//!    written to `state.snapshot.tmp`, fsynced, renamed over `state.snapshot`, the directory
//!    fsynced, and the logs it replaces are deleted.
//!
//! A crash at any point leaves the old snapshot with its complete log (and, after step 2,
//! the new log with the changes made since), or the new snapshot with its log. A snapshot
//! that cannot be written leaves the same, and compaction is tried again later.
//!
//! This file knows when to compact and in which order the files change; writing and
//! installing a snapshot is the journal's (recovery does it too), the bytes are
//! [`super::format`]'s.

use super::files::{create_durable_log, identity_of_file};
use super::format::{log_name, SnapshotOut, FORMAT};
use super::{Journal, Recorded};
#[cfg(doc)]
use super::{COMPACT_AFTER_BYTES, COMPACT_AFTER_ENTRIES};
use serde::Serialize;
use std::fmt::Display;
use std::fs::File;

/// The next generation's log, made ready by [`Journal::prepare_compaction`].
pub struct NextLog {
    file: File,
    generation: u64,
}

/// Where [`Journal::switch_log`] switched: the state held then is the state up to
/// `sequence`, to be written as the snapshot of `generation`.
pub struct Switched {
    generation: u64,
    sequence: u64,
}

impl<S: Recorded> Journal<S> {
    /// Whether the logs have grown enough to be folded into a new snapshot, and no
    /// compaction is under way.
    pub fn wants_compaction(&self) -> bool {
        self.lock().wants_compaction()
    }

    /// Claims the compaction that is due, if none is under way: the caller then runs
    /// [`Journal::prepare_compaction`], [`Journal::switch_log`] and
    /// [`Journal::finish_compaction`] (each gives the claim back if it cannot go on).
    pub fn claim_compaction(&self) -> bool {
        let mut shared = self.lock();
        let due = shared.wants_compaction();
        shared.compacting |= due;
        due
    }

    /// Gives back a claimed compaction without making it.
    pub fn release_compaction(&self) {
        self.lock().compacting = false;
    }

    /// Folds the logs into a new snapshot of `state`, which holds every appended change (the
    /// caller holds its state lock, or nothing changes meanwhile): the three steps of a
    /// compaction at once. If it cannot be done the logs stay in use, and it is tried
    /// again later.
    pub fn compact(&self, state: &S) {
        {
            let mut shared = self.lock();
            if shared.compacting || shared.failed.is_some() {
                return;
            }
            shared.compacting = true;
        }
        let Some(next_log) = self.prepare_compaction() else {
            return;
        };
        if let Some(switched) = self.switch_log(next_log) {
            self.finish_compaction(switched, state);
        }
    }

    /// A compaction's first step, holding nothing: creates the next generation's empty log
    /// and makes it durable.
    pub fn prepare_compaction(&self) -> Option<NextLog> {
        let generation = self.lock().generation + 1;
        let log_path = self.dir.join(log_name(generation));
        match create_durable_log(&*self.disk, &self.dir, &log_path) {
            Ok(file) => Some(NextLog { file, generation }),
            Err(problem) => {
                drop(self.disk.remove(&log_path));
                self.postpone_compaction(&problem);
                None
            }
        }
    }

    /// A compaction's second step, under the caller's state lock (so that no change is
    /// appended meanwhile): makes every change appended so far durable in the current log,
    /// then sends the next changes to the new one. The caller's state is now the state at
    /// the returned point: it takes a copy of it for [`Journal::finish_compaction`].
    pub fn switch_log(&self, next_log: NextLog) -> Option<Switched> {
        let appended = self.last_appended();
        let abandon = |problem: Option<&str>| {
            drop(
                self.disk
                    .remove(&self.dir.join(log_name(next_log.generation))),
            );
            match problem {
                Some(problem) => self.postpone_compaction(&problem),
                None => self.release_compaction(),
            }
        };
        // A failure here fails the journal, as any flush's; the store rolls back at its
        // next change, and recovery writes a snapshot of its own.
        if self.wait_until_durable(appended).is_err() {
            abandon(None);
            return None;
        }
        let mut shared = self.wait_for_no_flush();
        if shared.failed.is_some() || shared.appended != appended.0 {
            drop(shared);
            abandon(None);
            return None;
        }
        if next_log.generation != shared.generation + 1 {
            drop(shared);
            abandon(Some("the logs changed meanwhile"));
            return None;
        }
        let NextLog { file, generation } = next_log;
        shared.log_identity = identity_of_file(&file);
        let previous = shared.generation;
        if let Some(old) = shared.file.replace(file) {
            shared.older_logs.push((previous, old));
        }
        shared.older_logs_bytes += shared.log_bytes;
        shared.generation = generation;
        shared.log_bytes = 0;
        shared.flushed_log_bytes = 0;
        self.flushed.notify_all();
        Some(Switched {
            generation,
            sequence: appended.0,
        })
    }

    /// A compaction's last step, holding nothing: writes `frozen` (the caller's state when
    /// the logs were switched) as the new generation's snapshot, installs it with an atomic
    /// rename, and removes the logs it replaces. Whether it did. A snapshot that cannot be
    /// written changes nothing (a start replays the logs in order), and compaction is tried
    /// again later; one installed but not made durable fails the journal (recovery writes
    /// a fresh one).
    pub fn finish_compaction<F: Serialize>(&self, switched: Switched, frozen: &F) -> bool {
        let snapshot = SnapshotOut {
            format: FORMAT,
            generation: switched.generation,
            sequence: switched.sequence,
            state: frozen,
        };
        // A journal that failed meanwhile recovers with a snapshot of its own.
        let not_failed = || match &self.lock().failed {
            Some(failed) => Err(failed.error()),
            None => Ok(()),
        };
        let snapshot_bytes = match self.install_snapshot(&snapshot, not_failed) {
            Ok(bytes) => bytes,
            Err(problem) => {
                self.postpone_compaction(&problem);
                return false;
            }
        };
        // From here the new snapshot may be the one on disk.
        if let Err(problem) = self.sync_dir() {
            let mut shared = self.lock();
            shared.compacting = false;
            self.fail(&mut shared, problem);
            return false;
        }
        let (replaced, flushes, flushed_entries) = {
            let mut shared = self.lock();
            shared.compacting = false;
            shared.snapshot_bytes = snapshot_bytes;
            shared.log_entries = shared.appended - switched.sequence;
            shared.older_logs_bytes = 0;
            shared.compact_at = self.limits.compact_after_entries;
            shared.compact_at_bytes = self.limits.compact_after_bytes;
            let replaced = std::mem::take(&mut shared.older_logs);
            (replaced, shared.flushes, shared.flushed_entries)
        };
        self.remove_logs(replaced);
        log::debug!(
            "journal: compacted the changes up to {} into a snapshot of {snapshot_bytes} bytes (generation {}); {flushed_entries} changes written in {flushes} flushes so far",
            switched.sequence,
            switched.generation
        );
        true
    }

    /// After a compaction that could not be made: logs the problem, and tries again once
    /// the logs have grown as much again.
    fn postpone_compaction(&self, problem: &dyn Display) {
        log::error!("journal: compaction failed, keeping the current logs: {problem}");
        let mut shared = self.lock();
        shared.compacting = false;
        shared.compact_at = shared.log_entries + self.limits.compact_after_entries;
        shared.compact_at_bytes =
            shared.log_bytes + shared.older_logs_bytes + self.limits.compact_after_bytes;
    }
}
