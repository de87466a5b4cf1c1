//! What each PATH is: a run folder, a folder of NDJSON, one file (checked alone, even inside a run
//! folder), or a job folder (its runs are listed, not read); and the files to read in it.

use std::path::Path;

use crate::error::{Error, Result};
use crate::store::Location;
use crate::store::reader::Tree;

pub const RUN: &str = "run";
pub const FOLDER: &str = "folder";
pub const FILE: &str = "file";
pub const JOB: &str = "job";

/// One input resolved to the files to read: a folder (or bucket prefix) and the files in it, by
/// relative path, with their sizes.
pub(super) struct Input {
    pub path: String,
    pub kind: &'static str,
    pub tree: Tree,
    pub files: Vec<(String, u64)>,
    /// `*.part` files: downloads that did not finish.
    pub partial: Vec<String>,
}

fn is_ndjson(rel: &str) -> bool {
    let n = rel.rsplit('/').next().unwrap_or(rel);
    (n.ends_with(".ndjson") || n.ends_with(".ndjson.gz") || n.ends_with(".jsonl")) && n != "log.ndjson"
}

/// Data files sit at the top of a run folder or in its `error/` and `deleted/` (not in `log/`).
fn is_data_file(rel: &str) -> bool {
    let place = match rel.split_once('/') {
        None => true,
        Some((dir, rest)) => (dir == "error" || dir == "deleted") && !rest.contains('/'),
    };
    place && is_ndjson(rel)
}

pub(super) fn resolve(path: &Path) -> Result<Input> {
    let loc = Location::from_path(path).map_err(Error::Usage)?;
    if let Location::Local(p) = &loc {
        let meta = std::fs::metadata(p).map_err(|e| Error::Usage(format!("{}: {e}", p.display())))?;
        if meta.is_file() {
            return Ok(single_file(p, meta.len()));
        }
        if is_local_job(p) {
            let tree = Tree::Local(p.clone());
            return Ok(Input { path: p.display().to_string(), kind: JOB, tree, files: vec![], partial: vec![] });
        }
    }
    let tree = Tree::open(&loc)?;
    let label = match &loc {
        Location::Local(p) => p.display().to_string(),
        Location::Object(_) => loc.to_string(),
    };
    let listed = tree.list()?;
    let kind = if listed.iter().any(|(rel, _)| is_run_file(rel)) { RUN } else { FOLDER };
    let partial = listed.iter().filter(|(rel, _)| rel.ends_with(".part")).map(|(rel, _)| rel.clone()).collect();
    let files: Vec<_> = listed.iter().filter(|(rel, _)| is_data_file(rel)).cloned().collect();
    if files.is_empty() && kind == FOLDER {
        if matches!(tree, Tree::Object { .. }) && is_object_job(&listed) {
            return Ok(Input { path: label, kind: JOB, tree, files, partial: vec![] });
        }
        return Err(Error::Usage(format!("{label}: no .ndjson files here")));
    }
    Ok(Input { path: label, kind, tree, files, partial })
}

/// One file, read from its folder. A file in a run folder's `error/` or `deleted/` keeps that place
/// in its path, so it is read as what it is and found under its name in `run.json`.
fn single_file(p: &Path, len: u64) -> Input {
    let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let label = p.display().to_string();
    let sub = parent.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if (sub == "error" || sub == "deleted")
        && let Some(run) = parent.parent().filter(|r| is_run_folder(r))
    {
        let tree = Tree::Local(run.to_path_buf());
        return Input { path: label, kind: FILE, tree, files: vec![(format!("{sub}/{name}"), len)], partial: vec![] };
    }
    Input {
        path: label,
        kind: FILE,
        tree: Tree::Local(parent.to_path_buf()),
        files: vec![(name, len)],
        partial: vec![],
    }
}

/// A file whose presence makes its folder a run folder: the record, or the manifest (other tools').
pub(super) fn is_run_file(name: &str) -> bool {
    name == crate::record::RUN_FILE || name == crate::record::MANIFEST_FILE
}

pub(super) fn is_run_folder(p: &Path) -> bool {
    [crate::record::RUN_FILE, crate::record::MANIFEST_FILE].iter().any(|f| p.join(f).is_file())
}

/// A job's folder: its state, its `latest`, or run folders (and no data files of its own).
fn is_local_job(p: &Path) -> bool {
    if p.join(crate::state::STATE_DIR).is_dir() || p.join(crate::store::LATEST).symlink_metadata().is_ok() {
        return true;
    }
    let Ok(rd) = std::fs::read_dir(p) else { return false };
    let mut runs = false;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().is_ok_and(|t| t.is_file()) && is_ndjson(&name) {
            return false;
        }
        runs |= e.file_type().is_ok_and(|t| t.is_dir()) && is_run_folder(&e.path());
    }
    runs
}

/// A job's prefix in a bucket, from its recursive listing.
fn is_object_job(listed: &[(String, u64)]) -> bool {
    listed.iter().any(|(rel, _)| {
        rel == crate::store::LATEST
            || rel.starts_with(&format!("{}/", crate::state::STATE_DIR))
            || rel.split_once('/').is_some_and(|(_, f)| is_run_file(f))
    })
}

/// Where a run folder sits: its job's folder and its run id (the folder's own name, `latest` followed).
pub(super) fn run_place(tree: &Tree) -> Option<(Location, String)> {
    let loc = match tree.location() {
        Location::Local(p) => Location::Local(std::fs::canonicalize(&p).unwrap_or(p)),
        object => object,
    };
    Some((loc.parent()?, loc.file_name()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_files_are_at_the_top_or_in_error_and_deleted() {
        for rel in ["Patient.ndjson", "1.Patient.ndjson.gz", "error/OperationOutcome.ndjson", "deleted/Bundle.ndjson"] {
            assert!(is_data_file(rel), "{rel}");
        }
        for rel in ["log.ndjson", "log/events.ndjson", "Patient.ndjson.part", "x/Patient.ndjson", "run.json"] {
            assert!(!is_data_file(rel), "{rel}");
        }
    }

    #[test]
    fn a_bucket_job_prefix_is_known_by_its_runs() {
        let l = |v: &[&str]| v.iter().map(|s| (s.to_string(), 1)).collect::<Vec<_>>();
        assert!(is_object_job(&l(&["20240101T000000Z/run.json", "20240101T000000Z/Patient.ndjson"])));
        assert!(is_object_job(&l(&[".state/checkpoint.json"])));
        assert!(!is_object_job(&l(&["a/b/Patient.ndjson"])));
    }
}
