//! A throwaway PostgreSQL cluster: `initdb` in a temp dir, a server on a free loopback port
//! with real password authentication (SCRAM), stopped and removed when dropped, whether the
//! test passes or panics.
//!
//! Where PostgreSQL is not installed, [`Cluster::start`] says loudly that the test is
//! skipped and returns `None`, unless `ECHO_TEST_REQUIRE_POSTGRES` is set (CI sets it): then a
//! missing PostgreSQL is a failure, not a quiet pass. The binaries are taken from `PG_BIN`,
//! else the newest `/usr/lib/postgresql/*/bin` (Debian's layout), else `initdb` on `PATH`.
//!
//! PostgreSQL refuses to run as root, and CI runs as root: then every server program runs as
//! the `postgres` user (else `nobody`) through `runuser`, `setpriv` or `su`, in a temp dir
//! handed over to that user. Unix only: elsewhere no cluster starts.

use crate::temp::{free_port, fresh_password, TempDir};
use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The superuser `initdb` creates, as whom the URLs connect.
pub const SUPERUSER: &str = "echo_test";

/// How long a server gets to start or stop before the start fails with its log.
const START_LIMIT: Duration = Duration::from_secs(30);

/// The file that marks a directory holding a cluster of this kit, so that [`stop_kept`]
/// removes no other directory.
const MARKER: &str = ".testkit-postgres";

/// What a cluster is started with, beyond what every one has (loopback, SCRAM, fsync on).
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `max_connections`.
    pub max_connections: u32,
    /// `ssl = on` with this certificate and key (PEM).
    pub tls: Option<(String, String)>,
    /// More `postgresql.conf` lines (`name = value`).
    pub settings: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> ClusterOptions {
        ClusterOptions {
            max_connections: 100,
            tls: None,
            settings: Vec::new(),
        }
    }
}

/// Why no cluster started.
#[derive(Debug)]
pub enum StartError {
    /// PostgreSQL's server programs are not here (or this is not Unix).
    NotInstalled(String),
    /// They are, and something went wrong: the message says what, with the server's log.
    Failed(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        match self {
            StartError::NotInstalled(reason) => write!(
                formatter,
                "PostgreSQL is not installed ({reason}); install its server (Debian, Ubuntu: \
                 apt-get install postgresql; Fedora: dnf install postgresql-server; macOS: \
                 brew install postgresql), or set PG_BIN to its bin directory"
            ),
            StartError::Failed(reason) => formatter.write_str(reason),
        }
    }
}

/// Where the tests that need PostgreSQL find none: a panic when CI requires it, else a
/// message on standard error that no capture hides, so a skip never looks like a pass.
fn not_available(reason: &str) {
    let required = std::env::var_os("ECHO_TEST_REQUIRE_POSTGRES").is_some_and(|v| !v.is_empty());
    if required {
        panic!("ECHO_TEST_REQUIRE_POSTGRES is set, but PostgreSQL cannot run here: {reason}");
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    // Written to the handle, not with eprintln!: the test harness captures eprintln! of
    // passing tests, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: PostgreSQL is not installed ({reason}). Install it (or set \
         PG_BIN to its bin directory); set ECHO_TEST_REQUIRE_POSTGRES=1 to fail instead. ***\n"
    );
}

/// Whether PostgreSQL's server programs are installed; if not, says so as a skip does (or
/// fails, where CI requires them).
pub fn installed() -> bool {
    find_binaries()
        .map_err(|reason| not_available(&reason))
        .is_ok()
}

/// A running throwaway cluster (see the module's documentation).
pub struct Cluster {
    programs: Programs,
    dir: TempDir,
    password: String,
    port: u16,
    paused: AtomicBool,
}

impl Cluster {
    /// A fresh cluster, running; `None` (after saying why) where PostgreSQL is missing. For
    /// tests: any other failure is a panic that shows the server's log.
    pub fn start() -> Option<Cluster> {
        Cluster::start_for_a_test(&ClusterOptions::default())
    }

    /// [`Cluster::start`] with `ssl = on` and this certificate and key (PEM).
    pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> Option<Cluster> {
        Cluster::start_for_a_test(&ClusterOptions {
            tls: Some((cert_pem.to_string(), key_pem.to_string())),
            ..ClusterOptions::default()
        })
    }

