//! A durable state: a snapshot plus an append-only log of changes, with group commit.
//!
//! The journal knows nothing of what it stores: its tenant is any state that implements
//! [`Recorded`] (the echo service's state is the one in this program). The state says what a
//! change is and how to apply one; the journal frames, checksums, fsyncs and replays them.
//!
//! # On disk (all in `DATA_DIR`)
//!
//! | file | what |
//! | --- | --- |
//! | `state.snapshot` | one line: the whole state up to a sequence number, and the generation of the log that follows it |
//! | `changes.<G>.log` | one line per change made after the snapshot of generation `G` |
//! | `state.snapshot.tmp` | a snapshot being written (removed at start: an interrupted compaction) |
//! | `journal.lock` | held (an OS file lock) while a process uses the directory |
//!
//! The current log is locked as well, from its creation until it is replaced: removing
//! `journal.lock` while the journal runs (a "stale lock" clean-up) does not let a second
//! process in, because it finds the log locked before it changes anything.
//!
//! Every line is `<crc> <payload>\n`: `crc` is the CRC-32 (IEEE, as zlib and PNG use it;
//! computed by `crc32fast`) of the payload's bytes as 8 lowercase hex digits. A snapshot's
//! payload is `{"format":1,"generation":G,"sequence":S,"state":{...}}`; a log line's payload is
//! `<sequence> <change as JSON>`, the sequences counting up by one from `S + 1`.
//!
//! # Loading
//!
//! The snapshot (if any) is read, then its generation's log is replayed, then the logs of the
//! next generations if there are any (a compaction that switched logs but did not install
//! its snapshot left them; each continues the sequence of the one before, and the
//! compaction is finished at once). Only a torn tail is forgiven: bytes after the last line
//! end are a write a crash interrupted, never acknowledged, and are cut off (in the last log
//! that holds anything). A complete line (one that ends with a line end) was written whole,
//! so if it fails its checksum, even as the last line, the disk changed it: that and anything
//! else that does not read (a bad snapshot, a sequence out of order, a missing log, a gap in
//! the generations) stops start-up with a message naming the file and line, and nothing in
//! the directory is changed.
//!
//! # Reading without writing
//!
//! [`read_only`] reads the state the same way for a copy taken elsewhere, and writes
//! nothing: it takes no lock (a journal in use is read as its files stand), removes no
//! leftover, creates no log and leaves a torn tail in place (and says so).
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
//!
//! # Compaction
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
//! # Secrets at rest
//!
//! The journal may hold secrets (the echo service's binding passwords and dashboard tokens),
//! so on Unix `DATA_DIR` is
//! created 0700 and every journal file 0600 (a `DATA_DIR` that already exists with wider
//! access is reported at start, not changed: it may be shared on purpose).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
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

const SNAPSHOT: &str = "state.snapshot";
const SNAPSHOT_TMP: &str = "state.snapshot.tmp";
const LOCK: &str = "journal.lock";
const FORMAT: u32 = 1;

fn log_name(generation: u64) -> String {
    format!("changes.{generation}.log")
}

/// The generation of a log file's name, `None` for any other name.
fn log_generation(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("changes.")?.strip_suffix(".log")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What a journal can keep: a state that starts empty, is saved and loaded whole (the
/// snapshot), and changes only through [`Recorded::apply`] (the log). Replaying the log's
/// changes onto the snapshot must give back the state that was live when they were appended.
pub trait Recorded: Default + Serialize + DeserializeOwned {
    /// One change, as the log records it.
    type Change: Serialize + DeserializeOwned;

    /// Applies `change` (live, or replayed from the log at start).
    fn apply(&mut self, change: Self::Change);
}

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
    reason: String,
    /// `DATA_DIR` vanished: only a restart (which loads what is there now) goes on.
    needs_restart: bool,
}

/// What tells a file apart from another one later put at its path: device and inode on
/// Unix. Elsewhere std offers no stable equivalent, so only the path's existence is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
}

#[cfg(unix)]
fn identity_of(metadata: &Metadata) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    Some(FileIdentity {
        device: metadata.dev(),
        inode: metadata.ino(),
    })
}

#[cfg(not(unix))]
fn identity_of(_metadata: &Metadata) -> Option<FileIdentity> {
    None
}

/// The durable journal of a state `S`.
pub struct Journal<S> {
    dir: PathBuf,
    /// `DATA_DIR` as opened, to notice it being removed, renamed or replaced.
    dir_identity: Option<FileIdentity>,
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

#[derive(Serialize)]
struct SnapshotOut<'a, S> {
    format: u32,
    generation: u64,
    sequence: u64,
    state: &'a S,
}

#[derive(Deserialize)]
struct SnapshotIn<S> {
    format: u32,
    generation: u64,
    sequence: u64,
    state: S,
}

/// What was read from the directory at start.
struct Loaded<S> {
    state: S,
    generation: u64,
    /// The snapshot's sequence number: the logs continue from the next.
    sequence: u64,
    snapshot_bytes: u64,
    /// The logs that follow the snapshot, oldest first: its own generation's, then those of
    /// a compaction that switched logs but did not install its snapshot. Empty if there is
    /// none yet.
    logs: Vec<LoadedLog>,
    /// Files that a finished or interrupted compaction left behind.
    leftovers: Vec<PathBuf>,
}

/// One log read at start, open (and locked, unless read for a read-only copy).
struct LoadedLog {
    generation: u64,
    file: File,
    entries: u64,
    /// The length of its complete lines (a torn tail beyond it is cut off when the journal
    /// opens).
    valid_len: u64,
    torn_bytes: u64,
}

impl<S: Recorded> Journal<S> {
    /// Opens (creating if missing) the journal in `dir`, replays snapshot + log into the
    /// state. A journal that does not read is refused with a message naming the file
    /// and line, and left untouched.
    pub fn open(dir: &Path) -> Result<(Journal<S>, S), String> {
        Journal::open_with(dir, Limits::DEFAULT)
    }

