//! Command-line overrides (`--out`, `--since`), applied to a resolved [`Job`] once, when it is loaded, so
//! every later step (run, status, cancel, dry run) sees the same job.

use std::path::Path;

use time::OffsetDateTime;

use super::model::{Job, Since};
use crate::store::Location;

/// What the command line may override.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Instead of `download.dir`.
    pub out: Option<Location>,
    /// Instead of the job's `since`, for this run only.
    pub since: Option<OffsetDateTime>,
}

impl Job {
    /// Applies `--out` and `--since`.
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(out) = &o.out {
            self.download.dir = out.clone();
        }
        if let Some(t) = o.since {
            self.export.since = Since::At(t);
        }
    }

    /// `<download.dir>/<name>`: the job's runs, `latest` and state folder.
    pub fn job_dir(&self) -> Location {
        self.download.dir.join(&self.name)
    }

    /// The job file's path for messages and commands to copy (`oneup-bulk run <this>`).
    pub fn file_label(&self) -> String {
        self.source.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_else(|| format!("<{}>", self.name))
    }
}
