//! What counts as a secret, and how it is hidden: one rule for the conversation page, its
//! JSON, and every log line of both servers. It errs on the side of hiding.
//!
//! - A JSON value, at any depth, whose key, lowercased and without `-` and `_`, contains one
//!   of [`SECRET_WORDS`] (so `apiKey`, `db_password`, `client-secret` and `credentials`,
//!   a binding's whole credentials object, are all hidden).
//! - Inside any string (a URL, a JDBC or DSN string, a free text): the password of a
//!   `scheme://user:PASSWORD@host` URL; the value of every `name=value` or `name: value`
//!   pair whose name is a secret's (`password=`, `pwd=`, query parameters such as
//!   `?access_token=`); and what follows `Bearer ` or `Basic `.
//!
//! [`json_for_people`] applies the rule while it pretty-prints a body, and stops at a bound:
//! the memory it takes is that of what it shows, however large or deep the body.

use serde::de::IgnoredAny;

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// A key or parameter name that contains one of these (lowercased, without `-` and `_`)
/// names a secret.
const SECRET_WORDS: [&str; 11] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "key",
    "credential",
    "auth",
    "cookie",
    "session",
    "signature",
];

/// The authorization schemes whose credentials follow them in a string (RFC 7235: the
/// scheme's name is case-insensitive).
const AUTHORIZATION_SCHEMES: [&str; 2] = ["bearer ", "basic "];

/// Whether a value named `name` is a secret.
pub fn is_secret_name(name: &str) -> bool {
    // Most names are short and ASCII: folded on the stack, as every key of every body on
    // the conversation page is asked about.
    let mut short = [0u8; 64];
    if name.is_ascii() && name.len() <= short.len() {
        let mut length = 0;
        for byte in name.bytes().filter(|byte| !matches!(byte, b'-' | b'_')) {
            short[length] = byte.to_ascii_lowercase();
            length += 1;
        }
        let folded = &short[..length];
        return SECRET_WORDS.iter().any(|word| {
            folded
                .windows(word.len())
                .any(|window| window == word.as_bytes())
        });
    }
    let folded: String = name
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_WORDS.iter().any(|word| folded.contains(word))
}

/// `text` with every secret inside it replaced by [`REDACTED`].
pub fn redact_text(text: &str) -> String {
    redacted(text).into_owned()
}

/// [`redact_text`], borrowing `text` when it has nothing to hide (every request's log line
/// asks, and most have nothing).
pub fn redacted(text: &str) -> std::borrow::Cow<'_, str> {
    // Each rule below needs a `:` (a URL's scheme, a `name: value` pair), an `=` or a space
    // (`Bearer x`): a text without any of them (an id, a name, a number) is shown as it is.
    if !text.bytes().any(|byte| matches!(byte, b':' | b'=' | b' ')) {
        return std::borrow::Cow::Borrowed(text);
    }
    // The schemes first: `Authorization: Basic X` is a secret name's pair whose value,
    // once masked, would no longer show that X follows `Basic `.
    let text = mask_url_passwords(text);
    let text = mask_authorization_credentials(&text);
    std::borrow::Cow::Owned(mask_named_values(&text))
}

/// `scheme://user:PASSWORD@host` becomes `scheme://user:[redacted]@host`.
fn mask_url_passwords(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let (before, after) = rest.split_at(scheme_end + 3);
        masked.push_str(before);
        let authority_end = after
            .find(['/', '?', '#', ' ', '"', '\''])
            .unwrap_or(after.len());
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

/// Characters a parameter or key name is made of (`%` for percent-encoded names).
fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.' | b'%')
}

/// Where a value that starts a pair ends: the separators of query strings, DSNs, headers
/// and JSON written inside a string.
fn is_value_end(byte: u8) -> bool {
    byte.is_ascii_whitespace() || matches!(byte, b'&' | b';' | b',' | b'"' | b'\'' | b'#' | b'}')
}

