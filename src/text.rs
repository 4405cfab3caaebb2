//! Text that came from outside (the relay's banner and messages, certificate principals,
//! key comments, names from the settings file) is escaped before it reaches a terminal or
//! a log line, so a man in the middle cannot inject terminal escapes or reorder what an
//! operator reads with bidirectional overrides.

use std::borrow::Cow;

/// True for the Unicode bidirectional formatting characters (embeddings, overrides,
/// isolates and marks) that can make text display in another order than it is stored.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// True for characters that must not reach a terminal as they are.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// `text` with every control or bidi character written as `\u{XX}` (newline and tab as
/// `\n` and `\t`); unchanged (and not copied) when there is none.
pub fn escape_untrusted(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_controls_and_bidi() {
        assert!(matches!(
            escape_untrusted("SSH-2.0-OpenSSH_9.6"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_untrusted("evil\u{1b}[2J\u{202e}txt.exe\r\n"),
            "evil\\u{1b}[2J\\u{202e}txt.exe\\u{d}\\n"
        );
        assert_eq!(escape_untrusted("a\u{9b}b"), "a\\u{9b}b");
    }
}
