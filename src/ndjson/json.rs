//! A validating JSON skip for one NDJSON line: it checks the whole grammar (RFC 8259 as `serde_json`
//! reads it into a `Value`: UTF-8, escapes and paired surrogates, control characters, numbers and their
//! range, literals, at most 127 levels of nesting, nothing after the value) without building values,
//! and on the way keeps the few fields the checks need: the top-level `resourceType` and `id`, and
//! `meta.lastUpdated`. With a [`RefSink`] it also collects every `reference` string with the keys that
//! lead to it (for `inspect --check-references`).
//!
//! One pass, byte-driven, with the index in a register and no `Result` per byte: strings are skipped
//! eight bytes at a time (SWAR), and 64 at a time with SSE2 once they run past 16 bytes
//! (`blocks.rs`). Why not `serde_json` with a borrowed, skip-everything target: on claims-shaped FHIR
//! (a string every ~14 bytes) it executes ~17 instructions a byte, this ~10 (see README,
//! Performance). Exactness is held by
//! a differential test against `serde_json` (`tests/json_differential.rs`).

use std::borrow::Cow;

use super::blocks;
use super::refsink::{RefSink, Span, decode};

/// The deepest nesting `serde_json` accepts (its recursion limit of 128 counts the failing level).
pub const MAX_DEPTH: u32 = 127;

/// What went wrong, in `serde_json`'s categories so messages read as before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON here (column is 1-based, in bytes).
    Syntax(usize),
    /// The line ends inside a value.
    Eof(usize),
    /// JSON, but a field the checks read has the wrong type or comes twice.
    Data(usize),
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonError::Syntax(c) => write!(f, "syntax error at column {c}"),
            JsonError::Eof(c) => write!(f, "unexpected end at column {c}"),
            JsonError::Data(c) => write!(f, "unexpected value at column {c}"),
        }
    }
}

/// The fields of a resource the checks look at, as found on the line (escapes decoded).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Head<'a> {
    pub resource_type: Option<Cow<'a, str>>,
    pub id: Option<Cow<'a, str>>,
    pub last_updated: Option<Cow<'a, str>>,
}

/// Scan outcome: the top-level value was an object (with its head), or some other valid JSON value.
#[derive(Debug, PartialEq, Eq)]
pub enum Scanned<'a> {
    Object(Head<'a>),
    NotAnObject,
}

/// Validates `line` as one JSON value and reads the head of a top-level object.
pub fn scan(line: &[u8]) -> Result<Scanned<'_>, JsonError> {
    scan_with::<false>(line, &mut RefSink::default())
}

/// [`scan`], also collecting references into `sink` (which the caller cleared). On an error the
/// sink's contents are meaningless.
pub fn scan_refs<'a>(line: &'a [u8], sink: &mut RefSink) -> Result<Scanned<'a>, JsonError> {
    scan_with::<true>(line, sink)
}

fn scan_with<'a, const REFS: bool>(line: &'a [u8], sink: &mut RefSink) -> Result<Scanned<'a>, JsonError> {
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(e) => return Err(JsonError::Syntax(e.valid_up_to() + 1)),
    };
    Parser { s: text, b: line }.value_tree::<REFS>(sink)
}