/// The value of every `name=value` and `name: value` pair whose name is a secret's
/// (a quoted name, as in JSON written inside a string, counts too).
fn mask_named_values(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut masked = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        if !matches!(bytes[at], b'=' | b':') || !is_secret_name(name_before(bytes, at)) {
            at += 1;
            continue;
        }
        let mut start = at + 1;
        while start < bytes.len() && matches!(bytes[start], b' ' | b'\t') {
            start += 1;
        }
        // A quoted value runs to its closing quote, spaces and all (`password='a b'`).
        let quote = bytes
            .get(start)
            .copied()
            .filter(|byte| matches!(byte, b'"' | b'\''));
        if quote.is_some() {
            start += 1;
        }
        let end = match quote {
            Some(quote) => bytes[start..]
                .iter()
                .position(|byte| *byte == quote)
                .map_or(bytes.len(), |offset| start + offset),
            None => value_end(bytes, start),
        };
        if end > start {
            // Every index here sits next to an ASCII byte: a character boundary.
            masked.push_str(&text[copied..start]);
            masked.push_str(REDACTED);
            copied = end;
        }
        at = end.max(at + 1);
    }
    masked.push_str(&text[copied..]);
    masked
}

/// A value as people see it, on the conversation page and in log lines: redacted, then cut
/// at `limit` bytes.
pub fn shown(value: &str, limit: usize) -> String {
    let mut text = redact_text(value);
    if text.len() > limit {
        text.truncate(text.floor_char_boundary(limit));
        text.push('…');
    }
    text
}

/// Where the value that starts at `start` ends.
fn value_end(bytes: &[u8], start: usize) -> usize {
    let length = bytes[start.min(bytes.len())..]
        .iter()
        .take_while(|byte| !is_value_end(**byte))
        .count();
    start + length
}

/// The name that ends just before `separator`, past spaces and one optional closing quote
/// (`password = x`, `"password": x`).
fn name_before(bytes: &[u8], separator: usize) -> &str {
    let mut end = separator;
    while end > 0 && matches!(bytes[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    if end > 0 && matches!(bytes[end - 1], b'"' | b'\'') {
        end -= 1;
    }
    let mut start = end;
    while start > 0 && is_name_byte(bytes[start - 1]) {
        start -= 1;
    }
    std::str::from_utf8(&bytes[start..end]).unwrap_or("")
}

/// What follows `Bearer ` or `Basic ` (any case), up to the next space or separator.
fn mask_authorization_credentials(text: &str) -> String {
    let lowered = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut masked = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        let scheme = AUTHORIZATION_SCHEMES
            .iter()
            .find(|scheme| lowered.as_bytes()[at..].starts_with(scheme.as_bytes()))
            .filter(|_| at == 0 || !bytes[at - 1].is_ascii_alphanumeric());
        let Some(scheme) = scheme else {
            at += 1;
            continue;
        };
        let start = at + scheme.len();
        let end = value_end(bytes, start);
        if end > start {
            masked.push_str(&text[copied..start]);
            masked.push_str(REDACTED);
            copied = end;
        }
        at = end.max(at + 1);
    }
    masked.push_str(&text[copied..]);
    masked
}

/// A body as people see it: JSON pretty-printed with its secrets hidden, cut at `limit`
/// bytes. Anything that is not JSON is not shown, since it could hold anything.
///
/// The body is checked to be JSON without building it in memory (`IgnoredAny`), then
/// printed token by token until `limit`: neither its size nor its depth costs memory
/// beyond what is shown.
pub fn json_for_people(body: &[u8], limit: usize) -> String {
    if body.is_empty() {
        return String::new();
    }
    if serde_json::from_slice::<IgnoredAny>(body).is_err() {
        return format!("({} bytes that are not JSON, not shown)", body.len());
    }
    let mut printer = Printer {
        input: body,
        at: 0,
        out: String::new(),
        limit,
    };
    match printer.value(0) {
        Ok(()) => printer.out,
        Err(Full) => {
            printer.out.push_str(&format!("\n… (cut at {limit} bytes)"));
            printer.out
        }
    }
}

/// The printer has written `limit` bytes.
struct Full;

/// Pretty-prints valid JSON (as `serde_json::to_string_pretty` would), hiding secrets.
struct Printer<'a> {
    input: &'a [u8],
    at: usize,
    out: String,
    limit: usize,
}

