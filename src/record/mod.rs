//! The run record: the run folder's layout (DESIGN §4), owner-only files, `manifest.json` as received and
//! `run.json`, the run summary that is written last and marks a run complete.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;

pub mod matches;
pub mod summarize;
pub use matches::MemberMatchRecord;
pub mod warnings;
pub use summarize::{Rules, Summary, summarize};
pub use warnings::warnings;

pub const RUN_FILE: &str = "run.json";
/// A `$bulk-member-match` answer, beside the export it chose (Payer-to-Payer).
pub const MEMBER_MATCH_FILE: &str = "member-match.json";
/// Manifest pages followed through `link` next, at most.
pub const MAX_MANIFEST_PAGES: usize = 1_000;

/// `manifest.json` for page 1, `manifest.002.json` … for the following pages.
pub fn page_file_name(page: usize) -> String {
    if page <= 1 { "manifest.json".into() } else { format!("manifest.{page:03}.json") }
}
pub const MANIFEST_FILE: &str = "manifest.json";
pub const LOG_FILE: &str = "log.ndjson";
pub const LATEST: &str = "latest";
/// The `type` of a file that holds resources of several types: the output of an export organized by
/// a resource type (`organizeOutputBy`, Bulk Data v3), whose manifest entries have no `type`.
pub const MIXED: &str = "*";

/// What a finished run left behind.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run_dir: std::path::PathBuf,
    pub record: RunRecord,
    /// 0 complete, 5 complete with server-reported errors, 1 strict validation failed or a data file
    /// does not hold what the manifest counts.
    pub exit_code: u8,
}

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
    /// Payer-to-Payer: the member match that came before the export (who was matched, who not, who
    /// refused consent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_match: Option<MemberMatchRecord>,
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
    /// `error/OperationOutcome.ndjson`, `deleted/Bundle.ndjson`, `organized.001.ndjson`.
    pub path: String,
    /// Organized output: the path of the file this one's last resource block continues in (the
    /// manifest's `continuesInFile`, mapped to our name).
    pub continues_in: Option<String>,
}

impl PlannedFile {
    /// Resources of any type (organized output), rather than of one.
    pub fn mixed(&self) -> bool {
        self.resource_type == MIXED
    }
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
    /// Organized output (`type` is `*`): resources per type, counted from the content, the
    /// `Parameters` block headers included.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub types: BTreeMap<String, u64>,
    /// Organized output: the `Parameters` header lines that open each resource block.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub header_lines: u64,
    /// Organized output: the file the last resource block continues in (`continuesInFile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues_in: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl FileRecord {
    /// Whether the manifest's `count` (when it gave one) agrees with the file.
    pub fn count_agrees(&self) -> bool {
        count_agrees(self.expected_count, self.lines, self.header_lines)
    }
}

/// Whether a manifest `count` agrees with a file of `lines` resources, `headers` of them the
/// `Parameters` headers of organized output: the IG says "the number of resources in the file", and
/// servers differ on whether a header is one, so either reading is accepted.
pub fn count_agrees(count: Option<u64>, lines: u64, headers: u64) -> bool {
    match count {
        None => true,
        Some(c) => c == lines || (headers > 0 && c == lines - headers.min(lines)),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    /// Data files (the manifest's `output[]`), their resources and bytes: the export itself.
    pub files: u64,
    pub resources: u64,
    pub bytes: u64,
    /// The server's `error[]` files: how many, their OperationOutcome lines, their bytes.
    pub error_files: u64,
    pub server_errors: u64,
    #[serde(default)]
    pub error_bytes: u64,
    /// The `deleted[]` files: how many, their entries (Bundles of deleted ids), their bytes.
    #[serde(default)]
    pub deleted_files: u64,
    #[serde(default)]
    pub deleted_entries: u64,
    #[serde(default)]
    pub deleted_bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Problem {
    /// Relative path of the file, or `None` for run-level problems.
    pub file: Option<String>,
    pub line: Option<u64>,
    pub message: String,
}

/// The filesystem-safe run id for a `transactionTime`, always in UTC: `2024-05-01T12:00:00.123Z` →
/// `20240501T120000.123Z`, and `2024-05-01T07:00:00.123-05:00` names the same folder (the manifest's
/// own string stays in `run.json`). Fractional seconds are kept as the server wrote them.
pub fn run_id(transaction_time: &str) -> String {
    if let Some(t) = crate::instant::parse_strict(transaction_time) {
        let t = t.to_offset(time::UtcOffset::UTC);
        // The fraction as written (an offset is whole minutes, so converting never changes it).
        let fraction = transaction_time
            .split_once('.')
            .map(|(_, rest)| rest.chars().take_while(char::is_ascii_digit).take(9).collect::<String>())
            .filter(|f| !f.is_empty())
            .map(|f| format!(".{f}"))
            .unwrap_or_default();
        return format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}{fraction}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
    }
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

/// Points `<job dir>/latest` at a run folder (a relative symlink, replaced atomically).
pub fn point_latest(job_dir: &Path, run_id: &str) -> Result<()> {
    crate::store::Dir::Local(job_dir.to_path_buf()).point_latest(run_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_filesystem_safe() {
        assert_eq!(run_id("2024-05-01T12:00:00.123Z"), "20240501T120000.123Z");
        assert_eq!(run_id("../../etc"), "run.._.._etc");
        assert_eq!(run_id(""), "run");
    }

    #[test]
    fn run_ids_are_utc_whatever_the_offset() {
        // The SMART reference server writes `+00:00`; others write local offsets.
        assert_eq!(run_id("2026-12-02T01:50:23+00:00"), "20261202T015023Z");
        assert_eq!(run_id("2026-12-02T01:50:23Z"), "20261202T015023Z");
        assert_eq!(run_id("2024-05-01T12:00:00+02:00"), "20240501T100000Z");
        assert_eq!(run_id("2024-05-01T07:00:00.123-05:00"), "20240501T120000.123Z");
        assert_eq!(run_id("2024-12-31T23:30:00.5-01:00"), "20250101T003000.5Z");
        assert_eq!(run_id("2024-05-01t12:00:00.000001z"), "20240501T120000.000001Z");
    }

    #[test]
    fn counts_agree_with_or_without_organized_headers() {
        assert!(count_agrees(None, 3, 0));
        assert!(count_agrees(Some(3), 3, 0));
        assert!(!count_agrees(Some(2), 3, 0));
        // 2 blocks: 2 headers + 8 resources; a server may count 10 or 8.
        assert!(count_agrees(Some(10), 10, 2));
        assert!(count_agrees(Some(8), 10, 2));
        assert!(!count_agrees(Some(9), 10, 2));
    }
}
