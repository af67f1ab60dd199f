//! The journal's files and directory as the operating system keeps them: the [`Disk`] every
//! write, fsync, rename and removal goes through, who may read them, the locks that keep a
//! second process out, and how a file is told apart from another later put at its path.
//! What differs between Unix and Windows is here and nowhere else.
//!
//! # The disk under the journal
//!
//! [`Disk`] is what the journal does to make its files durable: open or create a file,
//! write, cut, fsync it, fsync the directory, rename, remove. [`StdDisk`] does it with
//! `std::fs`; a test puts a disk in its place that fails an fsync or a write (after so many
//! bytes), to see what the journal promises about failures kept. One call per operation,
//! never per byte: a flush is one write and one fsync. Reads (loading at start, the
//! read-only copy) go to `std::fs` directly: they change nothing, and any failure of theirs
//! stops what reads.
//!
//! # Secrets at rest
//!
//! The journal may hold secrets (the echo service's binding passwords and dashboard tokens),
//! so on Unix `DATA_DIR` is created 0700 and every journal file 0600 (a `DATA_DIR` that
//! already exists with wider access is reported at start, not changed: it may be shared on
//! purpose).
//!
//! # Locks
//!
//! `journal.lock` is held while a process uses the directory, and the current log is
//! locked as well, from its creation until it is replaced: removing `journal.lock` while the
//! journal runs (a "stale lock" clean-up) does not let a second process in, because it finds
//! the log locked before it changes anything.

use super::error::{Doing, JournalError, Watched};
use super::format::LOCK;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// What the journal does to its files to write them and make them durable.
pub trait Disk: Send + Sync {
    /// Opens the existing file at `path` for reading and writing (`NotFound` if none).
    fn open(&self, path: &Path) -> std::io::Result<File>;
    /// Opens the file at `path` for reading and writing, created (private) if missing, its
    /// bytes kept.
    fn create(&self, path: &Path) -> std::io::Result<File>;
    /// Writes all of `bytes` at the file's position.
    fn write(&self, file: &mut File, bytes: &[u8]) -> std::io::Result<()>;
    /// Cuts (or extends) the file to `len` bytes.
    fn set_len(&self, file: &File, len: u64) -> std::io::Result<()>;
    /// Makes the file's bytes durable (`fdatasync`).
    fn sync_data(&self, file: &File) -> std::io::Result<()>;
    /// Makes the file's bytes and size durable (`fsync`).
    fn sync_all(&self, file: &File) -> std::io::Result<()>;
    /// Makes the directory's entries (created, renamed files) durable.
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()>;
    fn remove(&self, path: &Path) -> std::io::Result<()>;
}

/// The disk as `std::fs` reaches it.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdDisk;

impl Disk for StdDisk {
    fn open(&self, path: &Path) -> std::io::Result<File> {
        private_file().read(true).write(true).open(path)
    }

    fn create(&self, path: &Path) -> std::io::Result<File> {
        private_file()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    }

    fn write(&self, file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
        file.write_all(bytes)
    }

    fn set_len(&self, file: &File, len: u64) -> std::io::Result<()> {
        file.set_len(len)
    }

    fn sync_data(&self, file: &File) -> std::io::Result<()> {
        file.sync_data()
    }

    fn sync_all(&self, file: &File) -> std::io::Result<()> {
        file.sync_all()
    }

    #[cfg(unix)]
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        File::open(dir)?.sync_all()
    }

    /// Windows has no directory fsync; NTFS makes renames durable with its own journal.
    #[cfg(not(unix))]
    fn sync_dir(&self, _dir: &Path) -> std::io::Result<()> {
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(path)
    }
}

/// A file written through a [`Disk`], for writers that want `Write` (the snapshot's).
pub(super) struct WriteThrough<'a> {
    pub(super) disk: &'a dyn Disk,
    pub(super) file: &'a mut File,
}

impl Write for WriteThrough<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.disk.write(self.file, bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for WriteThrough<'_> {
    fn seek(&mut self, position: SeekFrom) -> std::io::Result<u64> {
        self.file.seek(position)
    }
}

/// Creates `dir` if missing (0700 on Unix: the journal holds secrets), or warns if an
/// existing one is open to others.
pub(super) fn prepare_directory(disk: &dyn Disk, dir: &Path) -> Result<(), JournalError> {
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
            Some(parent) if !parent.as_os_str().is_empty() => disk.sync_dir(parent),
            _ => Ok(()),
        })
        .map_err(JournalError::io(Doing::CreateDirectory, dir))
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

/// What tells a file apart from another one later put at its path: device and inode on
/// Unix. Elsewhere std offers no stable equivalent, so only the path's existence is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileIdentity {
    device: u64,
    inode: u64,
}

