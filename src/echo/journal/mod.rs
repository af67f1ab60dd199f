//! A durable state: a snapshot plus an append-only log of changes, with group commit.
//!
//! The journal knows nothing of what it stores: its tenant is any state that implements
//! [`Recorded`] (the echo service's state is the one in this program). The state says what a
//! change is and how to apply one; the journal frames, checksums, fsyncs and replays them.
//!
//! # Its parts, each knowing less than the one above
//!
//! - this file: the journal itself: appending, group commit, failures and recovery;
//!   `compaction.rs`: folding the logs into a new snapshot while changes go on;
//! - `load.rs`: reading the directory back into the state at start (torn tails, damage),
//!   and [`read_only`] for a copy taken elsewhere;
//! - `files.rs`: the [`Disk`] that every write and fsync goes through, permissions, locks,
//!   and what differs between Unix and Windows;
//! - `format.rs`: the files' names and bytes: framing, checksums, the snapshot's payload
//!   (the table of files is there);
//! - `error.rs`: [`JournalError`], what went wrong and in which file.
//!
//! # Writing
//!
//! [`Journal::append`] only frames the change into a buffer (under the caller's state lock,
//! so the log's order is the order the changes were applied). [`Journal::wait_until_durable`]
//! is group commit: the first waiter that finds no flush running becomes the leader, writes
//! every buffered line and fsyncs once, and wakes everyone its flush covered; changes
//! appended meanwhile go out together in the next flush. Before a flush counts as durable,
//! the journal checks that `DATA_DIR` and the log are still the ones it opened (same device
//! and inode on Unix; still there elsewhere): a directory removed, renamed or replaced while
//! running fails the flush instead of acknowledging changes written into deleted files.
//!
//! # Failures
//!
//! If a write or fsync fails, the log's pages in the OS cache can no longer be trusted (Linux
//! drops the dirty pages of a failed fsync and reports the error once), so the log is never
//! written again. The journal is *failed*: every waiter whose change was not yet durable gets
//! an error (the caller rolls its state back to [`Journal::durable`] after
//! [`Journal::discard_undurable`]), and no change is accepted. [`Journal::recover`] (the
//! caller tries it on the next change or health check, at most once per
//! [`RECOVERY_INTERVAL`]) writes the durable state as a fresh snapshot with a fresh log, as a
//! compaction does; once that is on disk, changes are accepted again, without a restart. A
//! vanished directory is not recovered in place: what `DATA_DIR` now holds is the operator's
//! doing, so the service waits for a restart, which loads it.

mod compaction;
mod error;
mod files;
mod format;
mod load;

pub use compaction::{NextLog, Switched};
pub use error::{Before, Doing, Found, JournalError, Mismatch, Watched};
pub use files::{Disk, StdDisk};
pub use format::{Damage, Recorded};
pub use load::{read_only, ReadOnlyCopy, TornTail};

