//! `SERVICE_BASE=https://...`: the broker reaches the echo service over TLS and checks its
//! certificate. A TLS endpoint on loopback (a test CA made with rcgen, rustls serving)
//! forwards to the real echo service, as a platform's router or an internal route's TLS
//! would. A trusted certificate works end to end; an untrusted one, or one issued for
//! another host, is a 502 that says why, and nothing reaches the echo service.

use crate::common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// A certificate authority of the test's own, and its PEM file (for `SSL_CERT_FILE`).
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem_file: String,
    _dir: TempDir,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("echo-broker test CA {name}"));
        let key = KeyPair::generate().expect("a CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("a CA certificate");
        let dir = TempDir::new("test-ca");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, issuer.pem()).expect("the CA file is written");
        TestCa {
            issuer,
            pem_file: path.display().to_string(),
            _dir: dir,
        }
    }

    /// A server certificate for `names` (host names or IP addresses) and its key.
    fn server_certificate(
        &self,
        names: &[&str],
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let params = CertificateParams::new(names).expect("server params");
        let key = KeyPair::generate().expect("a server key");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("a server certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (certificate.der().clone(), key)
    }
}

/// A TLS endpoint on a loopback port with `certificate` that forwards each request to
/// `backend_port` (plain HTTP) and sends back its answer. Its threads end with the test.
fn tls_front(
    certificate: (CertificateDer<'static>, PrivateKeyDer<'static>),
    backend_port: u16,
) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![certificate.0], certificate.1)
        .expect("the certificate and key match");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port is free");
    let port = listener.local_addr().expect("it has an address").port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let config = Arc::clone(&config);
            std::thread::spawn(move || forward_connection(config, client, backend_port));
        }
    });
    port
}

/// Decrypts requests from `client`, forwards each whole request to the backend and each
/// whole answer back, until either side closes (or the handshake fails).
fn forward_connection(config: Arc<rustls::ServerConfig>, client: TcpStream, backend_port: u16) {
    let Ok(connection) = rustls::ServerConnection::new(config) else {
        return;
    };
    let Ok(backend) = TcpStream::connect(("127.0.0.1", backend_port)) else {
        return;
    };
    let Ok(backend_writer) = backend.try_clone() else {
        return;
    };
    let mut backend_writer = backend_writer;
    let mut backend_reader = BufReader::new(backend);
    let mut client = BufReader::new(rustls::StreamOwned::new(connection, client));
    while let Some(request) = read_http_message(&mut client) {
        if backend_writer.write_all(&request).is_err() {
            return;
        }
        let Some(answer) = read_http_message(&mut backend_reader) else {
            return;
        };
        if client.get_mut().write_all(&answer).is_err() {
            return;
        }
    }
}

/// The real echo service, and a broker that reaches it through a TLS front.
struct Setup {
    echo: Process,
    broker: Process,
    _data: TempDir,
}

fn setup(
    certificate: (CertificateDer<'static>, PrivateKeyDer<'static>),
    service_host: &str,
    ssl_cert_file: Option<&str>,
) -> Setup {
    let data = TempDir::new("https");
    let data_dir = data.path().display().to_string();
    let echo = Process::start(ECHO_SERVICE, free_port(), &[("DATA_DIR", &data_dir)]);
    let front_port = tls_front(certificate, echo.port);
    let service_base = format!("https://{service_host}:{front_port}");
    let mut env = vec![("SERVICE_BASE", service_base.as_str())];
    if let Some(file) = ssl_cert_file {
        env.push(("SSL_CERT_FILE", file));
    }
    let broker = Process::start(BROKER, free_port(), &env);
    Setup {
        echo,
        broker,
        _data: data,
    }
}

fn instance_url(setup: &Setup, instance_id: &str) -> String {
    format!("{}/v2/service_instances/{instance_id}", setup.broker.url)
}

/// Whether the echo service itself (asked directly, over plain HTTP) holds the instance.
fn echo_service_holds(setup: &Setup, instance_id: &str) -> bool {
    let url = format!("{}/echo/{instance_id}", setup.echo.url);
    call("GET", &url, &[], None).is_ok_and(|reply| reply.status == 200)
}

