//! The conversation page: the last [`CAPACITY`] exchanges a platform had with this broker
//! process, newest first, as the broker saw them: what was asked (method, path, the headers
//! that matter, body) and what was answered, with the handler of `src/broker.rs` that
//! answered, its section of the spec, and the rule that decided the status, in the words of
//! the table at the top of `src/broker.rs` (`MUST: created`, `SHOULD: identical repeat`,
//! `this broker's choice: ...`). Only requests that passed the broker's checks are
//! kept (`crate::observer`), so no client without the broker's credentials can add an entry.
//!
//! Nothing secret is shown: no `Authorization` header, and everything else through the rule
//! of [`crate::redact`]. Everything is bounded: [`CAPACITY`] entries, each body cut at
//! [`MAX_BODY_BYTES`] while it is printed, each header value at [`MAX_HEADER_BYTES`], the URL
//! at [`MAX_URL_BYTES`], and the page and its JSON at [`MAX_PAGE_BYTES`], newest first.

use crate::http::{html_escape, percent_encode};
use crate::redact::REDACTED;
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// How many exchanges are kept.
pub const CAPACITY: usize = 100;

/// How much of each body is shown: it is cut while it is printed.
pub const MAX_BODY_BYTES: usize = 2048;

/// How much of a header's value is shown.
pub const MAX_HEADER_BYTES: usize = 256;

/// How much of a request's path and query is shown.
pub const MAX_URL_BYTES: usize = 1024;

/// The most the page (or its JSON) may weigh: older exchanges that do not fit are left out,
/// and the page says how many.
pub const MAX_PAGE_BYTES: usize = 768 * 1024;

/// One request and its answer, as shown: redacted and bounded when it was made.
#[derive(Debug, Clone, Serialize)]
pub struct Exchange {
    /// RFC 3339, UTC.
    pub time: String,
    /// How many more times the same call got the same answer right after it (see
    /// [`Conversation::count_repeat`]), and when the last of them came.
    pub repeats: u64,
    #[serde(serialize_with = "rfc3339_or_null")]
    pub last_repeat: Option<SystemTime>,
    pub method: String,
    /// Path and query as received, redacted, at most [`MAX_URL_BYTES`].
    pub url: String,
    pub status: u16,
    pub duration_ms: f64,
    pub api_version: Option<String>,
    pub request_identity: Option<String>,
    pub user: Option<String>,
    /// The function of `src/broker.rs` that answered, and its section of the OSB spec.
    pub handler: &'static str,
    pub spec_section: String,
    /// The rule that decided the status, in the words of the table at the top of
    /// `src/broker.rs` (none for what no handler of the API answered).
    pub rule: Option<ShownRule>,
    /// The instance the request was about, for the page's filter.
    pub instance_id: Option<String>,
    /// As [`crate::redact::json_for_people`] shows them; shared, since most answers repeat
    /// (the catalog).
    pub request_body: Arc<str>,
    pub response_body: Arc<str>,
}

/// A rule of the OSB API as the page shows it: `MUST: created`, and the title of its section
/// of the spec, with its address.
#[derive(Debug, Clone, Serialize)]
pub struct ShownRule {
    pub says: &'static str,
    pub section: &'static str,
    pub link: String,
}

/// The recent exchanges of one broker process.
#[derive(Default)]
pub struct Conversation {
    exchanges: Mutex<VecDeque<Exchange>>,
}

impl Conversation {
    pub fn record(&self, exchange: Exchange) {
        let mut exchanges = self
            .exchanges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let oldest = (exchanges.len() == CAPACITY)
            .then(|| exchanges.pop_back())
            .flatten();
        exchanges.push_front(exchange);
        // Every request records one: the oldest is freed after the lock is let go.
        drop(exchanges);
        drop(oldest);
    }

    /// Counts one more of the newest exchange instead of keeping another, when `is_repeat`
    /// says the new one is the same call with the same answer (a load test's catalog
    /// fetches, say): the page then shows one entry with its count. True if it counted.
    pub fn count_repeat(&self, is_repeat: impl Fn(&Exchange) -> bool, at: SystemTime) -> bool {
        let mut exchanges = self
            .exchanges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match exchanges.front_mut() {
            Some(newest) if is_repeat(newest) => {
                newest.repeats += 1;
                newest.last_repeat = Some(at);
                true
            }
            _ => false,
        }
    }

