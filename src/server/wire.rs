//! The bytes of one connection: a read buffer that keeps what a client sent ahead
//! (pipelined requests), reads bounded by deadlines over the whole of a head or a body
//! rather than per read, the chunked body decoding of RFC 9112 §7.1, writes in bounded
//! chunks, and the lingering close.
//!
//! Reads wait at most [`POLL`] at a time, writes at most [`WRITE_POLL`] for room; between
//! them the connection's deadline and its interruptions (displaced by a newcomer, the server
//! stopping) are checked. This is how a thread blocked on a socket is reached on every
//! platform: another thread cannot portably wake it (on Windows, `shutdown` from elsewhere
//! does not). A writer whose client does not read lets go as soon as a reader does.

use super::chunked;
use super::head::MAX_HEAD_BYTES;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest one read waits before the connection's deadline and flags are looked at
/// again: how quickly a displaced or stopping connection lets go (the newcomer that
/// displaced it does not wait for that), at a cost of a wake-up per idle connection per
/// interval.
pub const POLL: Duration = Duration::from_millis(500);

/// The longest one write waits for the client to make room before the connection's
/// deadline and flags are looked at again: how quickly a displaced or stopping writer whose
/// client does not read lets go.
pub const WRITE_POLL: Duration = Duration::from_millis(200);

/// The most bytes handed to one write: an answer goes out in chunks, each bounded in size
/// and in time.
const WRITE_CHUNK: usize = 64 * 1024;

/// The longest chunk-size line (with its extensions) and trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = MAX_HEAD_BYTES;

/// What a chunked body may spend on its framing (size lines, extensions, line ends,
/// trailers) beyond its data: a 64 KiB body cut into one-byte chunks with long extensions
/// would otherwise cost hundreds of megabytes on the wire.
const MAX_CHUNK_FRAMING: usize = 64 * 1024;

/// How much is read from the socket at a time.
const READ_SIZE: usize = 8 * 1024;

/// A connection's byte stream: a TCP socket, or bytes in memory in tests.
pub trait Transport: Read {
    /// Bounds each read to [`POLL`] (nothing to do for bytes in memory).
    fn poll_reads(&mut self) -> std::io::Result<()>;
    /// Writes some of `bytes`, waiting at most `wait` for the client to make room; an error
    /// of kind `WouldBlock` or `TimedOut` when none could be written in that time (and the
    /// write can be tried again).
    fn write_some(&mut self, bytes: &[u8], wait: Duration) -> std::io::Result<usize>;
    /// Sends FIN: the client sees the end of the answers while it may still send.
    fn shutdown_write(&mut self);
}

/// A connection's TCP socket, shared with its server so that the server can end the
/// connection from outside (see `threads`).
pub struct Socket {
    stream: Arc<TcpStream>,
    /// The write timeout the socket has now (Unix), so that it is set only when it changes.
    #[cfg(not(windows))]
    write_wait: Duration,
}

impl Socket {
    pub fn new(stream: Arc<TcpStream>) -> Socket {
        Socket {
            stream,
            #[cfg(not(windows))]
            write_wait: Duration::ZERO,
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        (&*self.stream).read(buffer)
    }
}

impl Transport for Socket {
    fn poll_reads(&mut self) -> std::io::Result<()> {
        self.stream.set_read_timeout(Some(POLL))
    }

    /// A blocking write under the socket's write timeout: one that times out has written
    /// nothing, or returns what it wrote, and may be tried again.
    #[cfg(not(windows))]
    fn write_some(&mut self, bytes: &[u8], wait: Duration) -> std::io::Result<usize> {
        // Zero would mean "no timeout" to the socket.
        let wait = wait.clamp(Duration::from_millis(1), WRITE_POLL);
        if wait != self.write_wait {
            self.stream.set_write_timeout(Some(wait))?;
            self.write_wait = wait;
        }
        (&*self.stream).write(bytes)
    }

    /// On Windows a socket whose send timed out is in an undefined state (SO_SNDTIMEO), so
    /// the wait is made of non-blocking tries instead.
    #[cfg(windows)]
    fn write_some(&mut self, bytes: &[u8], wait: Duration) -> std::io::Result<usize> {
        write_in_nonblocking_tries(&self.stream, bytes, wait)
    }

    fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Why a read ended without the bytes it wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// The client closed its side (or the socket failed): nothing more will come.
    Closed,
    /// The deadline passed.
    TimedOut,
    /// The caller's own reason (displaced, stopping) said to stop waiting.
    Called,
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyFailure {
    TooLarge,
    Malformed(&'static str),
    Interrupted(Interrupted),
}

impl From<Interrupted> for BodyFailure {
    fn from(interrupted: Interrupted) -> BodyFailure {
        BodyFailure::Interrupted(interrupted)
    }
}

/// Why a head could not be read.
#[derive(Debug)]
pub enum HeadFailure {
    TooLarge,
    Interrupted(Interrupted),
}

pub struct Wire<T: Transport> {
    transport: T,
    /// Bytes read (`..filled`); those before `start` are consumed. Past `filled` the buffer
    /// holds room for the next read (initialised once, then kept from one read to the next:
    /// a client that trickles its bytes one at a time must not make each read zero 8 KiB).
    buffer: Vec<u8>,
    start: usize,
    filled: usize,
}

impl<T: Transport> Wire<T> {
    pub fn new(mut transport: T) -> std::io::Result<Wire<T>> {
        transport.poll_reads()?;
        Ok(Wire {
            transport,
            buffer: Vec::new(),
            start: 0,
            filled: 0,
        })
    }

    fn unread(&self) -> &[u8] {
        self.buffer.get(self.start..self.filled).unwrap_or_default()
    }

    pub fn has_unread(&self) -> bool {
        self.start < self.filled
    }

    fn consume(&mut self, count: usize) {
        self.start = (self.start + count).min(self.filled);
    }

    /// Drops consumed bytes and, after a large request, the memory that held it, so an idle
    /// connection keeps a small buffer.
    pub fn compact(&mut self) {
        // Only the unread bytes move; the room after them stays, as it was, for reads.
        self.buffer.copy_within(self.start..self.filled, 0);
        self.filled -= self.start;
        self.start = 0;
        if self.buffer.capacity() > 2 * READ_SIZE && self.filled <= READ_SIZE {
            self.buffer.truncate(READ_SIZE);
            self.buffer.shrink_to(READ_SIZE);
        }
    }

    /// One read of at most [`POLL`]: whether it brought bytes (`false`: none yet).
    fn read_once(&mut self) -> Result<bool, Interrupted> {
        let room = self.filled + READ_SIZE;
        if self.buffer.len() < room {
            self.buffer.resize(room, 0);
        }
        match self.transport.read(&mut self.buffer[self.filled..room]) {
            Ok(0) => Err(Interrupted::Closed),
            Ok(count) => {
                self.filled += count;
                Ok(true)
            }
            Err(error) if waits(&error) => Ok(false),
            Err(_) => Err(Interrupted::Closed),
        }
    }

    /// Reads at least one more byte into the buffer, unless `deadline` passes, the client
    /// closes, or `stop_waiting` says to give up. Both are asked before every read, so a
    /// client that trickles bytes gains nothing from its pace.
    fn fill(
        &mut self,
        deadline: Instant,
        stop_waiting: &dyn Fn() -> bool,
    ) -> Result<(), Interrupted> {
        loop {
            if stop_waiting() {
                return Err(Interrupted::Called);
            }
            if Instant::now() >= deadline {
                return Err(Interrupted::TimedOut);
            }
            if self.read_once()? {
                return Ok(());
            }
        }
    }

    /// Waits for the first byte of a request (unless one is already buffered). Empty lines
    /// before a request (RFC 9112 §2.2: some clients send a CRLF after a body) are dropped
    /// while waiting. The first read comes before the reasons to stop are looked at: a
    /// request already sent on a connection that was about to be dropped gets served.
    pub fn await_request(
        &mut self,
        deadline: Instant,
        stop_waiting: &dyn Fn() -> bool,
    ) -> Result<(), Interrupted> {
        let mut first = true;
        loop {
            let empty_lines = empty_lines(self.unread());
            self.consume(empty_lines);
            // A lone CR may begin an empty line whose LF is still on its way; a CR followed
            // by anything else is the start of a request (which its bare CR then fails).
            if self.has_unread() && self.unread() != b"\r" {
                return Ok(());
            }
            self.compact();
            if !first && stop_waiting() {
                return Err(Interrupted::Called);
            }
            if !first && Instant::now() >= deadline {
                return Err(Interrupted::TimedOut);
            }
            first = false;
            self.read_once()?;
        }
    }

    /// Reads a whole request head, which must end within [`MAX_HEAD_BYTES`] and by
    /// `deadline`; returns its bytes and consumes them.
    pub fn read_head(
        &mut self,
        deadline: Instant,
        stop_waiting: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, HeadFailure> {
        let mut scanned = 0;
        loop {
            let unread = self.unread();
            if let Some(end) = head_end(unread, scanned) {
                // However it arrived (in one read or many), a head is measured whole.
                if end > MAX_HEAD_BYTES {
                    return Err(HeadFailure::TooLarge);
                }
                let head = unread[..end].to_vec();
                self.consume(end);
                return Ok(head);
            }
            if unread.len() > MAX_HEAD_BYTES {
                return Err(HeadFailure::TooLarge);
            }
            // A line ending may straddle two reads: look again from three bytes back.
            scanned = unread.len().saturating_sub(3);
            self.fill(deadline, stop_waiting)
                .map_err(HeadFailure::Interrupted)?;
        }
    }

    /// Reads a body framed as `framing`, at most `limit` bytes, by `deadline`. With `keep`
    /// false the bytes are read and dropped (a refused request's body, read away so that the
    /// connection can carry the next request).
    pub fn read_body(
        &mut self,
        framing: super::head::Framing,
        limit: usize,
        keep: bool,
        deadline: Instant,
        stop_waiting: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, BodyFailure> {
        use super::head::Framing;
        let mut body = Vec::new();
        match framing {
            Framing::None => {}
            Framing::Length(length) => {
                let length = usize::try_from(length)
                    .ok()
                    .filter(|length| *length <= limit)
                    .ok_or(BodyFailure::TooLarge)?;
                self.read_exact(length, keep.then_some(&mut body), deadline, stop_waiting)?;
            }
            Framing::Chunked => {
                self.read_chunked(limit, keep.then_some(&mut body), deadline, stop_waiting)?;
            }
        }
        Ok(body)
    }

    /// Reads `count` bytes, appending them to `into` when given.
    fn read_exact(
        &mut self,
        mut count: usize,
        mut into: Option<&mut Vec<u8>>,
        deadline: Instant,
        stop_waiting: &dyn Fn() -> bool,
    ) -> Result<(), Interrupted> {
        loop {
            let available = self.unread().len().min(count);
            if let Some(into) = into.as_deref_mut() {
                into.extend_from_slice(&self.unread()[..available]);
            }
            self.consume(available);
            count -= available;
            if count == 0 {
                return Ok(());
            }
            self.compact();
            self.fill(deadline, stop_waiting)?;
        }
    }

    /// RFC 9112 §7.1: chunks of `size[;extensions] CRLF data CRLF`, a last chunk of size 0,
    /// then trailer lines (read, checked and dropped) and an empty line. Every line must end
    /// in CRLF, and a bare CR anywhere in these lines is refused ([`chunked`]).
    fn read_chunked(
        &mut self,
        limit: usize,
        mut into: Option<&mut Vec<u8>>,
        deadline: Instant,
        stop_waiting: &dyn Fn() -> bool,
    ) -> Result<(), BodyFailure> {
        let mut total = 0usize;
        let mut framing = 0usize;
        loop {
            let line = self.read_line(Line::ChunkSize, MAX_CHUNK_LINE, deadline, stop_waiting)?;
            framing += line.len() + 4;
            if framing > MAX_CHUNK_FRAMING {
                return Err(BodyFailure::TooLarge);
            }
            let size = chunked::chunk_size(&line).map_err(BodyFailure::Malformed)?;
            if size == 0 {
                break;
            }
            total = total
                .checked_add(size)
                .filter(|total| *total <= limit)
                .ok_or(BodyFailure::TooLarge)?;
            self.read_exact(size, into.as_deref_mut(), deadline, stop_waiting)?;
            if !self
                .read_line(Line::ChunkEnd, 0, deadline, stop_waiting)?
                .is_empty()
            {
                return Err(BodyFailure::Malformed(Line::ChunkEnd.not_crlf()));
            }
        }
        let mut trailers = 0;
        loop {
            let room = MAX_TRAILERS.saturating_sub(trailers);
            let line = self.read_line(Line::Trailer, room, deadline, stop_waiting)?;
            if line.is_empty() {
                return Ok(());
            }
            chunked::trailer_line(&line).map_err(BodyFailure::Malformed)?;
            trailers += line.len() + 2;
        }
    }

    /// One line ending in CRLF, without it, at most `max` bytes before the CRLF.
    fn read_line(
        &mut self,
        kind: Line,
        max: usize,
        deadline: Instant,
        stop_waiting: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, BodyFailure> {
        let mut scanned = 0;
        loop {
            let unread = self.unread();
            if let Some(newline) = unread[scanned..].iter().position(|byte| *byte == b'\n') {
                let end = scanned + newline;
                if end == 0 || unread[end - 1] != b'\r' {
                    return Err(BodyFailure::Malformed(kind.not_crlf()));
                }
                if end - 1 > max {
                    return Err(BodyFailure::Malformed(kind.too_long()));
                }
                let line = unread[..end - 1].to_vec();
                self.consume(end + 1);
                return Ok(line);
            }
            if unread.len() > max + 1 {
                return Err(BodyFailure::Malformed(kind.too_long()));
            }
            scanned = unread.len();
            self.compact();
            self.fill(deadline, stop_waiting)?;
        }
    }

    /// Writes all of `bytes`, in chunks each bounded in size and in how long it waits for
    /// the client: by `deadline`, unless `stop_waiting` says otherwise between chunks (the
    /// connection was displaced, the server must be done). A client that does not read
    /// cannot hold the connection longer. The first chunk is always tried: an answer that
    /// the client's buffers can take goes out however late it is.
    pub fn write_all(
        &mut self,
        bytes: &[u8],
        deadline: Instant,
        stop_waiting: &dyn Fn() -> bool,
    ) -> Result<(), Interrupted> {
        let mut written = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = &bytes[written..bytes.len().min(written + WRITE_CHUNK)];
            match self.transport.write_some(chunk, left.min(WRITE_POLL)) {
                Ok(0) if !chunk.is_empty() => return Err(Interrupted::Closed),
                Ok(count) => written += count,
                Err(error) if waits(&error) => {}
                Err(_) => return Err(Interrupted::Closed),
            }
            if written == bytes.len() {
                return Ok(());
            }
            if stop_waiting() {
                return Err(Interrupted::Called);
            }
            if Instant::now() >= deadline {
                return Err(Interrupted::TimedOut);
            }
        }
    }

    /// The lingering close: says FIN, then reads and drops what the client is still
    /// sending until it closes, `until`, or `stop_waiting`. Closing a socket with unread
    /// bytes makes the kernel send a reset, and a reset can destroy the answer before the
    /// client has read it (on Windows it always does). It reads at least once, whatever
    /// `stop_waiting` says: bytes the client sent right after its request must not turn
    /// into a reset.
    pub fn close_lingering(mut self, until: Instant, stop_waiting: &dyn Fn() -> bool) {
        self.transport.shutdown_write();
        self.buffer = Vec::new();
        (self.start, self.filled) = (0, 0);
        while self.read_once().is_ok() {
            self.filled = 0;
            if stop_waiting() || Instant::now() >= until {
                return;
            }
        }
    }
}

/// Writes some of `bytes` to `stream` in non-blocking tries a few milliseconds apart, for at
/// most `wait`; `WouldBlock` if none could be written. The stream is left blocking.
#[cfg(any(windows, test))]
fn write_in_nonblocking_tries(
    stream: &TcpStream,
    bytes: &[u8],
    wait: Duration,
) -> std::io::Result<usize> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    stream.set_nonblocking(true)?;
    let written = loop {
        match (&*stream).write(bytes) {
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                let left = wait.saturating_sub(started.elapsed());
                if left.is_zero() {
                    break Err(error);
                }
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            other => break other,
        }
    };
    stream.set_nonblocking(false)?;
    written
}

/// Whether a read error only means "nothing yet": the step's timeout (Unix says
/// `WouldBlock`, Windows `TimedOut`) or a signal.
fn waits(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// How many bytes of empty lines (CRLF, or a bare LF) `bytes` start with.
fn empty_lines(bytes: &[u8]) -> usize {
    let mut count = 0;
    loop {
        match &bytes[count..] {
            [b'\r', b'\n', ..] => count += 2,
            [b'\n', ..] => count += 1,
            _ => return count,
        }
    }
}

/// Where the head in `bytes` ends (just past its blank line), looking from `from`: the first
/// LF followed by an empty line (CRLF or a bare LF, which RFC 9112 §2.2 lets a server accept).
fn head_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut index = from;
    while let Some(offset) = bytes.get(index..)?.iter().position(|byte| *byte == b'\n') {
        let newline = index + offset;
        match bytes.get(newline + 1..newline + 3) {
            Some([b'\r', b'\n']) => return Some(newline + 3),
            Some([b'\n', _]) => return Some(newline + 2),
            None if bytes.get(newline + 1) == Some(&b'\n') => return Some(newline + 2),
            _ => index = newline + 1,
        }
    }
    None
}

/// The lines of a chunked body, for what a refusal says.
#[derive(Debug, Clone, Copy)]
enum Line {
    ChunkSize,
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailer,
}

impl Line {
    fn not_crlf(self) -> &'static str {
        match self {
            Line::ChunkSize => "a chunk-size line not ended by CRLF",
            Line::ChunkEnd => {
                "chunk data not followed by CRLF (a chunk longer than its size, or a bare CR or LF)"
            }
            Line::Trailer => "a trailer line not ended by CRLF",
        }
    }

    fn too_long(self) -> &'static str {
        match self {
            Line::ChunkSize => "a chunk-size line longer than 4096 bytes",
            Line::ChunkEnd => Line::ChunkEnd.not_crlf(),
            Line::Trailer => "trailers longer than 16384 bytes",
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::server::head::Framing;

    /// Bytes in memory as a connection: reads give `incoming` in pieces of `step` bytes,
    /// then the end of the stream; writes are kept.
    pub struct InMemory {
        pub incoming: Vec<u8>,
        pub position: usize,
        pub step: usize,
        pub written: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
        /// How much the client reads of what is written, at most.
        pub room: usize,
    }

    impl InMemory {
        pub fn new(incoming: &[u8], step: usize) -> InMemory {
            InMemory {
                incoming: incoming.to_vec(),
                position: 0,
                step: step.max(1),
                written: Default::default(),
                room: usize::MAX,
            }
        }
    }

    impl Read for InMemory {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            let rest = &self.incoming[self.position..];
            let count = rest.len().min(buffer.len()).min(self.step);
            buffer[..count].copy_from_slice(&rest[..count]);
            self.position += count;
            Ok(count)
        }
    }

    impl Transport for InMemory {
        fn poll_reads(&mut self) -> std::io::Result<()> {
            Ok(())
        }

        /// Takes everything, up to `room` bytes in all; then nothing, as a client that
        /// stopped reading.
        fn write_some(&mut self, bytes: &[u8], wait: Duration) -> std::io::Result<usize> {
            let mut written = self
                .written
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let room = self.room.saturating_sub(written.len()).min(bytes.len());
            if room == 0 {
                std::thread::sleep(wait);
                return Err(ErrorKind::WouldBlock.into());
            }
            written.extend_from_slice(&bytes[..room]);
            Ok(room)
        }

        fn shutdown_write(&mut self) {}
    }

    fn wire(bytes: &[u8], step: usize) -> Wire<InMemory> {
        Wire::new(InMemory::new(bytes, step)).expect("in memory")
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn heads_end_at_a_blank_line_and_pipelined_bytes_stay() {
        for step in [1, 3, 4096] {
            let mut wire = wire(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2", step);
            assert_eq!(wire.await_request(soon(), &|| false), Ok(()));
            let head = wire.read_head(soon(), &|| false).expect("a head");
            assert_eq!(head, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            while wire.fill(soon(), &|| false).is_ok() {}
            assert_eq!(wire.unread(), b"GET /2");
        }
        let mut bare = wire(b"GET / HTTP/1.1\nHost: a\n\nrest", 2);
        assert_eq!(
            bare.read_head(soon(), &|| false).expect("a head"),
            b"GET / HTTP/1.1\nHost: a\n\n"
        );
    }

    #[test]
    fn a_head_over_the_limit_is_too_large() {
        let endless = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 20_000]].concat();
        let result = wire(&endless, 4096).read_head(soon(), &|| false);
        assert!(matches!(result, Err(HeadFailure::TooLarge)));
    }

    /// A complete head of `size` bytes.
    fn head_of(size: usize) -> Vec<u8> {
        let start = b"GET / HTTP/1.1\r\nHost: h\r\nX: ";
        let filler = size - start.len() - 4;
        [start.as_slice(), &vec![b'a'; filler], b"\r\n\r\n"].concat()
    }

    #[test]
    fn a_head_over_the_limit_is_too_large_however_it_arrives() {
        for step in [1, 3, 4096, READ_SIZE, 100_000] {
            for size in [MAX_HEAD_BYTES + 1, 20_000, 24_000] {
                let result = wire(&head_of(size), step).read_head(soon(), &|| false);
                assert!(
                    matches!(result, Err(HeadFailure::TooLarge)),
                    "{size} bytes in reads of {step}: {result:?}"
                );
            }
            let whole = wire(&head_of(MAX_HEAD_BYTES), step).read_head(soon(), &|| false);
            assert!(
                whole.is_ok_and(|head| head.len() == MAX_HEAD_BYTES),
                "{step}"
            );
        }
    }

    #[test]
    fn a_bare_cr_in_chunk_lines_extensions_or_trailers_is_named() {
        for (body, problem) in [
            (&b"4\r\r\nWiki\r\n0\r\n\r\n"[..], "chunk-size line"),
            (b"4;a=b\rc\r\nWiki\r\n0\r\n\r\n", "chunk extension"),
            (b"4;\r\nWiki\r\n0\r\n\r\n", "chunk extension that is not"),
            (
                b"4\r\nWiki\r\r\n0\r\n\r\n",
                "chunk data not followed by CRLF",
            ),
            (
                b"4\r\nWiki\r\n0\r\nT: a\rb\r\n\r\n",
                "a bare CR in a trailer line",
            ),
            (b"4\r\nWiki\r\n0\r\nno colon\r\n\r\n", "not a field line"),
            (b"4\r\nWiki\r\n0\r\nT: 1\r\n folded\r\n\r\n", "obs-fold"),
            (
                b"4\r\nWiki\r\n0\r\nT: 1\n\r\n",
                "trailer line not ended by CRLF",
            ),
        ] {
            for step in [1, 5, 4096] {
                let result =
                    wire(body, step).read_body(Framing::Chunked, 64, true, soon(), &|| false);
                assert!(
                    matches!(result, Err(BodyFailure::Malformed(what)) if what.contains(problem)),
                    "{:?} in reads of {step}: {result:?}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let chunked = b"4;x=y\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: t\r\n\r\nNEXT";
        for step in [1, 7, 4096] {
            let mut wire = wire(chunked, step);
            let body = wire
                .read_body(Framing::Chunked, 64, true, soon(), &|| false)
                .expect("a body");
            assert_eq!(body, b"Wikipedia");
            while wire.fill(soon(), &|| false).is_ok() {}
            assert_eq!(wire.unread(), b"NEXT");
        }
    }

    #[test]
    fn chunked_bodies_refuse_bad_framing_and_excess() {
        for bad in [
            b"4\nWiki\r\n0\r\n\r\n".as_slice(),
            b"4\r\nWikipedia\r\n0\r\n\r\n",
            b"x\r\n",
            b"-1\r\n",
            b"123456789\r\n",
        ] {
            let result = wire(bad, 4096).read_body(Framing::Chunked, 64, true, soon(), &|| false);
            assert!(matches!(result, Err(BodyFailure::Malformed(_))), "{bad:?}");
        }
        let large = b"41\r\n";
        let result = wire(large, 4096).read_body(Framing::Chunked, 64, true, soon(), &|| false);
        assert!(matches!(result, Err(BodyFailure::TooLarge)));
    }

    #[test]
    fn a_deadline_holds_however_fast_the_bytes_trickle() {
        // Every read brings a byte, and the deadline has passed: the head is not read on.
        let endless = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 1000]].concat();
        let result = wire(&endless, 1).read_head(Instant::now(), &|| false);
        assert!(matches!(
            result,
            Err(HeadFailure::Interrupted(Interrupted::TimedOut))
        ));
    }

    #[test]
    fn empty_lines_between_requests_are_dropped_while_idle() {
        let mut idle = wire(b"\r\n\r\n", 1);
        let result = idle.await_request(soon(), &|| false);
        assert_eq!(result, Err(Interrupted::Closed));
        let mut next = wire(b"\r\nGET / HTTP/1.1\r\n\r\n", 1);
        assert_eq!(next.await_request(soon(), &|| false), Ok(()));
        assert!(next.read_head(soon(), &|| false).is_ok());
    }

    #[test]
    fn chunk_framing_is_bounded_and_never_piles_up() {
        let extension = "x".repeat(4000);
        let chunks = format!("1;{extension}\r\nA\r\n").repeat(40);
        let mut wire = wire(chunks.as_bytes(), 4096);
        let result = wire.read_body(Framing::Chunked, 64 * 1024, true, soon(), &|| false);
        assert!(matches!(result, Err(BodyFailure::TooLarge)));
        assert!(
            wire.buffer.capacity() <= 4 * READ_SIZE,
            "{}",
            wire.buffer.capacity()
        );
    }

    #[test]
    fn empty_lines_alone_do_not_keep_an_idle_connection_past_its_deadline() {
        let mut idle = wire(&b"\r\n".repeat(1000), 2);
        let result = idle.await_request(Instant::now(), &|| false);
        assert_eq!(result, Err(Interrupted::TimedOut));
        let mut displaced = wire(&b"\r\n".repeat(1000), 2);
        assert_eq!(
            displaced.await_request(soon(), &|| true),
            Err(Interrupted::Called)
        );
    }

    #[test]
    fn a_write_to_a_client_that_stops_reading_ends_when_told_between_chunks() {
        let answer = vec![b'x'; 3 * WRITE_CHUNK];
        let mut stalled = InMemory::new(b"", 1);
        stalled.room = WRITE_CHUNK + 10;
        let written = std::sync::Arc::clone(&stalled.written);
        let mut stalled = Wire::new(stalled).expect("in memory");
        let started = Instant::now();
        let told = || started.elapsed() >= Duration::from_millis(300);
        let result = stalled.write_all(&answer, Instant::now() + Duration::from_secs(60), &told);
        assert_eq!(result, Err(Interrupted::Called));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            written.lock().map(|bytes| bytes.len()).ok(),
            Some(WRITE_CHUNK + 10)
        );

        let mut reader = wire(b"", 1);
        assert_eq!(reader.write_all(&answer, soon(), &|| false), Ok(()));
        let mut late = wire(b"", 1);
        let result = late.write_all(&answer, Instant::now(), &|| false);
        assert_eq!(result, Err(Interrupted::TimedOut));
    }

    /// Windows' way of waiting for room, tried on a real socket whose reader stops reading:
    /// it gives up after its wait with `WouldBlock`, and goes on once the reader reads.
    #[test]
    fn nonblocking_tries_wait_for_room_and_give_up_in_time() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let address = listener.local_addr().expect("an address");
        let writer = TcpStream::connect(address).expect("connects");
        let (mut reader, _) = listener.accept().expect("accepts");
        let chunk = vec![b'x'; 64 * 1024];
        let wait = Duration::from_millis(100);
        let mut written = 0;
        let started = Instant::now();
        // The attempt that gives up is the one measured: the kernel may grow its buffers
        // between attempts, so a further attempt need not find the socket full again.
        let (full, tried) = loop {
            let tried = Instant::now();
            match write_in_nonblocking_tries(&writer, &chunk, wait) {
                Ok(count) => written += count,
                Err(error) => break (error, tried.elapsed()),
            }
            assert!(started.elapsed() < Duration::from_secs(30), "never full");
        };
        assert_eq!(full.kind(), ErrorKind::WouldBlock);
        assert!(tried >= wait, "{tried:?}");
        assert!(tried < wait * 20, "{tried:?}");
        let mut buffer = vec![0; written];
        reader
            .read_exact(&mut buffer)
            .expect("reads what was written");
        assert!(write_in_nonblocking_tries(&writer, &chunk, wait).is_ok_and(|count| count > 0));
        // Left blocking, as reads need it: a read waits for its timeout.
        writer
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("a timeout");
        let mut byte = [0u8; 1];
        let reading = Instant::now();
        let read = (&writer).read(&mut byte);
        assert!(read.is_err_and(|error| waits(&error)));
        assert!(
            reading.elapsed() >= Duration::from_millis(40),
            "{:?}",
            reading.elapsed()
        );
    }

    #[test]
    fn a_body_that_stops_short_is_interrupted() {
        let result = wire(b"abc", 1).read_body(Framing::Length(5), 64, true, soon(), &|| false);
        assert!(matches!(
            result,
            Err(BodyFailure::Interrupted(Interrupted::Closed))
        ));
    }
}
