//! The bare-server ceilings: this program re-run as a bare oxhttp or tiny_http 0.12 server
//! (`--serve-bare`), with the settings the servers ran them with and no routing, auth or
//! logging, answering the same bytes as the broker.

use crate::processes::{free_ports, loopback, wait_ready, Process};
use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// The idle and body timeout the servers ran with on oxhttp and tiny_http, for their
/// bare-server ceilings.
const OLD_SERVERS_TIMEOUT: Duration = Duration::from_secs(10);
/// The worker threads of the bare tiny_http server: the broker's count when it ran on
/// tiny_http (12 per core, at least 24).
const BARE_TINY_HTTP_WORKERS: usize = 24;
/// The labels of the two bare servers, as `--serve-bare` takes them.
pub const BARE_OXHTTP: &str = "oxhttp";
pub const BARE_TINY_HTTP: &str = "tiny_http";
/// A bare server started by this program stops by itself after this long, in case the
/// benchmark is killed before it can stop it.
const BARE_SERVER_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// This program again, as a bare server of the catalog bytes: `kind` is [`BARE_OXHTTP`] or
/// [`BARE_TINY_HTTP`].
pub fn start_bare(dir: &Path, catalog_file: &Path, kind: &str) -> Process {
    let exe = std::env::current_exe().expect("cannot find this program's own path");
    let port = free_ports(1)[0];
    let name = format!("bare-{kind}");
    let log = dir.join(format!("{name}.log"));
    let log_file = fs::File::create(&log).expect("cannot create a log file in the temp dir");
    let child = Command::new(exe)
        .arg("--serve-bare")
        .arg(kind)
        .arg(port.to_string())
        .arg(catalog_file)
        // The bare server stops when this pipe closes, that is when the benchmark ends.
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start the {name} server: {error}"));
    let mut process = Process {
        name,
        child,
        address: loopback(port),
        log,
    };
    wait_ready(&mut process, "/v2/catalog");
    process
}

/// `--serve-bare oxhttp|tiny_http PORT FILE`: answers `/v2/catalog` with FILE's bytes and
/// anything else with `{}`, with no routing, auth or logging.
pub fn serve_bare(args: &[String]) {
    let (Some(kind), Some(port), Some(file)) = (args.first(), args.get(1), args.get(2)) else {
        eprintln!("usage: bench --serve-bare oxhttp|tiny_http PORT CATALOG_FILE");
        std::process::exit(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("bench --serve-bare: '{port}' is not a port");
        std::process::exit(2);
    };
    let catalog = fs::read(file).expect("cannot read the catalog file");
    std::thread::spawn(|| {
        // Stop with the benchmark: its end closes our standard input.
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        std::process::exit(0);
    });
    std::thread::spawn(|| {
        std::thread::sleep(BARE_SERVER_LIFETIME);
        std::process::exit(0);
    });
    match kind.as_str() {
        BARE_OXHTTP => serve_bare_oxhttp(port, catalog),
        BARE_TINY_HTTP => serve_bare_tiny_http(port, catalog),
        other => {
            eprintln!("bench --serve-bare: '{other}' is not oxhttp or tiny_http");
            std::process::exit(2);
        }
    }
}

/// oxhttp as the servers ran it before their own connection layer: the same timeout and
/// connection cap, a thread per connection; oxhttp reads (drains) any body itself.
fn serve_bare_oxhttp(port: u16, catalog: Vec<u8>) {
    use oxhttp::model::header::CONTENT_TYPE;
    use oxhttp::model::{Body, Response};
    let catalog: &'static [u8] = Box::leak(catalog.into_boxed_slice());
    let server = oxhttp::Server::new(move |request| {
        let body: &'static [u8] = if request.uri().path() == "/v2/catalog" {
            catalog
        } else {
            b"{}"
        };
        Response::builder()
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("a valid response")
    })
    .bind(loopback(port))
    .with_global_timeout(OLD_SERVERS_TIMEOUT)
    .with_max_concurrent_connections(echo_broker::server::DEFAULT_MAX_CONNECTIONS);
    let listening = server
        .spawn()
        .expect("cannot listen for the bare oxhttp server");
    let _ = listening.join();
    std::process::exit(1);
}

/// tiny_http 0.12 as the servers ran it before oxhttp (commit e0ffaf1, `http::bind`):
/// [`BARE_TINY_HTTP_WORKERS`] threads taking requests from the server's queue (tiny_http
/// adds a thread per open connection), on a listening socket with TCP_NODELAY, 10 s
/// timeouts and a backlog of 1024 (accepted connections inherit them), and a loopback
/// connect every 25 ms that kept a pool thread free for new connections.
fn serve_bare_tiny_http(port: u16, catalog: Vec<u8>) {
    let address = loopback(port);
    let listener = tiny_http_listener(address).expect("cannot listen for the bare server");
    let server = Arc::new(
        tiny_http::Server::from_listener(listener, None).expect("cannot serve for the bare server"),
    );
    std::thread::spawn(move || loop {
        std::thread::sleep(TINY_HTTP_HEARTBEAT);
        let _ = TcpStream::connect_timeout(&address, Duration::from_secs(1));
    });
    let content_type =
        tiny_http::Header::from_bytes("Content-Type", "application/json").expect("a valid header");
    let workers: Vec<_> = (0..BARE_TINY_HTTP_WORKERS)
        .map(|_| {
            let server = Arc::clone(&server);
            let catalog = catalog.clone();
            let content_type = content_type.clone();
            std::thread::spawn(move || loop {
                let Ok(mut request) = server.recv() else {
                    std::process::exit(1);
                };
                let body = if request.url() == "/v2/catalog" {
                    catalog.clone()
                } else {
                    let _ = io::copy(request.as_reader(), &mut io::sink());
                    b"{}".to_vec()
                };
                let response =
                    tiny_http::Response::from_data(body).with_header(content_type.clone());
                let _ = request.respond(response);
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}

/// How often the bare tiny_http server knocks on its own door (as the servers did).
const TINY_HTTP_HEARTBEAT: Duration = Duration::from_millis(25);

/// The listening socket of the servers on tiny_http: without TCP_NODELAY, small answers
/// wait for the client's delayed ACK (about 40 ms each on Linux).
fn tiny_http_listener(address: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_read_timeout(Some(OLD_SERVERS_TIMEOUT))?;
    socket.set_write_timeout(Some(OLD_SERVERS_TIMEOUT))?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