    fn open_with(dir: &Path, limits: Limits) -> Result<(Journal<S>, S), String> {
        prepare_directory(dir)?;
        let dir_identity = std::fs::metadata(dir)
            .map(|metadata| identity_of(&metadata))
            .map_err(|error| format!("{}: cannot read: {error}", dir.display()))?;
        let lock = lock_directory(dir)?;
        let loaded = load(dir, LogAccess::Locked)?;

        // Everything read: only now is anything changed on disk.
        for leftover in &loaded.leftovers {
            match std::fs::remove_file(leftover) {
                Ok(()) => log::debug!("journal: removed {}", leftover.display()),
                Err(error) => {
                    log::warn!("journal: could not remove {}: {error}", leftover.display())
                }
            }
        }
        let mut logs = loaded.logs;
        if logs.is_empty() {
            let generation = loaded.generation;
            let log_path = dir.join(log_name(generation));
            let file = create_locked_log(&log_path)
                .and_then(|file| file.sync_all().map(|()| file))
                .and_then(|file| sync_dir(dir).map(|()| file))
                .map_err(|error| format!("{}: cannot create: {error}", log_path.display()))?;
            logs.push(LoadedLog {
                generation,
                file,
                entries: 0,
                valid_len: 0,
                torn_bytes: 0,
            });
        }
        for log in &mut logs {
            cut_torn_tail(dir, log)?;
        }
        let sequence_at_snapshot = loaded.sequence;
        let appended = sequence_at_snapshot + logs.iter().map(|log| log.entries).sum::<u64>();
        let Some(current) = logs.pop() else {
            return Err(format!("{}: no log to write to", dir.display()));
        };
        let log_path = dir.join(log_name(current.generation));
        let log_identity = current
            .file
            .metadata()
            .map(|metadata| identity_of(&metadata))
            .map_err(|error| format!("{}: cannot read: {error}", log_path.display()))?;
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
    pub fn append(&self, change: &S::Change) -> Result<Ticket, String> {
        let json = serde_json::to_string(change)
            .map_err(|error| format!("cannot serialise a change: {error}"))?;
        let mut shared = self.lock();
        if let Some(failed) = &shared.failed {
            return Err(failed.reason.clone());
        }
        let sequence = shared.appended + 1;
        let before = shared.pending.len();
        frame(&mut shared.pending, &format!("{sequence} {json}"));
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

    /// `Ok` while changes are accepted; otherwise why not. Also checks (two `stat` calls)
    /// that `DATA_DIR` and the log are still the ones opened, so a health check notices a
    /// vanished journal even when no change comes.
    pub fn health(&self) -> Result<(), String> {
        let mut shared = self.lock();
        if let Some(failed) = &shared.failed {
            return Err(failed.reason.clone());
        }
        let log_path = self.dir.join(log_name(shared.generation));
        self.check_in_place(&log_path, shared.log_identity)
            .inspect_err(|problem| self.fail_for_good(&mut shared, problem.clone()))
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
    pub fn recover(&self, state: &S) -> Result<(), String> {
        let (generation, sequence, failure) = {
            let mut shared = self.lock();
            let Some(failed) = &shared.failed else {
                return Ok(());
            };
            let failure = failed.reason.clone();
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
                self.fail_for_good(&mut shared, problem.clone());
                return Err(problem);
            }
            (shared.generation, shared.durable, failure)
        };
        let next = generation + 1;
        let (file, snapshot_bytes) = self.write_snapshot(state, next, sequence).map_err(
            |(Failure::Retry(problem) | Failure::Fatal(problem))| {
                log::warn!("journal: still cannot write: {problem}");
                failure
            },
        )?;
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
        let created = create_locked_log(&log_path)
            .and_then(|file| file.sync_all().map(|()| file))
            .and_then(|file| sync_dir(&self.dir).map(|()| file));
        match created {
            Ok(file) => Some(NextLog { file, generation }),
            Err(error) => {
                drop(std::fs::remove_file(&log_path));
                self.postpone_compaction(&format!("{}: {error}", log_path.display()));
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
        let abandon = |problem: Option<String>| {
            drop(std::fs::remove_file(
                self.dir.join(log_name(next_log.generation)),
            ));
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
            abandon(Some("the logs changed meanwhile".into()));
            return None;
        }
        let NextLog { file, generation } = next_log;
        shared.log_identity = file.metadata().ok().and_then(|m| identity_of(&m));
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
        let tmp_path = self.dir.join(SNAPSHOT_TMP);
        let snapshot_path = self.dir.join(SNAPSHOT);
        let written = write_framed_snapshot(&tmp_path, &snapshot)
            .map_err(|error| format!("{}: {error}", tmp_path.display()))
            .and_then(|bytes| {
                if let Some(failed) = &self.lock().failed {
                    // Recovery writes a snapshot of its own.
                    return Err(format!("not installed: {}", failed.reason));
                }
                std::fs::rename(&tmp_path, &snapshot_path)
                    .map(|()| bytes)
                    .map_err(|error| {
                        format!(
                            "renaming {} to {}: {error}",
                            tmp_path.display(),
                            snapshot_path.display()
                        )
                    })
            });
        let snapshot_bytes = match written {
            Ok(bytes) => bytes,
            Err(problem) => {
                drop(std::fs::remove_file(&tmp_path));
                self.postpone_compaction(&problem);
                return false;
            }
        };
        // From here the new snapshot may be the one on disk.
        if let Err(error) = sync_dir(&self.dir) {
            let mut shared = self.lock();
            shared.compacting = false;
            self.fail(
                &mut shared,
                format!(
                    "compaction could not be made durable ({}: {error})",
                    self.dir.display()
                ),
            );
            return false;
        }
        let (replaced, entries, flushes, flushed_entries) = {
            let mut shared = self.lock();
            shared.compacting = false;
            shared.snapshot_bytes = snapshot_bytes;
            shared.log_entries = shared.appended - switched.sequence;
            shared.older_logs_bytes = 0;
            shared.compact_at = self.limits.compact_after_entries;
            shared.compact_at_bytes = self.limits.compact_after_bytes;
            let replaced = std::mem::take(&mut shared.older_logs);
            (
                replaced,
                switched.sequence,
                shared.flushes,
                shared.flushed_entries,
            )
        };
        self.remove_logs(replaced);
        log::debug!(
            "journal: compacted the changes up to {entries} into a snapshot of {snapshot_bytes} bytes (generation {}); {flushed_entries} changes written in {flushes} flushes so far",
            switched.generation
        );
        true
    }

    /// After a compaction that could not be made: logs the problem, and tries again once
    /// the logs have grown as much again.
    fn postpone_compaction(&self, problem: &str) {
        log::error!("journal: compaction failed, keeping the current logs: {problem}");
        let mut shared = self.lock();
        shared.compacting = false;
        shared.compact_at = shared.log_entries + self.limits.compact_after_entries;
        shared.compact_at_bytes =
            shared.log_bytes + shared.older_logs_bytes + self.limits.compact_after_bytes;
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
        shared.log_identity = file.metadata().ok().and_then(|m| identity_of(&m));
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
            if let Err(error) = std::fs::remove_file(&path) {
                log::warn!(
                    "journal: could not remove {} (it is removed at the next start): {error}",
                    path.display()
                );
            }
        }
    }

    /// Marks the journal failed (recoverable) and wakes the waiters, who then get the error.
    fn fail(&self, shared: &mut Shared, problem: String) {
        log::error!(
            "journal: {problem}; changes are refused until the journal can be written again"
        );
        shared.failed = Some(Failed {
            reason: problem,
            needs_restart: false,
        });
        self.flushed.notify_all();
    }

    /// Marks the journal failed until a restart: `DATA_DIR` is not the one opened.
    fn fail_for_good(&self, shared: &mut Shared, problem: String) {
        log::error!("journal: {problem}; changes are refused until a restart, which loads what DATA_DIR holds then");
        shared.failed = Some(Failed {
            reason: problem,
            needs_restart: true,
        });
        self.flushed.notify_all();
    }

    /// `Ok` if `DATA_DIR` is still the directory opened.
    fn check_dir_in_place(&self) -> Result<(), String> {
        check_same_file(&self.dir, self.dir_identity)
            .map_err(|problem| format!("DATA_DIR {problem}"))
    }

    /// `Ok` if `DATA_DIR` and the log at `log_path` are still the ones opened.
    fn check_in_place(
        &self,
        log_path: &Path,
        log_identity: Option<FileIdentity>,
    ) -> Result<(), String> {
        self.check_dir_in_place()?;
        check_same_file(log_path, log_identity)
            .map_err(|problem| format!("the journal's log {problem}"))
    }

    /// Creates the next generation's empty log, then writes and installs the snapshot.
    /// Returns the new log and the snapshot's size.
    fn write_snapshot(
        &self,
        state: &S,
        generation: u64,
        sequence: u64,
    ) -> Result<(File, u64), Failure> {
        let log_path = self.dir.join(log_name(generation));
        let file = create_locked_log(&log_path)
            .and_then(|file| file.sync_all().map(|()| file))
            .and_then(|file| sync_dir(&self.dir).map(|()| file))
            .map_err(|error| Failure::Retry(format!("{}: {error}", log_path.display())))?;
        let forget_log = |problem: String| {
            drop(std::fs::remove_file(&log_path));
            Failure::Retry(problem)
        };

        let snapshot = SnapshotOut {
            format: FORMAT,
            generation,
            sequence,
            state,
        };
        let tmp_path = self.dir.join(SNAPSHOT_TMP);
        let snapshot_bytes = match write_framed_snapshot(&tmp_path, &snapshot) {
            Ok(bytes) => bytes,
            Err(error) => {
                drop(std::fs::remove_file(&tmp_path));
                return Err(forget_log(format!("{}: {error}", tmp_path.display())));
            }
        };
        let snapshot_path = self.dir.join(SNAPSHOT);
        if let Err(error) = std::fs::rename(&tmp_path, &snapshot_path) {
            drop(std::fs::remove_file(&tmp_path));
            return Err(forget_log(format!(
                "renaming {} to {}: {error}",
                tmp_path.display(),
                snapshot_path.display()
            )));
        }
        // From here the new snapshot may be the one on disk: the new log must be used.
        sync_dir(&self.dir)
            .map_err(|error| Failure::Fatal(format!("{}: {error}", self.dir.display())))?;
        Ok((file, snapshot_bytes))
    }

    /// Blocks until the change of `ticket` (and every change appended before it) is written
    /// and fsynced. Concurrent waiters share one flush: whoever finds no flush running writes
    /// everything buffered and fsyncs, the others wait for it.
    pub fn wait_until_durable(&self, ticket: Ticket) -> Result<(), String> {
        let mut shared = self.lock();
        loop {
            if shared.durable >= ticket.0 {
                return Ok(());
            }
            if let Some(failed) = &shared.failed {
                return Err(failed.reason.clone());
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

            let result = match file.write_all(&bytes).and_then(|()| file.sync_data()) {
                Ok(()) => self
                    .check_in_place(&log_path, log_identity)
                    .map_err(FlushFailure::Vanished),
                Err(error) => {
                    cut_back(&file, flushed_log_bytes);
                    Err(FlushFailure::Write(format!(
                        "writing {} failed: {error}",
                        log_path.display()
                    )))
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
                Err(FlushFailure::Write(problem)) => self.fail(&mut shared, problem),
                Err(FlushFailure::Vanished(problem)) => self.fail_for_good(&mut shared, problem),
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

/// Why a flush did not make its changes durable.
enum FlushFailure {
    /// A write or fsync failed: a fresh snapshot may recover.
    Write(String),
    /// `DATA_DIR` or the log is not the one opened any more.
    Vanished(String),
}

/// Why a compaction did not finish.
enum Failure {
    /// Nothing changed for good: the old snapshot and log stay in use.
    Retry(String),
    /// The new snapshot may or may not be the one on disk.
    Fatal(String),
}

/// Creates `dir` if missing (0700 on Unix: the journal holds secrets), or warns if an
/// existing one is open to others.
fn prepare_directory(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        warn_if_shared(dir);
        return Ok(());
    }
    log::info!(
        "journal: {} does not exist: it is created, with no instances",
        dir.display()
    );
    private_directory_builder()
        .create(dir)
        .and_then(|()| match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
            _ => Ok(()),
        })
        .map_err(|error| format!("{}: cannot create the directory: {error}", dir.display()))
}

#[cfg(unix)]
fn private_directory_builder() -> std::fs::DirBuilder {
    use std::os::unix::fs::DirBuilderExt;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    builder
}

#[cfg(not(unix))]
fn private_directory_builder() -> std::fs::DirBuilder {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    builder
}

#[cfg(unix)]
fn warn_if_shared(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = std::fs::metadata(dir) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            log::warn!(
                "journal: {} has mode {mode:o}: others may read binding passwords and dashboard tokens; chmod 700 it",
                dir.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_dir: &Path) {}

/// Options for a journal file: created 0600 on Unix (it holds secrets).
#[cfg(unix)]
fn private_file() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    options.mode(0o600);
    options
}

#[cfg(not(unix))]
fn private_file() -> OpenOptions {
    OpenOptions::new()
}

/// `Ok` if `path` still names the file that had `identity` (or, without identities, exists).
fn check_same_file(path: &Path, identity: Option<FileIdentity>) -> Result<(), String> {
    let metadata = std::fs::metadata(path).map_err(|error| {
        format!(
            "{} was removed or renamed while in use ({error})",
            path.display()
        )
    })?;
    if identity.is_some() && identity_of(&metadata) != identity {
        return Err(format!("{} was replaced while in use", path.display()));
    }
    Ok(())
}

/// After a failed write: cuts the log back to what earlier flushes made durable, so a restart
/// does not replay changes that were refused. Best effort: a torn or unacknowledged tail is
/// harmless anyway, and the log is not written again.
fn cut_back(file: &File, durable_len: u64) {
    if let Err(error) = file.set_len(durable_len).and_then(|()| file.sync_all()) {
        log::warn!("journal: could not cut the failed log back to {durable_len} bytes: {error}");
    }
}

/// Takes the OS lock on `journal.lock`, so two processes never write the same journal.
fn lock_directory(dir: &Path) -> Result<File, String> {
    let path = dir.join(LOCK);
    let file = private_file()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|error| format!("{}: cannot open: {error}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "{}: another process is using this journal",
            path.display()
        )),
        Err(std::fs::TryLockError::Error(error)) => {
            log::warn!(
                "journal: {}: cannot lock ({error}); make sure no other process uses {}",
                path.display(),
                dir.display()
            );
            Ok(file)
        }
    }
}

/// A journal's state as [`read_only`] read it.
pub struct ReadOnlyCopy<S> {
    pub state: S,
    /// An incomplete last line that was left out of the state, and left in place.
    pub torn_tail: Option<TornTail>,
}

/// Bytes after the last line end of a log: a write that a crash interrupted (or, in a
/// journal in use, one under way), never acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub log: PathBuf,
    pub bytes: u64,
}

/// How many times [`read_only`] reads a journal that fails to read while a process writes it.
const READ_ATTEMPTS: u32 = 3;

/// Reads the state of the journal in `dir` as [`Journal::open`] would load it, for a copy
/// taken elsewhere (such as an import into another store), without writing anything: every
/// file is opened for reading only, no lock is taken and no lock file made, nothing is
/// created or removed, and a torn tail is left out of the state but left in place (see
/// [`ReadOnlyCopy::torn_tail`]).
///
/// A journal that another process holds open is read too, without its lock: the copy is
/// then of the durable state at the moment it is read (with perhaps the changes being made
/// durable just then, and none made after), and a read that fails while the files change
/// is made again. On Windows, whose file locks bar reads as well as writes, the logs of a
/// journal in use cannot be read: the message says to stop its process first.
///
/// Refused with a message naming `dir`: a directory that does not exist, something that is
/// not a directory, a directory with neither a snapshot nor a log (reading it would pass an
/// empty state off as a journal's); and whatever [`Journal::open`] refuses, with the same
/// message.
pub fn read_only<S: Recorded>(dir: &Path) -> Result<ReadOnlyCopy<S>, String> {
    refuse_unless_journal(dir)?;
    let loaded = load_read_only::<S>(dir)?;
    let torn_tail = loaded
        .logs
        .iter()
        .find(|log| log.torn_bytes > 0)
        .map(|log| TornTail {
            log: dir.join(log_name(log.generation)),
            bytes: log.torn_bytes,
        });
    Ok(ReadOnlyCopy {
        state: loaded.state,
        torn_tail,
    })
}

/// `Ok` if `dir` is a directory that holds a snapshot or a log.
fn refuse_unless_journal(dir: &Path) -> Result<(), String> {
    let metadata = std::fs::metadata(dir).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => format!("{}: does not exist", dir.display()),
        _ => format!("{}: cannot read: {error}", dir.display()),
    })?;
    if !metadata.is_dir() {
        return Err(format!("{}: is not a directory", dir.display()));
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|error| format!("{}: cannot list: {error}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|error| format!("{}: cannot list: {error}", dir.display()))?;
        let name = entry.file_name();
        if name == SNAPSHOT || name.to_str().and_then(log_generation).is_some() {
            return Ok(());
        }
    }
    Err(format!(
        "{} is not an echo service journal (no {SNAPSHOT} or changes.N.log)",
        dir.display()
    ))
}

/// [`load`] with logs opened for reading only, without their locks. A process that holds
/// the journal may write it meanwhile: a log read before its last lines were flushed and the
/// next log read after (a compaction switched logs), or a log removed before it was opened
/// (a compaction replaced it), look like damage. So a read that fails while the files
/// changed is made again. A read that succeeds is of a state the journal went through:
/// every file was open before a new snapshot replaced them, and a log read early that
/// lacks lines is the end of what is read.
fn load_read_only<S: Recorded>(dir: &Path) -> Result<Loaded<S>, String> {
    let mut last_problem = String::new();
    for _ in 0..READ_ATTEMPTS {
        let before = stamps_in(dir);
        match load(dir, LogAccess::ReadOnly) {
            Ok(loaded) => return Ok(loaded),
            Err(problem) if stamps_in(dir) == before => return Err(problem),
            Err(problem) => {
                log::debug!("journal: {problem}; the files changed meanwhile: reading again");
                last_problem = problem;
            }
        }
    }
    Err(format!(
        "{last_problem} (the journal changed while it was read, {READ_ATTEMPTS} times: a process is writing it; try again, or stop that process first)"
    ))
}

/// The stamp of every file in `dir`, by name (none if it cannot be listed).
fn stamps_in(dir: &Path) -> BTreeMap<std::ffi::OsString, Option<Stamp>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .map(|entry| (entry.file_name(), stamp_of(&entry.path())))
        .collect()
}

/// How [`load`] opens the logs it reads.
#[derive(Debug, Clone, Copy)]
enum LogAccess {
    /// For reading and writing, and locked: the journal goes on writing them.
    Locked,
    /// For reading only, and not locked: a copy of the state is taken, the journal stays
    /// its owner's.
    ReadOnly,
}

impl LogAccess {
    /// The existing log at `path`, opened this way; `None` if it does not exist.
    fn open(self, path: &Path) -> Result<Option<File>, String> {
        match self {
            LogAccess::Locked => open_locked_log(path),
            LogAccess::ReadOnly => open_for_reading(path),
        }
    }
}

/// Reads the snapshot and the logs that follow it, changing nothing on disk.
///
/// The snapshot of generation `G` is followed by the log of generation `G`, and possibly by
/// those of `G + 1`, `G + 2`, ...: a compaction switches to a new log before it writes its
/// snapshot, and a stop or a failure may come in between. Each log continues the sequence
/// numbers of the one before. A gap in the generations, or a log that does not continue the
/// one before, is damage.
fn load<S: Recorded>(dir: &Path, access: LogAccess) -> Result<Loaded<S>, String> {
    let snapshot_path = dir.join(SNAPSHOT);
    let snapshot_before = stamp_of(&snapshot_path);
    let mut leftovers = Vec::new();
    let tmp_path = dir.join(SNAPSHOT_TMP);
    if tmp_path.exists() {
        leftovers.push(tmp_path);
    }

    let (mut state, generation, sequence, snapshot_bytes) = match read_file(&snapshot_path)? {
        None => (S::default(), 0, 0, 0),
        Some(bytes) => {
            let snapshot =
                parse_snapshot(&bytes).map_err(|problem| corrupt(&snapshot_path, 1, &problem))?;
            (
                snapshot.state,
                snapshot.generation,
                snapshot.sequence,
                bytes.len() as u64,
            )
        }
    };

    // Logs newer than the snapshot, by generation, with their sizes.
    let mut newer = BTreeMap::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|error| format!("{}: cannot list: {error}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|error| format!("{}: cannot list: {error}", dir.display()))?;
        let name = entry.file_name();
        let Some(found) = name.to_str().and_then(log_generation) else {
            continue;
        };
        let path = entry.path();
        if found < generation {
            leftovers.push(path);
        } else if found > generation {
            let size = entry
                .metadata()
                .map_err(|error| format!("{}: cannot read: {error}", path.display()))?
                .len();
            newer.insert(found, (path, size));
        }
    }

    let snapshot_named = || {
        if generation == 0 && !snapshot_path.exists() {
            format!("{} is missing", snapshot_path.display())
        } else {
            format!("{} is of generation {generation}", snapshot_path.display())
        }
    };
    let log_path = dir.join(log_name(generation));
    let Some(first) = access.open(&log_path)? else {
        // No log of the snapshot's generation: a fresh journal, or damage.
        if generation > 0 {
            return Err(format!(
                "{}: missing, but {} needs it; the journal is inconsistent and was left untouched: restore it from a backup or move it away",
                log_path.display(),
                snapshot_path.display()
            ));
        }
        if let Some((found, (path, _))) = newer.iter().find(|(_, (_, size))| *size > 0) {
            return Err(format!(
                "{}: a log of generation {found} but {}, and so is {}; the journal is inconsistent and was left untouched: restore it from a backup or move it away",
                path.display(),
                snapshot_named(),
                log_path.display()
            ));
        }
        leftovers.extend(newer.into_values().map(|(path, _)| path));
        return Ok(Loaded {
            state,
            generation,
            sequence,
            snapshot_bytes,
            logs: Vec::new(),
            leftovers,
        });
    };
    let mut chain = vec![(generation, log_path, first)];
    while let Some((path, _)) = newer.remove(&(chain.len() as u64 + generation)) {
        let Some(file) = access.open(&path)? else {
            break;
        };
        chain.push((chain.len() as u64 + generation, path, file));
    }
    for (found, (path, size)) in newer {
        if size > 0 {
            return Err(format!(
                "{}: a log of generation {found} but {} and the logs after it stop at generation {}; the journal is inconsistent and was left untouched: restore it from a backup or move it away",
                path.display(),
                snapshot_named(),
                generation + chain.len() as u64 - 1
            ));
        }
        leftovers.push(path);
    }
    // Locked logs were locked by whoever used them: a compaction between reading the
    // snapshot and taking those locks would have replaced the snapshot. (Unlocked ones, see
    // `load_read_only`.)
    if stamp_of(&snapshot_path) != snapshot_before {
        return Err(format!(
            "{}: changed while it was read: another process is using this journal",
            snapshot_path.display()
        ));
    }

    let mut logs = Vec::new();
    let mut next_sequence = sequence;
    let mut torn_before: Option<PathBuf> = None;
    for (generation, path, file) in chain {
        let bytes = read_all(&file, &path)?;
        if let Some(torn) = torn_before.as_ref().filter(|_| !bytes.is_empty()) {
            return Err(corrupt(
                torn,
                0,
                "an incomplete last line in a log that a newer one follows",
            ));
        }
        let replayed = replay(&bytes, next_sequence, &mut state)
            .map_err(|(line, problem)| corrupt(&path, line, &problem))?;
        next_sequence += replayed.entries;
        let torn_bytes = bytes.len() as u64 - replayed.valid_len;
        if torn_bytes > 0 {
            torn_before = Some(path);
        }
        logs.push(LoadedLog {
            generation,
            file,
            entries: replayed.entries,
            valid_len: replayed.valid_len,
            torn_bytes,
        });
    }
    Ok(Loaded {
        state,
        generation,
        sequence,
        snapshot_bytes,
        logs,
        leftovers,
    })
}

/// Cuts a torn tail off `log` (bytes after its last line end: a write a crash interrupted,
/// never acknowledged), and leaves the file positioned at its end.
fn cut_torn_tail(dir: &Path, log: &mut LoadedLog) -> Result<(), String> {
    let path = dir.join(log_name(log.generation));
    if log.torn_bytes > 0 {
        log::warn!(
            "journal: {}: cut off an incomplete last line ({} bytes) that an interrupted write left",
            path.display(),
            log.torn_bytes
        );
        log.file
            .set_len(log.valid_len)
            .and_then(|()| log.file.sync_all())
            .map_err(|error| {
                format!(
                    "{}: cannot cut off the incomplete last line: {error}",
                    path.display()
                )
            })?;
        log.torn_bytes = 0;
    }
    log.file
        .seek(SeekFrom::Start(log.valid_len))
        .map(drop)
        .map_err(|error| format!("{}: cannot seek: {error}", path.display()))
}

fn corrupt(path: &Path, line: usize, problem: &str) -> String {
    format!(
        "{} line {line}: {problem}; the journal is corrupt and was left untouched: restore it from a backup or move it away",
        path.display()
    )
}

/// A file's bytes, `None` if it does not exist.
fn read_file(path: &Path) -> Result<Option<Vec<u8>>, String> {
    open_for_reading(path)?
        .map(|file| read_all(&file, path))
        .transpose()
}

/// Opens the existing file at `path` for reading only, taking no lock; `None` if it does not
/// exist. (std opens it sharing reads, writes and deletes on Windows too, so a process that
/// holds it open can go on writing, renaming and removing it.)
fn open_for_reading(path: &Path) -> Result<Option<File>, String> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(format!("{}: cannot open: {error}", path.display())),
    }
}