impl Printer<'_> {
    fn value(&mut self, depth: usize) -> Result<(), Full> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.container(depth, b'}', true),
            Some(b'[') => self.container(depth, b']', false),
            Some(b'"') => match self.string() {
                Some(text) => self.write_string(&redact_text(&text)),
                None => self.write_string(REDACTED),
            },
            _ => {
                let start = self.at;
                while self.peek().is_some_and(|byte| {
                    !matches!(byte, b',' | b']' | b'}') && !byte.is_ascii_whitespace()
                }) {
                    self.at += 1;
                }
                let literal = String::from_utf8_lossy(&self.input[start..self.at]).into_owned();
                self.write(&literal)
            }
        }
    }

    /// An object (`{`, members, `}`) or an array; the opening byte is next.
    fn container(&mut self, depth: usize, close: u8, is_object: bool) -> Result<(), Full> {
        let open = if is_object { "{" } else { "[" };
        let close_text = if is_object { "}" } else { "]" };
        self.at += 1;
        self.skip_whitespace();
        if self.peek() == Some(close) {
            self.at += 1;
            return self.write(&format!("{open}{close_text}"));
        }
        self.write(open)?;
        loop {
            self.newline(depth + 1)?;
            if is_object {
                self.member(depth + 1)?;
            } else {
                self.value(depth + 1)?;
            }
            self.skip_whitespace();
            let next = self.peek();
            self.at += 1;
            if next != Some(b',') {
                break;
            }
            self.write(",")?;
        }
        self.newline(depth)?;
        self.write(close_text)
    }

    /// `"key": value`, the value hidden whole when the key names a secret.
    fn member(&mut self, depth: usize) -> Result<(), Full> {
        self.skip_whitespace();
        // A key that cannot be decoded (a lone surrogate escape) could name a secret.
        let key = self.string();
        self.write_string(&key.as_deref().map_or(REDACTED.to_string(), redact_text))?;
        self.write(": ")?;
        self.skip_whitespace();
        self.at += 1; // the ':'
        if key.as_deref().is_none_or(is_secret_name) {
            self.skip_value();
            self.write_string(REDACTED)
        } else {
            self.value(depth)
        }
    }

    /// Decodes the string that starts here (its escapes resolved); `None` for escapes that
    /// make no text (a lone surrogate).
    fn string(&mut self) -> Option<String> {
        let start = self.at;
        let mut escaped = false;
        self.at += 1;
        while let Some(byte) = self.peek() {
            self.at += 1;
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => break,
                _ => {}
            }
        }
        serde_json::from_slice(&self.input[start..self.at]).ok()
    }

    /// Moves past one value without looking inside it.
    fn skip_value(&mut self) {
        self.skip_whitespace();
        let mut depth = 0usize;
        while let Some(byte) = self.peek() {
            match byte {
                b'"' => {
                    self.string();
                    if depth == 0 {
                        return;
                    }
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth == 0 => return,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        self.at += 1;
                        return;
                    }
                }
                b',' if depth == 0 => return,
                _ => {}
            }
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(|byte| byte.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn newline(&mut self, depth: usize) -> Result<(), Full> {
        self.write("\n")?;
        for _ in 0..depth {
            self.write("  ")?;
        }
        Ok(())
    }

    fn write_string(&mut self, text: &str) -> Result<(), Full> {
        let quoted = serde_json::to_string(text).unwrap_or_default();
        self.write(&quoted)
    }

    /// Appends `text`, or as much of it as fits under the limit.
    fn write(&mut self, text: &str) -> Result<(), Full> {
        let room = self.limit.saturating_sub(self.out.len());
        if text.len() <= room {
            self.out.push_str(text);
            return Ok(());
        }
        let mut cut = room;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        self.out.push_str(&text[..cut]);
        Err(Full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_found_by_the_words_they_contain() {
        for name in [
            "password",
            "db_password",
            "apiKey",
            "client-secret",
            "AWS_SECRET_ACCESS_KEY",
            "access_token",
            "passwd",
            "pwd",
            "credentials",
            "Authorization",
            "set-cookie",
            "session_id",
            "X-Amz-Signature",
            // Past the short ASCII names folded on the stack: long, and not ASCII.
            &format!("{}_Pass-Word", "a".repeat(80)),
            "Zugangs_Schlüssel_TOKEN",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        let long_harmless = "plan_id_".repeat(10);
        for name in [
            "username",
            "uri",
            "plan_id",
            "service_id",
            "host",
            "Größe",
            &long_harmless,
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn secrets_inside_strings_are_hidden() {
        let cases = [
            (
                "postgres://u:hunter2@db:5432/x",
                "postgres://u:[redacted]@db:5432/x",
            ),
            (
                "jdbc:mysql://db/x?user=u&password=hunter2&ssl=true",
                "jdbc:mysql://db/x?user=u&password=[redacted]&ssl=true",
            ),
            (
                "Server=db;Uid=u;Pwd=hunter2;",
                "Server=db;Uid=u;Pwd=[redacted];",
            ),
            ("/x?api_key=k1&a=b", "/x?api_key=[redacted]&a=b"),
            ("Bearer abc.def", "Bearer [redacted]"),
            (
                "authorization: Basic dXNlcjpwYXNz",
                "authorization: [redacted] [redacted]",
            ),
            (r#"{"password":"hunter2"}"#, r#"{"password":"[redacted]"}"#),
            (
                "host=db password = hunter2 user=u",
                "host=db password = [redacted] user=u",
            ),
            (
                "password='a b c' sslmode=require",
                "password='[redacted]' sslmode=require",
            ),
            ("plain text, nothing to hide", "plain text, nothing to hide"),
            ("an-id_without.separators", "an-id_without.separators"),
        ];
        for (text, expected) in cases {
            assert_eq!(redact_text(text), expected, "{text}");
        }
    }

    #[test]
    fn bodies_are_pretty_printed_with_secrets_hidden_at_any_depth() {
        let body = br#"{"a":[{"apiKey":{"x":1}},"postgres://u:p4ss@h/d"],"credentials":{"username":"u","password":"p"},"n":null,"e":{}}"#;
        let expected = "{\n  \"a\": [\n    {\n      \"apiKey\": \"[redacted]\"\n    },\n    \"postgres://u:[redacted]@h/d\"\n  ],\n  \"credentials\": \"[redacted]\",\n  \"n\": null,\n  \"e\": {}\n}";
        assert_eq!(json_for_people(body, 4096), expected);
        // A key that does not decode (a lone surrogate) might name a secret: hidden too.
        let odd_key = br#"{"password\ud800":"hunter2"}"#;
        let shown = json_for_people(odd_key, 4096);
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn shown_values_are_redacted_and_cut() {
        assert_eq!(shown("/x?token=abc", 100), "/x?token=[redacted]");
        assert_eq!(shown(&"é".repeat(200), 255).len(), 254 + '…'.len_utf8());
    }

    #[test]
    fn bodies_are_cut_while_printed_and_non_json_is_not_shown() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let shown = json_for_people(deep.as_bytes(), 256);
        assert!(shown.len() < 256 + 32, "{shown}");
        assert!(shown.ends_with("(cut at 256 bytes)"), "{shown}");
        let long = format!("{{\"a\":\"{}\"}}", "é".repeat(5000));
        let shown = json_for_people(long.as_bytes(), 2048);
        assert!(shown.len() < 2048 + 32);
        assert_eq!(
            json_for_people(b"password=hunter2", 2048),
            "(16 bytes that are not JSON, not shown)"
        );
    }
}