    fn start_for_a_test(options: &ClusterOptions) -> Option<Cluster> {
        match Cluster::launch(options) {
            Ok(cluster) => Some(cluster),
            Err(StartError::NotInstalled(reason)) => {
                not_available(&reason);
                None
            }
            Err(StartError::Failed(reason)) => panic!("{reason}"),
        }
    }

    /// A fresh cluster with `options`, running, or why there is none.
    pub fn launch(options: &ClusterOptions) -> Result<Cluster, StartError> {
        let bin = find_binaries().map_err(StartError::NotInstalled)?;
        let dir = TempDir::create("postgres")
            .map_err(|error| StartError::Failed(format!("no temp dir: {error}")))?;
        let programs = Programs::new(bin, dir.path()).map_err(StartError::Failed)?;
        let mut cluster = Cluster {
            programs,
            dir,
            password: fresh_password(),
            port: 0,
            paused: AtomicBool::new(false),
        };
        cluster.init(options).map_err(StartError::Failed)?;
        cluster.start_on_a_free_port().map_err(StartError::Failed)?;
        Ok(cluster)
    }

    /// Leaves the cluster running, and its directory in place, when this value goes: for
    /// [`stop_kept`] to stop later. Returns the directory.
    pub fn keep_running(self) -> PathBuf {
        let cluster = std::mem::ManuallyDrop::new(self);
        cluster.dir.path().to_path_buf()
    }

