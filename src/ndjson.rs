//! NDJSON line handling shared by the downloader and `inspect`: a bounded line splitter (memchr, a maximum
//! line length, 1-based line numbers) and the per-line check (a JSON object whose `resourceType` is the
//! expected one), done by the validating skip in `ndjson/json.rs`. Nothing here allocates per line
//! except the carry-over of a line split across chunks, which never grows past the maximum line length,
//! and the decoding of a head field written with escapes.

mod blocks;
mod json;
mod refsink;

use std::io::{self, Read};

use json::Scanned;
pub use json::{Head, JsonError, MAX_DEPTH};
pub use refsink::RefSink;

/// What went wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    TooLong { limit: usize },
    NotJson(String),
    NotAnObject,
    MissingResourceType,
    WrongResourceType { expected: String, found: String },
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::TooLong { limit } => {
                write!(f, "line longer than the limit of {limit} bytes")
            }
            LineError::NotJson(e) => write!(f, "not JSON: {e}"),
            LineError::NotAnObject => f.write_str("not a JSON object"),
            LineError::MissingResourceType => f.write_str("no resourceType"),
            LineError::WrongResourceType { expected, found } => {
                write!(f, "resourceType is {found:?}, expected {expected:?}")
            }
        }
    }
}

/// Splits a byte stream into lines without holding more than one partial line (≤ `max_line` bytes).
/// `\r\n` endings are accepted; blank lines are skipped but still numbered.
#[derive(Debug)]
pub struct LineSplitter {
    carry: Vec<u8>,
    max_line: usize,
    line_no: u64,
    /// Inside a line already reported as too long: skip to its end.
    skipping: bool,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        LineSplitter { carry: Vec::new(), max_line, line_no: 0, skipping: false }
    }

    /// Lines seen so far (including blank ones), i.e. the number of the last complete line.
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// Feeds one chunk; `on_line(line_no, line)` is called for each complete non-blank line.
    pub fn feed(&mut self, mut chunk: &[u8], on_line: &mut impl FnMut(u64, Result<&[u8], LineError>)) {
        while !chunk.is_empty() {
            match memchr::memchr(b'\n', chunk) {
                Some(i) => {
                    let (head, rest) = (&chunk[..i], &chunk[i + 1..]);
                    chunk = rest;
                    self.line_no += 1;
                    if self.skipping {
                        self.skipping = false;
                        continue;
                    }
                    if self.carry.is_empty() {
                        if head.len() > self.max_line {
                            on_line(self.line_no, Err(LineError::TooLong { limit: self.max_line }));
                        } else {
                            emit(self.line_no, head, on_line);
                        }
                    } else if self.carry.len() + head.len() > self.max_line {
                        self.carry.clear();
                        on_line(self.line_no, Err(LineError::TooLong { limit: self.max_line }));
                    } else {
                        let mut line = std::mem::take(&mut self.carry);
                        line.extend_from_slice(head);
                        emit(self.line_no, &line, on_line);
                        line.clear();
                        self.carry = line; // keep the allocation
                    }
                }
                None => {
                    if !self.skipping {
                        if self.carry.len() + chunk.len() > self.max_line {
                            self.carry.clear();
                            self.skipping = true;
                            on_line(self.line_no + 1, Err(LineError::TooLong { limit: self.max_line }));
                        } else {
                            self.carry.extend_from_slice(chunk);
                        }
                    }
                    chunk = &[];
                }
            }
        }
    }

    /// Ends the stream: a final line without a newline is still a line.
    pub fn finish(&mut self, on_line: &mut impl FnMut(u64, Result<&[u8], LineError>)) {
        if self.skipping {
            self.skipping = false;
            self.line_no += 1;
        } else if !self.carry.is_empty() {
            self.line_no += 1;
            let line = std::mem::take(&mut self.carry);
            emit(self.line_no, &line, on_line);
        }
    }
}

fn emit(line_no: u64, line: &[u8], on_line: &mut impl FnMut(u64, Result<&[u8], LineError>)) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    on_line(line_no, Ok(line));
}

