//! The HTTP vocabulary both servers share: a plain request and response type, JSON
//! responses and bodies, basic-auth parsing, percent-encoding, id checks and random tokens.
//!
//! Handlers work on [`HttpRequest`] and return [`HttpResponse`], plain data with no socket
//! behind it, so the request path can be tested (and fuzzed) without a network;
//! [`crate::server`] puts them on the wire.

use base64::Engine;
use serde::Serialize;

/// The largest request body either server reads; a larger one is answered 413 unread.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest id (instance, binding, service, plan) accepted anywhere.
pub const MAX_ID_BYTES: usize = 255;

/// A request as the handlers see it: method, decoded path segments, query and body.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    /// The path and query exactly as received, for logs.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A response as the handlers produce it.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// The rule that decided the answer, for whoever explains answers (the broker's
    /// conversation page); never sent.
    pub rule: Option<Rule>,
}

/// A rule an answer follows: in a few words (`MUST: created`), and the title of the section
/// of the specification it comes from (`None`: the section of the call it answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub says: &'static str,
    pub section: Option<&'static str>,
}

pub const JSON: &str = "application/json";
pub const HTML: &str = "text/html; charset=utf-8";

impl HttpRequest {
    /// The first header named `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.url.split('?').next().unwrap_or("")
    }

    /// The path split on `/` with each segment percent-decoded; `None` if a segment is
    /// not valid percent-encoded UTF-8. Decoding after splitting keeps `a%2Fb` one segment.
    pub fn path_segments(&self) -> Option<Vec<String>> {
        self.path()
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(percent_decode)
            .collect()
    }

    /// The decoded value of query parameter `name`; `Some("")` when present but empty.
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.url.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(&key.replace('+', " "))?;
            (key == name).then(|| percent_decode(&value.replace('+', " ")).unwrap_or_default())
        })
    }
}

impl HttpResponse {
    /// A JSON response from any serialisable value, ended with a newline, as every JSON
    /// answer is: `curl` then leaves the next prompt on a line of its own.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> HttpResponse {
        let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        body.push(b'\n');
        HttpResponse::raw_json(status, body)
    }

    /// A JSON response from bytes serialised earlier (the catalog), which end with a
    /// newline like [`HttpResponse::json`]'s.
    pub fn raw_json(status: u16, body: Vec<u8>) -> HttpResponse {
        HttpResponse {
            status,
            content_type: JSON,
            headers: Vec::new(),
            body,
            rule: None,
        }
    }

    /// `{"error": ..., "description": ...}`; `error` is the spec's code where one applies.
    pub fn error(status: u16, error: &str, description: &str) -> HttpResponse {
        HttpResponse::json(
            status,
            &serde_json::json!({ "error": error, "description": description }),
        )
    }

    pub fn html(status: u16, body: String) -> HttpResponse {
        HttpResponse {
            status,
            content_type: HTML,
            headers: Vec::new(),
            body: body.into_bytes(),
            rule: None,
        }
    }

    /// A page for people: HTML that needs nothing from elsewhere (a strict Content-Security-
    /// Policy, no scripts) and does not leak its URL, which may carry a token, to other sites.
    pub fn page(body: String) -> HttpResponse {
        HttpResponse::html(200, body)
            .with_header(
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'".into(),
            )
            .with_header("X-Content-Type-Options", "nosniff".into())
            .with_header("Referrer-Policy", "no-referrer".into())
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> HttpResponse {
        self.headers.push((name, value));
        self
    }

    /// The answer, naming the rule that decided it.
    pub fn with_rule(mut self, rule: Rule) -> HttpResponse {
        self.rule = Some(rule);
        self
    }
}

