//! The store phase's PostgreSQL: a throwaway cluster of the test kit that logs slow
//! statements and lock waits, and the statistics read from it.

use crate::processes::loopback;
use crate::usage::cpu_seconds_with_children;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use testkit::{ClusterOptions, SUPERUSER};

/// Statements slower than this are written to the cluster's log, and counted.
pub const SLOW_STATEMENT_MS: u32 = 250;

/// The directory of the cluster to stop when the run is interrupted (see
/// `remove_when_interrupted`): the server runs in a session of its own, out of the
/// terminal's reach.
static CLUSTER_TO_STOP: Mutex<Option<PathBuf>> = Mutex::new(None);

fn cluster_to_stop() -> MutexGuard<'static, Option<PathBuf>> {
    CLUSTER_TO_STOP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Stops the cluster if one runs, and removes its directory; whether one ran.
pub fn stop_interrupted_cluster() -> bool {
    let Some(dir) = cluster_to_stop().take() else {
        return false;
    };
    if let Err(problem) = testkit::stop_kept(&dir) {
        eprintln!("bench: {problem}");
    }
    true
}

/// The cluster, with a connection to its `postgres` database to create databases and read
/// statistics; stopped and removed when dropped.
pub struct Cluster {
    server: testkit::Cluster,
    admin: Option<postgres::Client>,
    pub version: String,
    version_number: u32,
    /// Whether pg_stat_statements is loaded (`--pg-statements`).
    statements: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.admin.take();
        cluster_to_stop().take();
    }
}

impl Cluster {
    /// A fresh cluster: durability as shipped (fsync and synchronous_commit on); statements
    /// slower than [`SLOW_STATEMENT_MS`] and lock waits logged; `statements` loads
    /// pg_stat_statements.
    pub fn start(statements: bool) -> Result<Cluster, String> {
        let mut settings = vec![
            format!("log_min_duration_statement = {SLOW_STATEMENT_MS}"),
            "log_lock_waits = on".to_string(),
        ];
        if statements {
            settings.push("shared_preload_libraries = 'pg_stat_statements'".to_string());
        }
        let options = ClusterOptions {
            settings,
            ..ClusterOptions::default()
        };
        let server = testkit::Cluster::launch(&options).map_err(|error| error.to_string())?;
        *cluster_to_stop() = Some(server.dir().to_path_buf());
        let mut admin = server
            .config("postgres")
            .options("-c statement_timeout=60000")
            .connect(postgres::NoTls)
            .map_err(|error| format!("cannot connect to it: {error}"))?;
        let row = admin
            .query_one(
                "SELECT current_setting('server_version'), \
                 current_setting('server_version_num')::int, current_setting('fsync'), \
                 current_setting('synchronous_commit'), current_setting('wal_sync_method')",
                &[],
            )
            .map_err(|error| error.to_string())?;
        let (fsync, synchronous_commit, sync_method): (String, String, String) =
            (row.get(2), row.get(3), row.get(4));
        let version = format!(
            "PostgreSQL {} ({}), fsync {fsync}, synchronous_commit {synchronous_commit}, wal_sync_method {sync_method}",
            row.get::<_, String>(0),
            server.bin().display()
        );
        let version_number = row.get::<_, i32>(1).max(0) as u32;
        if statements {
            admin
                .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .map_err(|error| error.to_string())?;
        }
        Ok(Cluster {
            server,
            admin: Some(admin),
            version,
            version_number,
            statements,
        })
    }

    fn admin(&mut self) -> Result<&mut postgres::Client, String> {
        self.admin
            .as_mut()
            .ok_or_else(|| "no connection to the cluster".to_string())
    }

    /// Creates the database `name` (fresh, from template1).
    pub fn create_database(&mut self, name: &str) -> Result<(), String> {
        self.admin()?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|error| format!("CREATE DATABASE {name}: {error}"))
    }

    /// Where the cluster listens.
    pub fn address(&self) -> SocketAddr {
        loopback(self.server.port())
    }

    /// The `DATABASE_URL` of database `name`, reached at `address`: the cluster's own, or a
    /// relay's in front of it.
    pub fn database_url(&self, name: &str, address: SocketAddr) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@{address}/{name}",
            self.server.password()
        )
    }

    /// Connections the echo services hold open to database `name` now (they name themselves
    /// in `application_name`).
    pub fn echo_connections(&mut self, name: &str) -> Option<u64> {
        let row = self
            .admin()
            .ok()?
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'echo-service' AND datname = $1",
                &[&name],
            )
            .ok()?;
        Some(row.get::<_, i64>(0).max(0) as u64)
    }

    /// CPU time of the postmaster and of its sessions that have ended, in seconds (Linux).
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds_with_children(self.server.postmaster_pid()?)
    }

    /// WAL syncs so far, cluster-wide (`pg_stat_wal.wal_sync`, PostgreSQL 14 and later).
    pub fn wal_syncs(&mut self) -> Option<u64> {
        if self.version_number < 140000 {
            return None;
        }
        let row = self
            .admin()
            .ok()?
            .query_one("SELECT wal_sync FROM pg_stat_wal", &[])
            .ok()?;
        Some(row.get::<_, i64>(0).max(0) as u64)
    }

    /// Transactions committed in database `name`, once its sessions have ended (a session
    /// reports its counts when it ends, at the latest), waiting at most 5 s for that.
    pub fn commits(&mut self, name: &str) -> Option<u64> {
        let admin = self.admin().ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let row = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                    &[&name],
                )
                .ok()?;
            if row.get::<_, i64>(0) == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let row = admin
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
                &[&name],
            )
            .ok()?;
        Some(row.get::<_, i64>(0).max(0) as u64)
    }

    /// With `--pg-statements`: the statements of the store's databases by total time
    /// (calls, mean ms, total s), summed over every database but `postgres`.
    pub fn statement_times(&mut self) -> Vec<(String, u64, f64, f64)> {
        if !self.statements {
            return Vec::new();
        }
        let Ok(admin) = self.admin() else {
            return Vec::new();
        };
        let rows = admin.query(
            "SELECT regexp_replace(query, '\\s+', ' ', 'g'), sum(calls)::bigint,
                sum(total_exec_time) / greatest(sum(calls), 1), sum(total_exec_time) / 1000
             FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
             WHERE d.datname LIKE 'bench_%'
             GROUP BY 1 ORDER BY 4 DESC LIMIT 16",
            &[],
        );
        rows.map(|rows| {
            rows.iter()
                .map(|row| {
                    let query: String = row.get(0);
                    let shown: String = query.chars().take(90).collect();
                    (
                        shown,
                        row.get::<_, i64>(1).max(0) as u64,
                        row.get(2),
                        row.get(3),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
    }

    /// Statements the cluster logged as slower than [`SLOW_STATEMENT_MS`], errors it logged,
    /// and a few of each.
    pub fn log_findings(&self) -> (usize, usize, Vec<String>) {
        let text = self.server.log();
        let slow: Vec<&str> = text
            .lines()
            .filter(|line| line.contains("LOG:  duration:"))
            .collect();
        let errors: Vec<&str> = text
            .lines()
            .filter(|line| line.contains("ERROR:") || line.contains("FATAL:"))
            .collect();
        let examples = slow
            .iter()
            .take(3)
            .chain(errors.iter().take(3))
            .map(|line| line.chars().take(200).collect())
            .collect();
        (slow.len(), errors.len(), examples)
    }
}