fn read_all(mut file: &File, path: &Path) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|error| cannot_read(path, &error))?;
    Ok(bytes)
}

/// Why `path` could not be read. On Windows a file lock bars reads through any other handle,
/// so a log that a running journal holds cannot be read at all: the message says what to do.
fn cannot_read(path: &Path, error: &std::io::Error) -> String {
    const ERROR_LOCK_VIOLATION: i32 = 33;
    if cfg!(windows) && error.raw_os_error() == Some(ERROR_LOCK_VIOLATION) {
        return format!(
            "{}: cannot read: another process holds it locked ({error}); stop the process that uses this journal, then try again",
            path.display()
        );
    }
    format!("{}: cannot read: {error}", path.display())
}

/// Opens the existing log at `path` for reading and appending, and locks it; `None` if it
/// does not exist. Changes nothing on disk.
fn open_locked_log(path: &Path) -> Result<Option<File>, String> {
    let file = match private_file().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("{}: cannot open: {error}", path.display())),
    };
    if !take_log_lock(&file, path) {
        return Err(format!(
            "{}: locked: another process is using this journal",
            path.display()
        ));
    }
    Ok(Some(file))
}

/// Creates (or empties) the log at `path` and locks it; emptied only once locked, so a log
/// another process holds is never cut.
fn create_locked_log(path: &Path) -> std::io::Result<File> {
    let file = private_file()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    if !take_log_lock(&file, path) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            "locked: another process is using this journal",
        ));
    }
    file.set_len(0)?;
    Ok(file)
}

