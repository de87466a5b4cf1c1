//! [`Capture`]: a display that keeps what it was told, per job, for tests: every event in a short text
//! form, the job's [`JobView`] (the counters the bars would show), its rendered lines at any width,
//! whether `finish()` was called, and what was printed to stdout through it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::render::{Layout, job_lines};
use super::view::JobView;
use super::{Display, Event, Reporter};

#[derive(Default)]
pub struct Capture {
    jobs: Mutex<BTreeMap<String, Arc<Captured>>>,
    names: Mutex<Vec<String>>,
    printed: Mutex<String>,
}

struct Captured {
    events: Mutex<Vec<String>>,
    view: Mutex<JobView>,
    finished: Mutex<bool>,
}

impl Capture {
    pub fn new() -> Self {
        Self::default()
    }

    fn job(&self, name: &str) -> Arc<Captured> {
        self.jobs.lock().expect("jobs").get(name).cloned().unwrap_or_else(|| panic!("no job {name} was shown"))
    }

    /// Jobs in the order they asked for a reporter.
    pub fn jobs(&self) -> Vec<String> {
        self.names.lock().expect("names").clone()
    }

    pub fn events(&self, job: &str) -> Vec<String> {
        self.job(job).events.lock().expect("events").clone()
    }

    pub fn view(&self, job: &str) -> JobView {
        self.job(job).view.lock().expect("view").clone()
    }

    pub fn finished(&self, job: &str) -> bool {
        *self.job(job).finished.lock().expect("finished")
    }

    /// The job's lines as the bars would draw them on a terminal of `columns`, now.
    pub fn lines(&self, job: &str, columns: usize) -> Vec<String> {
        let layout = Layout::new(columns, &self.jobs(), false);
        job_lines(&self.view(job), &layout, Instant::now())
    }

    /// What was printed to stdout through [`Display::print`].
    pub fn printed(&self) -> String {
        self.printed.lock().expect("printed").clone()
    }
}

impl Display for Capture {
    fn for_job(&self, job: &str) -> Arc<dyn Reporter> {
        let c = Arc::new(Captured {
            events: Mutex::new(Vec::new()),
            view: Mutex::new(JobView::new(job, Instant::now())),
            finished: Mutex::new(false),
        });
        self.jobs.lock().expect("jobs").insert(job.to_string(), c.clone());
        self.names.lock().expect("names").push(job.to_string());
        Arc::new(CaptureJob(c))
    }

    fn print(&self, text: &str) {
        self.printed.lock().expect("printed").push_str(text);
    }

    fn eprint(&self, _: &str) {}
}

struct CaptureJob(Arc<Captured>);

impl Reporter for CaptureJob {
    fn event(&self, event: &Event<'_>) {
        self.0.events.lock().expect("events").push(describe(event));
        self.0.view.lock().expect("view").apply(event, Instant::now());
    }

    fn finish(&self) {
        *self.0.finished.lock().expect("finished") = true;
    }
}

/// One event in a line: its name, and the fields a test compares (no URLs, no times).
pub fn describe(event: &Event<'_>) -> String {
    match event {
        Event::TokenObtained { .. } => "token".into(),
        Event::KickedOff { .. } => "kicked off".into(),
        Event::Resumed { .. } => "resumed".into(),
        Event::Polling { progress, .. } => format!("polling {}", progress.unwrap_or("")),
        Event::Retrying { what, attempt, of, .. } => format!("retrying {what} {attempt}/{of}"),
        Event::ManifestReady { files, verified, .. } => format!("manifest {files} files, {} verified", verified.len()),
        Event::DownloadStarted { id, file } => format!("start {id} {}", file.path),
        Event::DownloadOffset { id, offset } => format!("offset {id} {offset}"),
        Event::DownloadLength { id, total } => format!("length {id} {total}"),
        Event::DownloadProgress { id, bytes } => format!("bytes {id} {bytes}"),
        Event::DownloadFinished { id, file, lines, bytes } => {
            format!("done {id} {} {lines} lines {bytes} bytes", file.path)
        }
        Event::DownloadRetry { id, file, resume_from, .. } => format!("retry {id} {} from {resume_from}", file.path),
        Event::DownloadFailed { id, file, .. } => format!("failed {id} {}", file.path),
        Event::Note { message } => format!("note {message}"),
        Event::Warning { message } => format!("warning {message}"),
    }
}
