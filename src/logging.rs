//! Logging for both binaries, always on standard output: one human-readable line per event (the default,
//! `LOG_FORMAT=text`) or one JSON object per line (`LOG_FORMAT=json`) for a log collector.
//! Request lines carry their parts as JSON fields too, and the server's name as target.
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

use log::{Level, LevelFilter, Log, Metadata, Record};
use serde_json::Value;
use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `TIME LEVEL [target] message`, written by simple_logger.
    Text,
    /// One JSON object per line: `time`, `level`, `target`, `message`, and request fields.
    Json,
}

impl Format {
    /// The value of `LOG_FORMAT`: `text` or `json` (any case).
    pub fn parse(value: &str) -> Result<Format, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            _ => Err(format!("LOG_FORMAT: '{value}' is not one of text, json")),
        }
    }
}

/// Crates (target prefixes) whose debug and trace output shows raw requests and responses
/// (ureq, rustls) or statements with their parameters, binding passwords among them
/// (tokio_postgres, postgres): they never log below `info`, whatever `LOG_LEVEL` says.
const CHATTY_CRATES: [&str; 5] = ["ureq", "rustls", "tokio_postgres", "postgres", "tokio"];

/// The format chosen at start-up; `Text` until [`init`] runs.
static FORMAT: OnceLock<Format> = OnceLock::new();

/// Installs the logger: `level` for this program's own lines, `format` for all of them.
/// Text lines are simple_logger's (through [`EscapingLogger`]); JSON lines are written by
/// [`JsonLogger`]. Either way the
/// HTTP crates never log below `info`. A second call changes nothing.
///
/// A panic (a bug: the servers turn one in a handler into a 500 and go on) is logged as an
/// error line like any other, instead of the default message on standard error.
pub fn init(level: LevelFilter, format: Format) {
    let _ = FORMAT.set(format);
    std::panic::set_hook(Box::new(|panic| log::error!("a bug: {panic}")));
    match format {
        Format::Text => {
            let logger = CHATTY_CRATES.iter().fold(
                simple_logger::SimpleLogger::new()
                    .with_level(level)
                    .with_utc_timestamps(),
                |logger, name| logger.with_module_level(name, level.min(LevelFilter::Info)),
            );
            let max_level = logger.max_level();
            // Fails only if a logger is already installed, which then goes on logging.
            if log::set_boxed_logger(Box::new(EscapingLogger(logger))).is_ok() {
                log::set_max_level(max_level);
            }
        }
        Format::Json => {
            if log::set_boxed_logger(Box::new(JsonLogger { level })).is_ok() {
                log::set_max_level(level);
            }
        }
    }
}

/// simple_logger, with control characters in messages escaped: a header value that a
/// client sent cannot start a forged line.
struct EscapingLogger(simple_logger::SimpleLogger);

impl Log for EscapingLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        let message = record.args().to_string();
        if !message.chars().any(char::is_control) {
            return self.0.log(record);
        }
        let escaped = escape_controls(&message);
        self.0.log(
            &Record::builder()
                .args(format_args!("{escaped}"))
                .metadata(record.metadata().clone())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.0.flush();
    }
}

fn format() -> Format {
    FORMAT.get().copied().unwrap_or(Format::Text)
}

/// Writes every record as one JSON object per line.
struct JsonLogger {
    level: LevelFilter,
}

impl Log for JsonLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        let level = metadata.level();
        level <= self.level && (level <= Level::Info || !is_chatty(metadata.target()))
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            let message = record.args().to_string();
            write_line(&json_line(
                record.level(),
                record.target(),
                &message,
                Vec::new(),
            ));
        }
    }

    fn flush(&self) {
        let _ = std::io::stdout().flush();
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
/// server's name ("broker", "echo").
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
    let url = crate::redact::redact_text(url);
    let duration_ms = (elapsed.as_secs_f64() * 10_000.0).round() / 10.0;
    let mut message = format!("{method} {url} {status} {duration_ms:.1}ms");
    if let Some(identity) = &context.request_identity {
        message.push_str(&format!(" request_identity={identity}"));
    }
    if let Some(user) = &context.user {
        message.push_str(&format!(" user={user}"));
    }
    if format() == Format::Text {
        log::log!(target: server, level, "{message}");
        return;
    }
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url.as_str(), None),
    };
    let optional = |value: &Option<String>| value.as_deref().map_or(Value::Null, Value::from);
    let fields = vec![
        ("server", Value::from(server)),
        ("method", Value::from(method)),
        ("path", Value::from(path)),
        ("query", query.map_or(Value::Null, Value::from)),
        ("status", Value::from(status)),
        ("duration_ms", Value::from(duration_ms)),
        ("request_identity", optional(&context.request_identity)),
        ("user", optional(&context.user)),
    ];
    write_line(&json_line(level, server, &message, fields));
}

/// Reports why start-up stopped, as one line in the chosen format (`error: ...` as text).
pub fn fatal(message: &str) {
    let line = match format() {
        Format::Text => format!("error: {}", escape_controls(message)),
        Format::Json => json_line(Level::Error, "startup", message, Vec::new()),
    };
    write_line(&line);
}

/// `{"time":...,"level":...,"target":...,"message":...,<fields>}` in that order.
fn json_line(level: Level, target: &str, message: &str, fields: Vec<(&str, Value)>) -> String {
    let base = [
        ("time", Value::from(rfc3339(SystemTime::now()))),
        ("level", Value::from(level.as_str())),
        ("target", Value::from(target)),
        ("message", Value::from(message)),
    ];
    let members: Vec<String> = base
        .into_iter()
        .chain(fields)
        .map(|(key, value)| format!("{}:{value}", Value::from(key)))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// Writes a line to standard output in one call; a closed stdout is not worth a panic.
fn write_line(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(format!("{line}\n").as_bytes());
}

fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `time` as RFC 3339 in UTC with milliseconds: `2026-04-14T09:30:00.123Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let second_of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    )
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
    fn log_format_is_text_or_json() {
        assert_eq!(Format::parse("json"), Ok(Format::Json));
        assert_eq!(Format::parse(" TEXT "), Ok(Format::Text));
        let problem = Format::parse("xml").expect_err("xml is refused");
        assert!(problem.starts_with("LOG_FORMAT:"), "{problem}");
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
            vec![("status", Value::from(200))],
        );
        assert!(!line.contains('\n'));
        assert!(line.starts_with("{\"time\":"), "{line}");
        let value: Value = serde_json::from_str(&line).expect("a JSON object");
        assert_eq!(value["message"], "say \"hi\"\n");
        assert_eq!(value["status"], 200);
        assert_eq!(value["level"], "INFO");
    }

    #[test]
    fn http_crates_stay_at_info_or_above() {
        let logger = JsonLogger {
            level: LevelFilter::Trace,
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
