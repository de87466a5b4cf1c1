//! Downloads (DESIGN §1.6): a bounded number of files at once, each streamed to `<path>.part` while a
//! blocking worker decodes gzip, splits and checks lines, hashes and writes; the file is renamed to its
//! final name only when the byte count, line count and (in strict mode) every line check out. An
//! interrupted body resumes with `Range` when the server allows it, else starts again.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_RANGE, RANGE};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::export::manifest::PlannedFile;
use crate::fhir::outcome_text;
use crate::http::describe;
use crate::job::{DownloadSettings, Validate};
use crate::ndjson::{LineError, LineSplitter, check_line};
use crate::private_fs::{create_private_dir, create_private_file};
use crate::progress::Event;
use crate::record::{FileRecord, Problem};
use crate::redact::redact_query;
use crate::session::{Req, Session, TokenUse};

/// Problems kept per file (the counts are always exact).
const MAX_PROBLEMS_PER_FILE: usize = 20;
/// Chunks in flight between the network task and the file worker: bounds memory per download.
const CHANNEL_CHUNKS: usize = 4;
const WRITE_BUFFER: usize = 256 * 1024;
/// Report progress after this many bytes, not per chunk.
const PROGRESS_STEP: u64 = 256 * 1024;

/// One verified file.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub record: FileRecord,
    pub problems: Vec<Problem>,
}

/// How a download attempt ended when it did not produce a verified file.
enum Retry {
    /// Keep the `.part` and continue from its end.
    Resume(String),
    /// Delete the `.part` and start again.
    Restart(String),
}

