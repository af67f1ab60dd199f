//! A delaying relay: the database across a network, on loopback. Threads of this process
//! forward each connection and hold every chunk for half the round trip in each direction.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Chunks a relay holds per direction of a connection, read and not yet delivered: a
/// reader this far ahead waits, and TCP's flow control holds its sender back.
const RELAY_QUEUE_CHUNKS: usize = 64;
/// The largest chunk a relay reads at once: with [`RELAY_QUEUE_CHUNKS`], at most 1 MiB
/// held per direction of a connection.
const RELAY_CHUNK_BYTES: usize = 16 * 1024;
/// The most connections one relay forwards over its life (an echo service opens at most 8
/// per process and keeps them); it refuses any more.
const RELAY_MAX_CONNECTIONS: usize = 64;
/// How often a relay's waiting threads look whether it is stopping.
const RELAY_STOP_POLL: Duration = Duration::from_millis(50);
/// How long a relay waits for a new connection before it looks again.
const RELAY_ACCEPT_POLL: Duration = Duration::from_millis(5);
/// How long connecting to the database, or one delivery to a side that does not read, may
/// take before the relay gives up that connection.
const RELAY_IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How the relay's threads' names begin, so that their CPU time can be told from the load
/// generator's, in the same process.
pub const RELAY_THREAD_PREFIX: &str = "relay-";

/// What a relay's threads share: where they forward to, the delay, the stop flag, and the
/// delay they really applied.
struct RelayShared {
    upstream: SocketAddr,
    one_way: Duration,
    stopping: AtomicBool,
    connections: AtomicU64,
    chunks: AtomicU64,
    /// From each chunk's read to the end of its delivery, summed.
    delivered_after_ns: AtomicU64,
}

/// Bytes read from one side, due on the other side at `due`.
struct DelayedChunk {
    read_at: Instant,
    due: Instant,
    bytes: Vec<u8>,
}