    /// `postgres://echo_test:PASSWORD@127.0.0.1:PORT/DATABASE`
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// [`Cluster::url`] with a password the server refuses (SQLSTATE 28P01).
    pub fn wrong_password_url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:not-the-password@127.0.0.1:{}/{database}",
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password (to build a URL of one's own, or to look for it in logs).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Creates `name` (letters, digits, `_` and `-`, so that it needs no escaping in a
    /// URL) and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        assert!(
            !name.is_empty() && name.chars().all(plain),
            "a test database name is letters, digits, '_' and '-': {name:?}"
        );
        let mut client = self.client("postgres");
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
        self.url(name)
    }

    /// How to connect to `database` as the superuser: 10 s to connect, no TLS.
    pub fn config(&self, database: &str) -> ::postgres::Config {
        let mut config = ::postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(SUPERUSER)
            .password(&self.password)
            .dbname(database)
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// A client of `database` as the superuser, for a test's own checks.
    pub fn client(&self, database: &str) -> ::postgres::Client {
        self.config(database)
            .connect(::postgres::NoTls)
            .unwrap_or_else(|error| panic!("connecting to {database}: {error}"))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The directory of the server's programs (`PG_BIN`, or the one found instead).
    pub fn bin(&self) -> &Path {
        &self.programs.bin
    }

    /// The directory the cluster lives in (its data, its log, its socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server (`pg_ctl stop -m fast`: connections are ended, and what was
    /// committed is on disk); resumes it first if it was paused.
    pub fn stop(&self) {
        self.resume_if_paused();
        if let Err(output) = self.programs.stop(&self.data_dir(), "fast") {
            panic!(
                "pg_ctl stop failed: {output}\nthe server's log:\n{}",
                self.log()
            );
        }
    }

    /// Stops the server as a crash would (`pg_ctl stop -m immediate`: every process
    /// ends at once, connections are cut, and the next start recovers from the WAL).
    pub fn crash(&self) {
        self.resume_if_paused();
        if let Err(output) = self.programs.stop(&self.data_dir(), "immediate") {
            panic!(
                "pg_ctl stop -m immediate failed: {output}\nthe server's log:\n{}",
                self.log()
            );
        }
    }

    /// Starts the stopped server again: the same data, the same port.
    pub fn start_again(&self) {
        if let Err(output) = self.pg_ctl_start() {
            panic!(
                "PostgreSQL did not start again on port {}: {output}\nits log:\n{}",
                self.port,
                self.log()
            );
        }
    }

    /// Stops the server and all its processes (SIGSTOP): connections stay open, and
    /// nothing is answered, as a server that hangs.
    pub fn pause(&self) {
        let postmaster = self
            .postmaster_pid()
            .unwrap_or_else(|| panic!("pause: the server is not running"));
        // The postmaster first, so that it starts no backend after the children are
        // listed.
        signal("STOP", &[postmaster]);
        signal("STOP", &children_of(postmaster));
        self.paused.store(true, Ordering::SeqCst);
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        if let Some(postmaster) = self.postmaster_pid() {
            signal("CONT", &children_of(postmaster));
            signal("CONT", &[postmaster]);
        }
        self.paused.store(false, Ordering::SeqCst);
    }

    fn resume_if_paused(&self) {
        if self.paused.load(Ordering::SeqCst) {
            self.resume();
        }
    }

    /// The postmaster's process id, from the first line of `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        postmaster_pid(&self.data_dir())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// `initdb` with the superuser's password from a file, then the cluster's settings.
    fn init(&self, options: &ClusterOptions) -> Result<(), String> {
        let dir = self.dir.path();
        write_file(&dir.join(MARKER), "", None)?;
        self.programs.hand_over(dir)?;
        let pwfile = dir.join("pwfile");
        write_file(
            &pwfile,
            &format!("{}\n", self.password),
            Some(&self.programs),
        )?;
        let data = self.data_dir();
        let mut args: Vec<OsString> = vec!["-D".into(), data.clone().into_os_string()];
        args.extend(
            [
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                // The server runs with fsync on; only initdb's own final sync is skipped,
                // which a throwaway cluster never needs across a machine crash.
                "--no-sync",
            ]
            .map(OsString::from),
        );
        let mut pwfile_arg = OsString::from("--pwfile=");
        pwfile_arg.push(&pwfile);
        args.push(pwfile_arg);
        let initdb = self.programs.run("initdb", &args, Duration::from_secs(60));
        let _ = std::fs::remove_file(&pwfile);
        initdb.map_err(|output| {
            let reach = self
                .programs
                .account
                .as_ref()
                .map_or(String::new(), |account| {
                    format!(
                        " (run as '{}', which must be able to reach {})",
                        account.name,
                        dir.display()
                    )
                });
            format!("initdb failed{reach}: {output}")
        })?;
        if let Some((cert_pem, key_pem)) = &options.tls {
            write_file(&data.join("server.crt"), cert_pem, Some(&self.programs))?;
            write_file(&data.join("server.key"), key_pem, Some(&self.programs))?;
        }
        append(&data.join("postgresql.conf"), &settings(dir, options))
    }

    /// Starts the server on a port that was free a moment ago; another process may take
    /// it in between, so a refused bind is retried on another port.
    fn start_on_a_free_port(&mut self) -> Result<(), String> {
        let conf = self.data_dir().join("postgresql.conf");
        for _ in 0..5 {
            self.port = free_port();
            // The last setting in the file wins.
            append(&conf, &format!("port = {}\n", self.port))?;
            let logged_before = self.log().len();
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(_)
                    if self
                        .log()
                        .get(logged_before..)
                        .is_some_and(|new| new.contains("could not bind")) =>
                {
                    continue
                }
                Err(output) => {
                    return Err(format!(
                        "PostgreSQL did not start within {START_LIMIT:?}: {output}\nits log:\n{}",
                        self.log()
                    ))
                }
            }
        }
        Err(format!(
            "PostgreSQL found no free port in 5 tries; its log:\n{}",
            self.log()
        ))
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut args: Vec<OsString> = ["start", "-w", "-t", "30", "-D"]
            .map(OsString::from)
            .to_vec();
        args.push(self.data_dir().into_os_string());
        args.push("-l".into());
        args.push(self.log_path().into_os_string());
        self.programs
            .run("pg_ctl", &args, START_LIMIT + Duration::from_secs(10))
            .map(|_| ())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Best effort, and never a panic: this also runs while a failed test unwinds.
        self.resume_if_paused();
        self.programs.stop_or_kill(&self.data_dir());
    }
}

/// Stops the cluster that [`Cluster::keep_running`] left in `dir`, and removes `dir`.
/// Refuses a directory that holds no cluster of this kit.
pub fn stop_kept(dir: &Path) -> Result<(), String> {
    if !dir.join(MARKER).is_file() {
        return Err(format!(
            "{} is not a directory that test-postgres made",
            dir.display()
        ));
    }
    let data = dir.join("data");
    if data.join("postmaster.pid").is_file() {
        let bin = find_binaries()?;
        Programs::new(bin, dir)?.stop_or_kill(&data);
    }
    std::fs::remove_dir_all(dir).map_err(|error| format!("removing {}: {error}", dir.display()))
}