    /// The kept exchanges, newest first; only those about `instance_id` when given.
    pub fn recent(&self, instance_id: Option<&str>) -> Vec<Exchange> {
        let exchanges = self
            .exchanges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        exchanges
            .iter()
            .filter(|exchange| {
                instance_id.is_none_or(|wanted| exchange.instance_id.as_deref() == Some(wanted))
            })
            .cloned()
            .collect()
    }
}

fn rfc3339_or_null<S: serde::Serializer>(
    time: &Option<SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serializer.serialize_str(&crate::logging::rfc3339(*time)),
        None => serializer.serialize_none(),
    }
}

/// The JSON for tools: the newest exchanges that fit in [`MAX_PAGE_BYTES`].
#[derive(Serialize)]
pub struct ConversationJson<'a> {
    scope: &'static str,
    capacity: usize,
    /// Older exchanges kept but left out to stay within [`MAX_PAGE_BYTES`].
    left_out: usize,
    exchanges: &'a [Exchange],
}

/// The exchanges as JSON, for tools: as many of the newest as fit in [`MAX_PAGE_BYTES`].
pub fn render_json(exchanges: &[Exchange]) -> ConversationJson<'_> {
    let mut size = 0;
    let fitting = exchanges
        .iter()
        .take_while(|exchange| {
            size += serialized_size(exchange) + 1;
            size <= MAX_PAGE_BYTES - 1024
        })
        .count();
    ConversationJson {
        scope: "this broker process",
        capacity: CAPACITY,
        left_out: exchanges.len() - fitting,
        exchanges: &exchanges[..fitting],
    }
}

/// The length of `value` as JSON, counted without keeping the text.
fn serialized_size(value: &impl Serialize) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// The exchanges as a self-contained HTML page (inline CSS, no script), every value escaped:
/// one line per exchange, newest on top, its details folded beneath it. The newest that fit
/// in [`MAX_PAGE_BYTES`] are shown: they are measured first, so that the page is made at
/// its final size.
pub fn render_html(exchanges: &[Exchange], instance_id: Option<&str>, now: SystemTime) -> String {
    let mut introduction = String::new();
    write_introduction(&mut introduction, instance_id, now);
    let room = MAX_PAGE_BYTES - STYLE.len() - introduction.len() - 1024;
    let (shown, shown_bytes) = fitting(exchanges, room);
    let title = "echo-broker: the conversation";
    crate::http::html_document_with(
        title,
        STYLE,
        introduction.len() + shown_bytes + 512,
        |page| {
            page.push_str(&introduction);
            if exchanges.is_empty() {
                page.push_str(
                "<p class=\"none\">No requests from a platform yet. Register the broker and run \
                 <code>cf create-service</code>, or send the walk-through's curl commands.</p>\n",
            );
            }
            for exchange in &exchanges[..shown] {
                write_exchange(page, exchange);
            }
            if shown < exchanges.len() {
                let _ = writeln!(
                    page,
                    "<p class=\"none\">{} older exchanges are kept but not shown: the page stops \
                 at {} KiB.</p>",
                    exchanges.len() - shown,
                    MAX_PAGE_BYTES / 1024
                );
            }
        },
    )
}

/// How many of the newest exchanges fit in `room` bytes of HTML, and their size.
fn fitting(exchanges: &[Exchange], room: usize) -> (usize, usize) {
    let mut item = String::new();
    let mut total = 0;
    for (count, exchange) in exchanges.iter().enumerate() {
        item.clear();
        write_exchange(&mut item, exchange);
        if total + item.len() > room {
            return (count, total);
        }
        total += item.len();
    }
    (exchanges.len(), total)
}

fn write_introduction(page: &mut String, instance_id: Option<&str>, now: SystemTime) {
    let _ = write!(
        page,
        "<h1>What the platform said, and what this broker answered</h1>\n\
         <p>The last {CAPACITY} requests that passed this broker process's checks (credentials \
         and API version), newest on top; open one for its details and the rule of the OSB API \
         that decided its status, in the words of the table at the top of \
         <code>src/broker.rs</code>. Several broker instances each show their own traffic. Passwords, tokens, keys and credentials are replaced by \
         <code>{REDACTED}</code>. As of {now}. Also as <a href=\"/?format=json\">JSON</a>.</p>\n",
        now = crate::logging::rfc3339(now),
    );
    if let Some(id) = instance_id {
        let _ = writeln!(
            page,
            "<p>Only instance <code>{}</code>. <a href=\"/\">Show all</a>.</p>",
            html_escape(id)
        );
    }
}

