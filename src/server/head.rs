//! A request head, parsed by `httparse`, and the framing rules of RFC 9112 that decide how
//! its body is delimited. Where a head is ambiguous the answer is a refusal, never a guess:
//! two servers that guess differently are how requests get smuggled past a proxy.

use super::answer::Refusal;
use crate::http::HttpRequest;

/// The largest request head (request line and headers) read; a larger one is 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The most header lines a request may have; more is 431.
pub const MAX_HEADERS: usize = 100;

/// How a request's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: neither Content-Length nor Transfer-Encoding.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl Framing {
    pub fn has_body(self) -> bool {
        !matches!(self, Framing::None | Framing::Length(0))
    }
}

/// A parsed head: the request as handlers see it (body still empty) and what the server
/// needs to read the body and decide about the connection.
#[derive(Debug)]
pub struct Head {
    pub request: HttpRequest,
    /// `HTTP/1.0` (minor version 0) keeps its connection only when it asks to.
    pub http_1_0: bool,
    pub framing: Framing,
    /// The client said `Connection: close` (or, in HTTP/1.0, did not say `keep-alive`).
    pub wants_close: bool,
    /// `Expect: 100-continue`: the client waits for `100 Continue` before sending its body.
    pub expects_continue: bool,
}

/// Parses the head in `bytes` (which end with its blank line).
pub fn parse(bytes: &[u8]) -> Result<Head, Refusal> {
    // httparse refuses these too, but its words ("invalid header value") do not say why.
    if has_bare_cr(bytes) {
        return Err(Refusal::bad_request(
            "a bare CR in the request head: every line must end in CRLF",
        ));
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Refusal::bad_request("incomplete head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::headers_too_large(&format!(
                "more than {MAX_HEADERS} header lines"
            )))
        }
        Err(error) => {
            return Err(Refusal::bad_request(&format!(
                "malformed request head ({error})"
            )))
        }
    }
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(Refusal::bad_request("incomplete request line"));
    };
    // RFC 9112 §3.2: the target of a request to an origin server is a path; absolute-form
    // is for proxies, authority-form for CONNECT, asterisk-form for `OPTIONS *`.
    if !target.starts_with('/') {
        return Err(Refusal::bad_request(
            "the request target must be a path starting with '/'",
        ));
    }
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|header| {
            let value = String::from_utf8_lossy(header.value).into_owned();
            (header.name.to_string(), value)
        })
        .collect();
    let http_1_0 = version == 0;
    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1.
    if !http_1_0 && values("host").count() != 1 {
        return Err(Refusal::bad_request(
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    let framing = framing(
        &values("content-length").collect::<Vec<_>>(),
        &values("transfer-encoding").collect::<Vec<_>>(),
        http_1_0,
    )?;
    let connection = tokens(values("connection"));
    // `close` wins over `keep-alive` (RFC 9112 §9.6); HTTP/1.0 closes unless asked not to.
    let says = |word: &str| connection.iter().any(|token| token == word);
    let wants_close = says("close") || (http_1_0 && !says("keep-alive"));
    let expects_continue = expects_continue(&tokens(values("expect")), http_1_0)?;
    Ok(Head {
        request: HttpRequest {
            method: method.to_string(),
            url: target.to_string(),
            headers,
            body: Vec::new(),
        },
        http_1_0,
        framing,
        wants_close,
        expects_continue,
    })
}

/// Whether `bytes` hold a CR that does not begin a CRLF (RFC 9112 §2.2: refused, since a
/// front proxy that took it for a line end would read the head differently).
fn has_bare_cr(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(index, byte)| *byte == b'\r' && bytes.get(index + 1) != Some(&b'\n'))
}

/// RFC 9112 §6.1-6.3, strictly: Content-Length and Transfer-Encoding together, two
/// Content-Lengths (even equal ones) or one that is not plain digits are 400; a transfer
/// coding other than `chunked` alone is 501; Transfer-Encoding in HTTP/1.0 is 400.
fn framing(lengths: &[&str], encodings: &[&str], http_1_0: bool) -> Result<Framing, Refusal> {
    match (lengths, encodings) {
        ([], []) => Ok(Framing::None),
        ([length], []) => content_length(length).map(Framing::Length),
        (_, []) => Err(Refusal::bad_request("more than one Content-Length header")),
        ([], _) if http_1_0 => Err(Refusal::bad_request(
            "Transfer-Encoding is not defined in HTTP/1.0",
        )),
        ([], _) => {
            let codings = tokens(encodings.iter().copied());
            if codings == ["chunked"] {
                Ok(Framing::Chunked)
            } else {
                Err(Refusal::not_implemented(
                    "the only transfer coding accepted is 'chunked'",
                ))
            }
        }
        (_, _) => Err(Refusal::bad_request(
            "Content-Length and Transfer-Encoding together are ambiguous",
        )),
    }
}

fn content_length(value: &str) -> Result<u64, Refusal> {
    let value = value.trim();
    let digits_only = !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit());
    digits_only
        .then(|| value.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| Refusal::bad_request("Content-Length is not a number of bytes"))
}

