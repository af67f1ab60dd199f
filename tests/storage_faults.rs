//! Storage faults are never silent and never permanent, black-box: a complete journal line
//! that fails its checksum stops start-up; a full disk refuses changes with 503 (passed on by
//! the broker), keeps reads working and recovers without a restart; a vanished `DATA_DIR` is
//! noticed before the next acknowledgement; one binding cannot fill the disk or the memory;
//! the journal's files are private.
//!
//! The disk-full case mounts a small tmpfs (Linux, root); without root it is skipped with a
//! printed reason. The mount is removed when the test ends, passing or failing.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;

const INSTANCE: &str = r#"{"service_id":"echo_service","plan_id":"big_0001","organization_guid":"o","space_guid":"s"}"#;
const JSON: [(&str, &str); 1] = [("Content-Type", "application/json")];

fn start_echo(data_dir: &Path) -> Process {
    let dir = data_dir.display().to_string();
    Process::start(ECHO_SERVICE, free_port(), &[("DATA_DIR", dir.as_str())])
}

fn echo_call(echo: &Process, method: &str, path: &str, body: Option<&str>) -> Reply {
    call(method, &format!("{}{path}", echo.url), &JSON, body)
        .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
}

/// Every file's name and bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("DATA_DIR lists")
        .map(|entry| {
            let entry = entry.expect("a directory entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            (
                name,
                std::fs::read(entry.path()).expect("a journal file reads"),
            )
        })
        .collect()
}

