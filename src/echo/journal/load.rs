//! Reading a journal's directory back into its state: the snapshot, then the logs replayed
//! in order, a torn tail told apart from damage; and [`read_only`], the same reading for a
//! copy taken elsewhere.
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
//! This file knows the order of the files and what a torn tail is; the bytes of a line are
//! [`super::format`]'s, opening and locking the files [`super::files`]'s, and what is done
//! with the state once loaded (leftovers removed, the log written on) the journal's.

use super::error::{Before, Doing, Found, JournalError, Mismatch};
use super::files::{open_for_reading, open_locked_log, read_all, stamp_of, Disk, Stamp};
use super::format::{
    log_generation, log_name, parse_entry, parse_snapshot, unframe, Damage, Recorded, SNAPSHOT,
    SNAPSHOT_TMP,
};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// What was read from the directory at start.
pub(super) struct Loaded<S> {
    pub(super) state: S,
    pub(super) generation: u64,
    /// The snapshot's sequence number: the logs continue from the next.
    pub(super) sequence: u64,
    pub(super) snapshot_bytes: u64,
    /// The logs that follow the snapshot, oldest first: its own generation's, then those of
    /// a compaction that switched logs but did not install its snapshot. Empty if there is
    /// none yet.
    pub(super) logs: Vec<LoadedLog>,
    /// Files that a finished or interrupted compaction left behind.
    pub(super) leftovers: Vec<PathBuf>,
}

/// One log read at start, open (and locked, unless read for a read-only copy).
pub(super) struct LoadedLog {
    pub(super) generation: u64,
    pub(super) file: File,
    pub(super) entries: u64,
    /// The length of its complete lines (a torn tail beyond it is cut off when the journal
    /// opens).
    pub(super) valid_len: u64,
    pub(super) torn_bytes: u64,
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

/// Reads the state of the journal in `dir` as [`super::Journal::open`] would load it, for a
/// copy taken elsewhere (such as an import into another store), without writing anything:
/// every file is opened for reading only, no lock is taken and no lock file made, nothing is
/// created or removed, and a torn tail is left out of the state but left in place (see
/// [`ReadOnlyCopy::torn_tail`]).
///
/// A journal that another process holds open is read too, without its lock: the copy is
/// then of the durable state at the moment it is read (with perhaps the changes being made
/// durable just then, and none made after), and a read that fails while the files change
/// is made again. On Windows, whose file locks bar reads as well as writes, the logs of a
/// journal in use cannot be read: the message says to stop its process first.
///
/// Refused with an error naming `dir`: a directory that does not exist, something that is
/// not a directory, a directory with neither a snapshot nor a log (reading it would pass an
/// empty state off as a journal's); and whatever [`super::Journal::open`] refuses, with the
/// same message.
pub fn read_only<S: Recorded>(dir: &Path) -> Result<ReadOnlyCopy<S>, JournalError> {
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
fn refuse_unless_journal(dir: &Path) -> Result<(), JournalError> {
    let not_a_journal = |found| JournalError::NotAJournal {
        path: dir.to_path_buf(),
        found,
    };
    let metadata = std::fs::metadata(dir).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => not_a_journal(Found::Nothing),
        _ => JournalError::io(Doing::Read, dir)(error),
    })?;
    if !metadata.is_dir() {
        return Err(not_a_journal(Found::NotADirectory));
    }
    let entries = std::fs::read_dir(dir).map_err(JournalError::io(Doing::List, dir))?;
    for entry in entries {
        let name = entry
            .map_err(JournalError::io(Doing::List, dir))?
            .file_name();
        if name == SNAPSHOT || name.to_str().and_then(log_generation).is_some() {
            return Ok(());
        }
    }
    Err(not_a_journal(Found::NoJournalFiles))
}

/// [`load`] with logs opened for reading only, without their locks. A process that holds
/// the journal may write it meanwhile: a log read before its last lines were flushed and the
/// next log read after (a compaction switched logs), or a log removed before it was opened
/// (a compaction replaced it), look like damage. So a read that fails while the files
/// changed is made again. A read that succeeds is of a state the journal went through:
/// every file was open before a new snapshot replaced them, and a log read early that
/// lacks lines is the end of what is read.
fn load_read_only<S: Recorded>(dir: &Path) -> Result<Loaded<S>, JournalError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let before = stamps_in(dir);
        match load(dir, LogAccess::ReadOnly) {
            Ok(loaded) => return Ok(loaded),
            Err(problem) if stamps_in(dir) == before => return Err(problem),
            Err(problem) if attempts == READ_ATTEMPTS => {
                return Err(JournalError::KeptChanging {
                    attempts,
                    last: Box::new(problem),
                })
            }
            Err(problem) => {
                log::debug!("journal: {problem}; the files changed meanwhile: reading again");
            }
        }
    }
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
#[derive(Clone, Copy)]
pub(super) enum LogAccess<'a> {
    /// For reading and writing through this disk, and locked: the journal goes on writing
    /// them.
    Locked(&'a dyn Disk),
    /// For reading only, and not locked: a copy of the state is taken, the journal stays
    /// its owner's.
    ReadOnly,
}