/// Streams `r` through `splitter` in 1 MiB blocks, then finishes it (so a last line without a newline
/// counts). `on_block` sees each block before its lines are split, and returns false to stop reading.
pub fn read_lines(
    r: &mut dyn Read,
    splitter: &mut LineSplitter,
    mut on_block: impl FnMut(&[u8]) -> bool,
    on_line: &mut impl FnMut(u64, Result<&[u8], LineError>),
) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 || !on_block(&buf[..n]) {
            break;
        }
        splitter.feed(&buf[..n], on_line);
    }
    splitter.finish(on_line);
    Ok(())
}

/// Parses one line as a resource: a JSON object, validated whole, with the fields the checks read.
pub fn parse_head(line: &[u8]) -> Result<Head<'_>, LineError> {
    scanned(json::scan(line))
}

/// [`parse_head`], also collecting the line's `reference` strings into `sink` (cleared first).
pub fn parse_refs<'a>(line: &'a [u8], sink: &mut RefSink) -> Result<Head<'a>, LineError> {
    sink.clear();
    scanned(json::scan_refs(line, sink))
}

fn scanned(r: Result<Scanned<'_>, json::JsonError>) -> Result<Head<'_>, LineError> {
    match r {
        Ok(Scanned::Object(head)) => Ok(head),
        Ok(Scanned::NotAnObject) => Err(LineError::NotAnObject),
        Err(e) => Err(LineError::NotJson(e.to_string())),
    }
}

/// Checks a line: a JSON object whose `resourceType` equals `expected` (any type when `None`).
pub fn check_line(line: &[u8], expected: Option<&str>) -> Result<(), LineError> {
    let head = parse_head(line)?;
    match (head.resource_type, expected) {
        (None, _) => Err(LineError::MissingResourceType),
        (Some(found), Some(expected)) if found != expected => {
            Err(LineError::WrongResourceType { expected: expected.to_string(), found: found.into_owned() })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<(u64, Result<String, LineError>)> {
        let mut out = Vec::new();
        let mut s = LineSplitter::new(max);
        let mut f = |n: u64, r: Result<&[u8], LineError>| {
            out.push((n, r.map(|l| String::from_utf8(l.to_vec()).unwrap())));
        };
        for c in chunks {
            s.feed(c, &mut f);
        }
        s.finish(&mut f);
        out
    }

    #[test]
    fn lines_across_chunks_and_final_line_without_newline() {
        let got = split(&[b"ab", b"c\nde\r\n\n", b"f"], 100);
        assert_eq!(got, vec![(1, Ok("abc".into())), (2, Ok("de".into())), (4, Ok("f".into()))]);
    }

    #[test]
    fn overlong_lines_are_errors_not_allocations() {
        let got = split(&[b"12345", b"678\nok\n", b"123456789012\nx"], 6);
        assert_eq!(
            got,
            vec![
                (1, Err(LineError::TooLong { limit: 6 })),
                (2, Ok("ok".into())),
                (3, Err(LineError::TooLong { limit: 6 })),
                (4, Ok("x".into())),
            ]
        );
    }

    #[test]
    fn overlong_line_split_in_many_chunks_reported_once() {
        let got = split(&[b"1234567", b"89", b"0\n", b"ok"], 4);
        assert_eq!(got, vec![(1, Err(LineError::TooLong { limit: 4 })), (2, Ok("ok".into()))]);
    }

    #[test]
    fn line_checks() {
        assert_eq!(check_line(br#"{"resourceType":"Patient","id":"1"}"#, Some("Patient")), Ok(()));
        assert_eq!(
            check_line(br#"{"resourceType":"Coverage"}"#, Some("Patient")),
            Err(LineError::WrongResourceType { expected: "Patient".into(), found: "Coverage".into() })
        );
        assert_eq!(check_line(br#"{"id":"1"}"#, None), Err(LineError::MissingResourceType));
        assert_eq!(check_line(b"[1,2]", None), Err(LineError::NotAnObject));
        assert!(matches!(check_line(br#"{"resourceType":"Patient""#, None), Err(LineError::NotJson(_))));
        assert!(matches!(check_line(b"garbage", None), Err(LineError::NotJson(_))));
        // Escapes in resourceType still compare equal.
        assert_eq!(check_line(br#"{"resourceType":"Pati\u0065nt"}"#, Some("Patient")), Ok(()));
    }
}