/// Which of the fields the head keeps a key names (top level and inside `meta`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Other = 0,
    ResourceType,
    Id,
    Meta,
    LastUpdated,
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `x` that ends a plain run of string bytes: `"`, `\` or a control
/// character. Borrows can set bits above the first such byte, never below, so the lowest bit is exact.
#[inline(always)]
fn specials(x: u64) -> u64 {
    let q = x ^ (LO * u64::from(b'"'));
    let s = x ^ (LO * u64::from(b'\\'));
    ((q.wrapping_sub(LO) & !q) | (s.wrapping_sub(LO) & !s) | (x.wrapping_sub(LO * 0x20) & !x)) & HI
}

/// From `i`, just after an opening quote: the index of the closing quote. Sets `escaped` when the
/// string has escapes (which are validated here).
#[inline(always)]
fn string_end(b: &[u8], mut i: usize, escaped: &mut bool) -> Result<usize, JsonError> {
    loop {
        i = skip_plain(b, i);
        match b.get(i) {
            Some(b'"') => return Ok(i),
            Some(b'\\') => {
                *escaped = true;
                i = escape(b, i)?;
            }
            Some(0..0x20) => return Err(JsonError::Syntax(i + 1)),
            Some(_) => i += 1,
            None => return Err(JsonError::Eof(b.len() + 1)),
        }
    }
}

/// The first quote, backslash or control character at or after `i` (or the end): two words of
/// eight bytes (most FHIR strings end within 16), then 64-byte blocks, then words again.
#[inline(always)]
fn skip_plain(b: &[u8], mut i: usize) -> usize {
    for _ in 0..2 {
        let Some(chunk) = b.get(i..i + 8) else { return skip_tail(b, i) };
        let m = specials(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    skip_long(b, i)
}

#[inline(never)]
fn skip_long(b: &[u8], mut i: usize) -> usize {
    while let Some(block) = b.get(i..i + 64) {
        let m = blocks::specials(block.try_into().expect("64 bytes"));
        if m != 0 {
            return i + m.trailing_zeros() as usize;
        }
        i += 64;
    }
    while let Some(chunk) = b.get(i..i + 8) {
        let m = specials(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    skip_tail(b, i)
}

fn skip_tail(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// At a backslash inside a string: checks the escape, returns the index after it.
#[cold]
pub(super) fn escape(b: &[u8], i: usize) -> Result<usize, JsonError> {
    let eof = JsonError::Eof(b.len() + 1);
    let Some(&c) = b.get(i + 1) else { return Err(eof) };
    let mut i = i + 2;
    match c {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(i),
        b'u' => {
            let n = hex4(b, i)?;
            i += 4;
            if (0xDC00..=0xDFFF).contains(&n) {
                return Err(JsonError::Syntax(i));
            }
            if !(0xD800..=0xDBFF).contains(&n) {
                return Ok(i);
            }
            // A leading surrogate must be followed by `\u` and a trailing one.
            for want in [b'\\', b'u'] {
                match b.get(i) {
                    None => return Err(eof),
                    Some(&c) if c == want => i += 1,
                    Some(_) => return Err(JsonError::Syntax(i + 1)),
                }
            }
            let n2 = hex4(b, i)?;
            if (0xDC00..=0xDFFF).contains(&n2) { Ok(i + 4) } else { Err(JsonError::Syntax(i + 4)) }
        }
        _ => Err(JsonError::Syntax(i)),
    }
}

fn hex4(b: &[u8], i: usize) -> Result<u16, JsonError> {
    let Some(h) = b.get(i..i + 4) else { return Err(JsonError::Eof(b.len() + 1)) };
    let mut n = 0u16;
    for (k, &c) in h.iter().enumerate() {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return Err(JsonError::Syntax(i + k + 1)),
        };
        n = n << 4 | u16::from(d);
    }
    Ok(n)
}

#[inline(always)]
fn digits(b: &[u8], mut i: usize) -> usize {
    while let Some(b'0'..=b'9') = b.get(i) {
        i += 1;
    }
    i
}

/// At `-` or a digit: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`; the index after it.
#[inline(always)]
fn number(s: &str, b: &[u8], start: usize) -> Result<usize, JsonError> {
    let bad = |i: usize| if i == b.len() { JsonError::Eof(i + 1) } else { JsonError::Syntax(i + 1) };
    let mut i = start + usize::from(b[start] == b'-');
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(b, i + 1),
        _ => return Err(bad(i)),
    }
    let mut exp = false;
    if b.get(i) == Some(&b'.') {
        let d = digits(b, i + 1);
        if d == i + 1 {
            return Err(bad(d));
        }
        i = d;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        exp = true;
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let d = digits(b, i);
        if d == i {
            return Err(bad(d));
        }
        i = d;
    }
    // Only an exponent or hundreds of digits can leave f64's range, which serde_json refuses.
    if exp || i - start > 300 {
        number_in_range(&s[start..i], i)?;
    }
    Ok(i)
}

/// serde_json's own verdict on a number that might overflow, so that edge is exactly its edge.
#[cold]
fn number_in_range(text: &str, end: usize) -> Result<(), JsonError> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(_) => Ok(()),
        Err(_) => Err(JsonError::Syntax(end)),
    }
}

/// At `t`, `f` or `n`: the literal, the index after it.
#[inline(always)]
fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize, JsonError> {
    if b.get(i..i + word.len()) == Some(word) {
        return Ok(i + word.len());
    }
    let got = &b[i..b.len().min(i + word.len())];
    match got.iter().zip(word).position(|(a, w)| a != w) {
        Some(k) => Err(JsonError::Syntax(i + k + 1)),
        None => Err(JsonError::Eof(b.len() + 1)),
    }
}

/// The head field a key names, at the top level (`depth` 1) or directly in `meta`.
#[inline(always)]
fn field_of(name: &[u8], depth: usize) -> Field {
    match (depth, name) {
        (1, b"resourceType") => Field::ResourceType,
        (1, b"id") => Field::Id,
        (1, b"meta") => Field::Meta,
        (2, b"lastUpdated") => Field::LastUpdated,
        _ => Field::Other,
    }
}

#[inline(always)]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\t' | b'\r')
}

#[inline(always)]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).copied().is_some_and(is_ws) {
        i += 1;
    }
    i
}