/// A TCP relay in this process, on 127.0.0.1, that forwards each connection to `upstream`
/// and delays every chunk half the round trip in each direction, in order: what a database
/// on another host adds to each statement, where the kernel's netem is not at hand. Stopped
/// (every thread joined) when dropped.
pub struct DelayRelay {
    pub address: SocketAddr,
    shared: Arc<RelayShared>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

/// What a relay did: connections, chunks, and the mean one-way delay it applied.
#[derive(Debug, Clone, Copy)]
pub struct RelayCounts {
    pub connections: u64,
    pub chunks: u64,
    pub mean_one_way_ms: f64,
}

impl DelayRelay {
    pub fn start(upstream: SocketAddr, round_trip: Duration) -> io::Result<DelayRelay> {
        if !upstream.ip().is_loopback() {
            return Err(io::Error::other(format!(
                "the relay forwards to loopback only, not {upstream}"
            )));
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        // Not blocking, so that the acceptor sees the stop flag between connections.
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let shared = Arc::new(RelayShared {
            upstream,
            one_way: round_trip / 2,
            stopping: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            delivered_after_ns: AtomicU64::new(0),
        });
        let acceptor_shared = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name(format!("{RELAY_THREAD_PREFIX}accept"))
            .spawn(move || accept_relayed(listener, &acceptor_shared))?;
        Ok(DelayRelay {
            address,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub fn counts(&self) -> RelayCounts {
        let chunks = self.shared.chunks.load(Ordering::Relaxed);
        let total_ns = self.shared.delivered_after_ns.load(Ordering::Relaxed);
        RelayCounts {
            connections: self.shared.connections.load(Ordering::Relaxed),
            chunks,
            mean_one_way_ms: if chunks == 0 {
                f64::NAN
            } else {
                total_ns as f64 / chunks as f64 / 1e6
            },
        }
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// The relay's accepting thread: each connection gets its threads, all joined when the
/// relay stops.
fn accept_relayed(listener: TcpListener, shared: &Arc<RelayShared>) {
    let mut threads = Vec::new();
    while !shared.stopping.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((client, _)) => {
                if shared.connections.load(Ordering::Relaxed) as usize >= RELAY_MAX_CONNECTIONS {
                    eprintln!("  note: the database relay refused a connection over its {RELAY_MAX_CONNECTIONS}");
                    continue;
                }
                match relay_connection(client, shared) {
                    Ok(started) => {
                        shared.connections.fetch_add(1, Ordering::Relaxed);
                        threads.extend(started);
                    }
                    Err(error) => {
                        eprintln!("  note: the database relay dropped a connection: {error}")
                    }
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(RELAY_ACCEPT_POLL)
            }
            Err(error) => {
                eprintln!("  note: the database relay could not accept: {error}");
                std::thread::sleep(RELAY_ACCEPT_POLL);
            }
        }
    }
    for thread in threads {
        let _ = thread.join();
    }
}

/// Connects `client` to the relay's upstream and starts both directions.
fn relay_connection(
    client: TcpStream,
    shared: &Arc<RelayShared>,
) -> io::Result<Vec<std::thread::JoinHandle<()>>> {
    // An accepted socket may inherit the listener's non-blocking mode on some systems.
    client.set_nonblocking(false)?;
    let server = TcpStream::connect_timeout(&shared.upstream, RELAY_IO_TIMEOUT)?;
    for stream in [&client, &server] {
        // Each chunk leaves when it is due, not when Nagle's algorithm lets it.
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(RELAY_STOP_POLL))?;
        stream.set_write_timeout(Some(RELAY_IO_TIMEOUT))?;
    }
    let mut threads = relay_direction("to-db", client.try_clone()?, server.try_clone()?, shared)?;
    threads.extend(relay_direction("from-db", server, client, shared)?);
    Ok(threads)
}

/// One direction of a connection: a reader that stamps each chunk with when it is due and
/// queues it, and the direction's delivering thread, which writes each chunk at its time in
/// the order read. Two threads, because a read timeout has the kernel's tick as its
/// resolution (4 ms at 250 Hz): one thread waiting both for input and for a chunk due in
/// 0.25 ms would deliver late.
fn relay_direction(
    name: &str,
    source: TcpStream,
    sink: TcpStream,
    shared: &Arc<RelayShared>,
) -> io::Result<Vec<std::thread::JoinHandle<()>>> {
    let (queue, due_chunks) = std::sync::mpsc::sync_channel(RELAY_QUEUE_CHUNKS);
    let reader_shared = Arc::clone(shared);
    let reader = std::thread::Builder::new()
        .name(format!("{RELAY_THREAD_PREFIX}{name}-read"))
        .spawn(move || read_into_queue(source, &queue, &reader_shared))?;
    let deliverer_shared = Arc::clone(shared);
    let deliverer = std::thread::Builder::new()
        .name(format!("{RELAY_THREAD_PREFIX}{name}"))
        .spawn(move || deliver_when_due(&due_chunks, sink, &deliverer_shared))?;
    Ok(vec![reader, deliverer])
}

/// Reads `source` until it ends, the relay stops or the delivering side is gone. The queue
/// is bounded: when it is full, this waits, and stops reading.
fn read_into_queue(
    mut source: TcpStream,
    queue: &std::sync::mpsc::SyncSender<DelayedChunk>,
    shared: &RelayShared,
) {
    let mut buffer = vec![0u8; RELAY_CHUNK_BYTES];
    while !shared.stopping.load(Ordering::Relaxed) {
        match source.read(&mut buffer) {
            Ok(0) => return,
            Ok(read) => {
                let read_at = Instant::now();
                let chunk = DelayedChunk {
                    read_at,
                    due: read_at + shared.one_way,
                    bytes: buffer[..read].to_vec(),
                };
                if queue.send(chunk).is_err() {
                    return;
                }
            }
            Err(error) if is_timeout(&error) => {}
            Err(_) => return,
        }
    }
}

/// Writes each queued chunk to `sink` once it is due; when the reading side has ended and
/// everything is delivered, passes the end on (a half close), as the sender closed it.
fn deliver_when_due(
    due_chunks: &std::sync::mpsc::Receiver<DelayedChunk>,
    mut sink: TcpStream,
    shared: &RelayShared,
) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        match due_chunks.recv_timeout(RELAY_STOP_POLL) {
            Ok(chunk) => {
                let now = Instant::now();
                if chunk.due > now {
                    std::thread::sleep(chunk.due - now);
                }
                if sink.write_all(&chunk.bytes).is_err() {
                    return;
                }
                let after = chunk.read_at.elapsed().as_nanos() as u64;
                shared.chunks.fetch_add(1, Ordering::Relaxed);
                shared
                    .delivered_after_ns
                    .fetch_add(after, Ordering::Relaxed);
            }
            Err(RecvTimeoutError::Timeout) => {
                if shared.stopping.load(Ordering::Relaxed) {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = sink.shutdown(std::net::Shutdown::Write);
}

/// Whether a read ended because its timeout passed (the error's kind differs by system).
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