/// The journal of a service that provisioned three instances and was killed.
fn journal_with_three_instances(data_dir: &Path) {
    let mut echo = start_echo(data_dir);
    for id in ["one", "two", "three"] {
        let reply = echo_call(&echo, "PUT", &format!("/echo/{id}"), Some(INSTANCE));
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    echo.kill();
}

/// Runs the echo service on `data_dir`, expecting exit code 2 and one line naming `line` of
/// `file`, with every file left byte for byte.
fn assert_refuses_to_start(data_dir: &Path, file: &str, line: usize) {
    let before = files(data_dir);
    let port = free_port().to_string();
    let dir = data_dir.display().to_string();
    let env = [
        ("PORT", port.as_str()),
        ("DATA_DIR", dir.as_str()),
        ("LOG_LEVEL", "error"),
    ];
    let (code, output) = run_to_end(ECHO_SERVICE, &[], &env);
    assert_eq!(code, Some(2), "{output}");
    let output = output.trim_end();
    assert_eq!(output.lines().count(), 1, "one line: {output}");
    let named = format!("{} line {line}: ", data_dir.join(file).display());
    assert!(output.contains(&named), "names {named}: {output}");
    assert_eq!(files(data_dir), before, "every file is left as it was");
}

#[test]
fn a_complete_last_line_that_fails_its_checksum_stops_start_up_and_changes_nothing() {
    let data = TempDir::new("last-line");
    journal_with_three_instances(data.path());
    let log_path = data.path().join("changes.0.log");
    let original = std::fs::read(&log_path).expect("the log reads");

    // One bit of the last line (the third provision, acknowledged) flipped.
    let mut flipped = original.clone();
    let at = flipped.len() - 10;
    flipped[at] ^= 0x01;
    std::fs::write(&log_path, &flipped).expect("the log is written");
    assert_refuses_to_start(data.path(), "changes.0.log", 3);

    // A garbage line that ends with a line end is not a torn write either.
    let mut garbage = original.clone();
    garbage.extend_from_slice(b"garbage\n");
    std::fs::write(&log_path, &garbage).expect("the log is written");
    assert_refuses_to_start(data.path(), "changes.0.log", 4);

    // Without the line end it is: cut off, and the three instances are there.
    garbage.pop();
    std::fs::write(&log_path, &garbage).expect("the log is written");
    let echo = start_echo(data.path());
    for id in ["one", "two", "three"] {
        assert_eq!(
            echo_call(&echo, "GET", &format!("/echo/{id}"), None).status,
            200
        );
    }
    drop(echo);
    assert_eq!(std::fs::read(&log_path).expect("the log reads"), original);
}

/// Faults that need Unix file semantics (removing a directory in use) or modes.
#[cfg(unix)]
mod unix {
    use super::*;

    pub fn start_broker_for(echo: &Process) -> Process {
        Process::start(BROKER, free_port(), &[("SERVICE_BASE", echo.url.as_str())])
    }

    pub fn broker_provision(broker: &Process, instance_id: &str) -> Reply {
        let url = format!("{}/v2/service_instances/{instance_id}", broker.url);
        platform("PUT", &url, Some(PROVISION_ECHO))
    }

    pub fn health(echo: &Process) -> u16 {
        echo_call(echo, "GET", "/health", None).status
    }

    /// A 503 whose description names storage.
    pub fn assert_storage_refusal(reply: &Reply) {
        let body = reply.assert_error(503);
        let description = body["description"].as_str().unwrap_or_default();
        assert!(description.contains("storage"), "{description}");
    }

    /// `DATA_DIR` is made to vanish in one of the ways an operator (or a script) can.
    #[derive(Debug, Clone, Copy)]
    enum Vanishing {
        Removed,
        Renamed,
        Replaced,
    }

    fn make_vanish(data_dir: &Path, how: Vanishing) {
        let aside = data_dir.with_extension("aside");
        match how {
            Vanishing::Removed => std::fs::remove_dir_all(data_dir).expect("DATA_DIR is removed"),
            Vanishing::Renamed => std::fs::rename(data_dir, &aside).expect("DATA_DIR is renamed"),
            Vanishing::Replaced => {
                std::fs::rename(data_dir, &aside).expect("DATA_DIR is renamed");
                std::fs::create_dir(data_dir).expect("a new DATA_DIR is made");
            }
        }
    }

    #[test]
    fn a_removed_renamed_or_replaced_data_dir_is_noticed_before_the_next_acknowledgement() {
        for how in [Vanishing::Removed, Vanishing::Renamed, Vanishing::Replaced] {
            let parent = TempDir::new("vanishing");
            let data_dir = parent.path().join("data");
            let echo = start_echo(&data_dir);
            let broker = start_broker_for(&echo);
            assert_eq!(broker_provision(&broker, "before").status, 201, "{how:?}");

            make_vanish(&data_dir, how);
            // Through the broker: passed on as a 503 that names storage, not a 502.
            assert_storage_refusal(&broker_provision(&broker, "after"));
            assert_storage_refusal(&echo_call(&echo, "PUT", "/echo/later", Some(INSTANCE)));
            assert_eq!(health(&echo), 503, "{how:?}");
            // What was acknowledged can still be read.
            assert_eq!(echo_call(&echo, "GET", "/echo/before", None).status, 200);
            assert_eq!(echo_call(&echo, "GET", "/echo/after", None).status, 404);
            let log = echo.log();
            assert!(
                log.lines()
                    .any(|line| line.contains("ERROR") && line.contains("DATA_DIR")),
                "{how:?}: an error line names DATA_DIR:\n{log}"
            );
        }
    }

    #[test]
    fn journal_files_are_created_0600_in_a_data_dir_created_0700() {
        use std::os::unix::fs::PermissionsExt;
        let parent = TempDir::new("modes");
        let data_dir = parent.path().join("data");
        let mut echo = start_echo(&data_dir);
        let reply = echo_call(&echo, "PUT", "/echo/one", Some(INSTANCE));
        assert_eq!(reply.status, 200, "{}", reply.text);
        echo.kill();
        // A compaction writes the snapshot too.
        {
            let (journal, state) = echo_broker::echo::journal::Journal::<
                echo_broker::echo::journal_store::EchoState,
            >::open(&data_dir)
            .expect("the journal opens");
            journal.compact(&state);
        }
        let mode = |path: &Path| {
            std::fs::metadata(path)
                .expect("metadata reads")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(&data_dir), 0o700);
        let names: Vec<String> = files(&data_dir).into_keys().collect();
        assert!(names.contains(&"state.snapshot".to_string()), "{names:?}");
        for name in names {
            assert_eq!(mode(&data_dir.join(&name)), 0o600, "{name}");
        }
    }
}

/// Faults that need Linux: a tmpfs to fill, `/proc` for resident memory.
#[cfg(target_os = "linux")]
mod linux {
    use super::unix::{assert_storage_refusal, broker_provision, health, start_broker_for};
    use super::*;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    const BINDING: &str = r#"{"service_id":"echo_service","plan_id":"big_0001"}"#;

    /// How long a recovered disk may take to be noticed (the journal retries every 500 ms).
    const RECOVERY_WAIT: Duration = Duration::from_secs(10);

    /// The size of every file under `dir`.
    fn disk_usage(dir: &Path) -> u64 {
        files(dir).values().map(|bytes| bytes.len() as u64).sum()
    }

    /// The resident memory of process `pid`, in bytes (`VmRSS` in `/proc/PID/status`).
    fn resident_bytes(pid: u32) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status reads");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib * 1024)
            .expect("VmRSS is in /proc/PID/status")
    }

    /// Binds `binding_id` to `instance_id` and returns its `Authorization` header.
    fn bind_app(echo: &Process, instance_id: &str, binding_id: &str) -> String {
        use base64::Engine;
        let path = format!("/echo/{instance_id}/{binding_id}");
        let binding = echo_call(echo, "PUT", &path, Some(BINDING)).json();
        let credentials = format!(
            "{}:{}",
            binding["username"].as_str().unwrap_or_default(),
            binding["password"].as_str().unwrap_or_default()
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        format!("Basic {encoded}")
    }

    #[test]
    fn one_binding_sending_3000_messages_of_60_kb_grows_data_dir_and_memory_by_less_than_32_mb() {
        const MESSAGES: usize = 3_000;
        const SENDERS: usize = 4;
        const LIMIT: u64 = 32 * 1024 * 1024;
        let data = TempDir::new("big-messages");
        let echo = start_echo(data.path());
        let reply = echo_call(&echo, "PUT", "/echo/chatty", Some(INSTANCE));
        assert_eq!(reply.status, 200, "{}", reply.text);
        let authorization = bind_app(&echo, "chatty", "app");
        let pid = echo.child.id();
        let (disk_before, memory_before) = (disk_usage(data.path()), resident_bytes(pid));

        let body = serde_json::json!({ "message": "m".repeat(60_000) }).to_string();
        let url = format!("{}/echo/chatty/app", echo.url);
        std::thread::scope(|scope| {
            for _ in 0..SENDERS {
                scope.spawn(|| {
                    let headers = [
                        ("Content-Type", "application/json"),
                        ("Authorization", authorization.as_str()),
                    ];
                    for _ in 0..MESSAGES / SENDERS {
                        let reply = call("POST", &url, &headers, Some(&body)).expect("it answers");
                        assert_eq!(reply.status, 200, "{}", reply.text);
                    }
                });
            }
        });

        let disk_growth = disk_usage(data.path()).saturating_sub(disk_before);
        let memory_growth = resident_bytes(pid).saturating_sub(memory_before);
        println!(
        "{MESSAGES} messages of 60 KB: DATA_DIR grew by {disk_growth} bytes, resident memory by {memory_growth} bytes"
    );
        let instance = echo_call(&echo, "GET", "/echo/chatty", None).json();
        assert_eq!(instance["messages"], MESSAGES as u64);
        assert!(disk_growth < LIMIT, "DATA_DIR grew by {disk_growth} bytes");
        assert!(
            memory_growth < LIMIT,
            "resident memory grew by {memory_growth} bytes"
        );
    }

    /// A small tmpfs mounted for one test, unmounted (and its mount point removed) when dropped,
    /// also when the test fails.
    struct Tmpfs {
        path: PathBuf,
    }

    impl Tmpfs {
        /// `Err` with the reason when it cannot be mounted (not root, no mount permission).
        fn mount(label: &str, size: &str) -> Result<Tmpfs, String> {
            let path = std::env::temp_dir()
                .join(format!("echo-broker-{label}-mount-{}", std::process::id()));
            std::fs::create_dir_all(&path).map_err(|error| error.to_string())?;
            let output = std::process::Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0700"),
                    "tmpfs",
                ])
                .arg(&path)
                .output()
                .map_err(|error| format!("cannot run mount: {error}"))?;
            if !output.status.success() {
                let _ = std::fs::remove_dir(&path);
                return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
            }
            Ok(Tmpfs { path })
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let unmounted = std::process::Command::new("umount")
                .arg(&self.path)
                .status()
                .is_ok_and(|status| status.success());
            if !unmounted {
                // Still busy (a process of a failed test): detach it now, freed when unused.
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&self.path)
                    .status();
            }
            let _ = std::fs::remove_dir(&self.path);
        }
    }

    /// Fills the filesystem of `path`'s directory with a file at `path` until a write fails.
    fn fill_disk(path: &Path) {
        use std::io::Write;
        let mut filler = std::fs::File::create(path).expect("the filler is created");
        let chunk = vec![0xAAu8; 16 * 1024];
        while filler.write_all(&chunk).is_ok() {}
        while filler.write_all(&chunk[..512]).is_ok() {}
    }

    /// Provisions from [`CLIENTS`] threads, each until its first refusal (a 503 naming
    /// storage); returns the acknowledged ids ("before" included) and the refused ones.
    fn provision_until_refused(broker: &Process) -> (Vec<String>, Vec<String>) {
        const CLIENTS: usize = 6;
        let mut acknowledged = vec!["before".to_string()];
        let mut refused = Vec::new();
        std::thread::scope(|scope| {
            let clients: Vec<_> = (0..CLIENTS)
                .map(|client| {
                    scope.spawn(move || {
                        let mut acknowledged = Vec::new();
                        for i in 0..200 {
                            let id = format!("full-{client}-{i}");
                            let reply = broker_provision(broker, &id);
                            if reply.status != 201 {
                                assert_storage_refusal(&reply);
                                return (acknowledged, id);
                            }
                            acknowledged.push(id);
                        }
                        panic!("the full disk was never noticed");
                    })
                })
                .collect();
            for client in clients {
                let (ids, refusal) = client.join().expect("a client finishes");
                acknowledged.extend(ids);
                refused.push(refusal);
            }
        });
        (acknowledged, refused)
    }

    #[test]
    fn a_full_disk_refuses_changes_with_503_keeps_reads_and_recovers_without_a_restart() {
        let disk = match Tmpfs::mount("full-disk", "1m") {
            Ok(disk) => disk,
            Err(reason) => {
                println!("skipped: this test mounts a tmpfs, which failed: {reason}");
                return;
            }
        };
        let data_dir = disk.path.join("data");
        let filler = disk.path.join("filler");
        let mut echo = start_echo(&data_dir);
        let broker = start_broker_for(&echo);
        assert_eq!(broker_provision(&broker, "before").status, 201);
        fill_disk(&filler);
        // The log's last page may still take a few lines; then the disk is full. Several
        // clients at once, so the failed flush holds several changes.
        let (mut acknowledged, refused) = provision_until_refused(&broker);
        assert_eq!(health(&echo), 503);
        assert_storage_refusal(&echo_call(&echo, "PUT", "/echo/meanwhile", Some(INSTANCE)));
        for id in &acknowledged {
            let url = format!("{}/v2/service_instances/{id}", broker.url);
            assert_eq!(platform("GET", &url, None).status, 200, "{id} reads");
        }
        for id in &refused {
            let path = format!("/echo/{id}");
            assert_eq!(echo_call(&echo, "GET", &path, None).status, 404, "{id}");
        }

        // Space is freed: changes are taken again, without a restart.
        std::fs::remove_file(&filler).expect("the filler is removed");
        let deadline = Instant::now() + RECOVERY_WAIT;
        loop {
            let reply = broker_provision(&broker, "after");
            if reply.status == 201 {
                break;
            }
            assert_storage_refusal(&reply);
            assert!(Instant::now() < deadline, "no recovery: {}", echo.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(health(&echo), 200);
        acknowledged.push("after".to_string());

        // And the journal holds exactly what was acknowledged.
        echo.kill();
        let echo = start_echo(&data_dir);
        for id in &acknowledged {
            assert_eq!(
                echo_call(&echo, "GET", &format!("/echo/{id}"), None).status,
                200,
                "{id}"
            );
        }
        for id in refused.iter().map(String::as_str).chain(["meanwhile"]) {
            assert_eq!(
                echo_call(&echo, "GET", &format!("/echo/{id}"), None).status,
                404,
                "{id}"
            );
        }
        drop(broker);
        drop(echo);
    }
}
