//! Logging for both binaries, always on standard output: one human-readable line per event (the default,
//! `LOG_FORMAT=text`) or one JSON object per line (`LOG_FORMAT=json`) for a log collector.
//! Request lines carry their parts as JSON fields too, and the server's name as target.
//! Every line is made in one buffer and handed to [`output`], which writes a busy server's
//! lines in batches: a request's line costs under a microsecond of CPU
//! (docs/performance.md).
//!
//! ```text
//! 2026-04-14T09:30:00.123Z INFO  [broker] GET /v2/catalog 200 0.4ms request_identity=4f1c
//! {"time":"2026-04-14T09:30:00.123Z","level":"INFO","target":"broker","message":"GET /v2/catalog 200 0.4ms request_identity=4f1c","server":"broker","method":"GET","path":"/v2/catalog","query":null,"status":200,"duration_ms":0.4,"request_identity":"4f1c","user":null}
//! ```
//!
//! Secrets stay out of every line at every level: the servers never log headers, the
//! broker logs bodies only at `debug` and only as its conversation page shows them, every
//! logged URL passes the rule of [`crate::redact`], and the HTTP client's own debug and trace
//! output (ureq dumps whole requests, Authorization headers included) is capped at `info`.
//! No client can forge a line: control characters are escaped in text lines (`\n`), and
//! JSON escapes them anyway.

mod output;

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `TIME LEVEL [target] message`.
    Text,
    /// One JSON object per line: `time`, `level`, `target`, `message`, and request fields.
    Json,
}

impl Format {
    /// The value of `LOG_FORMAT`: `text` or `json` (any case); `None` for anything else.
    pub fn parse(value: &str) -> Option<Format> {
        match value.trim().to_ascii_lowercase().as_str() {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Crates (target prefixes) whose debug and trace output shows raw requests and responses
/// (ureq, rustls) or statements with their parameters, binding passwords among them
/// (tokio_postgres, postgres): they never log below `info`, whatever `LOG_LEVEL` says.
const CHATTY_CRATES: [&str; 5] = ["ureq", "rustls", "tokio_postgres", "postgres", "tokio"];

/// The format chosen at start-up; `Text` until [`init`] runs.
static FORMAT: OnceLock<Format> = OnceLock::new();

/// Installs the logger: `level` for this program's own lines, `format` for all of them; the
/// HTTP and database crates never log below `info`. A second call changes nothing.
///
/// A panic (a bug: the servers turn one in a handler into a 500 and go on) is logged as an
/// error line like any other, instead of the default message on standard error, and the
/// log is flushed, in case the panic ends the process.
pub fn init(level: LevelFilter, format: Format) {
    let _ = FORMAT.set(format);
    std::panic::set_hook(Box::new(|panic| {
        log::error!("a bug: {panic}");
        output::flush();
    }));
    // Fails only if a logger is already installed, which then goes on logging.
    if log::set_boxed_logger(Box::new(Logger { level, format })).is_ok() {
        log::set_max_level(level);
        output::start_writer();
    }
}

fn format() -> Format {
    FORMAT.get().copied().unwrap_or(Format::Text)
}

/// Writes every record as a line in the chosen format.
struct Logger {
    level: LevelFilter,
    format: Format,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        let level = metadata.level();
        level <= self.level && (level <= Level::Info || !is_chatty(metadata.target()))
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        let line = match self.format {
            Format::Text => text_line(record.level(), record.target(), &message),
            Format::Json => json_line(record.level(), record.target(), &message, &[]),
        };
        output::write(&line);
    }

    fn flush(&self) {
        output::flush();
    }
}

fn is_chatty(target: &str) -> bool {
    CHATTY_CRATES.iter().any(|name| target.starts_with(name))
}

/// Who asked, as far as the request says: the parts of a request's log line that come
/// from its headers (see `http::Handler::log_context`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestContext {
    /// The platform's `X-Broker-API-Request-Identity`.
    pub request_identity: Option<String>,
    /// The user named by `X-Broker-API-Originating-Identity`.
    pub user: Option<String>,
}

/// Logs one answered request at `info` (a passing health check at `debug`): `server` is the
/// server's name ("broker", "echo"). The line is made here in one go, not through a
/// `log` macro's formatting, since every request pays for it.
pub fn request(
    server: &str,
    method: &str,
    url: &str,
    status: u16,
    elapsed: Duration,
    context: &RequestContext,
) {
    // The platform's health checks come every few seconds: a passing one is only debug.
    let level = if url == "/health" && status == 200 {
        Level::Debug
    } else {
        Level::Info
    };
    if !log::log_enabled!(target: server, level) {
        return;
    }
    let url = crate::redact::redacted(url);
    // In tenths of a millisecond, shown as `0.4ms`, without formatting a float.
    let tenths = (elapsed.as_secs_f64() * 10_000.0).round() as u64;
    let mut message = String::with_capacity(url.len() + 96);
    {
        use std::fmt::Write;
        let (whole, tenth) = (tenths / 10, tenths % 10);
        let _ = write!(message, "{method} {url} {status} {whole}.{tenth}ms");
    }
    if let Some(identity) = &context.request_identity {
        message.push_str(" request_identity=");
        message.push_str(identity);
    }
    if let Some(user) = &context.user {
        message.push_str(" user=");
        message.push_str(user);
    }
    let line = match format() {
        Format::Text => text_line(level, server, &message),
        Format::Json => {
            let (path, query) = match url.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (url.as_ref(), None),
            };
            let fields = [
                ("server", Field::Text(Some(server))),
                ("method", Field::Text(Some(method))),
                ("path", Field::Text(Some(path))),
                ("query", Field::Text(query)),
                ("status", Field::Number(f64::from(status))),
                ("duration_ms", Field::Decimal(tenths as f64 / 10.0)),
                (
                    "request_identity",
                    Field::Text(context.request_identity.as_deref()),
                ),
                ("user", Field::Text(context.user.as_deref())),
            ];
            json_line(level, server, &message, &fields)
        }
    };
    output::write(&line);
}