#[test]
fn a_trusted_certificate_from_ssl_cert_file_works_end_to_end() {
    let ca = TestCa::new("trusted");
    let setup = setup(
        ca.server_certificate(&["127.0.0.1"]),
        "127.0.0.1",
        Some(&ca.pem_file),
    );
    let instance = instance_url(&setup, "over-tls");
    let provisioned = platform("PUT", &instance, Some(PROVISION_ECHO));
    assert_eq!(provisioned.status, 201, "{}", provisioned.text);
    let dashboard_url = provisioned.json()["dashboard_url"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        dashboard_url.starts_with("https://127.0.0.1:"),
        "{dashboard_url}"
    );
    assert!(echo_service_holds(&setup, "over-tls"));

    let binding = format!("{instance}/service_bindings/app");
    let bound = platform("PUT", &binding, Some(BIND_ECHO));
    assert_eq!(bound.status, 201, "{}", bound.text);
    let uri = bound.json()["credentials"]["uri"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(uri.starts_with("https://"), "{uri}");
    assert_eq!(platform("GET", &binding, None).status, 200);
    let unbound = platform("DELETE", &format!("{binding}?{ECHO_IDS}"), None);
    assert_eq!(unbound.status, 200, "{}", unbound.text);
    let deprovisioned = platform("DELETE", &format!("{instance}?{ECHO_IDS}"), None);
    assert_eq!(deprovisioned.status, 200, "{}", deprovisioned.text);
    assert!(!echo_service_holds(&setup, "over-tls"));
}

/// Provisions through the broker, expects a 502 whose description names the TLS failure,
/// and checks the echo service never got the request.
fn assert_refused_over_tls(setup: &Setup, instance_id: &str, why: &str) {
    let reply = platform(
        "PUT",
        &instance_url(setup, instance_id),
        Some(PROVISION_ECHO),
    );
    let body = reply.assert_error(502);
    let description = body["description"].as_str().unwrap_or("");
    assert!(description.contains("TLS handshake"), "{description}");
    assert!(description.contains(why), "{description}");
    assert!(!echo_service_holds(setup, instance_id));
}

#[test]
fn a_certificate_from_an_untrusted_ca_is_a_502_that_says_so_and_records_nothing() {
    let signer = TestCa::new("signer");
    let other = TestCa::new("other");
    let setup = setup(
        signer.server_certificate(&["127.0.0.1"]),
        "127.0.0.1",
        Some(&other.pem_file),
    );
    assert_refused_over_tls(&setup, "untrusted", "UnknownIssuer");
}

#[test]
fn a_test_ca_is_not_in_the_system_trust_store() {
    let ca = TestCa::new("not-installed");
    let setup = setup(ca.server_certificate(&["127.0.0.1"]), "127.0.0.1", None);
    assert_refused_over_tls(&setup, "system-store", "not trusted");
}

#[test]
fn a_certificate_for_another_host_is_a_502_that_says_so_and_records_nothing() {
    let ca = TestCa::new("wrong-host");
    let setup = setup(
        ca.server_certificate(&["echo.example.com"]),
        "127.0.0.1",
        Some(&ca.pem_file),
    );
    assert_refused_over_tls(&setup, "wrong-host", "not valid for name");
}

#[test]
fn an_ssl_cert_file_without_certificates_is_refused_at_start() {
    let dir = TempDir::new("bad-ca");
    let path = dir.path().join("empty.pem");
    std::fs::write(&path, "no certificates here\n").expect("written");
    let path = path.display().to_string();
    let (code, output) = run_to_end(
        BROKER,
        &[],
        &[
            ("SERVICE_BASE", "https://127.0.0.1:9"),
            ("SSL_CERT_FILE", &path),
        ],
    );
    assert_eq!(code, Some(2), "{output}");
    assert_eq!(output.trim().lines().count(), 1, "{output}");
    assert!(
        output.contains("SSL_CERT_FILE") && output.contains("no PEM certificate"),
        "{output}"
    );
}