pub fn part_path(final_path: &Path) -> PathBuf {
    let mut s = final_path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Downloads every file not already in `done`, `settings.concurrency` at a time. Returns the verified
/// files (those in `done` included) in manifest order; the first fatal error ends the whole batch
/// (remaining tasks are cancelled; `.part` files stay for a resume).
pub async fn download_all(
    session: Arc<Session>,
    run_dir: &Path,
    files: &[PlannedFile],
    settings: &DownloadSettings,
    requires_token: bool,
    done: &[FileRecord],
    mut on_verified: impl FnMut(&Downloaded),
) -> Result<Vec<Downloaded>> {
    let mut results: Vec<Option<Downloaded>> = vec![None; files.len()];
    let mut queue = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let final_path = run_dir.join(&f.path);
        // By path and type, not URL: a refreshed manifest has new (signed) URLs for the same files.
        match done.iter().find(|d| d.path == f.path && d.resource_type == f.resource_type) {
            Some(d) if final_path.exists() => {
                results[i] = Some(Downloaded { record: d.clone(), problems: Vec::new() });
            }
            _ => queue.push(i),
        }
    }
    let mut set: JoinSet<(usize, Result<Downloaded>)> = JoinSet::new();
    let mut next = queue.into_iter();
    let mut first_error: Option<Error> = None;
    let spawn = |set: &mut JoinSet<_>, i: usize| {
        let (session, file, settings) = (session.clone(), files[i].clone(), settings.clone());
        let dir = run_dir.to_path_buf();
        // In the caller's span, so log lines from a download carry the job's name.
        let task = async move { (i, download_one(&session, &dir, i, &file, &settings, requires_token).await) };
        set.spawn(tracing::Instrument::in_current_span(task));
    };
    for i in next.by_ref().take(settings.concurrency.max(1)) {
        spawn(&mut set, i);
    }
    while let Some(joined) = set.join_next().await {
        let (i, res) = joined.map_err(|e| Error::Failed(format!("a download task failed: {e}")))?;
        match res {
            Ok(d) => {
                on_verified(&d);
                results[i] = Some(d);
                if first_error.is_none()
                    && let Some(j) = next.next()
                {
                    spawn(&mut set, j);
                }
            }
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(e);
                }
                // Let the files in flight finish (they may complete), start no more.
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(results.into_iter().map(|r| r.expect("every file downloaded")).collect())
}

async fn download_one(
    session: &Session,
    run_dir: &Path,
    id: usize,
    file: &PlannedFile,
    settings: &DownloadSettings,
    requires_token: bool,
) -> Result<Downloaded> {
    let final_path = run_dir.join(&file.path);
    if let Some(parent) = final_path.parent() {
        create_private_dir(parent)?;
    }
    let part = part_path(&final_path);
    session.reporter.event(&Event::DownloadStarted { id, file });
    let mut failures = 0u32;
    loop {
        match attempt(session, id, file, &part, settings, requires_token).await? {
            Ok(d) => {
                fs::rename(&part, &final_path).map_err(|e| Error::io(&final_path, e))?;
                session.reporter.event(&Event::DownloadFinished {
                    id,
                    file,
                    lines: d.record.lines,
                    bytes: d.record.bytes,
                });
                return Ok(d);
            }
            Err(retry) => {
                let (reason, resume) = match retry {
                    Retry::Resume(r) => (r, true),
                    Retry::Restart(r) => (r, false),
                };
                if !resume {
                    let _ = fs::remove_file(&part);
                }
                if failures >= settings.retries {
                    session.reporter.event(&Event::DownloadFailed { id, file, reason: &reason });
                    return Err(Error::Transient(format!(
                        "{}: {reason} (after {} attempts); the run's state is kept: run again to resume",
                        file.path,
                        failures + 1
                    )));
                }
                let from = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
                session.reporter.event(&Event::DownloadRetry { id, file, reason: &reason, resume_from: from });
                let wait = session.policy.wait(failures, None, fastrand::f64());
                failures += 1;
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// One request for one file: `Ok(Ok(_))` verified, `Ok(Err(_))` worth another try, `Err` fatal.
async fn attempt(
    session: &Session,
    id: usize,
    file: &PlannedFile,
    part: &Path,
    settings: &DownloadSettings,
    requires_token: bool,
) -> Result<std::result::Result<Downloaded, Retry>> {
    let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut req = Req::get(file.url.clone(), file.path.clone()).header(ACCEPT, "application/fhir+ndjson");
    req.token = if requires_token { TokenUse::AllowedOrigins } else { TokenUse::Never };
    if have > 0 {
        // Ranges are over the stored representation: ask for identity so the bytes append cleanly.
        req = req.header(RANGE, &format!("bytes={have}-")).header(ACCEPT_ENCODING, "identity");
    } else {
        req = req.header(ACCEPT_ENCODING, "gzip");
    }
    let mut resp = session.send_streaming(&req).await?;
    let status = resp.status();
    let gzip = resp
        .headers()
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let append = match status {
        StatusCode::PARTIAL_CONTENT => {
            let start =
                resp.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok()).and_then(parse_content_range_start);
            if start != Some(have) || gzip {
                return Ok(Err(Retry::Restart(format!(
                    "the server answered a range request with a range starting at {start:?}, not {have}"
                ))));
            }
            true
        }
        StatusCode::OK => false,
        StatusCode::RANGE_NOT_SATISFIABLE => {
            return Ok(Err(Retry::Restart("range not satisfiable".into())));
        }
        s => {
            let body = crate::http::read_limited(resp, 64 * 1024).await.unwrap_or_default();
            let detail = format!(
                "HTTP {} fetching {}: {}",
                s.as_u16(),
                redact_query(&file.url),
                outcome_text(&body[..body.len().min(4096)])
            );
            return Err(match s.as_u16() {
                401 | 403 if !requires_token => Error::UrlExpired(file.path.clone()),
                401 | 403 => Error::AuthRefused { url: redact_query(&file.url), detail },
                _ => Error::Failed(detail),
            });
        }
    };
    let expected_len = if gzip { None } else { resp.content_length() };
    let offset = if append { have } else { 0 };
    session.reporter.event(&Event::DownloadOffset { id, offset });
    if let Some(n) = expected_len {
        session.reporter.event(&Event::DownloadLength { id, total: offset + n });
    }
    let (tx, mut rx) = mpsc::channel::<bytes::Bytes>(CHANNEL_CHUNKS);
    let writer = {
        let part = part.to_path_buf();
        let (settings, expected) = (settings.clone(), file.resource_type.clone());
        tokio::task::spawn_blocking(move || -> io::Result<Verifier> {
            let mut v = Verifier::new(&settings, expected);
            if append {
                v.replay(&part)?;
            }
            let f = if append { fs::OpenOptions::new().append(true).open(&part)? } else { create_private_file(&part)? };
            v.out = Some(BufWriter::with_capacity(WRITE_BUFFER, f));
            let mut sink = if gzip {
                Sink::Gzip(Box::new(flate2::write::MultiGzDecoder::new(v)))
            } else {
                Sink::Plain(Box::new(v))
            };
            while let Some(chunk) = rx.blocking_recv() {
                sink.write_all(&chunk)?;
            }
            let mut v = match sink {
                Sink::Plain(v) => *v,
                Sink::Gzip(g) => g.finish()?,
            };
            v.finish()?;
            Ok(v)
        })
    };
    let mut received = 0u64;
    let mut unreported = 0u64;
    let mut net_error = None;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                received += c.len() as u64;
                unreported += c.len() as u64;
                if unreported >= PROGRESS_STEP {
                    session.reporter.event(&Event::DownloadProgress { id, bytes: unreported });
                    unreported = 0;
                }
                if tx.send(c).await.is_err() {
                    break; // the worker failed; its error is reported below
                }
            }
            Ok(None) => break,
            Err(e) => {
                net_error = Some(describe(&e));
                break;
            }
        }
    }
    drop(tx);
    session.reporter.event(&Event::DownloadProgress { id, bytes: unreported });
    let verifier = writer.await.map_err(|e| Error::Failed(format!("file worker failed: {e}")))?;
    let v = match verifier {
        Ok(v) => v,
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
            return Err(Error::Failed(format!(
                "{}: larger than download.max_file_bytes ({} bytes); stopped",
                file.path, settings.max_file_bytes
            )));
        }
        Err(e) if gzip && matches!(e.kind(), io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData) => {
            return Ok(Err(Retry::Restart(format!("gzip body could not be decoded: {e}"))));
        }
        Err(e) => return Err(Error::io(part, e)),
    };
    if let Some(reason) = net_error {
        // What arrived is on disk and hashed; continue from there if the server allows ranges.
        return Ok(Err(if gzip { Retry::Restart(reason) } else { Retry::Resume(reason) }));
    }
    if let Some(n) = expected_len
        && received != n
    {
        return Ok(Err(Retry::Resume(format!("body was {received} bytes, Content-Length said {n}"))));
    }
    if let Some(count) = file.count
        && v.tally.lines != count
    {
        return Ok(Err(Retry::Restart(format!("{} resources in the file, the manifest said {count}", v.tally.lines))));
    }
    Ok(Ok(v.into_downloaded(file)))
}