/// The settings every cluster of the kit adds to `postgresql.conf`, then `options`'.
fn settings(dir: &Path, options: &ClusterOptions) -> String {
    let socket_dir = dir.display().to_string().replace('\'', "''");
    let mut settings = format!(
        "\n# A throwaway cluster (testkit): loopback only, its socket in its own dir.\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{socket_dir}'\n\
         max_connections = {}\n\
         fsync = on\n",
        options.max_connections
    );
    if options.tls.is_some() {
        settings.push_str("ssl = on\n");
    }
    for line in &options.settings {
        settings.push_str(line);
        settings.push('\n');
    }
    settings
}

/// The unprivileged account that runs the server when the caller runs as root.
struct Account {
    name: String,
    uid: u32,
    gid: u32,
}

/// How a server program is started.
enum RunAs {
    Me,
    Runuser(String),
    Setpriv { uid: u32, gid: u32 },
    Su(String),
}

/// The server's programs, run in the cluster's directory as the server's user.
struct Programs {
    bin: PathBuf,
    dir: PathBuf,
    account: Option<Account>,
    run_as: RunAs,
}

impl Programs {
    fn new(bin: PathBuf, dir: &Path) -> Result<Programs, String> {
        let account = if running_as_root() {
            Some(server_account()?)
        } else {
            None
        };
        let run_as = account.as_ref().map_or(RunAs::Me, run_as);
        Ok(Programs {
            bin,
            dir: dir.to_path_buf(),
            account,
            run_as,
        })
    }

    /// Gives `path` to the server's user, when it is not the caller.
    fn hand_over(&self, path: &Path) -> Result<(), String> {
        match &self.account {
            Some(account) => hand_over(path, account),
            None => Ok(()),
        }
    }

    /// `pg_ctl stop -m MODE`, bounded.
    fn stop(&self, data: &Path, mode: &str) -> Result<(), String> {
        let mut args: Vec<OsString> = ["stop", "-m", mode, "-w", "-t", "30", "-D"]
            .map(OsString::from)
            .to_vec();
        args.push(data.as_os_str().to_owned());
        self.run("pg_ctl", &args, START_LIMIT).map(|_| ())
    }

    /// `pg_ctl stop -m immediate`, and if that fails, SIGKILL to the postmaster and its
    /// children: never a panic.
    fn stop_or_kill(&self, data: &Path) {
        if self.stop(data, "immediate").is_err() {
            if let Some(postmaster) = postmaster_pid(data) {
                let children = children_of(postmaster);
                signal("KILL", &[postmaster]);
                signal("KILL", &children);
            }
        }
    }

    /// Runs one of the server's programs as the server's user, its output to a file (a
    /// pipe could be held open by the server it starts), killed after `limit`.
    fn run(&self, program: &str, args: &[OsString], limit: Duration) -> Result<String, String> {
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let n = RUNS.fetch_add(1, Ordering::SeqCst);
        let output_path = self.dir.join(format!("{program}-{n}.out"));
        let output = std::fs::File::create(&output_path)
            .map_err(|error| format!("{}: {error}", output_path.display()))?;
        let errors = output
            .try_clone()
            .map_err(|error| format!("{}: {error}", output_path.display()))?;
        let mut command = self.command(&self.bin.join(program), args);
        command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors);
        // The server's programs read these; the kit says everything explicitly.
        for name in [
            "PGDATA",
            "PGPORT",
            "PGHOST",
            "PGUSER",
            "PGDATABASE",
            "PGOPTIONS",
        ] {
            command.env_remove(name);
        }
        let status = match command.spawn() {
            Ok(mut child) => wait_at_most(&mut child, limit),
            Err(error) => Err(format!("{program} did not start: {error}")),
        };
        let text = std::fs::read_to_string(&output_path).unwrap_or_default();
        let _ = std::fs::remove_file(&output_path);
        match status {
            Ok(status) if status.success() => Ok(text),
            Ok(status) => Err(format!("{program} {args:?}: {status}\n{text}")),
            Err(reason) => Err(format!("{program} {args:?}: {reason}\n{text}")),
        }
    }

    fn command(&self, program: &Path, args: &[OsString]) -> Command {
        match &self.run_as {
            RunAs::Me => {
                let mut command = Command::new(program);
                command.args(args);
                command
            }
            RunAs::Runuser(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program).args(args);
                command
            }
            RunAs::Setpriv { uid, gid } => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .args(["--clear-groups", "--"])
                    .arg(program)
                    .args(args);
                command
            }
            RunAs::Su(user) => {
                let words: Vec<String> = std::iter::once(program.as_os_str())
                    .chain(args.iter().map(OsString::as_os_str))
                    .map(|word| shell_quote(&word.to_string_lossy()))
                    .collect();
                let mut command = Command::new("su");
                command
                    .args(["-s", "/bin/sh", user, "-c"])
                    .arg(words.join(" "));
                command
            }
        }
    }
}