impl LogAccess<'_> {
    /// The existing log at `path`, opened this way; `None` if it does not exist.
    fn open(self, path: &Path) -> Result<Option<File>, JournalError> {
        match self {
            LogAccess::Locked(disk) => open_locked_log(disk, path),
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
pub(super) fn load<S: Recorded>(dir: &Path, access: LogAccess) -> Result<Loaded<S>, JournalError> {
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
                parse_snapshot(&bytes).map_err(|damage| corrupt(&snapshot_path, 1, 0, damage))?;
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
    let entries = std::fs::read_dir(dir).map_err(JournalError::io(Doing::List, dir))?;
    for entry in entries {
        let entry = entry.map_err(JournalError::io(Doing::List, dir))?;
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
                .map_err(JournalError::io(Doing::Read, &path))?
                .len();
            newer.insert(found, (path, size));
        }
    }

    // The snapshot's generation as the messages name it: none when it is missing.
    let snapshot_seen = (generation > 0 || snapshot_path.exists()).then_some(generation);
    let log_path = dir.join(log_name(generation));
    let Some(first) = access.open(&log_path)? else {
        // No log of the snapshot's generation: a fresh journal, or damage.
        if generation > 0 {
            return Err(JournalError::Inconsistent {
                path: log_path,
                mismatch: Mismatch::MissingLog,
            });
        }
        if let Some((found, (path, _))) = newer.iter().find(|(_, (_, size))| *size > 0) {
            return Err(JournalError::Inconsistent {
                path: path.clone(),
                mismatch: Mismatch::Orphan {
                    generation: *found,
                    snapshot: snapshot_seen,
                    before: Before::FirstLog(log_path),
                },
            });
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
            return Err(JournalError::Inconsistent {
                path,
                mismatch: Mismatch::Orphan {
                    generation: found,
                    snapshot: snapshot_seen,
                    before: Before::StopsAt(generation + chain.len() as u64 - 1),
                },
            });
        }
        leftovers.push(path);
    }
    // Locked logs were locked by whoever used them: a compaction between reading the
    // snapshot and taking those locks would have replaced the snapshot. (Unlocked ones, see
    // `load_read_only`.)
    if stamp_of(&snapshot_path) != snapshot_before {
        return Err(JournalError::ChangedWhileRead {
            path: snapshot_path,
        });
    }

    let mut logs = Vec::new();
    let mut next_sequence = sequence;
    let mut torn_before: Option<(PathBuf, u64)> = None;
    for (generation, path, file) in chain {
        let bytes = read_all(&file, &path)?;
        if let Some((torn, offset)) = torn_before.as_ref().filter(|_| !bytes.is_empty()) {
            return Err(corrupt(torn, 0, *offset, Damage::TornBeforeNewer));
        }
        let replayed = replay(&bytes, next_sequence, &mut state)
            .map_err(|(line, offset, damage)| corrupt(&path, line, offset, damage))?;
        next_sequence += replayed.entries;
        let torn_bytes = bytes.len() as u64 - replayed.valid_len;
        if torn_bytes > 0 {
            torn_before = Some((path, replayed.valid_len));
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

struct Replayed {
    entries: u64,
    valid_len: u64,
}

/// Applies the log's lines to `state`. Bytes after the last line end are left out (a torn
/// write); any bad complete line, the last one included, is an error `(line number, its
/// first byte, damage)`.
fn replay<S: Recorded>(
    log: &[u8],
    sequence: u64,
    state: &mut S,
) -> Result<Replayed, (usize, u64, Damage)> {
    let mut offset = 0;
    let mut entries = 0;
    let mut line_number = 0;
    while offset < log.len() {
        line_number += 1;
        let rest = &log[offset..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            break; // incomplete: never acknowledged
        };
        let expected = sequence + entries + 1;
        let change = unframe(&rest[..end])
            .and_then(|payload| parse_entry::<S::Change>(payload, expected))
            .map_err(|damage| (line_number, offset as u64, damage))?;
        state.apply(change);
        entries += 1;
        offset += end + 1;
    }
    Ok(Replayed {
        entries,
        valid_len: offset as u64,
    })
}

/// Cuts a torn tail off `log` (bytes after its last line end: a write a crash interrupted,
/// never acknowledged), and leaves the file positioned at its end.
pub(super) fn cut_torn_tail(
    disk: &dyn Disk,
    dir: &Path,
    log: &mut LoadedLog,
) -> Result<(), JournalError> {
    let path = dir.join(log_name(log.generation));
    if log.torn_bytes > 0 {
        log::warn!(
            "journal: {}: cut off an incomplete last line ({} bytes) that an interrupted write left",
            path.display(),
            log.torn_bytes
        );
        disk.set_len(&log.file, log.valid_len)
            .and_then(|()| disk.sync_all(&log.file))
            .map_err(JournalError::io(Doing::CutTornTail, &path))?;
        log.torn_bytes = 0;
    }
    log.file
        .seek(SeekFrom::Start(log.valid_len))
        .map(drop)
        .map_err(JournalError::io(Doing::Seek, &path))
}

fn corrupt(path: &Path, line: usize, offset: u64, damage: Damage) -> JournalError {
    JournalError::Corrupt {
        path: path.to_path_buf(),
        line,
        offset,
        damage,
    }
}

/// A file's bytes, `None` if it does not exist.
fn read_file(path: &Path) -> Result<Option<Vec<u8>>, JournalError> {
    open_for_reading(path)?
        .map(|file| read_all(&file, path))
        .transpose()
}