/// RFC 9110 §10.1.1: `100-continue` is the one expectation defined (an HTTP/1.0 client's is
/// ignored); any other is 417.
fn expects_continue(expectations: &[String], http_1_0: bool) -> Result<bool, Refusal> {
    match expectations {
        [] => Ok(false),
        [only] if only == "100-continue" => Ok(!http_1_0),
        _ => Err(Refusal::expectation_failed()),
    }
}

/// The comma-separated tokens of header values, trimmed and lowercased.
fn tokens<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    values
        .flat_map(|value| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(head: &str) -> u16 {
        match parse(head.as_bytes()) {
            Ok(_) => 200,
            Err(refusal) => refusal.response.status,
        }
    }

    #[test]
    fn framing_is_strict() {
        let with = |lines: &str| format!("PUT /x HTTP/1.1\r\nHost: h\r\n{lines}\r\n");
        assert_eq!(status_of(&with("Content-Length: 5\r\n")), 200);
        assert_eq!(status_of(&with("Transfer-Encoding: chunked\r\n")), 200);
        assert_eq!(status_of(&with("Transfer-Encoding: Chunked \r\n")), 200);
        for bad in [
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "Content-Length: 1, 1\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: +1\r\n",
            "Content-Length: 18446744073709551616\r\n",
            "X: a\r\n folded\r\n",
        ] {
            assert_eq!(status_of(&with(bad)), 400, "{bad:?}");
        }
        for unsupported in [
            "Transfer-Encoding: gzip\r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        ] {
            assert_eq!(status_of(&with(unsupported)), 501, "{unsupported:?}");
        }
        assert_eq!(
            status_of("PUT /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
    }

    #[test]
    fn a_bare_cr_anywhere_in_a_head_is_named() {
        for head in [
            "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nX\r: a\r\n\r\n",
            "GET /\r HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\rHost: h\r\n\r\n",
        ] {
            let refusal = parse(head.as_bytes()).expect_err(head);
            let text = String::from_utf8_lossy(&refusal.response.body).into_owned();
            assert_eq!(refusal.response.status, 400, "{head:?}");
            assert!(text.contains("a bare CR"), "{head:?}: {text}");
        }
        assert_eq!(status_of("GET / HTTP/1.1\nHost: h\n\n"), 200);
    }

    #[test]
    fn targets_hosts_and_expectations() {
        assert_eq!(status_of("GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status_of("CONNECT h:22 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status_of("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
        assert_eq!(status_of("GET /x HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            status_of("GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            400
        );
        assert_eq!(status_of("GET /x HTTP/1.0\r\n\r\n"), 200);
        assert_eq!(
            status_of("GET /x HTTP/1.1\r\nHost: h\r\nExpect: teapot\r\n\r\n"),
            417
        );
        let head = parse(b"PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\n\r\n");
        assert!(head.is_ok_and(|head| head.expects_continue));
    }

    #[test]
    fn connection_persistence_follows_the_version() {
        let wants_close = |head: &str| parse(head.as_bytes()).map(|head| head.wants_close).ok();
        assert_eq!(
            wants_close("GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            Some(false)
        );
        assert_eq!(
            wants_close("GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n"),
            Some(true)
        );
        assert_eq!(wants_close("GET / HTTP/1.0\r\n\r\n"), Some(true));
        assert_eq!(
            wants_close("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
            Some(false)
        );
        assert_eq!(
            wants_close("GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n"),
            Some(true)
        );
    }
}
