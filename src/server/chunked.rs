//! The lines of a chunked body (RFC 9112 §7.1), checked to the letter: a chunk-size line with
//! its extensions, and trailer lines. Each check names what was wrong, for the 400's
//! description. A bare CR is refused wherever it appears (RFC 9112 §2.2 lets a recipient
//! refuse it, and a front proxy that took it for a line end would frame the body
//! differently from this server).
//!
//! The lines given here come without their CRLF: any CR left in them is a bare one.

/// The most hex digits a chunk size may have once leading zeros are dropped: no chunk this
/// server accepts is near 4 GiB.
const MAX_SIZE_DIGITS: usize = 8;

/// The size of a chunk from its line: `chunk-size [ chunk-ext ]`, where
/// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`, the name a
/// token and the value a token or a quoted string (§7.1.1). Extensions are checked, then
/// ignored.
pub fn chunk_size(line: &[u8]) -> Result<usize, &'static str> {
    if let Some(bare_cr) = line.iter().position(|byte| *byte == b'\r') {
        return Err(if line[..bare_cr].contains(&b';') {
            "a bare CR in a chunk extension"
        } else {
            "a bare CR in a chunk-size line"
        });
    }
    let digits = line
        .iter()
        .take_while(|byte| byte.is_ascii_hexdigit())
        .count();
    if digits == 0 {
        return Err("a chunk-size line that does not start with hex digits");
    }
    extensions(&line[digits..])?;
    // Hex digits are ASCII; leading zeros are allowed, however many.
    let significant = String::from_utf8_lossy(&line[..digits]);
    let significant = significant.trim_start_matches('0');
    if significant.len() > MAX_SIZE_DIGITS {
        return Err("a chunk size of more than 8 hex digits");
    }
    if significant.is_empty() {
        return Ok(0);
    }
    usize::from_str_radix(significant, 16).map_err(|_| "a chunk size that does not read")
}

/// `*( BWS ";" BWS name [ BWS "=" BWS value ] )`.
fn extensions(mut rest: &[u8]) -> Result<(), &'static str> {
    const NOT_AN_EXTENSION: &str = "a chunk extension that is not ';name' or ';name=value'";
    loop {
        rest = skip_whitespace(rest);
        let Some(after_semicolon) = rest.strip_prefix(b";") else {
            return if rest.is_empty() {
                Ok(())
            } else {
                Err(NOT_AN_EXTENSION)
            };
        };
        rest = skip_whitespace(after_semicolon);
        let name = token_length(rest);
        if name == 0 {
            return Err(NOT_AN_EXTENSION);
        }
        rest = &rest[name..];
        let after_name = skip_whitespace(rest);
        if let Some(after_equals) = after_name.strip_prefix(b"=") {
            let value = skip_whitespace(after_equals);
            let length = match value.first() {
                Some(b'"') => quoted_string_length(value).ok_or(NOT_AN_EXTENSION)?,
                _ => token_length(value),
            };
            if length == 0 {
                return Err(NOT_AN_EXTENSION);
            }
            rest = &value[length..];
        }
    }
}

/// Checks a trailer line: a field line, `field-name ":" OWS field-value OWS` (§7.1.2, §5),
/// never folded onto the line before.
pub fn trailer_line(line: &[u8]) -> Result<(), &'static str> {
    if line.contains(&b'\r') {
        return Err("a bare CR in a trailer line");
    }
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err("a trailer line folded onto the one before (obs-fold)");
    }
    let name = token_length(line);
    if name == 0 || line.get(name) != Some(&b':') {
        return Err("a trailer line that is not a field line ('name: value')");
    }
    let value_is_text = line[name + 1..]
        .iter()
        .all(|byte| *byte == b'\t' || (*byte >= b' ' && *byte != 0x7f));
    if !value_is_text {
        return Err("a trailer field value with a control character");
    }
    Ok(())
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn token_length(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|byte| is_token_byte(**byte))
        .count()
}

fn skip_whitespace(bytes: &[u8]) -> &[u8] {
    let spaces = bytes
        .iter()
        .take_while(|byte| matches!(byte, b' ' | b'\t'))
        .count();
    &bytes[spaces..]
}

/// The length of the quoted string at the start of `bytes` (RFC 9110 §5.6.4), quotes
/// included; `None` if it is not one.
fn quoted_string_length(bytes: &[u8]) -> Option<usize> {
    let mut index = 1;
    loop {
        match *bytes.get(index)? {
            b'"' => return Some(index + 1),
            b'\\' => {
                let escaped = *bytes.get(index + 1)?;
                if escaped != b'\t' && (escaped < b' ' || escaped == 0x7f) {
                    return None;
                }
                index += 2;
            }
            byte if byte == b'\t' || (byte >= b' ' && byte != 0x7f) => index += 1,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_and_extensions_follow_the_grammar() {
        for (line, size) in [
            (&b"0"[..], 0),
            (b"1a", 26),
            (b"000000000010", 16),
            (b"4;x", 4),
            (b"4;x=y", 4),
            (b"4 ; x = y ;z", 4),
            (b"4;x=\"a \\\" b;c\"", 4),
            (b"ffffffff", 0xffff_ffff),
        ] {
            assert_eq!(
                chunk_size(line),
                Ok(size),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        for (line, problem) in [
            (&b""[..], "does not start with hex digits"),
            (b"x", "does not start with hex digits"),
            (b"-1", "does not start with hex digits"),
            (b"123456789", "more than 8 hex digits"),
            (b"4 x", "not ';name'"),
            (b"4;", "not ';name'"),
            (b"4;=y", "not ';name'"),
            (b"4;x=", "not ';name'"),
            (b"4;x=\"open", "not ';name'"),
            (b"4;x=y z", "not ';name'"),
            (b"4\r", "a bare CR in a chunk-size line"),
            (b"\r4", "a bare CR in a chunk-size line"),
            (b"4;x=\ry", "a bare CR in a chunk extension"),
            (b"4;x=\"\r\"", "a bare CR in a chunk extension"),
        ] {
            let result = chunk_size(line);
            assert!(
                result.is_err_and(|text| text.contains(problem)),
                "{:?}: {result:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn trailer_lines_are_field_lines() {
        for line in [&b"T: 1"[..], b"T:", b"X-Checksum:  abc def \t"] {
            assert_eq!(
                trailer_line(line),
                Ok(()),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        for (line, problem) in [
            (&b"no colon"[..], "not a field line"),
            (b": value", "not a field line"),
            (b"T : 1", "not a field line"),
            (b" folded", "obs-fold"),
            (b"T: a\rb", "a bare CR in a trailer line"),
            (b"T\r: 1", "a bare CR in a trailer line"),
            (b"T: a\x00b", "a control character"),
        ] {
            let result = trailer_line(line);
            assert!(
                result.is_err_and(|text| text.contains(problem)),
                "{:?}: {result:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