/// The user and password of a `Basic` Authorization header; `None` for anything malformed
/// (another scheme, bad base64, no colon, not UTF-8).
pub fn basic_credentials(authorization: Option<&str>) -> Option<(String, String)> {
    let value = authorization?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The value of a `Basic` Authorization header for `user` and `password`.
pub fn basic_authorization(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// Compares secrets in time that depends only on their lengths, not on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `authorization` carries exactly `user` and `password`; both halves are always
/// compared, so the time taken does not say which one was wrong.
pub fn credentials_match(authorization: Option<&str>, user: &str, password: &str) -> bool {
    match basic_credentials(authorization) {
        Some((given_user, given_password)) => {
            let user_ok = constant_time_eq(given_user.as_bytes(), user.as_bytes());
            let password_ok = constant_time_eq(given_password.as_bytes(), password.as_bytes());
            user_ok & password_ok
        }
        None => false,
    }
}

/// The bytes [`percent_encode`] keeps: letters, digits, `-`, `_` and `~`. Every other byte,
/// non-ASCII ones included, is escaped.
const ID_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but letters, digits, `-`, `_` and `~`, so an id is always
/// exactly one path segment. Dots are encoded too (RFC 3986 would allow them), so that an id
/// like `..` can never become a dot-segment that a proxy resolves on the way.
pub fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, ID_SEGMENT).to_string()
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8. (The
/// `percent-encoding` crate's decoder keeps a broken escape as text instead of refusing it.)
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// A self-contained HTML5 page, the shell both pages share: UTF-8, a phone's viewport,
/// light and dark colours, `style` inline (no external assets: a platform's users may have
/// no internet), then `body`. `title` is escaped here; `style` and `body` are markup.
pub fn html_document(title: &str, style: &str, body: &str) -> String {
    html_document_with(title, style, body.len(), |page| page.push_str(body))
}

/// [`html_document`], its body written by `write_body` into the page itself, which has room
/// for `body_bytes` from the start: a large page is built once, never copied or regrown.
pub fn html_document_with(
    title: &str,
    style: &str,
    body_bytes: usize,
    write_body: impl FnOnce(&mut String),
) -> String {
    let head = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n<title>{}</title>\n\
         <style>\n{style}</style>\n</head>\n<body>\n",
        html_escape(title)
    );
    let mut page = String::with_capacity(head.len() + body_bytes + 64);
    page.push_str(&head);
    write_body(&mut page);
    page.push_str("</body>\n</html>\n");
    page
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// A request's header value, if it is safe to send back in an answer: one with control
/// characters or over 256 bytes (no identifier is that long) is never reflected.
pub fn safe_to_echo(value: Option<&str>) -> Option<&str> {
    value.filter(|value| value.len() <= 256 && !value.chars().any(char::is_control))
}

/// Why an id is unacceptable, or `None` if it is fine: ids must be non-empty, at most
/// [`MAX_ID_BYTES`] bytes, and free of control characters.
pub fn id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        Some("must not be empty".into())
    } else if id.len() > MAX_ID_BYTES {
        Some(format!("must be at most {MAX_ID_BYTES} bytes"))
    } else if id.chars().any(char::is_control) {
        Some("must not contain control characters".into())
    } else {
        None
    }
}

/// Why an id cannot travel as a path segment to the echo service, or `None` if it can. A
/// proxy between the broker and the echo service (nginx, a platform's router, a load
/// balancer) may decode a percent-encoded segment before it routes the request, and then
/// resolve the dot-segments `.` and `..` (RFC 3986, section 5.2.4) and read `/` (and, on
/// some, `\`) as separators: such an id would reach another path, or be refused by the
/// proxy as one that climbs above the root, however the broker encodes it.
pub fn path_step_problem(id: &str) -> Option<&'static str> {
    if id == "." || id == ".." {
        Some("is a path step ('.' or '..'), which a proxy in front of the echo service would resolve to another path")
    } else if id.contains(['/', '\\']) {
        Some("contains '/' or '\\', which a proxy in front of the echo service may read as a path separator")
    } else {
        None
    }
}

/// A random token of 32 lowercase hex digits (128 bits) from the operating system.
pub fn random_token() -> Result<String, NoRandomness> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(NoRandomness)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The operating system gave no random bytes.
#[derive(Debug)]
pub struct NoRandomness(getrandom::Error);

impl std::fmt::Display for NoRandomness {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(out, "no randomness available: {}", self.0)
    }
}

impl std::error::Error for NoRandomness {}

/// The maximum nesting of arrays and objects accepted in a JSON body. serde_json stops at
/// 128 itself; OSB bodies are shallow, so anything deeper than this is refused early.
pub const MAX_JSON_DEPTH: usize = 32;

/// Parses a JSON body that must be an object, refusing duplicate keys, invalid UTF-8 and
/// absurd nesting. The error text is a description for a 400 answer.
pub fn parse_json_object(
    body: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not valid UTF-8".to_string())?;
    if json_depth(text) > MAX_JSON_DEPTH {
        return Err(format!(
            "the JSON body is nested deeper than {MAX_JSON_DEPTH} levels"
        ));
    }
    let value: UniqueKeys = serde_json::from_str(text)
        .map_err(|error| format!("the body is not valid JSON: {error}"))?;
    match value.0 {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err("the body must be a JSON object".into()),
    }
}

