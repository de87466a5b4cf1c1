//! The run record: the run folder's layout (DESIGN §4), owner-only files, `manifest.json` as received and
//! `run.json`, the run summary that is written last and marks a run complete.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const RUN_FILE: &str = "run.json";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const LOG_FILE: &str = "log.ndjson";
pub const LATEST: &str = "latest";

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

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Output,
    Error,
    Deleted,
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

/// Lowercase hex, for SHA-256 digests in `run.json` and `inspect`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// Creates a folder (and parents) readable by the owner only, whatever the umask.
pub fn create_private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(|e| Error::io(path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(path, e))
}

/// Opens a new file for writing with mode 0600 (set explicitly, so the umask cannot widen it).
pub fn create_private_file(path: &Path) -> std::io::Result<fs::File> {
    open_private(path, fs::OpenOptions::new().write(true).create(true).truncate(true))
}

/// Opens with `opts`; a file it creates, or finds, is made owner-only (0600, set explicitly).
pub fn open_private(path: &Path, opts: &mut fs::OpenOptions) -> std::io::Result<fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = opts.mode(0o600).open(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Writes a whole file atomically: `path.tmp`, fsync, rename. Owner-only.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let res = (|| {
        let mut f = create_private_file(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            // Make the rename itself durable.
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    res.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Failed(e.to_string()))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Points `<job dir>/latest` at a run folder (a relative symlink, replaced atomically).
pub fn point_latest(job_dir: &Path, run_id: &str) -> Result<()> {
    let link = job_dir.join(LATEST);
    let tmp = job_dir.join(".latest.tmp");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(run_id, &tmp).map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, &link).map_err(|e| Error::io(&link, e))
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
