//! The soak's invariants, checked on the job folder and against the sandbox's own data: right after
//! each kill ([`after_kill`]) and once a run has completed ([`complete`]). Each failure is one line
//! that says what was found where.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::eventlog::RUN_LOG;
use crate::record::{FileRecord, LATEST, MEMBER_MATCH_FILE, RUN_FILE, RunRecord};
use crate::sandbox::Sandbox;
use crate::state::{CHECKPOINT, Checkpoint, INFLIGHT, InFlight, JobState, STATE_DIR};

/// What a completed iteration downloaded.
#[derive(Debug, Clone, Copy, Default)]
pub struct Downloaded {
    pub files: usize,
    pub bytes: u64,
}

/// SHA-256 hex computed here, straight from aws-lc, and not through `crate::digest`: the record's
/// digests are checked against it, so a fault in the client's hashing cannot agree with itself.
pub fn sha256_hex(b: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file under `root` (not folders), recursively; nothing when `root` does not exist.
fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let (p, Ok(ft)) = (e.path(), e.file_type()) else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The run folders of a job: every folder beside `.state` (not the `latest` link).
fn run_dirs(job_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(job_dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name() != STATE_DIR)
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Files of the run folder that are the record's own, not downloads.
fn is_record_file(rel: &str) -> bool {
    let manifest_page = rel.starts_with("manifest") && rel.ends_with(".json") && !rel.contains('/');
    rel == RUN_FILE || rel == MEMBER_MATCH_FILE || manifest_page || rel == RUN_LOG
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).to_string_lossy().replace('\\', "/")
}

/// Every `.state/**.json` parses, `inflight.json` and `checkpoint.json` as what they are, and so does
/// every `run.json` there is. Returns the export in flight, if any.
pub fn state_parses(job_dir: &Path) -> Result<Option<InFlight>, String> {
    let mut inflight = None;
    for p in files_under(&job_dir.join(STATE_DIR)) {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // The event log of the export in flight is appended to, line by line; it is not a state file.
        if !name.ends_with(".json") {
            continue;
        }
        let bytes = std::fs::read(&p).map_err(|e| format!("{}: unreadable: {e}", p.display()))?;
        let bad = |e: serde_json::Error| format!("{}: does not parse ({e}): {:?}", p.display(), preview(&bytes));
        match name.as_str() {
            INFLIGHT => inflight = Some(serde_json::from_slice::<InFlight>(&bytes).map_err(bad)?),
            CHECKPOINT => drop(serde_json::from_slice::<Checkpoint>(&bytes).map_err(bad)?),
            _ => drop(serde_json::from_slice::<serde_json::Value>(&bytes).map_err(bad)?),
        }
    }
    for d in run_dirs(job_dir) {
        let p = d.join(RUN_FILE);
        if let Ok(bytes) = std::fs::read(&p) {
            serde_json::from_slice::<RunRecord>(&bytes)
                .map_err(|e| format!("{}: does not parse ({e})", p.display()))?;
        }
    }
    Ok(inflight)
}

fn preview(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned()
}

/// The SHA-256 of every file of every export the sandbox has accepted.
fn server_hashes(sb: &Sandbox) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for k in sb.kickoffs() {
        for (_, bytes) in sb.export_files(&k.job_id).unwrap_or_default() {
            out.insert(sha256_hex(&bytes));
        }
    }
    out
}

/// Right after a kill: the state parses, and every file under a final name in a run folder holds
/// exactly the bytes of one of the server's files (nothing unverified was promoted). Returns the
/// status URL of the export in flight, if one is recorded.
pub fn after_kill(job_dir: &Path, sb: &Sandbox) -> Result<Option<String>, String> {
    let inflight = state_parses(job_dir)?;
    let hashes = server_hashes(sb);
    for d in run_dirs(job_dir) {
        for p in files_under(&d) {
            let r = rel(&d, &p);
            // `.part` downloads and `.tmp` atomic writes are not under a final name: a kill may leave
            // either (the rerun overwrites them; the end checks that none is left).
            if is_record_file(&r) || r.ends_with(".part") || r.ends_with(".tmp") {
                continue;
            }
            let bytes = std::fs::read(&p).map_err(|e| format!("{}: unreadable: {e}", p.display()))?;
            if !hashes.contains(&sha256_hex(&bytes)) {
                return Err(format!(
                    "{} ({} bytes) is under its final name but is not any file the server sent",
                    p.display(),
                    bytes.len()
                ));
            }
        }
    }
    Ok(inflight.map(|i| i.status_url))
}

