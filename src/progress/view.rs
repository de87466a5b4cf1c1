//! What one job's display knows, built from that job's events alone: its phase, the files in flight,
//! and the counters of its overall line. Pure: every call takes the instant, so tests drive it with a
//! made-up clock and the terminal drives it with the real one.
//!
//! Counting rules (the summary counts the same way): "files" are data files, the manifest's `output`;
//! `error[]` and `deleted[]` files are counted apart. Bytes are bytes received (after a resumed
//! offset), the speed only counts bytes that arrived over the network in this process.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::Event;
use super::units::clean;
use crate::record::FileKind;

/// Where the job is.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Before the first event: getting a token (or discovering the token URL).
    Starting,
    Token,
    KickedOff,
    Resumed,
    /// The server answered 202: X-Progress, the export's age when it was said, when the next check is.
    Waiting {
        progress: Option<String>,
        export_elapsed: Duration,
        at: Instant,
        next_at: Instant,
    },
    /// A request is being retried after a transient fault.
    Retrying {
        what: String,
        attempt: u32,
        of: u32,
        until: Instant,
        reason: String,
    },
    Downloading,
}

/// A file being downloaded.
#[derive(Debug, Clone, PartialEq)]
pub struct FileView {
    pub path: String,
    pub kind: FileKind,
    /// The full size, once a response said it.
    pub total: Option<u64>,
    /// Bytes of the file so far (a resumed offset included).
    pub pos: u64,
    /// Set between a failed attempt and the next one.
    pub retrying: Option<String>,
}

/// A file that is done (verified, or verified by an earlier run and skipped).
#[derive(Debug, Clone, PartialEq)]
struct Landed {
    kind: FileKind,
    bytes: u64,
    lines: u64,
}

/// The overall line's numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Data files (the manifest's `output`): planned and verified.
    pub files: usize,
    pub files_done: usize,
    /// `error[]` and `deleted[]` files, planned and verified; never in `files`.
    pub error_files: usize,
    pub error_files_done: usize,
    pub deleted_files: usize,
    pub deleted_files_done: usize,
    /// Files that failed for good.
    pub failed: usize,
    /// Resources in verified data files, and the manifest's total `count` when it gave one.
    pub resources_done: u64,
    pub resources_expected: Option<u64>,
    /// Data bytes done (verified files + files in flight) and known (verified + announced sizes).
    pub bytes_done: u64,
    pub bytes_known: u64,
    /// True once every data file's size is known (none waiting, none of unknown size in flight).
    pub sizes_known: bool,
}

/// Bytes per second over the last few seconds, from bytes that arrived (never from offsets).
#[derive(Debug, Clone, Default)]
struct Rate {
    samples: VecDeque<(Instant, u64)>,
    received: u64,
}

const RATE_WINDOW: Duration = Duration::from_secs(5);
const RATE_MIN_SPAN: Duration = Duration::from_millis(500);

impl Rate {
    fn add(&mut self, at: Instant, n: u64) {
        // The first chunk took an unknown time to come: it starts the clock, it is not a rate.
        self.received += n;
        self.samples.push_back((at, self.received));
        while self.samples.len() > 2 && self.samples[1].0 + RATE_WINDOW < at {
            self.samples.pop_front();
        }
    }

    fn per_sec(&self, now: Instant) -> Option<f64> {
        let (t0, b0) = *self.samples.front()?;
        let span = now.saturating_duration_since(t0);
        (span >= RATE_MIN_SPAN).then(|| (self.received - b0) as f64 / span.as_secs_f64())
    }
}

/// One job's display state.
#[derive(Debug, Clone)]
pub struct JobView {
    pub job: String,
    pub started: Instant,
    pub phase: Phase,
    /// Files in flight, by download id (ids are per job).
    pub active: BTreeMap<usize, FileView>,
    planned: Vec<FileKind>,
    resources_expected: Option<u64>,
    /// Verified files by path: by an earlier run (from the manifest event) or in this one.
    landed: BTreeMap<String, Landed>,
    failed: usize,
    rate: Rate,
    pub downloads_started: Option<Instant>,
}

impl JobView {
    pub fn new(job: &str, now: Instant) -> Self {
        JobView {
            job: job.to_string(),
            started: now,
            phase: Phase::Starting,
            active: BTreeMap::new(),
            planned: Vec::new(),
            resources_expected: None,
            landed: BTreeMap::new(),
            failed: 0,
            rate: Rate::default(),
            downloads_started: None,
        }
    }

