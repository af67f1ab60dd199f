//! The conversation page: the last [`CAPACITY`] exchanges a platform had with this broker
//! process, newest first, as the broker saw them: what was asked (method, path, headers that
//! matter, body) and what was answered, with the handler of `src/broker.rs` that answered and
//! its section of the spec. Nothing secret is kept: no `Authorization` header, and in bodies
//! every password, token, secret and the password of every URL is replaced by [`REDACTED`].
//!
//! Bounded: [`CAPACITY`] entries, each body cut at [`MAX_BODY_CHARS`].

use crate::http::html_escape;
use serde::Serialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// How many exchanges are kept.
pub const CAPACITY: usize = 100;

/// How much of each body is kept (after redaction and pretty-printing).
pub const MAX_BODY_CHARS: usize = 2048;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// JSON keys whose values are secrets wherever they appear.
const SECRET_KEYS: [&str; 4] = ["password", "secret", "token", "client_secret"];

/// One request and its answer, redacted.
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
    /// Path and query as received (dashboard tokens masked).
    pub url: String,
    pub status: u16,
    pub duration_ms: f64,
    pub api_version: Option<String>,
    pub request_identity: Option<String>,
    pub user: Option<String>,
    /// The function of `src/broker.rs` that answered, and its section of the OSB spec.
    pub handler: &'static str,
    pub spec_section: String,
    /// The instance the request was about, for the page's filter.
    pub instance_id: Option<String>,
    /// As [`redacted_body`] shows them; shared, since most answers repeat (the catalog).
    pub request_body: Arc<str>,
    pub response_body: Arc<str>,
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

/// A body as the page shows it: JSON pretty-printed with its secrets replaced, cut at
/// [`MAX_BODY_CHARS`]; anything that is not JSON is not shown (it could hold anything).
pub fn redacted_body(body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return format!("({} bytes that are not JSON, not shown)", body.len());
    };
    redact(&mut value);
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    match text.char_indices().nth(MAX_BODY_CHARS) {
        Some((cut, _)) => format!("{}\n… (cut at {MAX_BODY_CHARS} characters)", &text[..cut]),
        None => text,
    }
}