/// Reports why start-up stopped, as one line in the chosen format (`error: ...` as text),
/// after every log line before it.
pub fn fatal(message: &str) {
    let line = match format() {
        Format::Text => {
            let mut line = b"error: ".to_vec();
            push_escaped(&mut line, message);
            line.push(b'\n');
            line
        }
        Format::Json => json_line(Level::Error, "startup", message, &[]),
    };
    output::write(&line);
    output::flush();
}

/// Writes `text` (a command's own output, such as its help) to standard output as it is,
/// after every log line before it.
pub fn print(text: &str) {
    output::write(text.as_bytes());
    output::flush();
}

/// `TIME LEVEL [target] message` and a newline, the level padded to five characters and
/// control characters in the message escaped (a header value a client sent cannot start a
/// forged line):
/// `2026-04-14T09:30:00.123Z INFO  [broker] GET /v2/catalog 200 0.4ms`.
fn text_line(level: Level, target: &str, message: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(36 + target.len() + message.len());
    push_timestamp(&mut line, SystemTime::now());
    line.push(b' ');
    line.extend_from_slice(padded(level).as_bytes());
    line.extend_from_slice(b" [");
    line.extend_from_slice(target.as_bytes());
    line.extend_from_slice(b"] ");
    push_escaped(&mut line, message);
    line.push(b'\n');
    line
}

/// The level's name in five characters.
fn padded(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARN ",
        Level::Info => "INFO ",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

/// A request field's value in a JSON line.
enum Field<'a> {
    /// A string, or `null`.
    Text(Option<&'a str>),
    /// A whole number.
    Number(f64),
    /// A number shown as JSON shows it (`0.4`, `12.0`).
    Decimal(f64),
}

/// `{"time":...,"level":...,"target":...,"message":...,<fields>}` and a newline.
fn json_line(level: Level, target: &str, message: &str, fields: &[(&str, Field)]) -> Vec<u8> {
    let mut line = Vec::with_capacity(96 + target.len() + 2 * message.len());
    line.extend_from_slice(b"{\"time\":\"");
    push_timestamp(&mut line, SystemTime::now());
    line.extend_from_slice(b"\",\"level\":\"");
    line.extend_from_slice(level.as_str().as_bytes());
    line.extend_from_slice(b"\",\"target\":");
    push_json_string(&mut line, target);
    line.extend_from_slice(b",\"message\":");
    push_json_string(&mut line, message);
    for (key, value) in fields {
        line.push(b',');
        push_json_string(&mut line, key);
        line.push(b':');
        match value {
            Field::Text(Some(text)) => push_json_string(&mut line, text),
            Field::Text(None) => line.extend_from_slice(b"null"),
            Field::Number(number) => {
                let _ = write!(line, "{number}");
            }
            Field::Decimal(number) => {
                let _ = serde_json::to_writer(&mut line, number);
            }
        }
    }
    line.extend_from_slice(b"}\n");
    line
}

/// `text` as a JSON string, quoted and escaped (control characters included).
fn push_json_string(line: &mut Vec<u8>, text: &str) {
    let _ = serde_json::to_writer(line, text);
}

/// `text`, its control characters escaped (`\n` for a newline).
fn push_escaped(line: &mut Vec<u8>, text: &str) {
    if !text.chars().any(char::is_control) {
        line.extend_from_slice(text.as_bytes());
        return;
    }
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(line, "{}", c.escape_default());
        } else {
            let mut utf8 = [0; 4];
            line.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
    }
}

/// `time` as RFC 3339 in UTC with milliseconds: `2026-04-14T09:30:00.123Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let mut text = Vec::with_capacity(24);
    push_timestamp(&mut text, time);
    String::from_utf8(text).unwrap_or_default()
}

/// [`rfc3339`], digit by digit into `line`: every log line starts with one.
fn push_timestamp(line: &mut Vec<u8>, time: SystemTime) {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let second_of_day = seconds % 86_400;
    push_digits(line, year, 4);
    line.push(b'-');
    push_digits(line, month, 2);
    line.push(b'-');
    push_digits(line, day, 2);
    line.push(b'T');
    push_time_of_day(line, second_of_day);
    line.push(b'.');
    push_digits(line, u64::from(since_epoch.subsec_millis()), 3);
    line.push(b'Z');
}

