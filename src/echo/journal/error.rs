//! What goes wrong with a journal, and where: [`JournalError`], one value per failure, that
//! names the file (and for damage the line and byte) and keeps the operating system's error
//! as its [`source`](std::error::Error::source).
//!
//! Its message is one line an operator can act on: the process's exit message at start,
//! an error line in the log while it runs. This file only words failures; the others
//! decide which failure it is.

use super::format::{Damage, SNAPSHOT};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a journal cannot be opened, read or written.
#[derive(Debug)]
pub enum JournalError {
    /// An operation on a file or a directory failed.
    Io {
        doing: Doing,
        path: PathBuf,
        source: io::Error,
    },
    /// Another process holds the file's lock: it uses this journal.
    Locked { path: PathBuf },
    /// On Windows, whose file locks bar reads too: the file cannot be read while its
    /// journal is in use.
    ReadBarred { path: PathBuf, source: io::Error },
    /// The snapshot changed while it was read: another process is using this journal.
    ChangedWhileRead { path: PathBuf },
    /// A line that does not read: `line` counts from 1 (0: the end of the file), `offset`
    /// is its first byte.
    Corrupt {
        path: PathBuf,
        line: usize,
        offset: u64,
        damage: Damage,
    },
    /// Files that do not follow one another: `path` is the one out of place.
    Inconsistent { path: PathBuf, mismatch: Mismatch },
    /// What was to be read read-only is not a journal (nothing was read or written).
    NotAJournal { path: PathBuf, found: Found },
    /// A journal read read-only changed during every attempt: a process is writing it.
    KeptChanging {
        attempts: u32,
        last: Box<JournalError>,
    },
    /// A change that cannot be written as JSON.
    Unserialisable(serde_json::Error),
    /// `DATA_DIR` or the log is not the one opened any more: removed or renamed (with the
    /// error that says so), or replaced.
    Moved {
        watched: Watched,
        path: PathBuf,
        source: Option<io::Error>,
    },
    /// The journal failed earlier (for this reason) and takes no change until it recovers.
    Failed(Arc<JournalError>),
}

/// What the journal was doing when the operating system refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doing {
    Open,
    Create,
    CreateDirectory,
    Read,
    List,
    Seek,
    CutTornTail,
    /// Appending changes to the log (and fsyncing it).
    Append,
    WriteSnapshot,
    /// Renaming the written snapshot over the installed one.
    InstallSnapshot,
    /// Making the directory's entries (created, renamed files) durable.
    SyncDirectory,
}

/// How the files of a journal fail to follow one another.
#[derive(Debug)]
pub enum Mismatch {
    /// The log of the snapshot's generation is missing.
    MissingLog,
    /// A log of `generation`, newer than the snapshot (of its generation, or missing:
    /// `None`), that does not follow the logs before it.
    Orphan {
        generation: u64,
        snapshot: Option<u64>,
        before: Before,
    },
}

/// What an orphan log should follow and does not.
#[derive(Debug)]
pub enum Before {
    /// The snapshot's own log, missing or empty.
    FirstLog(PathBuf),
    /// The logs that follow the snapshot stop at this generation, before a gap.
    StopsAt(u64),
}

/// What was found where a journal was to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Nothing,
    NotADirectory,
    NoJournalFiles,
}

/// Which of the journal's places moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    DataDir,
    Log,
}

const LEFT_UNTOUCHED: &str = "was left untouched: restore it from a backup or move it away";