/// Locks a log for this process: `false` if another process holds it. A filesystem that
/// cannot lock at all (some network mounts) gets a warning, as for `journal.lock`.
fn take_log_lock(file: &File, path: &Path) -> bool {
    match file.try_lock() {
        Ok(()) => true,
        Err(std::fs::TryLockError::WouldBlock) => false,
        Err(std::fs::TryLockError::Error(error)) => {
            log::warn!(
                "journal: {}: cannot lock ({error}); make sure no other process uses this journal",
                path.display()
            );
            true
        }
    }
}

/// What changes when a file is replaced or written: its identity, size and modification time.
type Stamp = (Option<FileIdentity>, u64, Option<std::time::SystemTime>);

/// The stamp of the file at `path`, `None` if it does not exist.
fn stamp_of(path: &Path) -> Option<Stamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((
        identity_of(&metadata),
        metadata.len(),
        metadata.modified().ok(),
    ))
}

fn parse_snapshot<S: Recorded>(bytes: &[u8]) -> Result<SnapshotIn<S>, String> {
    let Some(line) = bytes.strip_suffix(b"\n") else {
        return Err("the snapshot does not end with a line end".into());
    };
    if line.contains(&b'\n') {
        return Err("the snapshot has more than one line".into());
    }
    let payload = unframe(line)?;
    let snapshot: SnapshotIn<S> = serde_json::from_slice(payload)
        .map_err(|error| format!("the snapshot does not read: {error}"))?;
    if snapshot.format != FORMAT {
        return Err(format!(
            "format {} is not the one this program reads ({FORMAT})",
            snapshot.format
        ));
    }
    Ok(snapshot)
}