/// `hh:mm:ss` of the `second_of_day`, as both the log's timestamps and HTTP dates write it.
pub(crate) fn push_time_of_day(out: &mut Vec<u8>, second_of_day: u64) {
    push_digits(out, second_of_day / 3600, 2);
    out.push(b':');
    push_digits(out, second_of_day % 3600 / 60, 2);
    out.push(b':');
    push_digits(out, second_of_day % 60, 2);
}

/// `value` in decimal, zero-padded to `width` digits (all its digits if it has more).
/// Every log line and every answer's `Date` has a dozen of them: no formatting machinery,
/// and only divisions by the constant 10, which compile to multiplications.
pub(crate) fn push_digits(line: &mut Vec<u8>, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut first = digits.len();
    let mut rest = value;
    while rest > 0 {
        first -= 1;
        digits[first] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let start = first.min(digits.len().saturating_sub(width));
    line.extend_from_slice(&digits[start..]);
}

/// The proleptic Gregorian date `days` days after 1970-01-01 (Howard Hinnant's algorithm),
/// for log lines and the HTTP `Date` header.
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        let at = |seconds: u64, millis: u64| {
            rfc3339(UNIX_EPOCH + Duration::from_millis(seconds * 1000 + millis))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_700_000_000, 123), "2023-11-14T22:13:20.123Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    }

    #[test]
    fn digits_are_padded_to_their_width_and_never_cut() {
        let digits = |value: u64, width: usize| {
            let mut line = Vec::new();
            push_digits(&mut line, value, width);
            String::from_utf8(line).expect("ASCII")
        };
        assert_eq!(digits(0, 1), "0");
        assert_eq!(digits(7, 3), "007");
        assert_eq!(digits(2026, 4), "2026");
        assert_eq!(digits(12345, 4), "12345");
        assert_eq!(digits(u64::MAX, 2), u64::MAX.to_string());
    }

    #[test]
    fn log_format_is_text_or_json() {
        assert_eq!(Format::parse("json"), Some(Format::Json));
        assert_eq!(Format::parse(" TEXT "), Some(Format::Text));
        assert_eq!(Format::parse("xml"), None);
    }

    #[test]
    fn secrets_in_logged_urls_are_masked_and_other_queries_kept() {
        let redact = crate::redact::redact_text;
        assert_eq!(
            redact("/echo/dashboard/i?token=abc123"),
            "/echo/dashboard/i?token=[redacted]"
        );
        assert_eq!(
            redact("/v2/service_instances/i?service_id=a&plan_id=b"),
            "/v2/service_instances/i?service_id=a&plan_id=b"
        );
        assert_eq!(redact("/health"), "/health");
    }

    #[test]
    fn json_lines_are_one_object_with_time_first() {
        let line = json_line(
            Level::Info,
            "t",
            "say \"hi\"\n",
            &[
                ("status", Field::Number(200.0)),
                ("duration_ms", Field::Decimal(12.0)),
                ("query", Field::Text(None)),
            ],
        );
        let line = String::from_utf8(line).expect("UTF-8");
        let line = line.strip_suffix('\n').expect("one line, ended");
        assert!(!line.contains('\n'));
        assert!(line.starts_with("{\"time\":"), "{line}");
        let value: serde_json::Value = serde_json::from_str(line).expect("a JSON object");
        assert_eq!(value["message"], "say \"hi\"\n");
        assert_eq!(value["status"], 200);
        assert_eq!(value["level"], "INFO");
        assert!(
            line.ends_with(",\"status\":200,\"duration_ms\":12.0,\"query\":null}"),
            "{line}"
        );
    }

    #[test]
    fn text_lines_pad_the_level_and_escape_control_characters() {
        let line = String::from_utf8(text_line(Level::Info, "broker", "GET /x\ny")).expect("UTF-8");
        assert_eq!(
            line.len(),
            24 + " INFO  [broker] GET /x\\ny\n".len(),
            "{line}"
        );
        assert!(line.ends_with(" INFO  [broker] GET /x\\ny\n"), "{line}");
        let line = String::from_utf8(text_line(Level::Error, "t", "m")).expect("UTF-8");
        assert!(line.ends_with(" ERROR [t] m\n"), "{line}");
    }

    #[test]
    fn http_crates_stay_at_info_or_above() {
        let logger = Logger {
            level: LevelFilter::Trace,
            format: Format::Text,
        };
        let at = |level: Level, target: &str| {
            logger.enabled(&Metadata::builder().level(level).target(target).build())
        };
        assert!(at(Level::Trace, "echo_broker::broker"));
        assert!(!at(Level::Trace, "ureq_proto::util"));
        assert!(!at(Level::Debug, "rustls::client"));
        assert!(at(Level::Info, "ureq"));
    }
}
