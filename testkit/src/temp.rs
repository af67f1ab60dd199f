//! Free loopback ports, fresh passwords and temp dirs removed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// A port that was free a moment ago (the OS picks it; we release it for the child), and
/// never one this process handed out before: two picks in a row may otherwise get the
/// same number back from the OS.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("the OS gives a free loopback port");
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// A password made at run time, as an operator would (`openssl rand -hex 24`): strong, and in
/// no file of the repository, so it is accepted beyond loopback.
pub fn fresh_password() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the OS gives random bytes");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A fresh, empty directory under the system's temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        TempDir::create(label)
            .unwrap_or_else(|error| panic!("a temp dir for {label} cannot be made: {error}"))
    }

    /// [`TempDir::new`], or why the directory cannot be made.
    pub fn create(label: &str) -> std::io::Result<TempDir> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("echo-broker-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
