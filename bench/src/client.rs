//! The load generator's HTTP/1.1 client: one keep-alive connection, requests written by
//! hand and answers read with as little work as possible, so that its own cost stays small
//! and is the same for every server measured.

use crate::processes::AUTHORIZATION;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a client waits for one answer before counting an error.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response the load generator accepts.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// One keep-alive connection and the bytes read past the last response.
pub struct Client {
    pub address: SocketAddr,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
    filled: usize,
    pub body: Vec<u8>,
}

impl Client {
    pub fn new(address: SocketAddr) -> Client {
        Client {
            address,
            stream: None,
            buffer: vec![0; 16 * 1024],
            filled: 0,
            body: Vec::new(),
        }
    }

    /// Sends one request and reads its response; returns the status. The response body is
    /// in `self.body` afterwards. On an I/O error the connection is dropped, and the next
    /// call opens a new one.
    pub fn send(&mut self, request: &[u8]) -> io::Result<u16> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.address, Duration::from_secs(2))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
            stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
            self.stream = Some(stream);
            self.filled = 0;
        }
        let result = match self.stream.as_mut() {
            Some(stream) => exchange(
                stream,
                &mut self.buffer,
                &mut self.filled,
                &mut self.body,
                request,
            ),
            None => Err(io::Error::other("no connection")),
        };
        match result {
            Ok((status, keep_alive)) => {
                if !keep_alive {
                    self.stream = None;
                }
                Ok(status)
            }
            Err(error) => {
                self.stream = None;
                Err(error)
            }
        }
    }
}

/// Writes `request`, reads one response (Content-Length or chunked), and returns its status
/// and whether the connection stays open.
fn exchange(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    filled: &mut usize,
    body: &mut Vec<u8>,
    request: &[u8],
) -> io::Result<(u16, bool)> {
    stream.write_all(request)?;
    let head_end = loop {
        if let Some(at) = find(&buffer[..*filled], b"\r\n\r\n") {
            break at + 4;
        }
        read_more(stream, buffer, filled)?;
    };
    let (status, length, chunked, close) = parse_head(&buffer[..head_end])?;
    body.clear();
    let consumed = if chunked {
        read_chunked(stream, buffer, filled, body, head_end)?
    } else {
        let length = match length {
            Some(length) => length,
            None if status == 204 || status == 304 || status < 200 => 0,
            None => return Err(io::Error::other("a response with no length")),
        };
        if head_end + length > MAX_RESPONSE_BYTES {
            return Err(io::Error::other("a response over the size limit"));
        }
        while *filled < head_end + length {
            read_more(stream, buffer, filled)?;
        }
        body.extend_from_slice(&buffer[head_end..head_end + length]);
        head_end + length
    };
    buffer.copy_within(consumed..*filled, 0);
    *filled -= consumed;
    Ok((status, !close))
}

fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>, filled: &mut usize) -> io::Result<()> {
    if *filled == buffer.len() {
        if buffer.len() >= MAX_RESPONSE_BYTES {
            return Err(io::Error::other("a response over the size limit"));
        }
        buffer.resize(buffer.len() * 2, 0);
    }
    let read = stream.read(&mut buffer[*filled..])?;
    if read == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    *filled += read;
    Ok(())
}

/// Status, Content-Length, chunked, Connection: close.
fn parse_head(head: &[u8]) -> io::Result<(u16, Option<usize>, bool, bool)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not an HTTP/1.x response");
    if head.len() < 12 || !head.starts_with(b"HTTP/1.") {
        return Err(bad());
    }
    let status = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|text| text.parse::<u16>().ok())
        .ok_or_else(bad)?;
    let (mut length, mut chunked, mut close) = (None, false, head.starts_with(b"HTTP/1.0"));
    for line in head.split(|&byte| byte == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = String::from_utf8_lossy(value).trim().to_ascii_lowercase();
        if name.eq_ignore_ascii_case(b"content-length") {
            length = Some(value.parse::<usize>().map_err(|_| bad())?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value.contains("chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            close = value.contains("close");
        }
    }
    Ok((status, length, chunked, close))
}

/// Reads a chunked body that starts at `start`; returns where the response ends.
fn read_chunked(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    filled: &mut usize,
    body: &mut Vec<u8>,
    start: usize,
) -> io::Result<usize> {
    let mut at = start;
    loop {
        let line_end = loop {
            if let Some(offset) = find(&buffer[at..*filled], b"\r\n") {
                break at + offset;
            }
            read_more(stream, buffer, filled)?;
        };
        let size_text = String::from_utf8_lossy(&buffer[at..line_end]).to_string();
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a bad chunk size"))?;
        at = line_end + 2;
        if body.len() + size > MAX_RESPONSE_BYTES {
            return Err(io::Error::other("a response over the size limit"));
        }
        while *filled < at + size + 2 {
            read_more(stream, buffer, filled)?;
        }
        if size == 0 {
            return Ok(at + 2);
        }
        body.extend_from_slice(&buffer[at..at + size]);
        at += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The request a connection sends, built into a reused buffer.
/// The bytes of a `GET path` request to `address`.
pub fn get_request(path: &str, address: SocketAddr) -> Vec<u8> {
    let mut request = Vec::new();
    request_bytes(&mut request, "GET", path, &address.to_string(), None);
    request
}

pub fn request_bytes(
    buffer: &mut Vec<u8>,
    method: &str,
    path: &str,
    host: &str,
    body: Option<&str>,
) {
    buffer.clear();
    let result = match body {
        Some(body) => write!(
            buffer,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTHORIZATION}\r\n\
             X-Broker-API-Version: 2.17\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        None => write!(
            buffer,
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTHORIZATION}\r\n\
             X-Broker-API-Version: 2.17\r\n\r\n"
        ),
    };
    result.expect("a Vec<u8> takes every write");
}