impl<'a> Parser<'a> {
    fn text(&self, span: Span) -> Cow<'a, str> {
        decode(self.s, span)
    }

    fn value_tree<const REFS: bool>(&self, sink: &mut RefSink) -> Result<Scanned<'a>, JsonError> {
        let b = self.b;
        let eof = JsonError::Eof(b.len() + 1);
        let mut head = Head::default();
        let mut i = 0usize;
        let mut stack = [false; MAX_DEPTH as usize];
        let mut depth = 0usize;
        let mut top_object = false;
        let mut field = Field::Other;
        let mut in_meta = false;
        let mut seen = [false; 4];
        let mut key: Option<Span> = None;
        'value: loop {
            let mut c = *b.get(i).ok_or(eof)?;
            if c <= b' ' {
                i = skip_ws(b, i);
                c = *b.get(i).ok_or(eof)?;
            }
            match c {
                b'"' => {
                    let mut esc = false;
                    let end = string_end(b, i + 1, &mut esc)?;
                    let span = (i + 1, end, esc);
                    i = end + 1;
                    match field {
                        Field::Other => {
                            if REFS && key.is_some_and(|k| &b[k.0..k.1] == b"reference") {
                                sink.reference(span, self.s);
                            }
                        }
                        Field::ResourceType => head.resource_type = Some(self.text(span)),
                        Field::Id => head.id = Some(self.text(span)),
                        Field::LastUpdated => head.last_updated = Some(self.text(span)),
                        Field::Meta => return Err(JsonError::Data(span.0)),
                    }
                }
                b'{' | b'[' => {
                    if depth == MAX_DEPTH as usize {
                        return Err(JsonError::Syntax(i + 1));
                    }
                    let is_obj = c == b'{';
                    match field {
                        Field::Other => {}
                        Field::Meta if is_obj => in_meta = true,
                        _ => return Err(JsonError::Data(i + 1)),
                    }
                    if depth == 0 {
                        top_object = is_obj;
                    }
                    stack[depth] = is_obj;
                    depth += 1;
                    if REFS {
                        sink.open(depth as u32, key.take(), self.s);
                    }
                    i = skip_ws(b, i + 1);
                    let c = *b.get(i).ok_or(eof)?;
                    if c != if is_obj { b'}' } else { b']' } {
                        field = Field::Other;
                        if is_obj {
                            i = self.key::<REFS>(i, depth, in_meta, &mut field, &mut seen, &mut key)?;
                        }
                        continue 'value;
                    }
                    i += 1;
                    if REFS {
                        sink.close(depth as u32);
                    }
                    depth -= 1;
                    if depth == 1 {
                        in_meta = false;
                    }
                }
                b'-' | b'0'..=b'9' => {
                    if field != Field::Other {
                        return Err(JsonError::Data(i + 1));
                    }
                    i = number(self.s, b, i)?;
                }
                b't' | b'f' => {
                    if field != Field::Other {
                        return Err(JsonError::Data(i + 1));
                    }
                    i = literal(b, i, if c == b't' { b"true" } else { b"false" })?;
                }
                b'n' => i = literal(b, i, b"null")?,
                _ => return Err(JsonError::Syntax(i + 1)),
            }
            key = None;
            loop {
                if depth == 0 {
                    i = skip_ws(b, i);
                    return match b.get(i) {
                        None if top_object => Ok(Scanned::Object(head)),
                        None => Ok(Scanned::NotAnObject),
                        Some(_) => Err(JsonError::Syntax(i + 1)),
                    };
                }
                let mut c = *b.get(i).ok_or(eof)?;
                if c <= b' ' {
                    i = skip_ws(b, i);
                    c = *b.get(i).ok_or(eof)?;
                }
                let is_obj = stack[depth - 1];
                if c == b',' {
                    field = Field::Other;
                    i += 1;
                    if is_obj {
                        i = self.key::<REFS>(i, depth, in_meta, &mut field, &mut seen, &mut key)?;
                    }
                    continue 'value;
                }
                if c != if is_obj { b'}' } else { b']' } {
                    return Err(JsonError::Syntax(i + 1));
                }
                i += 1;
                if REFS {
                    sink.close(depth as u32);
                }
                depth -= 1;
                if depth == 1 {
                    in_meta = false;
                }
            }
        }
    }

    #[inline(always)]
    fn key<const REFS: bool>(
        &self,
        mut i: usize,
        depth: usize,
        in_meta: bool,
        field: &mut Field,
        seen: &mut [bool; 4],
        key: &mut Option<Span>,
    ) -> Result<usize, JsonError> {
        let b = self.b;
        let eof = JsonError::Eof(b.len() + 1);
        let mut c = *b.get(i).ok_or(eof)?;
        if c <= b' ' {
            i = skip_ws(b, i);
            c = *b.get(i).ok_or(eof)?;
        }
        if c != b'"' {
            return Err(JsonError::Syntax(i + 1));
        }
        let mut esc = false;
        let end = string_end(b, i + 1, &mut esc)?;
        let span = (i + 1, end, esc);
        if REFS {
            *key = Some(span);
        }
        if depth == 1 || (depth == 2 && in_meta) {
            *field = if esc { field_of(self.text(span).as_bytes(), depth) } else { field_of(&b[i + 1..end], depth) };
            if *field != Field::Other {
                let n = *field as usize - 1;
                if std::mem::replace(&mut seen[n], true) {
                    return Err(JsonError::Data(i + 1));
                }
            }
        }
        i = end + 1;
        let mut c = *b.get(i).ok_or(eof)?;
        if c <= b' ' {
            i = skip_ws(b, i);
            c = *b.get(i).ok_or(eof)?;
        }
        if c != b':' {
            return Err(JsonError::Syntax(i + 1));
        }
        Ok(i + 1)
    }
}