struct Replayed {
    entries: u64,
    valid_len: u64,
}

/// Applies the log's lines to `state`. Bytes after the last line end are left out (a torn
/// write); any bad complete line, the last one included, is an error `(line number, problem)`.
fn replay<S: Recorded>(
    log: &[u8],
    sequence: u64,
    state: &mut S,
) -> Result<Replayed, (usize, String)> {
    let mut offset = 0;
    let mut entries = 0;
    let mut line_number = 0;
    while offset < log.len() {
        line_number += 1;
        let rest = &log[offset..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            break; // incomplete: never acknowledged
        };
        let payload = unframe(&rest[..end]).map_err(|problem| (line_number, problem))?;
        let expected = sequence + entries + 1;
        let change = parse_entry::<S::Change>(payload, expected)
            .map_err(|problem| (line_number, problem))?;
        state.apply(change);
        entries += 1;
        offset += end + 1;
    }
    Ok(Replayed {
        entries,
        valid_len: offset as u64,
    })
}

fn parse_entry<C: DeserializeOwned>(payload: &[u8], expected: u64) -> Result<C, String> {
    let space = payload
        .iter()
        .position(|&b| b == b' ')
        .ok_or("no sequence number")?;
    let number = std::str::from_utf8(&payload[..space])
        .ok()
        .and_then(|digits| digits.parse::<u64>().ok())
        .ok_or("the sequence number does not read")?;
    if number != expected {
        return Err(format!("change {number} where change {expected} belongs"));
    }
    serde_json::from_slice(&payload[space + 1..])
        .map_err(|error| format!("change {number} does not read: {error}"))
}

/// Writes `snapshot` to `path` as one framed line (`<crc> <json>\n`) and fsyncs it. The JSON
/// is streamed through a checksumming writer, never held in memory whole: with many
/// instances the state's text would otherwise double the peak memory. Returns the size.
fn write_framed_snapshot<S: Serialize>(
    path: &Path,
    snapshot: &SnapshotOut<S>,
) -> std::io::Result<u64> {
    let mut file = private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(b"00000000 ")?;
    let (crc, written) = {
        // Buffered before the checksum, so it sums whole buffers, not serde's small pieces.
        let mut buffered = std::io::BufWriter::new(ChecksummingWriter {
            inner: &mut file,
            crc: crc32fast::Hasher::new(),
            written: 0,
        });
        serde_json::to_writer(&mut buffered, snapshot)?;
        let writer = buffered
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        writer.inner.write_all(b"\n")?;
        (writer.crc.finalize(), writer.written)
    };
    file.seek(SeekFrom::Start(0))?;
    file.write_all(format!("{crc:08x}").as_bytes())?;
    file.sync_all()?;
    Ok(written + 10)
}

/// Passes bytes on to `inner`, keeping the CRC-32 of everything that went through.
struct ChecksummingWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
    written: u64,
}

impl<W: Write> Write for ChecksummingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let count = self.inner.write(bytes)?;
        self.crc.update(&bytes[..count]);
        self.written += count as u64;
        Ok(count)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Appends `<crc> <payload>\n` to `out`.
fn frame(out: &mut Vec<u8>, payload: &str) {
    let crc = crc32fast::hash(payload.as_bytes());
    out.reserve(payload.len() + 10);
    for shift in (0..8).rev() {
        out.push(b"0123456789abcdef"[((crc >> (shift * 4)) & 0xf) as usize]);
    }
    out.push(b' ');
    out.extend_from_slice(payload.as_bytes());
    out.push(b'\n');
}

/// The payload of a framed line (without its line end), if its checksum matches.
fn unframe(line: &[u8]) -> Result<&[u8], String> {
    if line.len() < 9 || line[8] != b' ' {
        return Err("not a journal line (no checksum)".into());
    }
    let mut crc = 0u32;
    for &digit in &line[..8] {
        let value = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return Err("not a journal line (no checksum)".into()),
        };
        crc = crc << 4 | u32::from(value);
    }
    let payload = &line[9..];
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

