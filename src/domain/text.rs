//! Text people type as names, and short excerpts of text for messages.

use std::fmt;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The most characters of someone's input a message repeats.
const EXCERPT_CHARS: usize = 40;

/// At most 40 characters of `text`, with "…" when there was more: what a message may
/// repeat of someone's input.
pub fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(EXCERPT_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong {
        max: usize,
    },
    /// A control, format or separator character (zero-width space, byte order mark,
    /// bidirectional override, line separator …): invisible or reordering, it would let two
    /// names look the same or one look like another.
    Invisible(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("it is required"),
            NameError::TooLong { max } => write!(f, "at most {max} characters"),
            NameError::Invisible(c) => write!(
                f,
                "it contains the invisible character U+{:04X}{}; type the name again without it",
                u32::from(*c),
                describe(*c)
                    .map(|name| format!(" ({name})"))
                    .unwrap_or_default()
            ),
        }
    }
}

fn describe(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{200b}' => "zero-width space",
        '\u{200c}' => "zero-width non-joiner",
        '\u{200d}' => "zero-width joiner",
        '\u{200e}' | '\u{200f}' => "direction mark",
        '\u{202a}'..='\u{202e}' => "bidirectional override",
        '\u{2066}'..='\u{2069}' => "bidirectional isolate",
        '\u{feff}' => "byte order mark",
        '\u{00ad}' => "soft hyphen",
        '\u{2028}' => "line separator",
        '\u{2029}' => "paragraph separator",
        c if c.is_control() => "control character",
        _ => return None,
    })
}

fn is_invisible(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
    )
}

/// A name as stored: trimmed, in Unicode NFC (so "é" typed as one character or as "e" and
/// a combining accent is the same name), 1 to `max` characters, with no invisible
/// characters. Names are unique in this form.
pub fn clean_name(raw: &str, max: usize) -> Result<String, NameError> {
    // Counted on the raw input first: nothing unbounded is normalised.
    if raw.len() > max * 4 + 64 {
        return Err(NameError::TooLong { max });
    }
    let name: String = raw.trim().nfc().collect();
    if let Some(c) = name.chars().find(|c| is_invisible(*c)) {
        return Err(NameError::Invisible(c));
    }
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().count() > max {
        return Err(NameError::TooLong { max });
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_nfc_and_refuse_invisible_characters() {
        assert_eq!(clean_name("  Demo export ", 100).unwrap(), "Demo export");
        // "é" as e + combining acute becomes the one character.
        assert_eq!(clean_name("Cafe\u{301}", 100).unwrap(), "Café");
        for bad in [
            "Demo\u{200b} export",
            "\u{feff}Demo",
            "Demo \u{202e}tropxe",
            "a\u{7}b",
            "line\u{2028}break",
            "soft\u{ad}hyphen",
        ] {
            assert!(
                matches!(clean_name(bad, 100), Err(NameError::Invisible(_))),
                "{bad:?}"
            );
        }
        let message = clean_name("Demo\u{200b}", 100).unwrap_err().to_string();
        assert!(message.contains("U+200B (zero-width space)"), "{message}");
        assert_eq!(clean_name("  ", 100), Err(NameError::Empty));
        assert_eq!(
            clean_name(&"x".repeat(101), 100),
            Err(NameError::TooLong { max: 100 })
        );
        assert!(clean_name(&"é".repeat(100), 100).is_ok());
        // Letters of every script are names.
        assert!(clean_name("Zoë Łukasz 山田 محمد", 100).is_ok());
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt("short"), "short");
        let long = "y".repeat(10_000);
        assert_eq!(excerpt(&long).chars().count(), 41);
        assert!(excerpt(&long).ends_with('…'));
    }
}
