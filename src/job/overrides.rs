//! Command-line overrides (`--out`, `--since`), applied to a resolved [`Job`] once, when it is loaded, so
//! every later step (run, status, cancel, dry run) sees the same job.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::model::{Job, Since};
use crate::store::Location;

/// What the command line may override.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Instead of `download.dir`: a folder or a bucket URL (checked by [`Overrides::check`]).
    pub out: Option<PathBuf>,
    /// Instead of the job's `since`, for this run only.
    pub since: Option<OffsetDateTime>,
}

impl Overrides {
    /// `--out` parsed as `download.dir` is: a bucket URL must be well formed.
    pub fn check(&self) -> Result<(), String> {
        match &self.out {
            Some(out) => Location::from_path(out).map(drop).map_err(|e| format!("--out: {e}")),
            None => Ok(()),
        }
    }
}

impl Job {
    /// Applies `--out` (checked first with [`Overrides::check`]) and `--since`. `--out` is kept as
    /// given too ([`Job::out_given`]), for the commands the hints print.
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(out) = &o.out {
            self.download.dir = Location::from_path(out).unwrap_or_else(|_| Location::Local(out.clone()));
            self.out_given = Some(out.clone());
        }
        if let Some(t) = o.since {
            self.export.since = Since::At(t);
        }
    }

    /// `<download.dir>/<name>`: the job's runs, `latest` and state folder, a folder or a bucket prefix.
    pub fn job_location(&self) -> Location {
        self.download.dir.join(&self.name)
    }

    /// [`Job::job_location`] as a path: the folder on disk (for a bucket, its URL as text, for
    /// messages; code that reads or writes there goes through [`crate::store`]).
    pub fn job_dir(&self) -> PathBuf {
        match self.job_location() {
            Location::Local(p) => p,
            l => PathBuf::from(l.to_string()),
        }
    }

    /// The job file's path for messages and commands to copy (`oneup-bulk run <this>`).
    pub fn file_label(&self) -> String {
        self.source.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_else(|| format!("<{}>", self.name))
    }
}