/// `bytes 100-199/200` → 100.
pub fn parse_content_range_start(v: &str) -> Option<u64> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

enum Sink {
    Plain(Box<Verifier>),
    Gzip(Box<flate2::write::MultiGzDecoder<Verifier>>),
}

impl Sink {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(v) => v.write_all(b),
            Sink::Gzip(g) => g.write_all(b),
        }
    }
}

/// Counts, hashes, checks and writes the decoded bytes of one file.
struct Verifier {
    out: Option<BufWriter<File>>,
    hash: crate::digest::Sha256,
    splitter: LineSplitter,
    expected: String,
    validate: Validate,
    max_bytes: u64,
    bytes: u64,
    tally: Tally,
}

/// What the line checks found in one file.
#[derive(Default)]
struct Tally {
    lines: u64,
    invalid: u64,
    wrong_type: u64,
    /// The first problems, with their line numbers.
    problems: Vec<(u64, String)>,
}

impl Tally {
    fn line(&mut self, n: u64, line: std::result::Result<&[u8], LineError>, validate: Validate, expected: &str) {
        self.lines += 1;
        let res = match line {
            Err(e) => Err(e),
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

impl Verifier {
    fn new(settings: &DownloadSettings, expected: String) -> Self {
        Verifier {
            out: None,
            hash: crate::digest::Sha256::new(),
            splitter: LineSplitter::new(settings.max_line_bytes),
            expected,
            validate: settings.validate,
            max_bytes: settings.max_file_bytes,
            bytes: 0,
            tally: Tally::default(),
        }
    }

    /// Runs an existing `.part` through the checks (not the writer), so a resumed file's counts and
    /// hash cover all of it.
    fn replay(&mut self, part: &Path) -> io::Result<()> {
        let mut f = File::open(part)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            self.write_all(&buf[..n])?;
        }
    }

    fn check(&mut self, chunk: &[u8]) {
        let (tally, validate, expected) = (&mut self.tally, self.validate, self.expected.as_str());
        self.splitter.feed(chunk, &mut |n, line| tally.line(n, line, validate, expected));
    }

    fn finish(&mut self) -> io::Result<()> {
        let (tally, validate, expected) = (&mut self.tally, self.validate, self.expected.as_str());
        self.splitter.finish(&mut |n, line| tally.line(n, line, validate, expected));
        if let Some(mut w) = self.out.take() {
            w.flush()?;
            w.get_ref().sync_data()?;
        }
        Ok(())
    }

    fn into_downloaded(self, file: &PlannedFile) -> Downloaded {
        let sha256 = self.hash.finish_hex();
        let problems = self
            .tally
            .problems
            .iter()
            .map(|(line, message)| Problem {
                file: Some(file.path.clone()),
                line: Some(*line),
                message: message.clone(),
            })
            .collect();
        Downloaded {
            record: FileRecord {
                kind: file.kind,
                resource_type: file.resource_type.clone(),
                url: file.url.to_string(),
                path: file.path.clone(),
                expected_count: file.count,
                lines: self.tally.lines,
                bytes: self.bytes,
                sha256,
                invalid_lines: self.tally.invalid,
                wrong_type_lines: self.tally.wrong_type,
            },
            problems,
        }
    }
}

impl Write for Verifier {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes + buf.len() as u64 > self.max_bytes {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, "file larger than download.max_file_bytes"));
        }
        self.bytes += buf.len() as u64;
        self.hash.update(buf);
        self.check(buf);
        if let Some(w) = &mut self.out {
            w.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start() {
        assert_eq!(parse_content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(parse_content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(parse_content_range_start("items 1-2/3"), None);
        assert_eq!(parse_content_range_start("bytes */200"), None);
    }
}
