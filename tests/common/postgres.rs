//! A throwaway PostgreSQL cluster for one test: `initdb` in a temp dir, a server on a free
//! loopback port with real password authentication (SCRAM), stopped and removed when
//! dropped, whether the test passes or panics.
//!
//! Where PostgreSQL is not installed, [`Cluster::start`] says loudly that the test is
//! skipped and returns `None`, unless `ECHO_TEST_REQUIRE_POSTGRES` is set (CI sets it): then a
//! missing PostgreSQL is a failure, not a quiet pass. The binaries are taken from `PG_BIN`,
//! else the newest `/usr/lib/postgresql/*/bin` (Debian's layout), else `initdb` on `PATH`.
//!
//! PostgreSQL refuses to run as root, and CI runs as root: then every server program runs as
//! the `postgres` user (else `nobody`) through `runuser`, `setpriv` or `su`, in a temp dir
//! handed over to that user.

use std::io::Write;
use std::time::Duration;

/// The superuser `initdb` creates, as whom the URLs connect.
pub const SUPERUSER: &str = "echo_test";

/// How long a server gets to start or stop before the test fails with its log.
const START_LIMIT: Duration = Duration::from_secs(30);

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

// Every test binary compiles this module; most never start a cluster.
#[cfg(unix)]
#[allow(unused_imports)]
pub use unix::{installed, Cluster};

#[cfg(not(unix))]
#[allow(unused_imports)]
pub use elsewhere::Cluster;