#[cfg(unix)]
pub(super) fn identity_of(metadata: &Metadata) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    Some(FileIdentity {
        device: metadata.dev(),
        inode: metadata.ino(),
    })
}

#[cfg(not(unix))]
pub(super) fn identity_of(_metadata: &Metadata) -> Option<FileIdentity> {
    None
}

/// The identity of an open file (`None` where there are none, or it cannot be read).
pub(super) fn identity_of_file(file: &File) -> Option<FileIdentity> {
    file.metadata()
        .ok()
        .and_then(|metadata| identity_of(&metadata))
}

/// `Ok` if `path` (the `watched` one) still names the file that had `identity` (or, without
/// identities, exists).
pub(super) fn check_same_file(
    watched: Watched,
    path: &Path,
    identity: Option<FileIdentity>,
) -> Result<(), JournalError> {
    let moved = |source| JournalError::Moved {
        watched,
        path: path.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(|error| moved(Some(error)))?;
    if identity.is_some() && identity_of(&metadata) != identity {
        return Err(moved(None));
    }
    Ok(())
}

/// After a failed write: cuts the log back to what earlier flushes made durable, so a restart
/// does not replay changes that were refused. Best effort: a torn or unacknowledged tail is
/// harmless anyway, and the log is not written again.
pub(super) fn cut_back(disk: &dyn Disk, file: &File, durable_len: u64) {
    if let Err(error) = disk
        .set_len(file, durable_len)
        .and_then(|()| disk.sync_all(file))
    {
        log::warn!("journal: could not cut the failed log back to {durable_len} bytes: {error}");
    }
}

/// Takes the OS lock on `journal.lock`, so two processes never write the same journal.
pub(super) fn lock_directory(disk: &dyn Disk, dir: &Path) -> Result<File, JournalError> {
    let path = dir.join(LOCK);
    let file = disk
        .create(&path)
        .map_err(JournalError::io(Doing::Open, &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(JournalError::Locked { path }),
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

/// Opens the existing log at `path` for reading and appending, and locks it; `None` if it
/// does not exist. Changes nothing on disk.
pub(super) fn open_locked_log(disk: &dyn Disk, path: &Path) -> Result<Option<File>, JournalError> {
    let file = match disk.open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(JournalError::io(Doing::Open, path)(error)),
    };
    if !take_log_lock(&file, path) {
        return Err(JournalError::Locked {
            path: path.to_path_buf(),
        });
    }
    Ok(Some(file))
}

/// Creates (or empties) the log at `path`, locks it and makes it durable (file and
/// directory): the empty log a journal starts, or a compaction or a recovery switches to.
/// Emptied only once locked, so a log another process holds is never cut.
pub(super) fn create_durable_log(
    disk: &dyn Disk,
    dir: &Path,
    path: &Path,
) -> Result<File, JournalError> {
    let file = disk
        .create(path)
        .map_err(JournalError::io(Doing::Create, path))?;
    if !take_log_lock(&file, path) {
        return Err(JournalError::Locked {
            path: path.to_path_buf(),
        });
    }
    disk.set_len(&file, 0)
        .and_then(|()| disk.sync_all(&file))
        .and_then(|()| disk.sync_dir(dir))
        .map_err(JournalError::io(Doing::Create, path))?;
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
pub(super) type Stamp = (Option<FileIdentity>, u64, Option<std::time::SystemTime>);

/// The stamp of the file at `path`, `None` if it does not exist.
pub(super) fn stamp_of(path: &Path) -> Option<Stamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((
        identity_of(&metadata),
        metadata.len(),
        metadata.modified().ok(),
    ))
}

/// Opens the existing file at `path` for reading only, taking no lock; `None` if it does not
/// exist. (std opens it sharing reads, writes and deletes on Windows too, so a process that
/// holds it open can go on writing, renaming and removing it.)
pub(super) fn open_for_reading(path: &Path) -> Result<Option<File>, JournalError> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(JournalError::io(Doing::Open, path)(error)),
    }
}

/// A file's bytes, from its position to its end. On Windows a file lock bars reads through
/// any other handle, so a log that a running journal holds cannot be read at all: that
/// failure is told apart, with what to do.
pub(super) fn read_all(mut file: &File, path: &Path) -> Result<Vec<u8>, JournalError> {
    const ERROR_LOCK_VIOLATION: i32 = 33;
    let mut bytes = Vec::new();
    match file.read_to_end(&mut bytes) {
        Ok(_) => Ok(bytes),
        Err(source) if cfg!(windows) && source.raw_os_error() == Some(ERROR_LOCK_VIOLATION) => {
            Err(JournalError::ReadBarred {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(JournalError::io(Doing::Read, path)(source)),
    }
}