impl fmt::Display for JournalError {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io {
                doing,
                path,
                source,
            } => write_io(out, *doing, path, source),
            JournalError::Locked { path } => write!(
                out,
                "{}: locked: another process is using this journal",
                path.display()
            ),
            JournalError::ReadBarred { path, source } => write!(
                out,
                "{}: cannot read: another process holds it locked ({source}); stop the process that uses this journal, then try again",
                path.display()
            ),
            JournalError::ChangedWhileRead { path } => write!(
                out,
                "{}: changed while it was read: another process is using this journal",
                path.display()
            ),
            JournalError::Corrupt {
                path,
                line,
                offset,
                damage,
            } => write!(
                out,
                "{} line {line}: {damage} (at byte {offset}); the journal is corrupt and {LEFT_UNTOUCHED}",
                path.display()
            ),
            JournalError::Inconsistent { path, mismatch } => {
                write!(out, "{}: ", path.display())?;
                write_mismatch(out, path, mismatch)?;
                write!(out, "; the journal is inconsistent and {LEFT_UNTOUCHED}")
            }
            JournalError::NotAJournal { path, found } => match found {
                Found::Nothing => write!(out, "{}: does not exist", path.display()),
                Found::NotADirectory => write!(out, "{}: is not a directory", path.display()),
                Found::NoJournalFiles => write!(
                    out,
                    "{} is not an echo service journal (no {SNAPSHOT} or changes.N.log)",
                    path.display()
                ),
            },
            JournalError::KeptChanging { attempts, last } => write!(
                out,
                "{last} (the journal changed while it was read, {attempts} times: a process is writing it; try again, or stop that process first)"
            ),
            JournalError::Unserialisable(error) => {
                write!(out, "cannot serialise a change: {error}")
            }
            JournalError::Moved {
                watched,
                path,
                source,
            } => {
                let what = match watched {
                    Watched::DataDir => "DATA_DIR",
                    Watched::Log => "the journal's log",
                };
                match source {
                    Some(error) => write!(
                        out,
                        "{what} {} was removed or renamed while in use ({error})",
                        path.display()
                    ),
                    None => write!(out, "{what} {} was replaced while in use", path.display()),
                }
            }
            JournalError::Failed(cause) => cause.fmt(out),
        }
    }
}

fn write_io(
    out: &mut fmt::Formatter<'_>,
    doing: Doing,
    path: &std::path::Path,
    error: &io::Error,
) -> fmt::Result {
    let path = path.display();
    let cannot = match doing {
        Doing::Append => return write!(out, "writing {path} failed: {error}"),
        Doing::Open => "open",
        Doing::Create => "create",
        Doing::CreateDirectory => "create the directory",
        Doing::Read => "read",
        Doing::List => "list",
        Doing::Seek => "seek",
        Doing::CutTornTail => "cut off the incomplete last line",
        Doing::WriteSnapshot => "write the snapshot",
        Doing::InstallSnapshot => "install the snapshot",
        Doing::SyncDirectory => "make the directory's entries durable",
    };
    write!(out, "{path}: cannot {cannot}: {error}")
}

fn write_mismatch(
    out: &mut fmt::Formatter<'_>,
    path: &std::path::Path,
    mismatch: &Mismatch,
) -> fmt::Result {
    let snapshot_path = path.with_file_name(SNAPSHOT);
    let Mismatch::Orphan {
        generation,
        snapshot,
        before,
    } = mismatch
    else {
        return write!(out, "missing, but {} needs it", snapshot_path.display());
    };
    write!(out, "a log of generation {generation} but ")?;
    match snapshot {
        None => write!(out, "{} is missing", snapshot_path.display())?,
        Some(generation) => write!(
            out,
            "{} is of generation {generation}",
            snapshot_path.display()
        )?,
    }
    match before {
        Before::FirstLog(log) => write!(out, ", and so is {}", log.display()),
        Before::StopsAt(last) => write!(out, " and the logs after it stop at generation {last}"),
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Io { source, .. } | JournalError::ReadBarred { source, .. } => {
                Some(source)
            }
            JournalError::Moved { source, .. } => source
                .as_ref()
                .map(|error| error as &(dyn std::error::Error + 'static)),
            JournalError::Corrupt { damage, .. } => Some(damage),
            JournalError::KeptChanging { last, .. } => Some(&**last),
            JournalError::Unserialisable(error) => Some(error),
            // Worded as its cause: the cause's source is its own.
            JournalError::Failed(cause) => cause.source(),
            JournalError::Locked { .. }
            | JournalError::ChangedWhileRead { .. }
            | JournalError::Inconsistent { .. }
            | JournalError::NotAJournal { .. } => None,
        }
    }
}

impl JournalError {
    pub(super) fn io(doing: Doing, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| JournalError::Io {
            doing,
            path,
            source,
        }
    }
}