    /// Takes one event in. Returns a line to print above the bars, if the event deserves one.
    pub fn apply(&mut self, event: &Event<'_>, now: Instant) -> Option<String> {
        match event {
            Event::TokenObtained { .. } => {
                if matches!(self.phase, Phase::Starting | Phase::Token) {
                    self.phase = Phase::Token;
                }
            }
            Event::KickedOff { .. } => self.phase = Phase::KickedOff,
            Event::Resumed { .. } => self.phase = Phase::Resumed,
            Event::Polling { elapsed, progress, next_in } => {
                self.phase = Phase::Waiting {
                    progress: progress.map(clean),
                    export_elapsed: *elapsed,
                    at: now,
                    next_at: now + *next_in,
                }
            }
            Event::Retrying { what, attempt, of, wait, reason } => {
                let line =
                    format!("retry {attempt}/{of} of {what} in {}: {}", super::units::wait(*wait), clean(reason));
                if self.phase != Phase::Downloading {
                    self.phase = Phase::Retrying {
                        what: clean(what),
                        attempt: *attempt,
                        of: *of,
                        until: now + *wait,
                        reason: clean(reason),
                    };
                }
                return Some(line);
            }
            Event::ManifestReady { planned, verified, resources, .. } => {
                self.phase = Phase::Downloading;
                self.downloads_started = Some(now);
                self.planned = planned.iter().map(|f| f.kind).collect();
                self.resources_expected = *resources;
                for v in verified.iter() {
                    self.landed.insert(v.path.clone(), Landed { kind: v.kind, bytes: v.bytes, lines: v.lines });
                }
            }
            Event::DownloadStarted { id, file } => {
                self.phase = Phase::Downloading;
                // A file an earlier run verified but that is fetched again counts once.
                self.landed.remove(&file.path);
                self.active.insert(
                    *id,
                    FileView { path: file.path.clone(), kind: file.kind, total: None, pos: 0, retrying: None },
                );
            }
            Event::DownloadOffset { id, offset } => {
                if let Some(f) = self.active.get_mut(id) {
                    f.pos = *offset;
                    f.retrying = None;
                }
            }
            Event::DownloadLength { id, total } => {
                if let Some(f) = self.active.get_mut(id) {
                    f.total = Some(*total);
                    f.retrying = None;
                }
            }
            Event::DownloadProgress { id, bytes } => {
                if let Some(f) = self.active.get_mut(id) {
                    f.pos += bytes;
                    if f.kind == FileKind::Output {
                        self.rate.add(now, *bytes);
                    }
                }
            }
            Event::DownloadFinished { id, file, lines, bytes } => {
                // Received bytes when the transfer said them (gzip: the compressed size), else on disk.
                let got = self.active.remove(id).map(|f| f.pos).filter(|&p| p > 0).unwrap_or(*bytes);
                self.landed.insert(file.path.clone(), Landed { kind: file.kind, bytes: got, lines: *lines });
            }
            Event::DownloadRetry { id, file, reason, resume_from } => {
                if let Some(f) = self.active.get_mut(id) {
                    f.pos = *resume_from;
                    f.retrying = Some(clean(reason));
                }
                return Some(format!(
                    "retrying {} from {}: {}",
                    file.path,
                    super::units::bytes(*resume_from),
                    clean(reason)
                ));
            }
            Event::DownloadFailed { id, file, reason } => {
                self.active.remove(id);
                self.failed += 1;
                return Some(format!("failed {}: {}", file.path, clean(reason)));
            }
            Event::Note { message } => return Some(clean(message)),
            Event::Warning { message } => return Some(format!("warning: {}", clean(message))),
        }
        None
    }

    pub fn counters(&self) -> Counters {
        let count = |k: FileKind| self.planned.iter().filter(|&&p| p == k).count();
        let mut c = Counters {
            files: count(FileKind::Output),
            error_files: count(FileKind::Error),
            deleted_files: count(FileKind::Deleted),
            failed: self.failed,
            resources_expected: self.resources_expected,
            ..Counters::default()
        };
        let mut sized_data = 0;
        for l in self.landed.values() {
            match l.kind {
                FileKind::Output => {
                    c.files_done += 1;
                    c.resources_done += l.lines;
                    c.bytes_done += l.bytes;
                    c.bytes_known += l.bytes;
                    sized_data += 1;
                }
                FileKind::Error => c.error_files_done += 1,
                FileKind::Deleted => c.deleted_files_done += 1,
            }
        }
        let mut unknown_in_flight = 0;
        for f in self.active.values().filter(|f| f.kind == FileKind::Output) {
            c.bytes_done += f.pos;
            match f.total {
                Some(t) => {
                    c.bytes_known += t.max(f.pos);
                    sized_data += 1;
                }
                None => {
                    c.bytes_known += f.pos;
                    unknown_in_flight += 1;
                }
            }
        }
        c.sizes_known = unknown_in_flight == 0 && sized_data + self.failed >= c.files;
        c
    }

    /// Data bytes per second lately, once there is enough to say.
    pub fn rate(&self, now: Instant) -> Option<f64> {
        self.rate.per_sec(now)
    }

    /// Time left, and whether it is exact (every size known) or estimated from the average size of the
    /// files seen so far.
    pub fn eta(&self, now: Instant) -> Option<(Duration, bool)> {
        let rate = self.rate(now).filter(|r| *r > 0.0)?;
        let c = self.counters();
        let mut left = c.bytes_known.saturating_sub(c.bytes_done) as f64;
        if !c.sizes_known {
            let sized: Vec<u64> = self
                .landed
                .values()
                .filter(|l| l.kind == FileKind::Output)
                .map(|l| l.bytes)
                .chain(self.active.values().filter(|f| f.kind == FileKind::Output).filter_map(|f| f.total))
                .collect();
            if sized.is_empty() {
                return None;
            }
            let avg = sized.iter().sum::<u64>() as f64 / sized.len() as f64;
            let in_flight = self.active.values().filter(|f| f.kind == FileKind::Output).count();
            let waiting = c.files.saturating_sub(c.files_done + in_flight + self.failed);
            let unknown: f64 = self
                .active
                .values()
                .filter(|f| f.kind == FileKind::Output && f.total.is_none())
                .map(|f| (avg - f.pos as f64).max(0.0))
                .sum();
            left += unknown + avg * waiting as f64;
        }
        Some((Duration::from_secs_f64(left / rate), c.sizes_known))
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
