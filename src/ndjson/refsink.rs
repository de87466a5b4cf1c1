//! `inspect --check-references`' view of a line: every `reference` string with the keys that lead to
//! it (`insurance.coverage`), collected by the validating skip in `json.rs` as it passes.

use std::borrow::Cow;

/// Collects `reference` strings with their field paths (`insurance.coverage`), arrays transparent,
/// as `inspect` reports them. Holds offsets, not borrows, so one sink serves every line of a file.
#[derive(Debug, Default)]
pub struct RefSink {
    /// Keys (byte ranges of the line) of the containers open now, with the depth each was opened at.
    keys: Vec<(u32, Span)>,
    /// Depth of a container opened under a `reference` key: nothing inside it is collected.
    muted_at: Option<u32>,
    /// The joined paths, back to back; `refs` holds ranges into it.
    paths: String,
    refs: Vec<(std::ops::Range<usize>, Span)>,
}

/// A string's contents on the line: start, end (the closing quote), whether it has escapes.
pub(super) type Span = (usize, usize, bool);

impl RefSink {
    pub fn clear(&mut self) {
        self.keys.clear();
        self.muted_at = None;
        self.paths.clear();
        self.refs.clear();
    }

    /// `(field path, reference)` pairs of the last line scanned, which must be `line`.
    pub fn refs<'s, 'l>(&'s self, line: &'l [u8]) -> impl Iterator<Item = (&'s str, Cow<'l, str>)> {
        let text = std::str::from_utf8(line).unwrap_or_default();
        self.refs.iter().map(move |(r, v)| (&self.paths[r.clone()], decode(text, *v)))
    }

    pub(super) fn open(&mut self, depth: u32, key: Option<Span>, text: &str) {
        if let Some(k) = key {
            if self.muted_at.is_none() && &text[k.0..k.1] == "reference" {
                self.muted_at = Some(depth);
            }
            self.keys.push((depth, k));
        }
    }

    pub(super) fn close(&mut self, depth: u32) {
        if self.keys.last().is_some_and(|(d, _)| *d == depth) {
            self.keys.pop();
        }
        if self.muted_at == Some(depth) {
            self.muted_at = None;
        }
    }

    pub(super) fn reference(&mut self, value: Span, text: &str) {
        if self.muted_at.is_some() {
            return;
        }
        let start = self.paths.len();
        for (n, (_, k)) in self.keys.iter().enumerate() {
            if n > 0 {
                self.paths.push('.');
            }
            self.paths.push_str(&decode(text, *k));
        }
        self.refs.push((start..self.paths.len(), value));
    }
}

/// A string's value: borrowed from the line unless it has escapes.
pub(super) fn decode(text: &str, (start, end, escaped): Span) -> Cow<'_, str> {
    if escaped {
        // Rare; the escapes were validated, so this decoding cannot fail.
        Cow::Owned(serde_json::from_str(&text[start - 1..=end]).unwrap_or_default())
    } else {
        Cow::Borrowed(&text[start..end])
    }
}
