//! Progress is a side channel: core code reports [`Event`]s to a [`Reporter`]; only this module draws.
//! A [`Display`] hands each job its own reporter, so several jobs in one command keep their own lines
//! and counters (download ids restart at 0 in every job). On a terminal: [`Bars`], a labelled group
//! of lines per job. Elsewhere (cron, CI, `--no-progress`, JSON logs): [`Plain`], one log line per
//! event through `tracing`, inside the job's span. [`Capture`] records both for tests.
//!
//! [`view`] turns one job's events into state and counters, [`render`] turns that state into lines
//! that fit the width, [`units`] formats bytes, durations and counts the same way everywhere.

mod bars;
mod capture;
mod plain;
pub mod render;
pub mod units;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use crate::record::FileRecord;
use crate::record::PlannedFile;

pub use bars::{Bars, above_bars};
pub use capture::Capture;
pub use plain::Plain;

/// What happened. Borrowed data only: reporting must cost nothing when nobody listens.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    TokenObtained {
        expires_in: Option<u64>,
    },
    KickedOff {
        status_url: &'a str,
    },
    Resumed {
        status_url: &'a str,
    },
    Polling {
        elapsed: Duration,
        progress: Option<&'a str>,
        next_in: Duration,
    },
    Retrying {
        what: &'a str,
        attempt: u32,
        of: u32,
        wait: Duration,
        reason: &'a str,
    },
    /// The manifest is in; downloads begin. `planned` is every file to fetch (data, error and deleted
    /// files); `verified` are those an earlier attempt already verified (they are not fetched again).
    ManifestReady {
        files: usize,
        resources: Option<u64>,
        planned: &'a [PlannedFile],
        verified: &'a [FileRecord],
    },
    /// The size follows in `DownloadLength` once the response says it.
    DownloadStarted {
        id: usize,
        file: &'a PlannedFile,
    },
    /// Once per attempt, when the response is in: the body continues the file from `offset` bytes
    /// (0: from the start). Not new bytes: a display moves its position, it does not count it as speed.
    DownloadOffset {
        id: usize,
        offset: u64,
    },
    /// The file's full size, once the response says it.
    DownloadLength {
        id: usize,
        total: u64,
    },
    /// Bytes received for a file since the last report.
    DownloadProgress {
        id: usize,
        bytes: u64,
    },
    DownloadFinished {
        id: usize,
        file: &'a PlannedFile,
        lines: u64,
        bytes: u64,
    },
    DownloadRetry {
        id: usize,
        file: &'a PlannedFile,
        reason: &'a str,
        resume_from: u64,
    },
    DownloadFailed {
        id: usize,
        file: &'a PlannedFile,
        reason: &'a str,
    },
    Note {
        message: &'a str,
    },
    /// Something that did not fail the run but deserves a look (also in `run.json` and the summary).
    Warning {
        message: &'a str,
    },
}

pub trait Reporter: Send + Sync {
    fn event(&self, event: &Event<'_>);
    /// Called once when the job is over: its lines are cleared (and only its lines).
    fn finish(&self) {}
}

/// Where the jobs of one command show their progress.
pub trait Display: Send + Sync {
    /// The reporter of one job; what it shows is labelled with the job's name.
    fn for_job(&self, job: &str) -> Arc<dyn Reporter>;
    /// Prints text to stdout (a summary) without tearing the lines being drawn.
    fn print(&self, text: &str) {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
    /// Prints a line for a person to stderr (an error) without tearing the lines being drawn.
    fn eprint(&self, text: &str) {
        eprint!("{text}");
    }
    /// Clears everything still drawn (at the end, or on Ctrl-C).
    fn finish(&self) {}
}

/// Reports nothing (library use, tests, `--quiet`).
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: &Event<'_>) {}
}

impl Display for Silent {
    fn for_job(&self, _: &str) -> Arc<dyn Reporter> {
        Arc::new(Silent)
    }
}

/// Sends every event to several reporters (the display and the run's event log).
pub struct Tee(pub Vec<Arc<dyn Reporter>>);

impl Reporter for Tee {
    fn event(&self, event: &Event<'_>) {
        for r in &self.0 {
            r.event(event);
        }
    }

    fn finish(&self) {
        for r in &self.0 {
            r.finish();
        }
    }
}

/// Whole seconds for log fields that are not about waiting (elapsed times).
fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}