/// The page's look: one line per exchange, its details beneath, light and dark.
const STYLE: &str = "\
:root { --text: #1d2430; --muted: #566070; --faint: #8a93a0; --page: #f6f7f9; --card: #fff; --rule: #e3e6ea; --ok: #1a7f37; --bad: #b42318; --code: #eef1f4; }
@media (prefers-color-scheme: dark) {
  :root { --text: #e4e7ec; --muted: #a3acb9; --faint: #7d8694; --page: #14171c; --card: #1e232a; --rule: #2e343d; --ok: #4ac26b; --bad: #f97066; --code: #272d35; }
}
body { font-family: system-ui, sans-serif; line-height: 1.45; margin: 0 auto; max-width: 76rem; padding: 1rem; color: var(--text); background: var(--page); }
h1 { font-size: 1.4rem; margin: .5rem 0; }
p { color: var(--muted); }
details { background: var(--card); border-bottom: 1px solid var(--rule); }
details:first-of-type { border-radius: .5rem .5rem 0 0; }
details[open] { padding-bottom: .5rem; }
summary { display: grid; grid-template-columns: 1rem 6.5rem 4rem minmax(0, 1fr) 2.5rem 4.5rem 12rem; gap: .5rem; align-items: baseline; padding: .35rem .6rem; cursor: pointer; list-style: none; font-family: ui-monospace, monospace; font-size: .85rem; }
summary::-webkit-details-marker { display: none; }
summary::before { content: '\\25B8'; color: var(--faint); }
details[open] > summary::before { content: '\\25BE'; }
summary:hover { background: var(--code); }
.path { overflow-wrap: anywhere; }
.time, .duration { color: var(--muted); }
.duration { text-align: right; }
.status { font-weight: 700; }
.ok { color: var(--ok); }
.bad { color: var(--bad); }
dl { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: .15rem .8rem; margin: .2rem 1rem .2rem 2.1rem; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
pre { background: var(--code); padding: .5rem; border-radius: .3rem; overflow-x: auto; font-size: .85rem; margin: .2rem 0 .5rem; white-space: pre-wrap; overflow-wrap: anywhere; }
.none { color: var(--faint); }
@media (max-width: 40rem) {
  body { padding: .5rem; }
  summary { grid-template-columns: 1rem auto auto auto 1fr; row-gap: 0; }
  summary .path { grid-column: 2 / -1; grid-row: 2; }
  summary .handler { display: none; }
  dl { grid-template-columns: minmax(0, 1fr); margin: .2rem .6rem; }
  dt { margin-top: .3rem; }
}
";

/// ", then 41 more times alike, the last at ..." for a counted repeat.
fn repeats_note(exchange: &Exchange) -> String {
    match exchange.last_repeat {
        Some(last) if exchange.repeats > 0 => format!(
            "; then {} more times alike, the last at {}",
            exchange.repeats,
            crate::logging::rfc3339(last)
        ),
        _ => String::new(),
    }
}

/// One exchange: its line (time, method, path, status, duration, handler), then the details.
fn write_exchange(out: &mut String, exchange: &Exchange) {
    let status_class = if exchange.status < 400 { "ok" } else { "bad" };
    // `2026-11-27T07:56:36.518Z` is shown as `07:56:36.518`; the details have the date.
    let clock = exchange.time.get(11..23).unwrap_or(&exchange.time);
    let _ = write!(
        out,
        "<details>\n<summary><span class=\"time\">{clock}</span><b>{method}</b>\
         <span class=\"path\">{url}</span><span class=\"status {status_class}\">{status}</span>\
         <span class=\"duration\">{duration} ms</span><span class=\"handler\">{handler}</span></summary>\n<dl>\
         <dt>Time</dt><dd>{time}, {duration} ms{repeats}</dd>\
         <dt>Answered by</dt><dd><code>{handler}</code> in src/broker.rs",
        clock = html_escape(clock),
        method = html_escape(&exchange.method),
        url = html_escape(&exchange.url),
        status = exchange.status,
        duration = exchange.duration_ms,
        handler = exchange.handler,
        time = html_escape(&exchange.time),
        repeats = repeats_note(exchange),
    );
    if let Some(section) = exchange.spec_section.rsplit_once('#').map(|(_, name)| name) {
        let _ = write!(
            out,
            ", spec: <a href=\"{}\">{}</a>",
            html_escape(&exchange.spec_section),
            html_escape(section)
        );
    }
    out.push_str("</dd>");
    if let Some(rule) = &exchange.rule {
        let _ = write!(
            out,
            "<dt>Rule</dt><dd><span class=\"rule\">{}</span>, spec: <a href=\"{}\">{}</a></dd>",
            html_escape(rule.says),
            html_escape(&rule.link),
            html_escape(rule.section)
        );
    }
    if let Some(id) = &exchange.instance_id {
        let _ = write!(
            out,
            "<dt>Instance</dt><dd><a href=\"/?instance={}\">{}</a></dd>",
            percent_encode(id),
            html_escape(id)
        );
    }
    write_optional(out, "API version", &exchange.api_version);
    write_optional(out, "Request identity", &exchange.request_identity);
    write_optional(out, "Originating user", &exchange.user);
    write_body(out, "Request body", &exchange.request_body);
    write_body(out, "Response body", &exchange.response_body);
    out.push_str("</dl>\n</details>\n");
}

fn write_optional(out: &mut String, title: &str, value: &Option<String>) {
    let _ = match value {
        Some(value) => write!(
            out,
            "<dt>{title}</dt><dd><code>{}</code></dd>",
            html_escape(value)
        ),
        None => write!(
            out,
            "<dt>{title}</dt><dd><span class=\"none\">none</span></dd>"
        ),
    };
}

fn write_body(out: &mut String, title: &str, text: &str) {
    let _ = if text.is_empty() {
        write!(
            out,
            "<dt>{title}</dt><dd><span class=\"none\">empty</span></dd>"
        )
    } else {
        write!(
            out,
            "<dt>{title}</dt><dd><pre>{}</pre></dd>",
            html_escape(text)
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(url: &str, instance_id: Option<&str>, body: &str) -> Exchange {
        Exchange {
            time: "2026-11-27T07:56:36.518Z".into(),
            repeats: 0,
            last_repeat: None,
            method: "GET".into(),
            url: url.into(),
            status: 200,
            duration_ms: 0.1,
            api_version: None,
            request_identity: None,
            user: None,
            handler: "catalog",
            spec_section: String::new(),
            rule: Some(ShownRule {
                says: "MUST: the catalog",
                section: "Catalog Management",
                link: "https://example.com/spec.md#catalog-management".into(),
            }),
            instance_id: instance_id.map(str::to_string),
            request_body: Arc::from(body),
            response_body: Arc::from(body),
        }
    }

    #[test]
    fn the_conversation_keeps_the_newest_hundred() {
        let conversation = Conversation::default();
        for n in 0..(CAPACITY + 5) {
            let instance_id = (n % 2 == 0).then_some("even");
            conversation.record(exchange(&format!("/v2/{n}"), instance_id, ""));
        }
        let recent = conversation.recent(None);
        assert_eq!(recent.len(), CAPACITY);
        assert_eq!(recent[0].url, format!("/v2/{}", CAPACITY + 4));
        assert!(conversation
            .recent(Some("even"))
            .iter()
            .all(|exchange| exchange.instance_id.as_deref() == Some("even")));
    }

    #[test]
    fn the_page_and_its_json_stay_within_their_bound() {
        let heavy = "\"&'".repeat(MAX_BODY_BYTES / 3);
        let exchanges: Vec<Exchange> = (0..CAPACITY)
            .map(|n| exchange(&format!("/v2/{n}"), None, &heavy))
            .collect();
        let page = render_html(&exchanges, None, SystemTime::now());
        assert!(page.len() <= MAX_PAGE_BYTES, "{}", page.len());
        assert!(page.contains("older exchanges are kept but not shown"));
        let json = serde_json::to_vec(&render_json(&exchanges)).unwrap_or_default();
        assert!(json.len() <= MAX_PAGE_BYTES, "{}", json.len());
    }
}
