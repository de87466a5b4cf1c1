//! The synchronous half of a download, run on a blocking worker: the body's chunks are gzip-decoded when
//! they need to be, then every decoded byte is counted against `max_file_bytes`, hashed, split into
//! lines and checked, and handed to a [`Sink`] (a `.part` file today). A resumed file's earlier bytes
//! are replayed through the same checks first, so its counts and hash cover all of it.
//!
//! Nothing here copies a chunk: the decoder (or the plain path) writes straight into the verifier,
//! which writes the same slice on to the sink.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use flate2::write::MultiGzDecoder;

use crate::digest::Sha256;
use crate::job::{DownloadSettings, Validate};
use crate::ndjson::{LineError, LineSplitter, check_line, parse_head};
use crate::record::MIXED;

/// Problems kept per file (the counts are always exact).
pub const MAX_PROBLEMS_PER_FILE: usize = 20;
/// Writes smaller than this are gathered before they reach the file; larger ones go straight through.
/// Read size when replaying an existing `.part`.
const REPLAY_BUFFER: usize = 1 << 20;
/// Resource types counted apart in one organized file; a hostile file cannot grow the map past this.
pub const MAX_TYPES_PER_FILE: usize = 256;

pub use crate::store::sink::{PartFile, Sink};

/// What the line checks found in one file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Non-blank lines (resources), good or bad.
    pub lines: u64,
    /// Lines that are not a JSON object with a `resourceType`, or too long.
    pub invalid: u64,
    /// Lines whose `resourceType` is not the file's.
    pub wrong_type: u64,
    /// The first [`MAX_PROBLEMS_PER_FILE`] problems, with their line numbers.
    pub problems: Vec<(u64, String)>,
    /// Organized output (expected type [`MIXED`]): resources per type, the headers included.
    pub types: BTreeMap<String, u64>,
    /// Organized output: `Parameters` lines, the headers that open each resource block.
    pub headers: u64,
}

impl Tally {
    fn line(&mut self, n: u64, line: Result<&[u8], LineError>, validate: Validate, expected: &str) {
        self.lines += 1;
        let res = match line {
            Err(e) => Err(e),
            Ok(l) if expected == MIXED => self.mixed(l, validate),
            Ok(_) if validate == Validate::Off => Ok(()),
            Ok(l) => check_line(l, Some(expected)),
        };
        if let Err(e) = res {
            if matches!(e, LineError::WrongResourceType { .. }) {
                self.wrong_type += 1;
            } else {
                self.invalid += 1;
            }
            if self.problems.len() < MAX_PROBLEMS_PER_FILE {
                self.problems.push((n, e.to_string()));
            }
        }
    }
}

impl Tally {
    /// A line of organized output: any resource, counted by its type (parsed even with `validate: off`,
    /// since the counts come from the content); a `Parameters` line is a block header.
    fn mixed(&mut self, line: &[u8], validate: Validate) -> Result<(), LineError> {
        let checked = |e| if validate == Validate::Off { Ok(()) } else { Err(e) };
        let head = match parse_head(line) {
            Ok(h) => h,
            Err(e) => return checked(e),
        };
        let Some(t) = head.resource_type else {
            return checked(LineError::MissingResourceType);
        };
        if !crate::export::manifest::safe_type(&t) {
            let found = t.chars().take(64).collect();
            return checked(LineError::WrongResourceType { expected: "a resource type name".into(), found });
        }
        if t == "Parameters" {
            self.headers += 1;
        }
        let room = self.types.len() < MAX_TYPES_PER_FILE;
        match self.types.get_mut(t.as_ref()) {
            Some(n) => *n += 1,
            None if room => {
                self.types.insert(t.into_owned(), 1);
            }
            None => {}
        }
        Ok(())
    }
}

/// A whole file, verified: the decoded bytes the sink received (an earlier `.part` included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub bytes: u64,
    /// Lowercase hex SHA-256 of those bytes.
    pub sha256: String,
    pub tally: Tally,
}

/// Why [`verify_stream`] stopped before the end of the body.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// More decoded bytes than `download.max_file_bytes`; the sink has received no more than the limit.
    #[error("file larger than download.max_file_bytes ({limit} bytes)")]
    TooLarge { limit: u64 },
    /// The gzip body is corrupt or cut short.
    #[error("{0}")]
    Gzip(io::Error),
    /// Reading the earlier `.part` or writing to the sink failed.
    #[error("{0}")]
    Io(io::Error),
}

