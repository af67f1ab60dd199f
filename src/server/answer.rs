//! Answers on the wire: the status line, `Date`, `Content-Length`, the handler's headers,
//! `Connection: close` when the server will close, and the body (none for HEAD).

use crate::http::{HttpResponse, MAX_BODY_BYTES};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// An answer the server gives on its own (bad framing, too large, too slow): the
/// connection is always closed after it, since what follows on it cannot be trusted.
#[derive(Debug)]
pub struct Refusal {
    pub response: HttpResponse,
}

impl Refusal {
    fn new(status: u16, error: &str, description: &str) -> Refusal {
        Refusal {
            response: HttpResponse::error(status, error, description),
        }
    }

    pub fn bad_request(description: &str) -> Refusal {
        Refusal::new(400, "BadRequest", description)
    }

    pub fn headers_too_large(description: &str) -> Refusal {
        Refusal::new(431, "RequestHeaderFieldsTooLarge", description)
    }

    pub fn not_implemented(description: &str) -> Refusal {
        Refusal::new(501, "NotImplemented", description)
    }

    pub fn expectation_failed() -> Refusal {
        Refusal::new(
            417,
            "ExpectationFailed",
            "the only expectation accepted is '100-continue'",
        )
    }

    pub fn body_too_large() -> Refusal {
        Refusal::new(
            413,
            "PayloadTooLarge",
            &format!("the request body exceeds the limit of {MAX_BODY_BYTES} bytes"),
        )
    }

    pub fn timed_out(what: &str, seconds: u64) -> Refusal {
        Refusal::new(
            408,
            "RequestTimeout",
            &format!("the request {what} did not arrive within {seconds} s"),
        )
    }

    /// For a request read by a stopping server that could not answer it in time: it was not
    /// carried out.
    pub fn stopping() -> Refusal {
        Refusal::new(
            503,
            "Unavailable",
            "the server is stopping and could not have answered this request in time; it was not carried out: send it again",
        )
    }

    /// Written by a stopping server in the place of a handler that could not finish in time.
    pub fn unfinished_at_stop() -> Refusal {
        Refusal::new(
            503,
            "Unavailable",
            "the server is stopping and this request could not be finished in time; it may or may not have been carried out: send it again",
        )
    }

    /// For a request still arriving when its connection must end: its slot went to a
    /// newcomer, or the server is stopping.
    pub fn cut_short() -> Refusal {
        Refusal::new(
            503,
            "Unavailable",
            "the server had to end this connection before the request arrived whole; try again",
        )
    }
}

/// The interim answer that invites a body the client held back (RFC 9110 §10.1.1).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What the answer says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// HTTP/1.1: open unless said otherwise; nothing to add.
    KeepAlive,
    /// An HTTP/1.0 client asked to keep the connection: say that it is kept.
    KeepAliveHttp10,
    /// The server closes after this answer: `Connection: close`.
    Close,
}

/// The bytes of an answer. With `head_only` (a HEAD request), the headers are GET's, with
/// its `Content-Length`, and no body follows (RFC 9110 §9.3.2).
pub fn encode(response: &HttpResponse, persistence: Persistence, head_only: bool) -> Vec<u8> {
    let status = response.status;
    // RFC 9110 §8.6: 1xx, 204 and 304 answers carry no Content-Length and no body.
    let bodiless = status < 200 || status == 204 || status == 304;
    let mut bytes = Vec::with_capacity(256 + response.body.len());
    // Written straight into the answer: every request pays for these lines.
    let _ = write!(bytes, "HTTP/1.1 {status} {}\r\nDate: ", reason(status));
    write_http_date(&mut bytes, SystemTime::now());
    bytes.extend_from_slice(b"\r\n");
    if !bodiless {
        bytes.extend_from_slice(b"Content-Type: ");
        bytes.extend_from_slice(response.content_type.as_bytes());
        bytes.extend_from_slice(b"\r\nContent-Length: ");
        crate::logging::push_digits(&mut bytes, response.body.len() as u64, 1);
        bytes.extend_from_slice(b"\r\n");
    }
    for (name, value) in &response.headers {
        // Values are the handlers' own; one that could break the head is left out rather
        // than sent broken.
        if value
            .bytes()
            .all(|byte| byte == b'\t' || (byte >= b' ' && byte != 0x7f))
        {
            let _ = write!(bytes, "{name}: {value}\r\n");
        }
    }
    match persistence {
        Persistence::KeepAlive => {}
        Persistence::KeepAliveHttp10 => bytes.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persistence::Close => bytes.extend_from_slice(b"Connection: close\r\n"),
    }
    bytes.extend_from_slice(b"\r\n");
    if !head_only && !bodiless {
        bytes.extend_from_slice(&response.body);
    }
    bytes
}

/// The reason phrase of each status these servers send (RFC 9110 §15).
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// `time` as `Sun, 06 Nov 1994 08:49:37 GMT`, the IMF-fixdate of RFC 9110 §5.6.7, written
/// into `bytes`.
fn write_http_date(bytes: &mut Vec<u8>, time: SystemTime) {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let days = seconds / 86_400;
    let (year, month, day) = crate::logging::civil_from_days(days);
    let of_day = seconds % 86_400;
    let push_digits = crate::logging::push_digits;
    bytes.extend_from_slice(WEEKDAYS[(days % 7) as usize].as_bytes());
    bytes.extend_from_slice(b", ");
    push_digits(bytes, day, 2);
    bytes.push(b' ');
    bytes.extend_from_slice(MONTHS[(month - 1) as usize].as_bytes());
    bytes.push(b' ');
    push_digits(bytes, year, 4);
    bytes.push(b' ');
    crate::logging::push_time_of_day(bytes, of_day);
    bytes.extend_from_slice(b" GMT");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_imf_fixdates() {
        let at = |seconds| {
            let mut date = Vec::new();
            write_http_date(&mut date, UNIX_EPOCH + Duration::from_secs(seconds));
            String::from_utf8(date).expect("ASCII")
        };
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(4_133_980_799), "Fri, 31 Dec 2100 23:59:59 GMT");
    }

    #[test]
    fn head_answers_keep_gets_length_and_drop_the_body() {
        let response = HttpResponse::raw_json(200, b"{\"a\":1}".to_vec());
        let text = String::from_utf8(encode(&response, Persistence::Close, true)).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "));
        assert!(text.contains("\r\nContent-Length: 7\r\n"));
        assert!(text.ends_with("Connection: close\r\n\r\n"));
        let broken = response.with_header("X", "a\r\nInjected: 1".into());
        let text = String::from_utf8(encode(&broken, Persistence::KeepAlive, false)).unwrap();
        assert!(!text.contains("Injected") && text.ends_with("\r\n\r\n{\"a\":1}"));
    }
}