/// Makes the directory's entries (created, renamed files) durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Windows has no directory fsync; NTFS makes renames durable with its own journal.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    // The tests' tenant is the echo service's state, the journal's one user: the changes and
    // the state that replay must give back are the real ones. (Only the tests look this way.)
    use crate::echo::journal_state::test_changes::{bind, provision};
    use crate::echo::journal_state::{Change, EchoState};

    type Journal = super::Journal<EchoState>;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// A fresh directory, removed when dropped.
    struct TestDir(PathBuf);

    impl TestDir {
        fn new(label: &str) -> TestDir {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let path = std::env::temp_dir()
                .join(format!("echo-journal-{label}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("test dir is created");
            TestDir(path)
        }

        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }

        /// Every file's name and bytes.
        fn files(&self) -> BTreeMap<String, Vec<u8>> {
            std::fs::read_dir(&self.0)
                .expect("test dir lists")
                .map(|entry| {
                    let entry = entry.expect("entry");
                    let name = entry.file_name().to_string_lossy().into_owned();
                    (name, std::fs::read(entry.path()).expect("file reads"))
                })
                .collect()
        }

        fn replace_files(&self, files: &BTreeMap<String, Vec<u8>>) {
            for entry in std::fs::read_dir(&self.0).expect("test dir lists") {
                std::fs::remove_file(entry.expect("entry").path()).expect("file is removed");
            }
            for (name, bytes) in files {
                std::fs::write(self.file(name), bytes).expect("file is written");
            }
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn limits(compact_after_entries: u64) -> Limits {
        Limits {
            compact_after_entries,
            ..Limits::DEFAULT
        }
    }

    fn open(dir: &TestDir, compact_after_entries: u64) -> (Journal, EchoState) {
        Journal::open_with(&dir.0, limits(compact_after_entries)).expect("journal opens")
    }

    fn message(id: &str, text: &str) -> Change {
        Change::Message {
            instance_id: id.into(),
            preview: text.into(),
        }
    }

    /// What `EchoService::commit` does with a change.
    fn commit(journal: &Journal, state: &Mutex<EchoState>, change: Change) {
        let mut guard = state.lock().expect("state lock");
        let ticket = journal.append(&change).expect("change is appended");
        guard.apply(change);
        if journal.wants_compaction() {
            journal.compact(&guard);
        }
        drop(guard);
        journal
            .wait_until_durable(ticket)
            .expect("change becomes durable");
    }

    fn as_json(state: &EchoState) -> serde_json::Value {
        serde_json::to_value(state).expect("state serialises")
    }

    /// A mix of every kind of change, some of which cancel others out.
    fn changes(prefix: &str, count: usize) -> Vec<Change> {
        let mut all = Vec::new();
        for i in 0..count {
            let id = format!("{prefix}-{i}");
            all.push(provision(&id));
            all.push(bind(&id, "b1"));
            all.push(bind(&id, "b2"));
            all.push(message(&id, &format!("hello {i}")));
            all.push(message(&id, "again"));
            all.push(Change::Unbind {
                instance_id: id.clone(),
                binding_id: "b2".into(),
            });
            all.push(Change::Update {
                instance_id: id.clone(),
                update: crate::echo::api::InstanceUpdate {
                    plan_id: Some("small_0001".into()),
                    ..Default::default()
                },
            });
            if i % 3 == 0 {
                all.push(Change::Deprovision { instance_id: id });
            }
        }
        all
    }

    /// Runs `changes` through a fresh journal in `dir` and returns the live state.
    fn run(dir: &TestDir, compact_after_entries: u64, changes: Vec<Change>) -> EchoState {
        let (journal, state) = open(dir, compact_after_entries);
        let state = Mutex::new(state);
        for change in changes {
            commit(&journal, &state, change);
        }
        state.into_inner().expect("state")
    }

    fn log_lines(dir: &TestDir, generation: u64) -> Vec<Vec<u8>> {
        let bytes = std::fs::read(dir.file(&log_name(generation))).expect("log reads");
        bytes
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn crc32_is_the_ieee_one() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32fast::hash(b""), 0);
        let mut line = Vec::new();
        frame(&mut line, "7 {}");
        assert_eq!(unframe(&line[..line.len() - 1]), Ok(&b"7 {}"[..]));
    }

    #[test]
    fn a_reopened_journal_replays_every_change() {
        let dir = TestDir::new("replay");
        let live = run(&dir, 1_000_000, changes("i", 20));
        let (journal, replayed) = open(&dir, 1_000_000);
        assert_eq!(as_json(&replayed), as_json(&live));
        let messages = replayed.instances.get("i-1").map(|i| i.message_count());
        assert_eq!(messages, Some(2));
        assert!(replayed.instances.get("i-3").is_none());

        // It carries on where it stopped, and the second run is replayed after the first.
        let state = Mutex::new(replayed);
        for change in changes("j", 5) {
            commit(&journal, &state, change);
        }
        drop(journal);
        let (_, again) = open(&dir, 1_000_000);
        assert_eq!(
            as_json(&again),
            as_json(&state.into_inner().expect("state"))
        );
        assert_eq!(log_lines(&dir, 0).len(), changes("i", 25).len());
    }

    #[test]
    fn a_torn_last_line_is_cut_off() {
        let full = changes("i", 4);
        let dir = TestDir::new("torn");
        run(&dir, 1_000_000, full.clone());
        let lines = log_lines(&dir, 0);
        let complete: Vec<u8> = lines[..lines.len() - 1].concat();
        let last = &lines[lines.len() - 1];
        let mut expected = EchoState::default();
        for change in full.iter().take(lines.len() - 1).cloned() {
            expected.apply(change);
        }

        let mut wrong_checksum = last.clone();
        wrong_checksum[0] = if wrong_checksum[0] == b'0' {
            b'1'
        } else {
            b'0'
        };
        let tails: [Vec<u8>; 4] = [
            last[..last.len() / 2].to_vec(),
            last[..last.len() - 1].to_vec(), // all but the line end
            wrong_checksum[..wrong_checksum.len() - 1].to_vec(),
            vec![0; 300],
        ];
        for tail in tails {
            let mut bytes = complete.clone();
            bytes.extend_from_slice(&tail);
            std::fs::write(dir.file(&log_name(0)), &bytes).expect("log is written");

            let (journal, state) = open(&dir, 1_000_000);
            assert_eq!(as_json(&state), as_json(&expected));
            assert_eq!(
                std::fs::read(dir.file(&log_name(0))).expect("log reads"),
                complete,
                "the torn tail is cut off"
            );
            // What is appended next follows the last complete line.
            let state = Mutex::new(state);
            commit(&journal, &state, provision("after"));
            drop(journal);
            let (_, reopened) = open(&dir, 1_000_000);
            assert_eq!(
                as_json(&reopened),
                as_json(&state.into_inner().expect("state"))
            );
        }
    }

    fn assert_refused(dir: &TestDir, file: &str, line: usize) -> String {
        let before = dir.files();
        let Err(problem) = Journal::open_with(&dir.0, limits(1_000_000)) else {
            panic!("a corrupt journal was opened");
        };
        let path = dir.file(file).display().to_string();
        assert!(
            problem.contains(&format!("{path} line {line}: ")),
            "{problem}"
        );
        assert!(!problem.contains('\n'), "{problem}");
        let mut after = dir.files();
        after.remove(LOCK);
        let mut before = before;
        before.remove(LOCK);
        assert_eq!(before, after, "the journal is left byte for byte as it was");
        problem
    }

    #[test]
    fn a_corrupt_line_in_the_middle_is_refused_and_left_untouched() {
        let dir = TestDir::new("corrupt");
        run(&dir, 1_000_000, changes("i", 2));
        let lines = log_lines(&dir, 0);
        let original = lines.concat();

        // A changed byte (the checksum no longer matches).
        let mut flipped = lines.clone();
        let at = flipped[1].len() - 5;
        flipped[1][at] ^= 0x01;
        std::fs::write(dir.file(&log_name(0)), flipped.concat()).expect("written");
        let problem = assert_refused(&dir, &log_name(0), 2);
        assert!(problem.contains("checksum mismatch"), "{problem}");

        // A garbage line.
        let mut garbage = lines.clone();
        garbage.insert(3, b"hello world\n".to_vec());
        std::fs::write(dir.file(&log_name(0)), garbage.concat()).expect("written");
        assert_refused(&dir, &log_name(0), 4);

        // A line lost in the middle (the sequence numbers show it).
        let mut missing = lines.clone();
        missing.remove(2);
        std::fs::write(dir.file(&log_name(0)), missing.concat()).expect("written");
        let problem = assert_refused(&dir, &log_name(0), 3);
        assert!(
            problem.contains("change 4 where change 3 belongs"),
            "{problem}"
        );

        // A complete last line is not a torn write: with a bad checksum, or garbage, it is
        // refused too.
        let mut last_flipped = lines.clone();
        let last = last_flipped.len() - 1;
        let at = last_flipped[last].len() - 5;
        last_flipped[last][at] ^= 0x01;
        std::fs::write(dir.file(&log_name(0)), last_flipped.concat()).expect("written");
        let problem = assert_refused(&dir, &log_name(0), lines.len());
        assert!(problem.contains("checksum mismatch"), "{problem}");
        let mut garbage_last = lines.clone();
        garbage_last.push(b"hello world\n".to_vec());
        std::fs::write(dir.file(&log_name(0)), garbage_last.concat()).expect("written");
        assert_refused(&dir, &log_name(0), lines.len() + 1);

        // Nor is one with a good checksum: out of order, it is refused.
        let mut repeated = lines.clone();
        repeated.push(lines[0].clone());
        std::fs::write(dir.file(&log_name(0)), repeated.concat()).expect("written");
        assert_refused(&dir, &log_name(0), lines.len() + 1);

        // A change that passes its checksum but does not read.
        let mut unreadable = lines.clone();
        let mut bad = Vec::new();
        frame(&mut bad, "2 {\"change\":\"explode\"}");
        unreadable[1] = bad;
        std::fs::write(dir.file(&log_name(0)), unreadable.concat()).expect("written");
        assert_refused(&dir, &log_name(0), 2);

        // Restored, it opens again.
        std::fs::write(dir.file(&log_name(0)), original).expect("written");
        open(&dir, 1_000_000);
    }

    #[test]
    fn a_corrupt_snapshot_is_refused_and_left_untouched() {
        let dir = TestDir::new("snapshot");
        let live = run(&dir, 5, changes("i", 3));
        let snapshot = std::fs::read(dir.file(SNAPSHOT)).expect("a snapshot was written");

        let mut flipped = snapshot.clone();
        flipped[20] ^= 0x02;
        std::fs::write(dir.file(SNAPSHOT), &flipped).expect("written");
        assert_refused(&dir, SNAPSHOT, 1);

        std::fs::write(dir.file(SNAPSHOT), &snapshot[..snapshot.len() / 2]).expect("written");
        assert_refused(&dir, SNAPSHOT, 1);

        std::fs::write(dir.file(SNAPSHOT), b"").expect("written");
        assert_refused(&dir, SNAPSHOT, 1);

        std::fs::write(dir.file(SNAPSHOT), &snapshot).expect("written");
        let (_, state) = open(&dir, 5);
        assert_eq!(as_json(&state), as_json(&live));
    }

    #[test]
    fn a_log_without_its_snapshot_is_refused() {
        let dir = TestDir::new("lost-snapshot");
        run(&dir, 5, changes("i", 3));
        let generation = dir
            .files()
            .keys()
            .find_map(|name| log_generation(name))
            .expect("a log");
        assert!(generation > 0);
        // Make the log non-empty, then lose the snapshot.
        let (journal, state) = open(&dir, 1_000_000);
        commit(&journal, &Mutex::new(state), provision("late"));
        drop(journal);
        std::fs::remove_file(dir.file(SNAPSHOT)).expect("snapshot is removed");
        let before = dir.files();
        let problem = Journal::open_with(&dir.0, limits(5))
            .err()
            .expect("refused");
        assert!(problem.contains(&log_name(generation)), "{problem}");
        assert!(problem.contains("is missing"), "{problem}");
        assert_eq!(dir.files(), before);

        // A snapshot whose log is gone is refused too.
        let dir = TestDir::new("lost-log");
        run(&dir, 5, changes("i", 3));
        let log = dir
            .files()
            .keys()
            .find(|name| log_generation(name).is_some())
            .cloned()
            .expect("a log");
        std::fs::remove_file(dir.file(&log)).expect("log is removed");
        let problem = Journal::open_with(&dir.0, limits(5))
            .err()
            .expect("refused");
        assert!(problem.contains(&log), "{problem}");
    }

    #[test]
    fn compaction_keeps_everything() {
        let dir = TestDir::new("compaction");
        let all = changes("i", 40);
        let count = all.len() as u64;
        let live = run(&dir, 7, all);
        let files = dir.files();
        let generations: Vec<u64> = files.keys().filter_map(|n| log_generation(n)).collect();
        assert_eq!(generations.len(), 1, "old logs are removed: {files:?}");
        assert!(
            generations[0] >= 5,
            "compacted now and then: {generations:?}"
        );
        assert!(!files.contains_key(SNAPSHOT_TMP));

        let (journal, replayed) = open(&dir, 7);
        assert_eq!(as_json(&replayed), as_json(&live));
        // Messages count up: a change replayed twice would show.
        let messages = replayed.instances.get("i-1").map(|i| i.message_count());
        assert_eq!(messages, Some(2));
        assert!(journal.lock().appended == count);
    }

    #[test]
    fn a_log_of_large_changes_is_compacted_by_its_size() {
        let dir = TestDir::new("bytes");
        let limits = Limits {
            compact_after_entries: 1_000_000,
            compact_after_bytes: 64 * 1024,
        };
        let (journal, state) = Journal::open_with(&dir.0, limits).expect("journal opens");
        let state = Mutex::new(state);
        commit(&journal, &state, provision("big"));
        let parameters = serde_json::json!({ "blob": "x".repeat(8 * 1024) });
        for _ in 0..100 {
            let update = crate::echo::api::InstanceUpdate {
                parameters: Some(parameters.clone()),
                ..Default::default()
            };
            let change = Change::Update {
                instance_id: "big".into(),
                update,
            };
            commit(&journal, &state, change);
        }
        let total: usize = dir.files().values().map(Vec::len).sum();
        assert!(
            total < 2 * 64 * 1024 + 16 * 1024,
            "{total} bytes on disk for 800 KiB of changes: {:?}",
            dir.files().keys().collect::<Vec<_>>()
        );
        drop(journal);
        let (_, replayed) = Journal::open_with(&dir.0, limits).expect("journal opens");
        assert_eq!(
            as_json(&replayed),
            as_json(&state.into_inner().expect("state"))
        );
    }

    #[test]
    fn a_crash_at_any_point_of_a_compaction_leaves_a_loadable_journal() {
        let dir = TestDir::new("crash");
        // Generation 1 with a snapshot and some log, so the old snapshot exists too.
        run(&dir, 1_000_000, changes("a", 3));
        let (journal, state) = open(&dir, 1_000_000);
        journal.compact(&state);
        let state = Mutex::new(state);
        for change in changes("b", 3) {
            commit(&journal, &state, change);
        }
        let before = dir.files();
        let expected = as_json(&state.lock().expect("state"));
        journal.compact(&state.lock().expect("state"));
        let after = dir.files();
        drop(journal);
        assert!(before.contains_key(&log_name(1)) && after.contains_key(&log_name(2)));

        let mut crashes = Vec::new();
        // The new log is created, the snapshot not yet begun.
        let mut files = before.clone();
        files.insert(log_name(2), Vec::new());
        crashes.push(files.clone());
        // The temporary snapshot is half written.
        let new_snapshot = after[SNAPSHOT].clone();
        files.insert(
            SNAPSHOT_TMP.into(),
            new_snapshot[..new_snapshot.len() / 2].to_vec(),
        );
        crashes.push(files.clone());
        // It is complete, not yet renamed.
        files.insert(SNAPSHOT_TMP.into(), new_snapshot.clone());
        crashes.push(files.clone());
        // Renamed; the old log is still there.
        files.remove(SNAPSHOT_TMP);
        files.insert(SNAPSHOT.into(), new_snapshot);
        crashes.push(files.clone());
        // And the end.
        crashes.push(after);

        for files in crashes {
            let names: Vec<&String> = files.keys().collect();
            dir.replace_files(&files);
            let (journal, state) = Journal::open_with(&dir.0, limits(1_000_000))
                .unwrap_or_else(|problem| panic!("{names:?}: {problem}"));
            assert_eq!(as_json(&state), expected, "{names:?}");
            let left: Vec<String> = dir.files().into_keys().collect();
            assert_eq!(left.len(), 3, "leftovers are removed: {left:?}");
            // And it goes on working.
            let state = Mutex::new(state);
            commit(&journal, &state, provision("later"));
            journal.compact(&state.lock().expect("state"));
            commit(&journal, &state, message("later", "hi"));
            drop(journal);
            let (_, reopened) = open(&dir, 1_000_000);
            assert_eq!(
                as_json(&reopened),
                as_json(&state.into_inner().expect("state"))
            );
        }
    }

    #[test]
    fn changes_made_while_a_snapshot_is_written_survive_a_stop_before_it_is_installed() {
        let dir = TestDir::new("switched");
        run(&dir, 1_000_000, changes("a", 3));
        let (journal, state) = open(&dir, 1_000_000);
        let state = Mutex::new(state);
        // A compaction switches logs, then the state goes on changing while its snapshot
        // would be written: and the process stops before it is installed.
        assert!(journal.lock().older_logs.is_empty());
        {
            let guard = state.lock().expect("state");
            journal.lock().compacting = true;
            let next = journal.prepare_compaction().expect("the next log");
            journal.switch_log(next).expect("switched");
            drop(guard);
        }
        for change in changes("b", 2) {
            commit(&journal, &state, change);
        }
        let expected = as_json(&state.lock().expect("state"));
        drop(journal);
        let files = dir.files();
        assert!(files.contains_key(&log_name(0)) && files.contains_key(&log_name(1)));
        assert!(!files[&log_name(1)].is_empty());

        // Both logs are replayed, in order, and the compaction finished at the start.
        let (journal, replayed) = open(&dir, 1_000_000);
        assert_eq!(as_json(&replayed), expected);
        let names: Vec<String> = dir.files().into_keys().collect();
        assert_eq!(names.len(), 3, "one snapshot and one log again: {names:?}");
        let state = Mutex::new(replayed);
        commit(&journal, &state, provision("later"));
        drop(journal);
        let (_, reopened) = open(&dir, 1_000_000);
        assert_eq!(
            as_json(&reopened),
            as_json(&state.into_inner().expect("state"))
        );

        // A torn last line in the older log (a stop during the switch's last flush) is
        // forgiven while the newer log is empty, and is damage once it is not.
        let dir = TestDir::new("switched-torn");
        let expected = as_json(&run(&dir, 1_000_000, changes("a", 2)));
        let mut files = dir.files();
        let mut torn = files[&log_name(0)].clone();
        torn.extend_from_slice(b"0badc0de 99 {\"change\":");
        files.insert(log_name(0), torn);
        files.insert(log_name(1), Vec::new());
        dir.replace_files(&files);
        let (journal, replayed) = open(&dir, 1_000_000);
        assert_eq!(as_json(&replayed), expected);
        drop(journal);
        files.insert(log_name(1), b"00000000 1 {}\n".to_vec());
        dir.replace_files(&files);
        let problem = Journal::open_with(&dir.0, limits(1_000_000))
            .err()
            .expect("refused");
        assert!(problem.contains("a newer one follows"), "{problem}");
        let mut left = dir.files();
        left.remove(LOCK);
        files.remove(LOCK);
        assert_eq!(left, files, "left as it was");
    }

    #[test]
    fn concurrent_changes_share_flushes_and_all_survive() {
        let dir = TestDir::new("group");
        let (journal, state) = open(&dir, 500);
        let journal = Arc::new(journal);
        let state = Arc::new(Mutex::new(state));
        let threads = 16;
        let per_thread = 60;
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let journal = Arc::clone(&journal);
                let state = Arc::clone(&state);
                std::thread::spawn(move || {
                    for change in changes(&format!("t{t}"), per_thread / 8) {
                        commit(&journal, &state, change);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("worker finishes");
        }
        let total = changes("x", per_thread / 8).len() as u64 * threads;
        let (flushes, written) = journal.flush_statistics();
        assert!(written <= total);
        assert!(
            flushes < total,
            "{flushes} flushes for {total} changes: none was shared"
        );
        drop(journal);
        let live = as_json(&state.lock().expect("state"));
        let (journal, replayed) = open(&dir, 500);
        assert_eq!(as_json(&replayed), live);
        assert_eq!(journal.lock().appended, total);
    }

    fn read_only(dir: &Path) -> Result<ReadOnlyCopy<EchoState>, String> {
        super::read_only::<EchoState>(dir)
    }

    /// The generation of the newest log in `dir`.
    fn newest_generation(dir: &TestDir) -> u64 {
        dir.files()
            .keys()
            .filter_map(|name| log_generation(name))
            .max()
            .expect("a log")
    }

    #[test]
    fn a_journal_read_read_only_is_left_byte_for_byte_as_it_was() {
        let dir = TestDir::new("read-only");
        run(&dir, 5, changes("i", 3));
        run(&dir, 1_000_000, changes("j", 2));
        let generation = newest_generation(&dir);
        assert!(generation > 0, "compacted: a snapshot and its log");
        // What a stop can leave: a torn last line, a half-written snapshot, an older log not
        // yet removed, the empty log of a compaction that had just begun; and no lock file.
        let mut files = dir.files();
        assert!(!files[&log_name(generation)].is_empty());
        let torn = b"0badc0de 99 {\"change\":";
        files
            .get_mut(&log_name(generation))
            .expect("the current log")
            .extend_from_slice(torn);
        files.insert(SNAPSHOT_TMP.into(), b"half a snap".to_vec());
        files.insert(log_name(generation - 1), b"an older log\n".to_vec());
        files.insert(log_name(generation + 1), Vec::new());
        files.remove(LOCK);
        dir.replace_files(&files);

        let copy = read_only(&dir.0).expect("the journal reads");
        assert_eq!(dir.files(), files, "every name and byte as it was");
        assert_eq!(
            copy.torn_tail,
            Some(TornTail {
                log: dir.file(&log_name(generation)),
                bytes: torn.len() as u64
            })
        );
        let (_, opened) = open(&dir, 1_000_000);
        assert_eq!(as_json(&copy.state), as_json(&opened));
    }

    #[test]
    fn an_empty_or_foreign_directory_is_refused_read_only_and_left_as_it_was() {
        let dir = TestDir::new("read-only-empty");
        let refusal = format!(
            "{} is not an echo service journal (no state.snapshot or changes.N.log)",
            dir.0.display()
        );
        assert_eq!(read_only(&dir.0).err(), Some(refusal.clone()));
        assert!(dir.files().is_empty(), "{:?}", dir.files().keys());

        std::fs::write(dir.file("notes.txt"), b"not a journal").expect("written");
        std::fs::write(dir.file("changes.1.log.bak"), b"nor this").expect("written");
        let before = dir.files();
        assert_eq!(read_only(&dir.0).err(), Some(refusal));
        let after = dir.files();
        assert_eq!(after, before);
        assert!(!after.contains_key(LOCK) && !after.contains_key(&log_name(0)));
    }

    #[test]
    fn a_missing_directory_is_refused_read_only_and_not_created() {
        let parent = TestDir::new("read-only-missing");
        let missing = parent.file("journal");
        let problem = read_only(&missing).err().expect("refused");
        assert_eq!(problem, format!("{}: does not exist", missing.display()));
        assert!(!missing.exists());

        std::fs::write(&missing, b"a file").expect("written");
        let problem = read_only(&missing).err().expect("refused");
        assert_eq!(
            problem,
            format!("{}: is not a directory", missing.display())
        );
        assert_eq!(parent.files().len(), 1);
    }

    #[test]
    fn a_corrupt_journal_is_refused_read_only_as_open_refuses_it() {
        let dir = TestDir::new("read-only-corrupt");
        run(&dir, 1_000_000, changes("i", 2));
        let mut lines = log_lines(&dir, 0);
        lines[2][12] ^= 0x01;
        std::fs::write(dir.file(&log_name(0)), lines.concat()).expect("written");
        std::fs::remove_file(dir.file(LOCK)).expect("the lock file is removed");
        let before = dir.files();

        let problem = read_only(&dir.0).err().expect("refused");
        assert_eq!(dir.files(), before);
        let log = dir.file(&log_name(0));
        assert!(
            problem.contains(&format!("{} line 3: ", log.display())),
            "{problem}"
        );
        let opened = Journal::open_with(&dir.0, limits(1_000_000)).err();
        assert_eq!(opened, Some(problem));
    }

    // Windows' file locks bar reads too: there a journal in use cannot be read.
    #[cfg(unix)]
    #[test]
    fn a_journal_in_use_is_read_without_its_lock() {
        let dir = TestDir::new("read-only-in-use");
        let (journal, state) = open(&dir, 1_000_000);
        let state = Mutex::new(state);
        for change in changes("i", 3) {
            commit(&journal, &state, change);
        }
        let before = dir.files();
        let copy = read_only(&dir.0).expect("a journal in use reads");
        assert_eq!(dir.files(), before);
        assert_eq!(as_json(&copy.state), as_json(&state.lock().expect("state")));

        // Its process goes on, and still holds the journal.
        commit(&journal, &state, provision("later"));
        let problem = Journal::open_with(&dir.0, limits(1_000_000))
            .err()
            .expect("refused");
        assert!(problem.contains("another process"), "{problem}");
    }

    /// The message count of instance `i` in a read-only copy of `dir`, and its newest message.
    #[cfg(unix)]
    fn messages_read(dir: &TestDir) -> Result<(u64, Option<String>), String> {
        let copy = read_only(&dir.0)?;
        let instance = copy.state.instances.get("i").ok_or("no instance i")?;
        Ok((instance.message_count(), instance.recent_messages().pop()))
    }

    #[cfg(unix)]
    #[test]
    fn a_journal_read_while_it_compacts_gives_a_state_it_went_through() {
        const COMPACTIONS: u64 = 20;
        let dir = TestDir::new("read-only-compacting");
        let (journal, state) = open(&dir, 5);
        let state = Mutex::new(state);
        commit(&journal, &state, provision("i"));
        let stop = std::sync::atomic::AtomicBool::new(false);
        let reads: Vec<_> = std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut sent = 0;
                while !stop.load(Ordering::SeqCst) {
                    sent += 1;
                    commit(&journal, &state, message("i", &format!("m-{sent}")));
                }
            });
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut reads = Vec::new();
            while journal.lock().generation < COMPACTIONS && Instant::now() < deadline {
                reads.push(messages_read(&dir));
            }
            stop.store(true, Ordering::SeqCst);
            reads
        });
        assert!(
            journal.lock().generation >= COMPACTIONS,
            "compacted meanwhile"
        );
        let mut seen = 0;
        for read in reads {
            let (count, newest) = read.expect("every read succeeds");
            assert!(count >= seen, "{count} messages read after {seen}");
            if count > 0 {
                assert_eq!(newest, Some(format!("m-{count}")));
            }
            seen = count;
        }
    }

    #[test]
    fn a_journal_in_use_is_not_opened_twice() {
        let dir = TestDir::new("locked");
        let (journal, _) = open(&dir, 1_000_000);
        let problem = Journal::open_with(&dir.0, limits(1_000_000))
            .err()
            .expect("refused");
        assert!(problem.contains("another process"), "{problem}");
        drop(journal);
        open(&dir, 1_000_000);
    }

    #[test]
    fn a_removed_lock_file_does_not_let_a_second_journal_in() {
        let dir = TestDir::new("lock-removed");
        let (journal, _) = open(&dir, 1_000_000);
        std::fs::remove_file(dir.0.join(LOCK)).expect("the lock file is removed");
        let problem = Journal::open_with(&dir.0, limits(1_000_000))
            .err()
            .expect("refused");
        // Windows may keep a removed open file as "delete pending", which cannot be opened.
        let lock_file_unusable = cfg!(windows) && problem.contains(LOCK);
        assert!(
            problem.contains("another process") || lock_file_unusable,
            "{problem}"
        );
        drop(journal);
        open(&dir, 1_000_000);
    }
}