use files::{
    check_same_file, create_durable_log, cut_back, identity_of, identity_of_file, lock_directory,
    prepare_directory, FileIdentity, WriteThrough,
};
use format::{log_name, SnapshotOut, FORMAT, SNAPSHOT, SNAPSHOT_TMP};
use load::{cut_torn_tail, load, LoadedLog, LogAccess};
use serde::Serialize;
use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The log is compacted into a new snapshot once it holds this many changes (and is at least
/// as big as the snapshot, so the cost of a snapshot is spread over as many bytes of log).
pub const COMPACT_AFTER_ENTRIES: u64 = 10_000;

/// ... or once it is this big: large changes must not fill the disk before the count is
/// reached. The journal then needs at most about twice the snapshot (or this) plus a snapshot
/// being written.
pub const COMPACT_AFTER_BYTES: u64 = 4 * 1024 * 1024;

/// A failed journal tries to recover at most this often: each try writes a whole snapshot,
/// which a full disk must not be asked for on every request.
pub const RECOVERY_INTERVAL: Duration = Duration::from_millis(500);

/// Identifies one appended change: its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "wait until the change is durable before answering"]
pub struct Ticket(pub u64);

/// When to compact (tests use small numbers).
#[derive(Debug, Clone, Copy)]
struct Limits {
    compact_after_entries: u64,
    compact_after_bytes: u64,
}

impl Limits {
    const DEFAULT: Limits = Limits {
        compact_after_entries: COMPACT_AFTER_ENTRIES,
        compact_after_bytes: COMPACT_AFTER_BYTES,
    };
}

/// Why the journal accepts no changes.
#[derive(Debug, Clone)]
struct Failed {
    cause: Arc<JournalError>,
    /// `DATA_DIR` vanished: only a restart (which loads what is there now) goes on.
    needs_restart: bool,
}

impl Failed {
    /// The error every refused call gets.
    fn error(&self) -> JournalError {
        JournalError::Failed(Arc::clone(&self.cause))
    }
}

/// The durable journal of a state `S`.
pub struct Journal<S> {
    dir: PathBuf,
    /// `DATA_DIR` as opened, to notice it being removed, renamed or replaced.
    dir_identity: Option<FileIdentity>,
    /// What every write, fsync, rename and removal goes through.
    disk: Arc<dyn Disk>,
    shared: Mutex<Shared>,
    /// Signalled whenever a flush ends (and when compaction switches logs).
    flushed: Condvar,
    limits: Limits,
    /// Holds the OS lock on `journal.lock` for as long as the journal is open.
    _lock: File,
    /// The state kind this journal holds; `fn` so the journal is `Send + Sync` whatever `S`.
    state: PhantomData<fn(S) -> S>,
}

struct Shared {
    /// Framed lines appended but not yet handed to a flush.
    pending: Vec<u8>,
    /// An empty buffer kept for reuse, so `pending` does not grow from nothing each flush.
    spare: Vec<u8>,
    /// The sequence number of the last appended change.
    appended: u64,
    /// Every change up to this sequence number is on disk.
    durable: u64,
    /// The current log; `None` while a leader writes to it.
    file: Option<File>,
    /// The current log as opened, to notice it being replaced.
    log_identity: Option<FileIdentity>,
    generation: u64,
    /// Set when a write, an fsync or the check that the journal is still in place failed: no
    /// change is accepted (and no waiter told its change is safe) until [`Journal::recover`].
    failed: Option<Failed>,
    /// When [`Journal::recover`] may next try.
    next_recovery: Instant,
    /// Changes in the logs since the snapshot.
    log_entries: u64,
    /// The current log's size with what is appended but not yet flushed.
    log_bytes: u64,
    /// Logs older than the current one that the installed snapshot does not cover yet
    /// (their generation, and the file, held open for its lock): a compaction switched logs
    /// and has not installed its snapshot, or could not. Removed once one is installed.
    older_logs: Vec<(u64, File)>,
    older_logs_bytes: u64,
    /// A compaction is under way (between [`Journal::claim_compaction`] and its end).
    compacting: bool,
    /// The log's size up to the last successful flush (what a failed flush is cut back to).
    flushed_log_bytes: u64,
    snapshot_bytes: u64,
    /// The log size (in entries) at which compaction is next tried.
    compact_at: u64,
    /// The log size (in bytes) at which compaction is next tried.
    compact_at_bytes: u64,
    /// How many flushes (write + fsync) ran, in total.
    flushes: u64,
    /// How many changes those flushes wrote, in total (changes a snapshot made durable
    /// before they were flushed are not counted).
    flushed_entries: u64,
    /// Changes appended but not yet in a flush (for the statistics).
    pending_entries: u64,
}

impl Shared {
    fn wants_compaction(&self) -> bool {
        let logs_bytes = self.log_bytes + self.older_logs_bytes;
        self.failed.is_none()
            && !self.compacting
            && (self.log_entries >= self.compact_at || logs_bytes >= self.compact_at_bytes)
            && logs_bytes >= self.snapshot_bytes
    }
}

impl<S: Recorded> Journal<S> {
    /// Opens (creating if missing) the journal in `dir`, replays snapshot + log into the
    /// state. A journal that does not read is refused with an error naming the file and
    /// line, and left untouched.
    pub fn open(dir: &Path) -> Result<(Journal<S>, S), JournalError> {
        Journal::open_on(dir, Arc::new(StdDisk))
    }

    /// [`Journal::open`], writing through `disk`.
    pub fn open_on(dir: &Path, disk: Arc<dyn Disk>) -> Result<(Journal<S>, S), JournalError> {
        Journal::open_with(dir, disk, Limits::DEFAULT)
    }

    fn open_with(
        dir: &Path,
        disk: Arc<dyn Disk>,
        limits: Limits,
    ) -> Result<(Journal<S>, S), JournalError> {
        prepare_directory(&*disk, dir)?;
        let dir_identity = std::fs::metadata(dir)
            .map(|metadata| identity_of(&metadata))
            .map_err(JournalError::io(Doing::Read, dir))?;
        let lock = lock_directory(&*disk, dir)?;
        let loaded = load(dir, LogAccess::Locked(&*disk))?;

        // Everything read: only now is anything changed on disk.
        for leftover in &loaded.leftovers {
            match disk.remove(leftover) {
                Ok(()) => log::debug!("journal: removed {}", leftover.display()),
                Err(error) => {
                    log::warn!("journal: could not remove {}: {error}", leftover.display())
                }
            }
        }
        let mut logs = loaded.logs;
        let mut current = match logs.pop() {
            Some(newest) => newest,
            None => {
                let generation = loaded.generation;
                let file = create_durable_log(&*disk, dir, &dir.join(log_name(generation)))?;
                LoadedLog {
                    generation,
                    file,
                    entries: 0,
                    valid_len: 0,
                    torn_bytes: 0,
                }
            }
        };
        for log in logs.iter_mut().chain([&mut current]) {
            cut_torn_tail(&*disk, dir, log)?;
        }
        let sequence_at_snapshot = loaded.sequence;
        let appended = sequence_at_snapshot
            + current.entries
            + logs.iter().map(|log| log.entries).sum::<u64>();
        let log_identity = current
            .file
            .metadata()
            .map(|metadata| identity_of(&metadata))
            .map_err(JournalError::io(
                Doing::Read,
                dir.join(log_name(current.generation)),
            ))?;
        log::debug!(
            "journal: snapshot of generation {} up to change {sequence_at_snapshot}, then {} changes in {} log(s)",
            loaded.generation,
            appended - sequence_at_snapshot,
            logs.len() + 1
        );
        let older_logs_bytes = logs.iter().map(|log| log.valid_len).sum();
        let chained = !logs.is_empty();
        let journal = Journal {
            dir: dir.to_path_buf(),
            dir_identity,
            disk,
            shared: Mutex::new(Shared {
                pending: Vec::new(),
                spare: Vec::new(),
                appended,
                durable: appended,
                file: Some(current.file),
                log_identity,
                generation: current.generation,
                failed: None,
                next_recovery: Instant::now(),
                log_entries: appended - sequence_at_snapshot,
                log_bytes: current.valid_len,
                older_logs: logs
                    .into_iter()
                    .map(|log| (log.generation, log.file))
                    .collect(),
                older_logs_bytes,
                compacting: false,
                flushed_log_bytes: current.valid_len,
                snapshot_bytes: loaded.snapshot_bytes,
                compact_at: limits.compact_after_entries,
                compact_at_bytes: limits.compact_after_bytes,
                flushes: 0,
                flushed_entries: 0,
                pending_entries: 0,
            }),
            flushed: Condvar::new(),
            limits,
            _lock: lock,
            state: PhantomData,
        };
        // A compaction switched logs and did not install its snapshot: one is written now,
        // so that the journal is a snapshot and one log again.
        if chained {
            log::info!("journal: finishing a compaction that a stop or a failure interrupted");
            journal.compact(&loaded.state);
        }
        Ok((journal, loaded.state))
    }

    /// Frames `change` into the write buffer and returns its ticket. Called while the caller
    /// holds the state lock, so the journal's order is the order changes are applied. Writes
    /// nothing: [`Journal::wait_until_durable`] does.
    pub fn append(&self, change: &S::Change) -> Result<Ticket, JournalError> {
        let json = serde_json::to_string(change).map_err(JournalError::Unserialisable)?;
        let mut shared = self.lock();
        if let Some(failed) = &shared.failed {
            return Err(failed.error());
        }
        let sequence = shared.appended + 1;
        let before = shared.pending.len();
        format::frame(&mut shared.pending, &format!("{sequence} {json}"));
        let written = (shared.pending.len() - before) as u64;
        shared.appended = sequence;
        shared.log_entries += 1;
        shared.log_bytes += written;
        shared.pending_entries += 1;
        Ok(Ticket(sequence))
    }

    /// The ticket of the last change appended so far (0 if none): once it is durable, so is
    /// everything a reader of the state could have seen.
    pub fn last_appended(&self) -> Ticket {
        Ticket(self.lock().appended)
    }

    /// The sequence number up to which every change is on disk (0 if none).
    pub fn durable(&self) -> u64 {
        self.lock().durable
    }

    /// `Ok` while changes are accepted; otherwise why not. Also checks (two `stat` calls)
    /// that `DATA_DIR` and the log are still the ones opened, so a health check notices a
    /// vanished journal even when no change comes.
    pub fn health(&self) -> Result<(), JournalError> {
        let mut shared = self.lock();
        if let Some(failed) = &shared.failed {
            return Err(failed.error());
        }
        let log_path = self.dir.join(log_name(shared.generation));
        self.check_in_place(&log_path, shared.log_identity)
            .map_err(|problem| self.fail_for_good(&mut shared, problem))
    }

    /// After a failure: forgets the changes that were appended but never made durable, and
    /// returns the sequence number the caller's state must be rolled back to. `None` while
    /// the journal works (nothing to roll back). Called under the caller's state lock.
    pub fn discard_undurable(&self) -> Option<u64> {
        // The common case, on every change: no failure, nothing to wait for.
        self.lock().failed.as_ref()?;
        // A flush that began before the failure may still make its changes durable: wait for
        // it, so what is rolled back is exactly what is not on disk. (None begins after.)
        let mut shared = self.wait_for_no_flush();
        shared.pending.clear();
        shared.pending_entries = 0;
        let undurable = shared.appended - shared.durable;
        shared.appended = shared.durable;
        shared.log_entries = shared.log_entries.saturating_sub(undurable);
        shared.log_bytes = shared.flushed_log_bytes;
        Some(shared.durable)
    }

    /// Tries to leave the failed state: writes `state` (rolled back to [`Journal::durable`]
    /// by the caller, under its state lock) as a fresh snapshot with an empty log, as a
    /// compaction does, and switches to them. `Ok` if changes are accepted (again); at most
    /// one try per [`RECOVERY_INTERVAL`], the others answer with the failure at once.
    pub fn recover(&self, state: &S) -> Result<(), JournalError> {
        let (generation, sequence, failure) = {
            let mut shared = self.lock();
            let Some(failed) = &shared.failed else {
                return Ok(());
            };
            let failure = failed.error();
            if failed.needs_restart || Instant::now() < shared.next_recovery {
                return Err(failure);
            }
            shared.next_recovery = Instant::now() + RECOVERY_INTERVAL;
            // The caller has not rolled back yet; or a compaction is still writing (it will
            // not install its snapshot now).
            if shared.appended != shared.durable || shared.compacting {
                return Err(failure);
            }
            if let Err(problem) = self.check_dir_in_place() {
                return Err(self.fail_for_good(&mut shared, problem));
            }
            (shared.generation, shared.durable, failure)
        };
        let next = generation + 1;
        let (file, snapshot_bytes) =
            self.write_fresh_snapshot(state, next, sequence)
                .map_err(|problem| {
                    log::warn!("journal: still cannot write: {problem}");
                    failure
                })?;
        let mut shared = self.wait_for_no_flush();
        shared.failed = None;
        let replaced = self.start_afresh(&mut shared, file, next, snapshot_bytes);
        drop(shared);
        self.remove_logs(replaced);
        log::warn!(
            "journal: recovered: the state up to change {sequence} is in a fresh snapshot (generation {next}); changes are accepted again"
        );
        Ok(())
    }

    /// The shared state once no flush is running (a flush holds the log file meanwhile).
    fn wait_for_no_flush(&self) -> MutexGuard<'_, Shared> {
        let mut shared = self.lock();
        while shared.file.is_none() {
            shared = self
                .flushed
                .wait(shared)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        shared
    }

    /// Makes `file` (the empty log of `generation`, after a snapshot holding every appended
    /// change) the current log. Returns the logs it replaces, for [`Journal::remove_logs`].
    fn start_afresh(
        &self,
        shared: &mut Shared,
        file: File,
        generation: u64,
        snapshot_bytes: u64,
    ) -> Vec<(u64, File)> {
        shared.log_identity = identity_of_file(&file);
        let mut replaced = std::mem::take(&mut shared.older_logs);
        if let Some(old) = shared.file.replace(file) {
            replaced.push((shared.generation, old));
        }
        shared.pending.clear();
        shared.pending_entries = 0;
        shared.durable = shared.appended;
        shared.generation = generation;
        shared.log_entries = 0;
        shared.log_bytes = 0;
        shared.older_logs_bytes = 0;
        shared.flushed_log_bytes = 0;
        shared.snapshot_bytes = snapshot_bytes;
        shared.compact_at = self.limits.compact_after_entries;
        shared.compact_at_bytes = self.limits.compact_after_bytes;
        self.flushed.notify_all();
        replaced
    }

    /// Closes and removes logs a snapshot has replaced.
    fn remove_logs(&self, logs: Vec<(u64, File)>) {
        for (generation, file) in logs {
            drop(file);
            let path = self.dir.join(log_name(generation));
            if let Err(error) = self.disk.remove(&path) {
                log::warn!(
                    "journal: could not remove {} (it is removed at the next start): {error}",
                    path.display()
                );
            }
        }
    }

    /// Marks the journal failed (recoverable) and wakes the waiters, who then get the error,
    /// which is returned.
    fn fail(&self, shared: &mut Shared, problem: JournalError) -> JournalError {
        log::error!(
            "journal: {problem}; changes are refused until the journal can be written again"
        );
        self.mark_failed(shared, problem, false)
    }

    /// Marks the journal failed until a restart: `DATA_DIR` is not the one opened.
    fn fail_for_good(&self, shared: &mut Shared, problem: JournalError) -> JournalError {
        log::error!("journal: {problem}; changes are refused until a restart, which loads what DATA_DIR holds then");
        self.mark_failed(shared, problem, true)
    }

    fn mark_failed(
        &self,
        shared: &mut Shared,
        problem: JournalError,
        needs_restart: bool,
    ) -> JournalError {
        let failed = Failed {
            cause: Arc::new(problem),
            needs_restart,
        };
        let error = failed.error();
        shared.failed = Some(failed);
        self.flushed.notify_all();
        error
    }

    /// `Ok` if `DATA_DIR` is still the directory opened.
    fn check_dir_in_place(&self) -> Result<(), JournalError> {
        check_same_file(Watched::DataDir, &self.dir, self.dir_identity)
    }

    /// `Ok` if `DATA_DIR` and the log at `log_path` are still the ones opened.
    fn check_in_place(
        &self,
        log_path: &Path,
        log_identity: Option<FileIdentity>,
    ) -> Result<(), JournalError> {
        self.check_dir_in_place()?;
        check_same_file(Watched::Log, log_path, log_identity)
    }

    /// Creates the next generation's empty log, then writes and installs the snapshot.
    /// Returns the new log and the snapshot's size. Until the snapshot is renamed into
    /// place, a failure removes the new log: the journal on disk is the one before.
    fn write_fresh_snapshot(
        &self,
        state: &S,
        generation: u64,
        sequence: u64,
    ) -> Result<(File, u64), JournalError> {
        let log_path = self.dir.join(log_name(generation));
        let file = create_durable_log(&*self.disk, &self.dir, &log_path)?;
        let snapshot = SnapshotOut {
            format: FORMAT,
            generation,
            sequence,
            state,
        };
        let snapshot_bytes = self
            .install_snapshot(&snapshot, || Ok(()))
            .inspect_err(|_| drop(self.disk.remove(&log_path)))?;
        // From here the new snapshot may be the one on disk: the new log must be used.
        self.sync_dir()?;
        Ok((file, snapshot_bytes))
    }

    /// Writes `snapshot` to `state.snapshot.tmp`, fsyncs it, and renames it over
    /// `state.snapshot` if `may_install` still agrees. Returns its size. A snapshot not
    /// installed is removed, and the one before stays.
    fn install_snapshot<F: Serialize>(
        &self,
        snapshot: &SnapshotOut<F>,
        may_install: impl FnOnce() -> Result<(), JournalError>,
    ) -> Result<u64, JournalError> {
        let tmp_path = self.dir.join(SNAPSHOT_TMP);
        let installed = self
            .write_snapshot_file(&tmp_path, snapshot)
            .and_then(|bytes| {
                may_install()?;
                self.disk
                    .rename(&tmp_path, &self.dir.join(SNAPSHOT))
                    .map_err(JournalError::io(Doing::InstallSnapshot, &tmp_path))?;
                Ok(bytes)
            });
        if installed.is_err() {
            drop(self.disk.remove(&tmp_path));
        }
        installed
    }

    /// Writes `snapshot` as the whole of the file at `path`, and fsyncs it.
    fn write_snapshot_file<F: Serialize>(
        &self,
        path: &Path,
        snapshot: &SnapshotOut<F>,
    ) -> Result<u64, JournalError> {
        let disk = &*self.disk;
        let written = disk.create(path).and_then(|mut file| {
            disk.set_len(&file, 0)?;
            let mut out = WriteThrough {
                disk,
                file: &mut file,
            };
            let bytes = format::write_snapshot(&mut out, snapshot)?;
            disk.sync_all(&file)?;
            Ok(bytes)
        });
        written.map_err(JournalError::io(Doing::WriteSnapshot, path))
    }

    /// Makes `DATA_DIR`'s entries (a created log, a renamed snapshot) durable.
    fn sync_dir(&self) -> Result<(), JournalError> {
        self.disk
            .sync_dir(&self.dir)
            .map_err(JournalError::io(Doing::SyncDirectory, &self.dir))
    }

    /// Blocks until the change of `ticket` (and every change appended before it) is written
    /// and fsynced. Concurrent waiters share one flush: whoever finds no flush running writes
    /// everything buffered and fsyncs, the others wait for it.
    pub fn wait_until_durable(&self, ticket: Ticket) -> Result<(), JournalError> {
        let mut shared = self.lock();
        loop {
            if shared.durable >= ticket.0 {
                return Ok(());
            }
            if let Some(failed) = &shared.failed {
                return Err(failed.error());
            }
            let Some(mut file) = shared.file.take() else {
                shared = self
                    .flushed
                    .wait(shared)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            };
            // Lead a flush of everything buffered so far.
            let spare = std::mem::take(&mut shared.spare);
            let mut bytes = std::mem::replace(&mut shared.pending, spare);
            let upto = shared.appended;
            let entries = std::mem::take(&mut shared.pending_entries);
            let log_path = self.dir.join(log_name(shared.generation));
            let log_identity = shared.log_identity;
            let flushed_log_bytes = shared.flushed_log_bytes;
            drop(shared);

            let written = self
                .disk
                .write(&mut file, &bytes)
                .and_then(|()| self.disk.sync_data(&file));
            let result = match written {
                Ok(()) => self.check_in_place(&log_path, log_identity),
                Err(error) => {
                    cut_back(&*self.disk, &file, flushed_log_bytes);
                    Err(JournalError::io(Doing::Append, log_path)(error))
                }
            };

            shared = self.lock();
            shared.file = Some(file);
            match result {
                Ok(()) => {
                    shared.durable = shared.durable.max(upto);
                    shared.flushed_log_bytes += bytes.len() as u64;
                    shared.flushes += 1;
                    shared.flushed_entries += entries;
                }
                // Not the directory or the log opened: only a restart goes on.
                Err(problem @ JournalError::Moved { .. }) => {
                    self.fail_for_good(&mut shared, problem);
                }
                Err(problem) => {
                    self.fail(&mut shared, problem);
                }
            }
            bytes.clear();
            shared.spare = bytes;
            self.flushed.notify_all();
        }
    }

    /// How many flushes (write + fsync) ran and how many changes they wrote, since opening.
    pub fn flush_statistics(&self) -> (u64, u64) {
        let shared = self.lock();
        (shared.flushes, shared.flushed_entries)
    }

    /// The journal's size on disk: the snapshot and the log (with what is being flushed).
    pub fn size_bytes(&self) -> u64 {
        let shared = self.lock();
        shared.snapshot_bytes + shared.older_logs_bytes + shared.log_bytes
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // Nothing panics while holding this lock in a way that leaves it inconsistent.
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
pub(crate) mod test_disk;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod failure_tests;