fn wait_at_most(child: &mut std::process::Child, limit: Duration) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {limit:?}"));
            }
            Err(error) => return Err(format!("could not be waited for: {error}")),
        }
    }
}

/// `PG_BIN`, else the newest `/usr/lib/postgresql/VERSION/bin`, else where `initdb` is on
/// `PATH`; or why none is usable.
fn find_binaries() -> Result<PathBuf, String> {
    if cfg!(not(unix)) {
        return Err("the test kit runs PostgreSQL on Unix only".into());
    }
    let usable = |bin: &Path| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file();
    if let Some(bin) = std::env::var_os("PG_BIN").filter(|value| !value.is_empty()) {
        let bin = PathBuf::from(bin);
        return if usable(&bin) {
            Ok(bin)
        } else {
            Err(format!("PG_BIN={} has no initdb and pg_ctl", bin.display()))
        };
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = entry.path().join("bin");
            usable(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Some(initdb) = on_path("initdb") {
        // A package manager's PATH entry is often a link into the real bin directory,
        // where pg_ctl and postgres are too.
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(bin) = real.parent().filter(|bin| usable(bin)) {
            return Ok(bin.to_path_buf());
        }
    }
    Err("no PG_BIN, no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH".into())
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// `id -u`, or with `-g`, of `name` (of the caller without one).
fn id(flag: &str, name: Option<&str>) -> Option<u32> {
    let output = Command::new("id").arg(flag).args(name).output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// PostgreSQL refuses to run as root.
fn running_as_root() -> bool {
    cfg!(unix) && id("-u", None) == Some(0)
}

/// The account that runs the server for a caller running as root: `postgres` (Debian's
/// package makes it), else `nobody`.
fn server_account() -> Result<Account, String> {
    ["postgres", "nobody"]
        .iter()
        .find_map(|name| {
            Some(Account {
                name: name.to_string(),
                uid: id("-u", Some(name))?,
                gid: id("-g", Some(name))?,
            })
        })
        .ok_or_else(|| "running as root, and neither 'postgres' nor 'nobody' exists".into())
}

fn run_as(account: &Account) -> RunAs {
    if on_path("runuser").is_some() {
        RunAs::Runuser(account.name.clone())
    } else if on_path("setpriv").is_some() {
        RunAs::Setpriv {
            uid: account.uid,
            gid: account.gid,
        }
    } else {
        RunAs::Su(account.name.clone())
    }
}

#[cfg(unix)]
fn hand_over(path: &Path, account: &Account) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid))
        .map_err(|error| format!("chown {} to {}: {error}", path.display(), account.name))
}

#[cfg(not(unix))]
fn hand_over(_path: &Path, _account: &Account) -> Result<(), String> {
    Ok(())
}

/// Writes `text` readable by its owner only, given to the server's user when `programs`
/// says: PostgreSQL refuses a key file that others can read.
fn write_file(path: &Path, text: &str, programs: Option<&Programs>) -> Result<(), String> {
    std::fs::write(path, text).map_err(|error| format!("writing {}: {error}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|error| format!("chmod 600 {}: {error}", path.display()))?;
    }
    programs.map_or(Ok(()), |programs| programs.hand_over(path))
}

fn append(path: &Path, text: &str) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|error| format!("appending to {}: {error}", path.display()))
}

/// The postmaster's process id, from the first line of `DATA/postmaster.pid`.
fn postmaster_pid(data: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// The direct children of `parent`: from `/proc` where there is one, else `pgrep -P`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        let output = Command::new("pgrep")
            .args(["-P", &parent.to_string()])
            .output();
        return output.map_or(Vec::new(), |output| {
            String::from_utf8_lossy(&output.stdout)
                .split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect()
        });
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "pid (comm) state ppid ...", where comm may hold spaces and parentheses.
            let after_comm = &stat[stat.rfind(')')? + 1..];
            let ppid: u32 = after_comm.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

/// `kill -s SIGNAL PIDS`, through sh's built-in `kill`, which every Unix has.
fn signal(name: &str, pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("sh")
        .args(["-c", "kill -s \"$0\" \"$@\" 2>/dev/null", name])
        .args(pids.iter().map(u32::to_string))
        .status();
}

fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}
