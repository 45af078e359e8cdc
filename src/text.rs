//! Text that came from clients, made safe to print: escaped control characters and quoted,
//! length-capped excerpts. The lowest module: every layer that writes client text into a
//! message or a log line uses it.

use std::borrow::Cow;

/// Escapes control characters (newlines included) so text that came from a client can never
/// start a new log line or hide inside a terminal escape sequence.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Quotes client text for a message: escaped, and cut so a huge key cannot bloat errors/logs.
pub fn quote(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() > MAX {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}…")
    } else {
        format!("{s:?}")
    }
}

/// At most `max` bytes of `s`, cut on a character boundary and marked with `…` when cut: for
/// client text that is stored or logged (model names from URLs, paths), so a 64 KB name
/// cannot bloat audit rows and log lines.
pub fn cap(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_cuts_on_a_character_boundary() {
        assert_eq!(cap("iris", 8), "iris");
        assert_eq!(cap("abcdef", 3), "abc…");
        assert_eq!(cap("ééé", 3), "é…");
    }

    #[test]
    fn escapes_newlines_and_escape_sequences() {
        assert_eq!(escape_controls("a\nb\r\x1b[31m"), "a\\nb\\r\\u{1b}[31m");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn quote_escapes_and_cuts() {
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        assert!(quote(&"x".repeat(500)).len() < 80);
    }
}
