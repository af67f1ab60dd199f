//! The throwaway PostgreSQL cluster of the test kit (`testkit/`) does what the store's tests
//! rely on: real password authentication, a pause that answers nothing until resumed, and a
//! stop and start on the same data and port. Skipped, loudly, where PostgreSQL is missing.

use postgres::error::SqlState;
use std::sync::mpsc;
use std::time::Duration;
use testkit::Cluster;

#[test]
fn a_throwaway_cluster_authenticates_pauses_resumes_stops_and_starts_again() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.create_database("harness");
    assert!(
        url.ends_with(&format!(":{}/harness", cluster.port())),
        "{url}"
    );
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("the right password");
    client
        .batch_execute("CREATE TABLE kept (value text); INSERT INTO kept VALUES ('before')")
        .expect("a table is written");

    let refused =
        postgres::Client::connect(&cluster.wrong_password_url("harness"), postgres::NoTls)
            .err()
            .expect("a wrong password is refused");
    assert_eq!(
        refused.code(),
        Some(&SqlState::INVALID_PASSWORD),
        "{refused}"
    );

    // The query runs on a thread of its own, so that the test is bounded even by a server
    // that never answers.
    cluster.pause();
    let (sender, receiver) = mpsc::channel();
    let querying = std::thread::spawn(move || {
        let count = client
            .query_one("SELECT count(*) FROM kept", &[])
            .map(|row| row.get::<_, i64>(0));
        let _ = sender.send(count);
        client
    });
    assert!(
        receiver.recv_timeout(Duration::from_secs(1)).is_err(),
        "a paused server answered"
    );
    cluster.resume();
    let count = receiver
        .recv_timeout(Duration::from_secs(10))
        .expect("the server answers once resumed")
        .expect("the query succeeds");
    assert_eq!(count, 1);
    drop(querying.join().expect("the querying thread ends"));

    cluster.stop();
    assert!(
        postgres::Client::connect(&url, postgres::NoTls).is_err(),
        "a stopped server took a connection"
    );
    cluster.start_again();
    let value: String = cluster
        .client("harness")
        .query_one("SELECT value FROM kept", &[])
        .expect("the table is still there")
        .get(0);
    assert_eq!(value, "before");
}

#[test]
fn a_cluster_with_tls_starts_with_ssl_on() {
    let key = rcgen::KeyPair::generate().expect("a key");
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("certificate params");
    let certificate = params.self_signed(&key).expect("a certificate");
    let Some(cluster) = Cluster::start_with_tls(&certificate.pem(), &key.serialize_pem()) else {
        return;
    };
    let ssl: String = cluster
        .client("postgres")
        .query_one("SHOW ssl", &[])
        .expect("SHOW ssl")
        .get(0);
    assert_eq!(ssl, "on");
}

/// The README's way to a local PostgreSQL, as a newcomer takes it: `scripts/test-postgres.sh`
/// prints a URL, the broker runs on it as pasted, and the line it prints stops the server
/// and removes its data.
#[cfg(unix)]
#[test]
fn the_one_command_postgres_prints_a_url_the_broker_runs_on_and_a_line_that_stops_it() {
    use crate::common::*;
    if !testkit::installed() {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test-postgres.sh");
    let started = std::process::Command::new(script)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the script runs");
    let (url, said) = (
        String::from_utf8_lossy(&started.stdout).trim().to_string(),
        String::from_utf8_lossy(&started.stderr).to_string(),
    );
    assert!(started.status.success(), "{url}\n{said}");
    let stop_line = said
        .lines()
        .find_map(|line| line.split_once("stop it (its data goes too): "))
        .map(|(_, command)| command.trim().to_string())
        .unwrap_or_else(|| panic!("no line to stop it in:\n{said}"));
    let stopper = StopWith(stop_line.clone());
    assert!(
        said.contains(&format!("DATABASE_URL='{url}' cargo run --release")),
        "{said}"
    );
    assert!(url.starts_with("postgres://"), "{url}");

    // The README's order: the walk-through's ./echo-data first, then copied into the
    // database with the line the README shows, run from the same folder.
    let project = TempDir::new("newcomer");
    let embedded = Process::start_in(
        Some(project.path()),
        BROKER,
        free_port(),
        &[("ECHO_PORT", &free_port().to_string())],
    );
    let provisioned = platform(
        "PUT",
        &format!("{}/v2/service_instances/from-the-journal", embedded.url),
        Some(PROVISION_ECHO),
    );
    assert_eq!(provisioned.status, 201, "{}", provisioned.text);
    drop(embedded);
    let log_path = project.path().join("import.log");
    let mut import = spawn_in(
        Some(project.path()),
        ECHO_SERVICE,
        &["--import-journal", "echo-data"],
        &[("DATABASE_URL", &url)],
        &log_path,
    );
    let imported = wait_for_exit(&mut import);
    let import_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(imported, Some(0), "{import_log}");

    let system = System::start_with(&[("DATABASE_URL", &url)]);
    let fetched = platform(
        "GET",
        &system.url("/v2/service_instances/from-the-journal"),
        None,
    );
    assert_eq!(fetched.status, 200, "{}", fetched.text);
    let log = system.broker.log();
    assert!(log.contains("state in PostgreSQL, database "), "{log}");
    drop(system);

    let dir = stop_line.rsplit(' ').next().unwrap_or_default().to_string();
    drop(stopper);
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} is still there after: {stop_line}"
    );
}

/// The exit code of `child`, which must end within 30 s.
#[cfg(unix)]
fn wait_for_exit(child: &mut std::process::Child) -> Option<i32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the import did not end within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the script's stop line when dropped, so a failing test leaves no server behind.
#[cfg(unix)]
struct StopWith(String);

#[cfg(unix)]
impl Drop for StopWith {
    fn drop(&mut self) {
        let _ = std::process::Command::new("sh")
            .args(["-c", &self.0])
            .stdout(std::process::Stdio::null())
            .status();
    }
}