/// Replaces secrets in a JSON value, at any depth.
fn redact(value: &mut Value) {
    match value {
        Value::Object(members) => {
            for (key, member) in members.iter_mut() {
                if SECRET_KEYS.contains(&key.to_ascii_lowercase().as_str()) {
                    *member = Value::from(REDACTED);
                } else {
                    redact(member);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(text) => *text = redact_text(text),
        _ => {}
    }
}

/// A string with the password of any URL in it (`scheme://user:PASSWORD@host`) and any
/// `token=` query value replaced.
pub fn redact_text(text: &str) -> String {
    mask_token_parameters(&mask_url_passwords(text))
}

fn mask_url_passwords(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let (before, after) = rest.split_at(scheme_end + 3);
        masked.push_str(before);
        let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let authority = &after[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                masked.push_str(&authority[..=colon]);
                masked.push_str(REDACTED);
                masked.push_str(&authority[at..]);
            }
            _ => masked.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    masked.push_str(rest);
    masked
}

fn mask_token_parameters(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("token=") {
        let (before, after) = rest.split_at(at + "token=".len());
        masked.push_str(before);
        masked.push_str(REDACTED);
        rest = &after[after.find(['&', '#', '"', ' ']).unwrap_or(after.len())..];
    }
    masked.push_str(rest);
    masked
}

/// The exchanges as JSON, for tools.
pub fn render_json(exchanges: &[Exchange]) -> Value {
    serde_json::json!({
        "scope": "this broker process",
        "capacity": CAPACITY,
        "exchanges": exchanges,
    })
}

/// The exchanges as a self-contained HTML page (inline CSS, no script), every value escaped.
pub fn render_html(exchanges: &[Exchange], instance_id: Option<&str>, now: SystemTime) -> String {
    let filter = match instance_id {
        Some(id) => format!(
            "<p>Only instance <code>{}</code>. <a href=\"/\">Show all</a>.</p>",
            html_escape(id)
        ),
        None => String::new(),
    };
    let items: String = if exchanges.is_empty() {
        "<p class=\"none\">No requests from a platform yet. Register the broker and run \
         <code>cf create-service</code>, or send the walk-through's curl commands.</p>"
            .to_string()
    } else {
        exchanges.iter().map(render_exchange).collect()
    };
    let body = format!(
        r#"<h1>What the platform said, and what this broker answered</h1>
<p>The last {capacity} requests to this broker process, newest first (several broker
instances each show their own traffic). Passwords, tokens and secrets are replaced by
<code>{redacted}</code>. As of {now}. Also as <a href="/?format=json">JSON</a>.</p>
{filter}{items}
"#,
        capacity = CAPACITY,
        redacted = REDACTED,
        now = crate::logging::rfc3339(now),
    );
    crate::http::html_document("echo-broker: the conversation", STYLE, &body)
}

/// The page's look: one card per exchange, bodies in code blocks, light and dark.
const STYLE: &str = "\
:root { --text: #1d2430; --muted: #566070; --faint: #8a93a0; --page: #f6f7f9; --card: #fff; --rule: #e3e6ea; --ok: #1a7f37; --bad: #b42318; --code: #eef1f4; }
@media (prefers-color-scheme: dark) {
  :root { --text: #e4e7ec; --muted: #a3acb9; --faint: #7d8694; --page: #14171c; --card: #1e232a; --rule: #2e343d; --ok: #4ac26b; --bad: #f97066; --code: #272d35; }
}
body { font-family: system-ui, sans-serif; line-height: 1.45; margin: 0 auto; max-width: 60rem; padding: 1rem; color: var(--text); background: var(--page); }
h1 { font-size: 1.4rem; margin: .5rem 0; }
p { color: var(--muted); }
article { background: var(--card); border-radius: .5rem; padding: .5rem 1rem; margin-bottom: 1rem; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
h2 { font-size: 1rem; margin: .3rem 0; overflow-wrap: anywhere; font-family: ui-monospace, monospace; }
.status { font-weight: 700; }
.ok { color: var(--ok); }
.bad { color: var(--bad); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem .8rem; margin: .4rem 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
pre { background: var(--code); padding: .5rem; border-radius: .3rem; overflow-x: auto; font-size: .85rem; margin: .2rem 0 .5rem; white-space: pre-wrap; overflow-wrap: anywhere; }
.none { color: var(--faint); }
@media (max-width: 30rem) { dl { grid-template-columns: 1fr; } dt { margin-top: .3rem; } }
";

/// ", then 41 more times, the last at ..." for a counted repeat.
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

fn render_exchange(exchange: &Exchange) -> String {
    let status_class = if exchange.status < 400 { "ok" } else { "bad" };
    let optional = |value: &Option<String>| {
        value.as_deref().map_or_else(
            || "<span class=\"none\">none</span>".to_string(),
            |v| format!("<code>{}</code>", html_escape(v)),
        )
    };
    let instance_link = exchange.instance_id.as_deref().map_or(String::new(), |id| {
        format!(
            "<dt>Instance</dt><dd><a href=\"/?instance={}\">{}</a></dd>",
            crate::http::percent_encode(id),
            html_escape(id)
        )
    });
    let body = |title: &str, text: &str| {
        if text.is_empty() {
            format!("<dt>{title}</dt><dd><span class=\"none\">empty</span></dd>")
        } else {
            format!("<dt>{title}</dt><dd><pre>{}</pre></dd>", html_escape(text))
        }
    };
    format!(
        "<article>\n<h2>{method} {url} <span class=\"status {status_class}\">{status}</span></h2>\n<dl>\
         <dt>Time</dt><dd>{time}, {duration} ms{repeats}</dd>\
         <dt>Answered by</dt><dd><code>{handler}</code> in src/broker.rs, spec: <a href=\"{spec}\">{spec_name}</a></dd>\
         {instance_link}\
         <dt>API version</dt><dd>{version}</dd>\
         <dt>Request identity</dt><dd>{identity}</dd>\
         <dt>Originating user</dt><dd>{user}</dd>\
         {request_body}{response_body}</dl>\n</article>\n",
        method = html_escape(&exchange.method),
        url = html_escape(&exchange.url),
        status = exchange.status,
        time = html_escape(&exchange.time),
        repeats = repeats_note(exchange),
        duration = exchange.duration_ms,
        handler = exchange.handler,
        spec = html_escape(&exchange.spec_section),
        spec_name = html_escape(exchange.spec_section.rsplit('#').next().unwrap_or("")),
        version = optional(&exchange.api_version),
        identity = optional(&exchange.request_identity),
        user = optional(&exchange.user),
        request_body = body("Request body", &exchange.request_body),
        response_body = body("Response body", &exchange.response_body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth_and_in_urls() {
        let body = br#"{"credentials":{"username":"u","password":"p4ss","uri":"http://u:p4ss@echo.example/echo/i/b"},
            "dashboard_url":"http://echo/echo/dashboard/i?token=t0k3n&x=1","dashboard_client":{"id":"c","secret":"s3"}}"#;
        let shown = redacted_body(body);
        for secret in ["p4ss", "t0k3n", "s3\""] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("http://u:[redacted]@echo.example/echo/i/b"),
            "{shown}"
        );
        assert!(shown.contains("token=[redacted]&x=1"), "{shown}");
    }

    #[test]
    fn bodies_are_cut_and_non_json_is_not_shown() {
        let long = format!("{{\"a\":\"{}\"}}", "x".repeat(5000));
        let shown = redacted_body(long.as_bytes());
        assert!(shown.chars().count() < MAX_BODY_CHARS + 64);
        assert!(shown.ends_with("(cut at 2048 characters)"));
        assert_eq!(
            redacted_body(b"password=hunter2"),
            "(16 bytes that are not JSON, not shown)"
        );
    }

    #[test]
    fn the_conversation_keeps_the_newest_hundred() {
        let conversation = Conversation::default();
        for n in 0..(CAPACITY + 5) {
            conversation.record(Exchange {
                time: String::new(),
                repeats: 0,
                last_repeat: None,
                method: "GET".into(),
                url: format!("/v2/{n}"),
                status: 200,
                duration_ms: 0.1,
                api_version: None,
                request_identity: None,
                user: None,
                handler: "catalog",
                spec_section: String::new(),
                instance_id: (n % 2 == 0).then(|| "even".to_string()),
                request_body: Arc::from(""),
                response_body: Arc::from(""),
            });
        }
        let recent = conversation.recent(None);
        assert_eq!(recent.len(), CAPACITY);
        assert_eq!(recent[0].url, format!("/v2/{}", CAPACITY + 4));
        assert!(conversation
            .recent(Some("even"))
            .iter()
            .all(|exchange| exchange.instance_id.as_deref() == Some("even")));
    }
}
