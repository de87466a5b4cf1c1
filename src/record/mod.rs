//! The run record: the run folder's layout (DESIGN §4), owner-only files, `manifest.json` as received and
//! `run.json`, the run summary that is written last and marks a run complete.

use serde::{Deserialize, Serialize};

pub mod summarize;
pub use summarize::{Summary, summarize};

pub const RUN_FILE: &str = "run.json";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const LOG_FILE: &str = "log.ndjson";
pub use crate::store::LATEST;

/// `run.json`. Field names are a stable interface (scripts and `inspect` read them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    /// `oneup-bulk <version>`.
    pub tool: String,
    pub job: JobInfo,
    /// The kick-off URL (with query for GET kick-offs).
    pub request: String,
    pub status_url: String,
    #[serde(rename = "transactionTime")]
    pub transaction_time: String,
    pub run_id: String,
    /// RFC 3339 times.
    pub started: String,
    pub manifest_received: String,
    pub finished: String,
    /// `_since` sent, if any.
    pub since: Option<String>,
    pub files: Vec<FileRecord>,
    pub totals: Totals,
    pub problems: Vec<Problem>,
    /// Things that did not fail the run but deserve a look (a type asked for and not exported, a count
    /// the server got wrong in `error[]`, …). Also shown in the summary and the log.
    #[serde(default)]
    pub warnings: Vec<Problem>,
    /// True when every file is on disk and verified; the server may still have reported `error[]`.
    pub complete: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobInfo {
    pub name: String,
    pub file: Option<String>,
    pub access: String,
    pub fhir_base: String,
}

impl JobInfo {
    pub fn of(job: &crate::job::Job) -> Self {
        JobInfo {
            name: job.name.clone(),
            file: job.source.as_ref().map(|p| p.display().to_string()),
            access: job.access.as_str().to_string(),
            fhir_base: job.fhir_base.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Output,
    Error,
    Deleted,
}

/// One file to download, with its place in the run folder.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFile {
    pub kind: FileKind,
    pub resource_type: String,
    pub url: url::Url,
    pub count: Option<u64>,
    /// Relative to the run folder, `/`-separated: `Patient.ndjson`, `Patient.002.ndjson`,
    /// `error/OperationOutcome.ndjson`, `deleted/Bundle.ndjson`.
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    pub kind: FileKind,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub url: String,
    /// Relative to the run folder, `/`-separated.
    pub path: String,
    /// The manifest's `count`, when it gave one.
    pub expected_count: Option<u64>,
    /// Non-blank lines (resources).
    pub lines: u64,
    /// Bytes on disk (after gzip decoding).
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the bytes on disk.
    pub sha256: String,
    pub invalid_lines: u64,
    pub wrong_type_lines: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    pub files: u64,
    pub resources: u64,
    pub bytes: u64,
    pub error_files: u64,
    pub server_errors: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Problem {
    /// Relative path of the file, or `None` for run-level problems.
    pub file: Option<String>,
    pub line: Option<u64>,
    pub message: String,
}

/// The filesystem-safe run id for a `transactionTime`: `2024-05-01T12:00:00.123Z` → `20240501T120000.123Z`.
pub fn run_id(transaction_time: &str) -> String {
    let mut id: String = transaction_time
        .chars()
        .filter_map(|c| match c {
            '-' | ':' => None,
            '+' => Some('p'),
            c if c.is_ascii_alphanumeric() || c == '.' => Some(c),
            _ => Some('_'),
        })
        .collect();
    id.truncate(64);
    if id.is_empty() || id.starts_with('.') {
        id.insert_str(0, "run");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_filesystem_safe() {
        assert_eq!(run_id("2024-05-01T12:00:00.123Z"), "20240501T120000.123Z");
        assert_eq!(run_id("2024-05-01T12:00:00+02:00"), "20240501T120000p0200");
        assert_eq!(run_id("../../etc"), "run.._.._etc");
        assert_eq!(run_id(""), "run");
    }
}