#[cfg(unix)]
mod unix {
    use super::super::{free_port, fresh_password, TempDir};
    use super::{not_available, START_LIMIT, SUPERUSER};
    use std::ffi::OsString;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};
    use std::process::{Command, ExitStatus, Stdio};
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    /// A running throwaway cluster (see the module's documentation).
    pub struct Cluster {
        bin: PathBuf,
        dir: TempDir,
        run_as: RunAs,
        password: String,
        port: u16,
        paused: AtomicBool,
    }

    /// The unprivileged account that runs the server when the test runs as root.
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

    /// Whether PostgreSQL's server programs are installed; if not, says so as a skip does
    /// (or fails, where CI requires them).
    pub fn installed() -> bool {
        find_binaries()
            .map_err(|reason| not_available(&reason))
            .is_ok()
    }

    impl Cluster {
        /// A fresh cluster, running; `None` (after saying why) where PostgreSQL is missing.
        pub fn start() -> Option<Cluster> {
            Cluster::start_with(None)
        }

        /// [`Cluster::start`] with `ssl = on` and this certificate and key (PEM).
        pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> Option<Cluster> {
            Cluster::start_with(Some((cert_pem, key_pem)))
        }

        fn start_with(tls: Option<(&str, &str)>) -> Option<Cluster> {
            let bin = match find_binaries() {
                Ok(bin) => bin,
                Err(reason) => {
                    not_available(&reason);
                    return None;
                }
            };
            let dir = TempDir::new("postgres");
            let owner = std::fs::metadata(dir.path())
                .expect("the temp dir just made has metadata")
                .uid();
            let (run_as, account) = if owner == 0 {
                let account = server_account();
                let run_as = run_as(&account);
                (run_as, Some(account))
            } else {
                (RunAs::Me, None)
            };
            let mut cluster = Cluster {
                bin,
                dir,
                run_as,
                password: fresh_password(),
                port: 0,
                paused: AtomicBool::new(false),
            };
            cluster.init(account.as_ref(), tls);
            cluster.start_on_a_free_port();
            Some(cluster)
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

        /// A client of `database` as the superuser, for a test's own checks (10 s to
        /// connect, no TLS).
        pub fn client(&self, database: &str) -> ::postgres::Client {
            let mut config: ::postgres::Config = self
                .url(database)
                .parse()
                .expect("the cluster's URL parses");
            config.connect_timeout(Duration::from_secs(10));
            config
                .connect(::postgres::NoTls)
                .unwrap_or_else(|error| panic!("connecting to {database}: {error}"))
        }

        /// The server's log so far.
        pub fn log(&self) -> String {
            std::fs::read_to_string(self.log_path()).unwrap_or_default()
        }

        /// Stops the server (`pg_ctl stop -m fast`: connections are ended, and what was
        /// committed is on disk); resumes it first if it was paused.
        pub fn stop(&self) {
            if self.paused.load(Ordering::SeqCst) {
                self.resume();
            }
            let data = self.data_dir();
            let args = ["stop", "-m", "fast", "-w", "-t", "30", "-D"];
            if let Err(output) = self.run_pg_ctl(&args, &data, START_LIMIT) {
                panic!(
                    "pg_ctl stop failed: {output}\nthe server's log:\n{}",
                    self.log()
                );
            }
        }

        /// Stops the server as a crash would (`pg_ctl stop -m immediate`: every process
        /// ends at once, connections are cut, and the next start recovers from the WAL).
        pub fn crash(&self) {
            if self.paused.load(Ordering::SeqCst) {
                self.resume();
            }
            let data = self.data_dir();
            let args = ["stop", "-m", "immediate", "-w", "-t", "30", "-D"];
            if let Err(output) = self.run_pg_ctl(&args, &data, START_LIMIT) {
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

        fn data_dir(&self) -> PathBuf {
            self.dir.path().join("data")
        }

        fn log_path(&self) -> PathBuf {
            self.dir.path().join("postgres.log")
        }

        /// `initdb` with the superuser's password from a file, then the cluster's settings.
        fn init(&mut self, account: Option<&Account>, tls: Option<(&str, &str)>) {
            if let Some(account) = account {
                hand_over(self.dir.path(), account);
            }
            let pwfile = self.dir.path().join("pwfile");
            write_private(&pwfile, &format!("{}\n", self.password), account);
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
            let initdb = self.run("initdb", &args, Duration::from_secs(60));
            let _ = std::fs::remove_file(&pwfile);
            if let Err(output) = initdb {
                let reach = account.map_or(String::new(), |account| {
                    format!(
                        " (run as '{}', which must be able to reach {})",
                        account.name,
                        self.dir.path().display()
                    )
                });
                panic!("initdb failed{reach}: {output}");
            }
            let socket_dir = self.dir.path().display().to_string().replace('\'', "''");
            let mut settings = format!(
                "\n# The test harness's throwaway cluster (tests/common/postgres.rs).\n\
                 listen_addresses = '127.0.0.1'\n\
                 unix_socket_directories = '{socket_dir}'\n\
                 max_connections = 100\n\
                 fsync = on\n"
            );
            if let Some((cert_pem, key_pem)) = tls {
                write_private(&data.join("server.crt"), cert_pem, account);
                write_private(&data.join("server.key"), key_pem, account);
                settings.push_str("ssl = on\n");
            }
            append(&data.join("postgresql.conf"), &settings);
        }

        /// Starts the server on a port that was free a moment ago; another process may take
        /// it in between, so a refused bind is retried on another port.
        fn start_on_a_free_port(&mut self) {
            let conf = self.data_dir().join("postgresql.conf");
            for _ in 0..5 {
                self.port = free_port();
                // The last setting in the file wins.
                append(&conf, &format!("port = {}\n", self.port));
                let logged_before = self.log().len();
                match self.pg_ctl_start() {
                    Ok(()) => return,
                    Err(_)
                        if self
                            .log()
                            .get(logged_before..)
                            .is_some_and(|new| new.contains("could not bind")) =>
                    {
                        continue
                    }
                    Err(output) => panic!(
                        "PostgreSQL did not start within {START_LIMIT:?}: {output}\nits log:\n{}",
                        self.log()
                    ),
                }
            }
            panic!(
                "PostgreSQL found no free port in 5 tries; its log:\n{}",
                self.log()
            );
        }

        fn pg_ctl_start(&self) -> Result<(), String> {
            let data = self.data_dir();
            let mut args: Vec<OsString> = ["start", "-w", "-t", "30", "-D"]
                .map(OsString::from)
                .to_vec();
            args.push(data.into_os_string());
            args.push("-l".into());
            args.push(self.log_path().into_os_string());
            self.run("pg_ctl", &args, START_LIMIT + Duration::from_secs(10))
                .map(|_| ())
        }

        /// `pg_ctl ARGS DATA_DIR`, bounded.
        fn run_pg_ctl(&self, args: &[&str], data: &Path, limit: Duration) -> Result<(), String> {
            let mut args: Vec<OsString> = args.iter().map(OsString::from).collect();
            args.push(data.as_os_str().to_owned());
            self.run("pg_ctl", &args, limit).map(|_| ())
        }

        /// Runs one of the server's programs as the server's user, its output to a file (a
        /// pipe could be held open by the server it starts), killed after `limit`.
        fn run(&self, program: &str, args: &[OsString], limit: Duration) -> Result<String, String> {
            static RUNS: AtomicU32 = AtomicU32::new(0);
            let n = RUNS.fetch_add(1, Ordering::SeqCst);
            let output_path = self.dir.path().join(format!("{program}-{n}.out"));
            let output = std::fs::File::create(&output_path)
                .map_err(|error| format!("{}: {error}", output_path.display()))?;
            let errors = output
                .try_clone()
                .map_err(|error| format!("{}: {error}", output_path.display()))?;
            let mut command = self.command(&self.bin.join(program), args);
            command
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .stdout(output)
                .stderr(errors);
            // The server's programs read these; the harness says everything explicitly.
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

        /// The postmaster's process id, from the first line of `postmaster.pid`.
        fn postmaster_pid(&self) -> Option<u32> {
            let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
            text.lines().next()?.trim().parse().ok()
        }
    }

    impl Drop for Cluster {
        fn drop(&mut self) {
            // Best effort, and never a panic: this also runs while a failed test unwinds.
            if self.paused.load(Ordering::SeqCst) {
                self.resume();
            }
            let args = ["stop", "-m", "immediate", "-w", "-t", "10", "-D"];
            let stopped = self.run_pg_ctl(&args, &self.data_dir(), Duration::from_secs(20));
            if stopped.is_err() {
                if let Some(postmaster) = self.postmaster_pid() {
                    let children = children_of(postmaster);
                    signal("KILL", &[postmaster]);
                    signal("KILL", &children);
                }
            }
        }
    }

    fn wait_at_most(
        child: &mut std::process::Child,
        limit: Duration,
    ) -> Result<ExitStatus, String> {
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

    /// The account that runs the server for a root test: `postgres` (Debian's package makes
    /// it), else `nobody`.
    fn server_account() -> Account {
        let id = |flag: &str, name: &str| -> Option<u32> {
            let output = Command::new("id").args([flag, name]).output().ok()?;
            if !output.status.success() {
                return None;
            }
            String::from_utf8_lossy(&output.stdout).trim().parse().ok()
        };
        ["postgres", "nobody"]
            .iter()
            .find_map(|name| {
                Some(Account {
                    name: name.to_string(),
                    uid: id("-u", name)?,
                    gid: id("-g", name)?,
                })
            })
            .unwrap_or_else(|| {
                panic!("the test runs as root, and neither 'postgres' nor 'nobody' exists")
            })
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

    fn hand_over(path: &Path, account: &Account) {
        std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid)).unwrap_or_else(
            |error| panic!("chown {} to {}: {error}", path.display(), account.name),
        );
    }

    /// Writes `text` readable by its owner only (the server's user, when root runs the test):
    /// PostgreSQL refuses a key file that others can read.
    fn write_private(path: &Path, text: &str, account: Option<&Account>) {
        std::fs::write(path, text)
            .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|error| panic!("chmod 600 {}: {error}", path.display()));
        if let Some(account) = account {
            hand_over(path, account);
        }
    }

    fn append(path: &Path, text: &str) {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .unwrap_or_else(|error| panic!("appending to {}: {error}", path.display()));
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
}

/// Elsewhere (Windows) the harness has no cluster to offer: every test that needs one
/// skips. No value of this type can exist, so its methods are never reached.
#[cfg(not(unix))]
mod elsewhere {
    use super::not_available;

    pub struct Cluster {
        never: std::convert::Infallible,
    }

    impl Cluster {
        pub fn start() -> Option<Cluster> {
            not_available("the test harness runs PostgreSQL on Unix only");
            None
        }

        pub fn start_with_tls(_cert_pem: &str, _key_pem: &str) -> Option<Cluster> {
            Cluster::start()
        }

        pub fn url(&self, _database: &str) -> String {
            match self.never {}
        }

        pub fn wrong_password_url(&self, _database: &str) -> String {
            match self.never {}
        }

        pub fn port(&self) -> u16 {
            match self.never {}
        }

        pub fn password(&self) -> &str {
            match self.never {}
        }

        pub fn create_database(&self, _name: &str) -> String {
            match self.never {}
        }

        pub fn client(&self, _database: &str) -> ::postgres::Client {
            match self.never {}
        }

        pub fn log(&self) -> String {
            match self.never {}
        }

        pub fn stop(&self) {
            match self.never {}
        }

        pub fn crash(&self) {
            match self.never {}
        }

        pub fn start_again(&self) {
            match self.never {}
        }

        pub fn pause(&self) {
            match self.never {}
        }

        pub fn resume(&self) {
            match self.never {}
        }
    }
}
