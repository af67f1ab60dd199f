//! The throwaway PostgreSQL cluster of `tests/common/postgres.rs` does what the store's tests
//! rely on: real password authentication, a pause that answers nothing until resumed, and a
//! stop and start on the same data and port. Skipped, loudly, where PostgreSQL is missing.

mod common;
use common::postgres::Cluster;
use postgres::error::SqlState;
use std::sync::mpsc;
use std::time::Duration;

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