/// The exit codes of the complete runs the checkpoint's history records, newest first (none when
/// there is no checkpoint yet).
pub fn completed_runs(job_dir: &Path) -> Result<Vec<u8>, String> {
    let p = job_dir.join(STATE_DIR).join(CHECKPOINT);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice::<Checkpoint>(&bytes)
            .map(|c| c.history.iter().map(|h| h.exit_code).collect())
            .map_err(|e| format!("{}: does not parse ({e})", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: unreadable: {e}", p.display())),
    }
}

/// The export a status URL belongs to (its last path segment).
pub fn job_of(status_url: &str) -> String {
    status_url.split('?').next().unwrap_or("").rsplit('/').next().unwrap_or("").to_string()
}

/// `/files/{job}/{name}?…` → `name`.
fn file_name_of(url: &str) -> String {
    url.split('?').next().unwrap_or("").rsplit('/').next().unwrap_or("").to_string()
}

/// After the run that completed (`exit`): the record is complete and says the exit code it ended with;
/// every file it lists is on disk, byte-identical to the server's, with the SHA-256 it records; every
/// file of the export is listed; the job folder holds one run folder, with nothing in it the record
/// does not list and no `.part` anywhere; the only kick-offs are this export's one and those orphaned
/// by a kill (`orphaned`: accepted, then killed before the status URL reached the state); no export is
/// left in flight, the state parses and the lock is free.
pub fn complete(job_dir: &Path, sb: &Sandbox, exit: i32, orphaned: &BTreeSet<String>) -> Result<Downloaded, String> {
    if state_parses(job_dir)?.is_some() {
        return Err("an export is still in flight after a complete run".into());
    }
    let latest = job_dir.join(LATEST);
    let run_file = latest.join(RUN_FILE);
    let bytes = std::fs::read(&run_file).map_err(|e| format!("{}: {e}", run_file.display()))?;
    let record: RunRecord =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: does not parse: {e}", run_file.display()))?;
    if !record.complete {
        return Err(format!("{} says the run is not complete: {:?}", run_file.display(), record.problems));
    }
    let want = if record.totals.server_errors > 0 { 5 } else { 0 };
    if exit != want {
        return Err(format!("exit {exit}, but the record says {want} ({} server errors)", record.totals.server_errors));
    }
    let job = job_of(&record.status_url);
    kickoffs(sb, &job, orphaned)?;
    let served: HashMap<String, bytes::Bytes> = sb
        .export_files(&job)
        .ok_or_else(|| format!("the sandbox has no files for export {job}"))?
        .into_iter()
        .collect();
    let run_dir = job_dir.join(&record.run_id);
    let mut got = Downloaded::default();
    for f in &record.files {
        same_as_server(&run_dir, f, &served)?;
        got.files += 1;
        got.bytes += f.bytes;
    }
    let listed: BTreeSet<String> = record.files.iter().map(|f| file_name_of(&f.url)).collect();
    let expected: BTreeSet<String> =
        served.iter().filter(|(n, b)| !b.is_empty() || !n.contains(".error.")).map(|(n, _)| n.clone()).collect();
    if listed != expected {
        return Err(format!("the record lists {listed:?}; the export has {expected:?}"));
    }
    let dirs = run_dirs(job_dir);
    if dirs != [run_dir.clone()] {
        return Err(format!("run folders {dirs:?}; expected only {}", run_dir.display()));
    }
    let known: BTreeSet<&str> = record.files.iter().map(|f| f.path.as_str()).collect();
    for p in files_under(&run_dir) {
        let r = rel(&run_dir, &p);
        if !known.contains(r.as_str()) && !is_record_file(&r) {
            return Err(format!("{} is in the run folder but not in the record", p.display()));
        }
    }
    if let Some(p) = files_under(job_dir).into_iter().find(|p| p.to_string_lossy().ends_with(".part")) {
        return Err(format!("{} left behind", p.display()));
    }
    if let Some(h) = JobState::new(job_dir).lock_holder() {
        return Err(format!("the job's lock is still held ({h})"));
    }
    Ok(got)
}

/// The kick-offs the sandbox accepted are this export's, once, and the orphans.
fn kickoffs(sb: &Sandbox, job: &str, orphaned: &BTreeSet<String>) -> Result<(), String> {
    let ids: Vec<String> = sb.kickoffs().into_iter().map(|k| k.job_id).collect();
    let ours = ids.iter().filter(|id| *id == job).count();
    let others: Vec<&String> = ids.iter().filter(|id| *id != job && !orphaned.contains(*id)).collect();
    if ours != 1 || !others.is_empty() {
        return Err(format!(
            "{} kick-offs for one export ({ours} of the recorded one {job}; others {others:?}; orphaned by kills \
             {orphaned:?})",
            ids.len()
        ));
    }
    Ok(())
}

fn same_as_server(run_dir: &Path, f: &FileRecord, served: &HashMap<String, bytes::Bytes>) -> Result<(), String> {
    let p = run_dir.join(&f.path);
    let local = std::fs::read(&p).map_err(|e| format!("{}: listed but {e}", p.display()))?;
    let name = file_name_of(&f.url);
    let remote = served.get(&name).ok_or_else(|| format!("{}: the server has no file {name}", f.path))?;
    let (l, r) = (sha256_hex(&local), sha256_hex(remote));
    if l != r {
        return Err(format!(
            "{}: SHA-256 {l} ({} bytes), the server's {r} ({} bytes)",
            f.path,
            local.len(),
            remote.len()
        ));
    }
    if f.sha256 != l || f.bytes != local.len() as u64 {
        return Err(format!(
            "{}: the record says {} / {} bytes, the file is {l} / {}",
            f.path,
            f.sha256,
            f.bytes,
            local.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_urls_and_record_files() {
        assert_eq!(job_of("http://127.0.0.1:1/fhir/$export-status/7abc"), "7abc");
        assert_eq!(file_name_of("http://127.0.0.1:1/files/7abc/Patient.2.ndjson?sig=3"), "Patient.2.ndjson");
        assert!(is_record_file("manifest.002.json") && is_record_file("log/events.ndjson") && is_record_file(RUN_FILE));
        assert!(!is_record_file("Patient.ndjson") && !is_record_file("error/manifest.json"));
    }

    #[test]
    fn a_torn_state_file_is_caught() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join(STATE_DIR);
        std::fs::create_dir_all(state.join("manifest")).unwrap();
        std::fs::write(state.join(CHECKPOINT), br#"{"transactionTime":null,"run_id":null}"#).unwrap();
        assert_eq!(state_parses(d.path()), Ok(None));
        std::fs::write(state.join("manifest/manifest.json"), br#"{"output": ["#).unwrap();
        let e = state_parses(d.path()).unwrap_err();
        assert!(e.contains("manifest.json: does not parse"), "{e}");
    }

    #[test]
    fn completed_runs_read_from_the_checkpoint_newest_first() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(completed_runs(d.path()), Ok(vec![]), "no state yet");
        let state = d.path().join(STATE_DIR);
        std::fs::create_dir_all(&state).unwrap();
        let entry = |id: &str, code: u8| {
            serde_json::json!({"run_id": id, "transactionTime": "2026-12-02T00:00:00Z", "finished": "x",
                "files": 1, "resources": 1, "bytes": 1, "exit_code": code})
        };
        let c = serde_json::json!({"transactionTime": "t", "run_id": "b", "history": [entry("b", 5), entry("a", 0)]});
        std::fs::write(state.join(CHECKPOINT), serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(completed_runs(d.path()), Ok(vec![5, 0]));
        std::fs::write(state.join(CHECKPOINT), b"{").unwrap();
        assert!(completed_runs(d.path()).unwrap_err().contains("does not parse"));
    }
}
