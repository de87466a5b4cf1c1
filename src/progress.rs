//! Progress is a side channel: core code reports [`Event`]s to a [`Reporter`]; this module alone knows
//! indicatif. On a terminal: a spinner while the server works, then an overall bar and a bar per active
//! download. Elsewhere (cron, CI, `--no-progress`): one plain line per event through `tracing`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::record::PlannedFile;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

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
    ManifestReady {
        files: usize,
        resources: Option<u64>,
    },
    /// The size follows in `DownloadLength` once the response says it.
    DownloadStarted {
        id: usize,
        file: &'a PlannedFile,
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
    /// Called once at the end, so bars are cleared before the summary prints.
    fn finish(&self) {}
}

/// Reports nothing (library use, tests).
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: &Event<'_>) {}
}

/// One plain log line per event (not per chunk), through `tracing` so `--log-format json` applies.
pub struct Plain;

impl Reporter for Plain {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::TokenObtained { expires_in } => {
                tracing::debug!(?expires_in, "access token obtained")
            }
            Event::KickedOff { status_url } => tracing::info!(status_url, "export started"),
            Event::Resumed { status_url } => {
                tracing::info!(status_url, "resuming the export in flight")
            }
            Event::Polling { elapsed, progress, next_in } => tracing::info!(
                elapsed = %humantime::format_duration(round(*elapsed)),
                progress = progress.unwrap_or(""),
                next_poll_in = %humantime::format_duration(round(*next_in)),
                "export in progress"
            ),
            Event::Retrying { what, attempt, of, wait, reason } => tracing::warn!(
                what, attempt, of, wait = %humantime::format_duration(round(*wait)), reason, "retrying"
            ),
            Event::ManifestReady { files, resources } => {
                tracing::info!(files, resources, "export complete; downloading")
            }
            Event::DownloadStarted { file, .. } => tracing::debug!(path = file.path, "download started"),
            Event::DownloadProgress { .. } | Event::DownloadLength { .. } => {}
            Event::DownloadFinished { file, lines, bytes, .. } => {
                tracing::info!(path = file.path, resources = lines, bytes, "file verified")
            }
            Event::DownloadRetry { file, reason, resume_from, .. } => {
                tracing::warn!(path = file.path, reason, resume_from, "download interrupted; retrying")
            }
            Event::DownloadFailed { file, reason, .. } => {
                tracing::error!(path = file.path, reason, "download failed")
            }
            Event::Note { message } => tracing::info!("{message}"),
            Event::Warning { message } => tracing::warn!("{message}"),
        }
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// Terminal bars.
pub struct Bars {
    multi: MultiProgress,
    spinner: ProgressBar,
    overall: Mutex<Option<ProgressBar>>,
    /// One bar per download slot, reused: adding and removing bars while drawing leaves stray lines.
    slots: Mutex<Vec<(ProgressBar, Option<usize>)>>,
    bytes: AtomicU64,
}

const IDLE: &str = "";
const FILE_UNKNOWN_SIZE: &str = "  {msg:32!} {bytes:>10} {binary_bytes_per_sec:>12}";
const FILE_SIZED: &str = "  {msg:32!} {bytes:>10} / {total_bytes:<10} {binary_bytes_per_sec:>12} [{bar:24}] {eta:>4}";

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("template").progress_chars("=> ")
}

impl Bars {
    pub fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let spinner = multi.add(ProgressBar::new_spinner());
        spinner.set_style(ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("template"));
        spinner.enable_steady_tick(Duration::from_millis(120));
        spinner.set_message("requesting an access token");
        Bars { multi, spinner, overall: Mutex::new(None), slots: Mutex::new(Vec::new()), bytes: AtomicU64::new(0) }
    }

    fn with_bar(&self, id: usize, f: impl FnOnce(&ProgressBar)) {
        if let Some((b, _)) = self.slots.lock().expect("lock").iter().find(|(_, s)| *s == Some(id)) {
            f(b);
        }
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for Bars {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::TokenObtained { .. } => self.spinner.set_message("starting the export"),
            Event::KickedOff { .. } => self.spinner.set_message("export started; waiting for the server"),
            Event::Resumed { .. } => self.spinner.set_message("resuming the export in flight"),
            Event::Polling { progress, next_in, .. } => self.spinner.set_message(format!(
                "server working{} (next check in {})",
                progress.map(|p| format!(": {p}")).unwrap_or_default(),
                humantime::format_duration(round(*next_in))
            )),
            Event::Retrying { what, attempt, of, wait, reason } => {
                let _ = self.multi.println(format!(
                    "  retry {attempt}/{of} of {what} in {}: {reason}",
                    humantime::format_duration(round(*wait))
                ));
            }
            Event::ManifestReady { files, .. } => {
                self.spinner.finish_and_clear();
                self.multi.remove(&self.spinner);
                let bar = self.multi.add(ProgressBar::new(*files as u64));
                bar.set_style(
                    ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} files  {msg}  {elapsed}")
                        .expect("template")
                        .progress_chars("=> "),
                );
                bar.set_prefix("download");
                *self.overall.lock().expect("lock") = Some(bar);
            }
            Event::DownloadStarted { id, file } => {
                let mut slots = self.slots.lock().expect("lock");
                let i = match slots.iter().position(|(_, s)| s.is_none()) {
                    Some(i) => i,
                    None => {
                        slots.push((self.multi.add(ProgressBar::hidden()), None));
                        slots.len() - 1
                    }
                };
                let (bar, slot) = &mut slots[i];
                *slot = Some(*id);
                bar.reset();
                bar.set_length(0);
                bar.set_style(style(FILE_UNKNOWN_SIZE));
                bar.set_message(file.path.clone());
            }
            Event::DownloadLength { id, total } => self.with_bar(*id, |b| {
                b.set_length(*total);
                b.set_style(style(FILE_SIZED));
            }),
            Event::DownloadProgress { id, bytes } => {
                self.with_bar(*id, |b| b.inc(*bytes));
                let total = self.bytes.fetch_add(*bytes, Ordering::Relaxed) + bytes;
                if let Some(o) = &*self.overall.lock().expect("lock") {
                    o.set_message(indicatif::HumanBytes(total).to_string());
                }
            }
            Event::DownloadFinished { id, .. } | Event::DownloadFailed { id, .. } => {
                if let Some((b, slot)) = self.slots.lock().expect("lock").iter_mut().find(|(_, s)| *s == Some(*id)) {
                    *slot = None;
                    b.set_style(style(IDLE));
                    b.set_message("");
                }
                if let Some(o) = &*self.overall.lock().expect("lock") {
                    o.inc(1);
                }
                if let Event::DownloadFailed { file, reason, .. } = event {
                    let _ = self.multi.println(format!("  failed {}: {reason}", file.path));
                }
            }
            Event::DownloadRetry { id, file, reason, resume_from } => {
                self.with_bar(*id, |b| b.set_position(*resume_from));
                let _ = self.multi.println(format!("  retrying {} from byte {resume_from}: {reason}", file.path));
            }
            Event::Note { message } => {
                let _ = self.multi.println(format!("  {message}"));
            }
            Event::Warning { message } => {
                let _ = self.multi.println(format!("  warning: {message}"));
            }
        }
    }

    fn finish(&self) {
        self.spinner.finish_and_clear();
        if let Some(o) = self.overall.lock().expect("lock").take() {
            o.finish_and_clear();
        }
        for (b, _) in self.slots.lock().expect("lock").drain(..) {
            b.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// Sends every event to several reporters (the display and the run's event log).
pub struct Tee(pub Vec<std::sync::Arc<dyn Reporter>>);

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
