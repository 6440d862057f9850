//! Text a client chose, as it may appear in a log line: control characters
//! escaped, cut to a bound with the rest counted, and a secret pasted where
//! a name belongs never shown. Nothing a client types can forge or flood a
//! log line through these.

use std::fmt;

use crate::SecretShape;

/// At most this many bytes of client-chosen text reach a log line.
pub const MAX_LOGGED_BYTES: usize = 256;

/// Text a client chose, as it may appear in a log line: control
/// characters (newlines, ANSI escapes) escaped, at most [`MAX_LOGGED_BYTES`]
/// bytes of it, the rest counted, and anything shaped like a token (a
/// GitHub, GitLab or Gitea token, an app password or a JWT, pasted as the
/// username) not shown at all.
pub struct Safe<'a>(pub &'a str);

impl fmt::Display for Safe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if SecretShape::of("", self.0) != SecretShape::Password {
            return f.write_str("[a token, not shown]");
        }
        Escaped::new(self.0, MAX_LOGGED_BYTES).fmt(f)
    }
}

/// Text for a log line, of up to `max_bytes` bytes (cut at a character
/// boundary, the rest counted as `…(+N bytes)`), with control characters
/// escaped. Unlike [`Safe`] it shows the text whatever its shape: for
/// text that is not a name (a scope list, a refusal's reason).
pub struct Escaped<'a> {
    text: &'a str,
    max_bytes: usize,
}

impl<'a> Escaped<'a> {
    /// `text`, at most `max_bytes` of it.
    pub fn new(text: &'a str, max_bytes: usize) -> Self {
        Self { text, max_bytes }
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text;
        let mut end = text.len().min(self.max_bytes);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        // runs of printable text are written whole: this is on the path
        // of every audited request
        let mut rest = &text[..end];
        while let Some(at) = rest.find(char::is_control) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(f, "{}", c.escape_unicode())?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)?;
        if end < text.len() {
            write!(f, "…(+{} bytes)", text.len() - end)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_pasted_as_names_are_not_shown() {
        for token in [
            "ghp_secret",
            "glpat-secret",
            "rga_secret",
            "0123456789abcdef0123456789abcdef01234567",
            // {"alg":"RS256"}.{"iss":"https://sso"}.sig
            "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL3NzbyJ9.sig",
        ] {
            assert_eq!(Safe(token).to_string(), "[a token, not shown]", "{token}");
        }
        for name in [
            "erin",
            "gitlab-ci-token",
            "a.b.c",
            "erin.smith@corp.example",
        ] {
            assert_eq!(Safe(name).to_string(), name);
        }
    }

    #[test]
    fn escaped_text_is_cut_and_counted() {
        assert_eq!(Escaped::new("a\nb", 10).to_string(), "a\\u{a}b");
        assert_eq!(Escaped::new("ghp_x", 10).to_string(), "ghp_x");
        assert_eq!(Escaped::new("abcdef", 4).to_string(), "abcd…(+2 bytes)");
        // never splits a character
        assert_eq!(Escaped::new("éé", 3).to_string(), "é…(+2 bytes)");
    }
}