/// Parses a JSON object body into `T` (the body of an `operation`); the error text says
/// what is wrong, for a 400 answer.
pub fn parse_json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    operation: &str,
) -> Result<T, String> {
    let object = parse_json_object(body)?;
    serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|error| format!("the {operation} request body is not valid: {error}"))
}

/// The deepest nesting of `[` and `{` outside strings.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// A JSON value whose objects were checked for duplicate keys while parsing.
struct UniqueKeys(serde_json::Value);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UniqueKeysVisitor)
            .map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let UniqueKeys(value) = map.next_value()?;
            if object.insert(key.clone(), value).is_some() {
                return Err(serde::de::Error::custom(format!("duplicate key '{key}'")));
            }
        }
        Ok(serde_json::Value::Object(object))
    }
}

/// Seconds since the Unix epoch, now (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// `unix_seconds` in the form the OSB API gives its dates (`yyyy-mm-ddThh:mm:ss.sZ`, UTC),
/// e.g. `2026-03-09T14:05:00.0Z`.
pub fn osb_timestamp(unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let (year, month, day) = crate::logging::civil_from_days(days);
    let in_day = unix_seconds % 86_400;
    let (hour, minute, second) = (in_day / 3600, in_day % 3600 / 60, in_day % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.0Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn osb_timestamps_have_the_specs_pattern() {
        assert_eq!(osb_timestamp(0), "1970-01-01T00:00:00.0Z");
        assert_eq!(osb_timestamp(784_111_777), "1994-11-06T08:49:37.0Z");
        assert_eq!(osb_timestamp(951_782_400), "2000-02-29T00:00:00.0Z");
    }

    #[test]
    fn basic_credentials_refuse_malformed_headers() {
        assert_eq!(
            basic_credentials(Some("Basic dXNlcjpwYXNz")),
            Some(("user".into(), "pass".into()))
        );
        assert_eq!(basic_credentials(Some("Basic !!!")), None);
        assert_eq!(basic_credentials(Some("Basic dXNlcnBhc3M=")), None); // no colon
        assert_eq!(basic_credentials(Some("Basic /w==")), None); // not UTF-8
        assert_eq!(basic_credentials(Some("Bearer dXNlcjpwYXNz")), None);
        assert_eq!(basic_credentials(None), None);
    }

    #[test]
    fn percent_encoding_round_trips_and_keeps_one_segment() {
        for id in ["../x", "a/b", "%2e%2e", "<script>", "ünï cødé"] {
            let encoded = percent_encode(id);
            assert!(!encoded.contains('/') && !encoded.contains('.'));
            assert_eq!(percent_decode(&encoded).as_deref(), Some(id));
        }
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn ids_a_proxy_reads_as_path_steps_are_named() {
        for id in [".", "..", "../../etc", "a/b", "x/../y", "a\\b", "/"] {
            assert!(path_step_problem(id).is_some(), "{id}");
        }
        for id in ["...", ".x", "%2e%2e", "%2F", "a.b", "é ü", "<script>"] {
            assert_eq!(path_step_problem(id), None, "{id}");
        }
    }

    #[test]
    fn json_objects_refuse_duplicates_depth_and_non_objects() {
        assert!(parse_json_object(br#"{"a":1,"b":{"c":[1,2]}}"#).is_ok());
        assert!(parse_json_object(br#"{"a":1,"a":2}"#).is_err());
        assert!(parse_json_object(b"[1]").is_err());
        assert!(parse_json_object(&[0xff, b'{', b'}']).is_err());
        let deep = "[".repeat(40) + &"]".repeat(40);
        assert!(parse_json_object(format!("{{\"a\":{deep}}}").as_bytes()).is_err());
        assert!(parse_json_object(br#"{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}"#).is_ok());
    }

    #[test]
    fn query_values_are_decoded() {
        let request = HttpRequest {
            url: "/v2/x?service_id=a%20b&plan_id=&flag".into(),
            ..HttpRequest::default()
        };
        assert_eq!(request.query("service_id").as_deref(), Some("a b"));
        assert_eq!(request.query("plan_id").as_deref(), Some(""));
        assert_eq!(request.query("flag").as_deref(), Some(""));
        assert_eq!(request.query("missing"), None);
    }
}
