//! The programs measured: the release binaries built and copied into the run's directory,
//! started on free loopback ports with the settings of each configuration, waited for, and
//! killed when dropped.

use crate::client::{get_request, Client};
use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The broker's basic-auth pair (user:pass), as the platform sends it.
pub const AUTHORIZATION: &str = "Basic dXNlcjpwYXNz";
const BROKER_USER: &str = "user";
const BROKER_PASSWORD: &str = "pass";
/// The echo service's management pair in the two-process deployment.
pub const ECHO_USER: &str = "broker";
pub const ECHO_PASSWORD: &str = "bench-secret";
/// How long a server may take to come up.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A child process that is killed when dropped.
pub struct Process {
    pub name: String,
    pub child: Child,
    pub address: SocketAddr,
    pub log: PathBuf,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Free loopback ports, all picked before any is released so they differ.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port"))
        .collect();
    listeners
        .iter()
        .map(|listener| {
            listener
                .local_addr()
                .expect("a bound listener has an address")
                .port()
        })
        .collect()
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub fn spawn(
    name: &str,
    binary: &Path,
    env: &[(&str, String)],
    log: PathBuf,
    port: u16,
) -> Process {
    let mut command = Command::new(binary);
    for variable in echo_broker::settings::ENVIRONMENT_VARIABLES {
        command.env_remove(variable);
    }
    // A bound database or a platform in this program's environment would change where
    // the echo services keep their state.
    command
        .env_remove("VCAP_SERVICES")
        .env_remove("VCAP_APPLICATION");
    command.envs(env.iter().map(|(key, value)| (*key, value.as_str())));
    let log_file = fs::File::create(&log).expect("cannot create a log file in the temp dir");
    // The servers log to standard output (start-up failures go to standard error): both
    // into the one file, so that `broker-info` pays for writing a
    // real log and a failed start shows why.
    let log_copy = log_file
        .try_clone()
        .expect("cannot share the log file between stdout and stderr");
    let child = command
        .stdin(Stdio::null())
        .stdout(log_copy)
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
    Process {
        name: name.to_string(),
        child,
        address: loopback(port),
        log,
    }
}

/// Waits until `GET path` on the process answers 200; panics with its log if it does not.
pub fn wait_ready(process: &mut Process, path: &str) -> Duration {
    let started = Instant::now();
    let request = get_request(path, process.address);
    while started.elapsed() < READY_TIMEOUT {
        if let Ok(Some(status)) = process.child.try_wait() {
            fail_with_log(process, &format!("exited ({status}) while starting"));
        }
        let mut client = Client::new(process.address);
        if let Ok(200) = client.send(&request) {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    fail_with_log(process, "did not answer 200 in time")
}

fn fail_with_log(process: &Process, what: &str) -> ! {
    let log = fs::read_to_string(&process.log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(20).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    panic!(
        "{} {what}; its log ({}):\n{}",
        process.name,
        process.log.display(),
        tail.join("\n")
    )
}

pub struct Binaries {
    broker: PathBuf,
    pub echo: PathBuf,
    /// The originals in the release directory, for their sizes.
    pub broker_original: PathBuf,
    pub echo_original: PathBuf,
}

/// An echo service (own process) and a broker in front of it.
pub struct Pair {
    pub echo: Process,
    pub broker: Process,
}

/// A DATA_DIR that only its owner may read (the echo service warns about any other).
pub fn create_data_dir(path: &Path) {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(path)
        .expect("cannot create a DATA_DIR in the temp dir");
}

/// Where an echo service keeps its state.
pub enum EchoStore<'a> {
    DataDir(&'a Path),
    /// A `DATABASE_URL`.
    Database(&'a str),
}

/// The environment of every echo service process this program starts, in one place, so a
/// setting the echo service gains (a database connection budget, say) is added here once.
/// `--db-connections`: the echo services' `DATABASE_MAX_CONNECTIONS`, when given (set once,
/// while the options are read).
pub static DB_CONNECTIONS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

pub fn echo_environment(
    port: u16,
    store: EchoStore,
    log_level: &str,
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("PORT", port.to_string()),
        ("HOST", "127.0.0.1".into()),
        ("ECHO_USERNAME", ECHO_USER.into()),
        ("ECHO_PASSWORD", ECHO_PASSWORD.into()),
        ("LOG_LEVEL", log_level.into()),
    ];
    match store {
        EchoStore::DataDir(data) => env.push(("DATA_DIR", data.display().to_string())),
        EchoStore::Database(url) => {
            env.push(("DATABASE_URL", url.to_string()));
            if let Some(connections) = DB_CONNECTIONS.get() {
                env.push(("DATABASE_MAX_CONNECTIONS", connections.to_string()));
            }
        }
    }
    env
}

/// An echo service keeping its state in a fresh DATA_DIR, or in `database_url`.
pub fn start_echo(
    binaries: &Binaries,
    dir: &Path,
    name: &str,
    port: u16,
    database_url: Option<&str>,
) -> Process {
    let data = dir.join(format!("{name}-data"));
    let store = match database_url {
        Some(url) => EchoStore::Database(url),
        None => {
            create_data_dir(&data);
            EchoStore::DataDir(&data)
        }
    };
    let env = echo_environment(port, store, "warn");
    let mut echo = spawn(
        name,
        &binaries.echo,
        &env,
        dir.join(format!("{name}.log")),
        port,
    );
    wait_ready(&mut echo, "/health");
    echo
}

pub fn start_broker(
    binaries: &Binaries,
    dir: &Path,
    name: &str,
    port: u16,
    echo_port: u16,
    log_level: &str,
) -> Process {
    let mut broker = spawn(
        name,
        &binaries.broker,
        &[
            ("PORT", port.to_string()),
            ("HOST", "127.0.0.1".into()),
            ("BROKER_USERNAME", BROKER_USER.into()),
            ("BROKER_PASSWORD", BROKER_PASSWORD.into()),
            ("SERVICE_BASE", format!("http://127.0.0.1:{echo_port}")),
            ("ECHO_USERNAME", ECHO_USER.into()),
            ("ECHO_PASSWORD", ECHO_PASSWORD.into()),
            ("LOG_LEVEL", log_level.into()),
        ],
        dir.join(format!("{name}.log")),
        port,
    );
    wait_ready(&mut broker, "/health");
    broker
}

pub fn start_pair(binaries: &Binaries, dir: &Path, name: &str) -> Pair {
    let ports = free_ports(2);
    let echo = start_echo(binaries, dir, &format!("{name}-echo"), ports[1], None);
    let broker = start_broker(binaries, dir, name, ports[0], ports[1], "warn");
    Pair { echo, broker }
}

/// The broker in its default form, the echo service inside it.
pub fn spawn_embedded(binaries: &Binaries, dir: &Path, name: &str, log_level: &str) -> Process {
    let ports = free_ports(2);
    let data = dir.join(format!("{name}-data"));
    create_data_dir(&data);
    spawn(
        name,
        &binaries.broker,
        &[
            ("PORT", ports[0].to_string()),
            ("HOST", "127.0.0.1".into()),
            ("BROKER_USERNAME", BROKER_USER.into()),
            ("BROKER_PASSWORD", BROKER_PASSWORD.into()),
            ("ECHO_PORT", ports[1].to_string()),
            ("DATA_DIR", data.display().to_string()),
            ("LOG_LEVEL", log_level.into()),
        ],
        dir.join(format!("{name}.log")),
        ports[0],
    )
}

pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Milliseconds from `spawn` to the first 200 on `path`, polling every 100 µs.
pub fn time_to_first_200(mut process_for: impl FnMut() -> Process, path: &str) -> Option<f64> {
    let started = Instant::now();
    let mut process = process_for();
    let request = get_request(path, process.address);
    while started.elapsed() < READY_TIMEOUT {
        let mut client = Client::new(process.address);
        if let Ok(200) = client.send(&request) {
            return Some(started.elapsed().as_secs_f64() * 1000.0);
        }
        if let Ok(Some(_)) = process.child.try_wait() {
            return None;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    None
}

/// Builds the release binaries into `target_dir`, the target directory this program was
/// built in (`target/bench` with `cargo benchmark`), so the usual `target/` is not touched.
pub fn build(target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The project's manifest, one directory above the benchmark's.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("Cargo.toml");
    eprintln!(
        "bench: cargo build --release --bins --package echo-broker --target-dir {}",
        target_dir.display()
    );
    let status: io::Result<ExitStatus> = Command::new(cargo)
        .args(["build", "--release", "--bins", "--package", "echo-broker"])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => {
            eprintln!(
                "bench: the build failed ({status}); --no-build uses the binaries as they are"
            );
            std::process::exit(1);
        }
        Err(error) => {
            eprintln!("bench: cannot run cargo ({error}); build first and pass --no-build");
            std::process::exit(1);
        }
    }
}

/// Copies the binaries into the run's directory, so a rebuild during the run changes nothing.
pub fn copy_binaries(binaries_dir: &Path, dir: &Path) -> Binaries {
    let name = |base: &str| format!("{base}{}", std::env::consts::EXE_SUFFIX);
    let copy = |base: &str| {
        let original = binaries_dir.join(name(base));
        let copy = dir.join(name(base));
        fs::copy(&original, &copy).unwrap_or_else(|error| {
            panic!(
                "cannot copy {} ({error}); drop --no-build, or build the binaries there first",
                original.display()
            )
        });
        (copy, original)
    };
    let (broker, broker_original) = copy("echo-broker");
    let (echo, echo_original) = copy("echo-service");
    Binaries {
        broker,
        echo,
        broker_original,
        echo_original,
    }
}
