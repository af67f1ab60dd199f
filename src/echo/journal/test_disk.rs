//! The disks the tests run on: a fresh directory on the real disk ([`TestDir`]), and a
//! [`Disk`] that fails as a test asks ([`FailingDisk`]), to see the journal keep its
//! promises when a write or an fsync fails, without root or a small filesystem to fill.

use super::files::{Disk, StdDisk};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A fresh directory, removed when dropped.
pub(crate) struct TestDir(pub(crate) PathBuf);

impl TestDir {
    pub(crate) fn new(label: &str) -> TestDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("echo-journal-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("test dir is created");
        TestDir(path)
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Every file's name and bytes.
    pub(crate) fn files(&self) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(&self.0)
            .expect("test dir lists")
            .map(|entry| {
                let entry = entry.expect("entry");
                let name = entry.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(entry.path()).expect("file reads"))
            })
            .collect()
    }

    pub(crate) fn replace_files(&self, files: &BTreeMap<String, Vec<u8>>) {
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

/// One kind of operation of a [`Disk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Operation {
    Open,
    Create,
    Write,
    SetLen,
    SyncData,
    SyncAll,
    SyncDir,
    Rename,
    Remove,
}

/// The real disk, but for the operations a test makes fail: each kind that is failing fails
/// every time, and writes may be given a number of bytes, after which they write what fits
/// and fail (a disk that fills up mid-write). Counts every operation asked of it.
#[derive(Default)]
pub(crate) struct FailingDisk {
    plan: Mutex<Plan>,
}

#[derive(Default)]
struct Plan {
    failing: Vec<Operation>,
    /// Bytes that writes may still put on disk (`None`: as many as they like).
    bytes_left: Option<u64>,
    calls: BTreeMap<Operation, u64>,
}

impl FailingDisk {
    pub(crate) fn new() -> Arc<FailingDisk> {
        Arc::new(FailingDisk::default())
    }

    /// Every `operation` fails from now on, until [`FailingDisk::heal`].
    pub(crate) fn fail(&self, operation: Operation) {
        self.plan().failing.push(operation);
    }

    /// Writes put `bytes` more bytes on disk, then fail.
    pub(crate) fn fail_writes_after(&self, bytes: u64) {
        self.plan().bytes_left = Some(bytes);
    }

    /// Nothing fails any more.
    pub(crate) fn heal(&self) {
        let mut plan = self.plan();
        plan.failing.clear();
        plan.bytes_left = None;
    }

    /// How many times `operation` was asked for, failed or not.
    pub(crate) fn calls(&self, operation: Operation) -> u64 {
        self.plan().calls.get(&operation).copied().unwrap_or(0)
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.plan
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts `operation`, and fails it if the test asked so.
    fn check(&self, operation: Operation) -> std::io::Result<()> {
        let mut plan = self.plan();
        *plan.calls.entry(operation).or_default() += 1;
        if plan.failing.contains(&operation) {
            return Err(std::io::Error::other(format!(
                "{operation:?} fails (as the test asked)"
            )));
        }
        Ok(())
    }
}

impl Disk for FailingDisk {
    fn open(&self, path: &Path) -> std::io::Result<File> {
        self.check(Operation::Open)?;
        StdDisk.open(path)
    }

    fn create(&self, path: &Path) -> std::io::Result<File> {
        self.check(Operation::Create)?;
        StdDisk.create(path)
    }

    fn write(&self, file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
        self.check(Operation::Write)?;
        let fits = {
            let mut plan = self.plan();
            let Some(left) = plan.bytes_left else {
                return StdDisk.write(file, bytes);
            };
            let fits = left.min(bytes.len() as u64);
            plan.bytes_left = Some(left - fits);
            fits as usize
        };
        StdDisk.write(file, &bytes[..fits])?;
        if fits < bytes.len() {
            return Err(std::io::Error::other("no space left (as the test asked)"));
        }
        Ok(())
    }

    fn set_len(&self, file: &File, len: u64) -> std::io::Result<()> {
        self.check(Operation::SetLen)?;
        StdDisk.set_len(file, len)
    }

    fn sync_data(&self, file: &File) -> std::io::Result<()> {
        self.check(Operation::SyncData)?;
        StdDisk.sync_data(file)
    }

    fn sync_all(&self, file: &File) -> std::io::Result<()> {
        self.check(Operation::SyncAll)?;
        StdDisk.sync_all(file)
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.check(Operation::SyncDir)?;
        StdDisk.sync_dir(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.check(Operation::Rename)?;
        StdDisk.rename(from, to)
    }

    fn remove(&self, path: &Path) -> std::io::Result<()> {
        self.check(Operation::Remove)?;
        StdDisk.remove(path)
    }
}