/// Verifies one body: `prior` (the bytes already in the `.part`, when appending) is checked but not
/// written; then each chunk, decoded when `gzip`, is checked and written to `sink`, which is finished
/// at the end. `expected` is the file's resource type, or [`MIXED`] for organized output (any type,
/// counted per type).
pub fn verify_stream<S, B>(
    settings: &DownloadSettings,
    expected: &str,
    gzip: bool,
    prior: Option<impl Read>,
    chunks: impl IntoIterator<Item = B>,
    sink: &mut S,
) -> Result<Verified, VerifyError>
where
    S: Sink + ?Sized,
    B: AsRef<[u8]>,
{
    let mut v = Verifier::new(settings, expected);
    if let Some(r) = prior {
        v.replay(r)?;
    }
    let mut w = Checked { v, sink, too_large: false, sink_failed: false };
    let res = if gzip {
        let mut dec = MultiGzDecoder::new(&mut w);
        chunks.into_iter().try_for_each(|c| dec.write_all(c.as_ref())).and_then(|()| dec.try_finish())
    } else {
        chunks.into_iter().try_for_each(|c| w.write_all(c.as_ref()))
    };
    if let Err(e) = res {
        // The decoder passes the inner writer's errors through; the flags say whose the error is.
        return Err(if w.too_large {
            VerifyError::TooLarge { limit: settings.max_file_bytes }
        } else if gzip && !w.sink_failed {
            VerifyError::Gzip(e)
        } else {
            VerifyError::Io(e)
        });
    }
    w.sink.finish().map_err(VerifyError::Io)?;
    Ok(w.v.finish())
}

/// Counts, hashes and checks the decoded bytes of one file.
struct Verifier {
    hash: Sha256,
    splitter: LineSplitter,
    expected: String,
    validate: Validate,
    max_bytes: u64,
    bytes: u64,
    tally: Tally,
}

impl Verifier {
    fn new(settings: &DownloadSettings, expected: &str) -> Self {
        Verifier {
            hash: Sha256::new(),
            splitter: LineSplitter::new(settings.max_line_bytes),
            expected: expected.to_string(),
            validate: settings.validate,
            max_bytes: settings.max_file_bytes,
            bytes: 0,
            tally: Tally::default(),
        }
    }

    /// Takes the next decoded bytes, or refuses all of them if they would pass the size limit.
    fn update(&mut self, buf: &[u8]) -> Result<(), VerifyError> {
        if self.bytes + buf.len() as u64 > self.max_bytes {
            return Err(VerifyError::TooLarge { limit: self.max_bytes });
        }
        self.bytes += buf.len() as u64;
        self.hash.update(buf);
        let (tally, validate, expected) = (&mut self.tally, self.validate, self.expected.as_str());
        self.splitter.feed(buf, &mut |n, line| tally.line(n, line, validate, expected));
        Ok(())
    }

    /// Runs bytes already stored through the checks (not the sink).
    fn replay(&mut self, mut r: impl Read) -> Result<(), VerifyError> {
        let mut buf = vec![0u8; REPLAY_BUFFER];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => self.update(&buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(VerifyError::Io(e)),
            }
        }
    }

    /// Ends the stream: a final line without a newline is still a line.
    fn finish(mut self) -> Verified {
        let (tally, validate, expected) = (&mut self.tally, self.validate, self.expected.as_str());
        self.splitter.finish(&mut |n, line| tally.line(n, line, validate, expected));
        Verified { bytes: self.bytes, sha256: self.hash.finish_hex(), tally: self.tally }
    }
}

/// The verifier in front of the sink, as the `Write` the gzip decoder (or the plain path) writes into.
struct Checked<'a, S: Sink + ?Sized> {
    v: Verifier,
    sink: &'a mut S,
    too_large: bool,
    sink_failed: bool,
}

impl<S: Sink + ?Sized> Write for Checked<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Err(e) = self.v.update(buf) {
            self.too_large = true;
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, e));
        }
        if let Err(e) = self.sink.write_all(buf) {
            self.sink_failed = true;
            return Err(e);
        }
        Ok(buf.len())
    }

    /// The sink is made durable once, in [`Sink::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
