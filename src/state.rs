//! Per-job state beside the outputs (`<dir>/<job>/.state/`): the export in flight (status URL, request,
//! start, verified files, and a copy of its manifest pages so a run folder deleted by hand can be made
//! again), the checkpoint (last complete `transactionTime` and a short history) and the lock that keeps
//! two runs of one job apart (`state/lock.rs`). Every write is atomic (write, fsync, rename), so a `kill -9`
//! leaves either the old state or the new one.

mod lock;

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use crate::error::{Error, Result};
use crate::private_fs::{create_private_dir, write_atomic, write_json};
use crate::progress::{Event, Reporter};
use crate::record::{FileRecord, MANIFEST_FILE, RunRecord};

pub use lock::{Lock, LockHolder, hostname};

pub const STATE_DIR: &str = ".state";
pub const INFLIGHT: &str = "inflight.json";
pub const CHECKPOINT: &str = "checkpoint.json";
/// Copies of the in-flight export's manifest pages, as received (`manifest.json`, `manifest.002.json`…).
const MANIFEST_COPIES: &str = "manifest";
/// Where an unreadable `inflight.json` is set aside by `--restart` and `cancel --force`.
const SET_ASIDE: &str = "inflight.json.unreadable";
/// Complete runs remembered in `checkpoint.json`.
pub const HISTORY: usize = 20;

/// Per-run choices from the command line that are not part of the job (`--out` and `--since` are
/// applied to the job when it is loaded).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Forget an export in flight and start a new one.
    pub restart: bool,
}

/// An export that has been kicked off and not yet recorded as complete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InFlight {
    /// Ties the event-log lines of one export together across resumes.
    pub export_id: String,
    pub status_url: String,
    /// The kick-off URL and method, for the record.
    pub request: String,
    pub method: String,
    /// RFC 3339, when it was kicked off.
    pub started: String,
    pub since: Option<String>,
    pub last_progress: Option<String>,
    /// Set once the manifest is saved in the run folder.
    pub run_id: Option<String>,
    #[serde(default)]
    pub done: Vec<FileRecord>,
    /// The server answered the kick-off with the manifest itself (`200`): there is no status URL to
    /// poll, renew links from or DELETE (`status_url` is the kick-off URL).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub synchronous: bool,
}

impl InFlight {
    /// A new export, just accepted by the server.
    pub fn new(
        export_id: String,
        status_url: &Url,
        request: &Url,
        method: &str,
        since: Option<OffsetDateTime>,
    ) -> Self {
        InFlight {
            export_id,
            status_url: status_url.to_string(),
            request: request.to_string(),
            method: method.to_string(),
            started: crate::instant::now(),
            since: since.map(crate::instant::format),
            last_progress: None,
            run_id: None,
            done: Vec::new(),
            synchronous: false,
        }
    }

    pub fn status_url(&self) -> Result<Url> {
        Url::parse(&self.status_url)
            .map_err(|e| Error::BadState { path: PathBuf::from(INFLIGHT), detail: format!("a bad status URL: {e}") })
    }

    /// Records a verified file, replacing an earlier record of the same path (a file deleted by hand
    /// and fetched again).
    pub fn record_done(&mut self, file: FileRecord) {
        self.done.retain(|d| d.path != file.path);
        self.done.push(file);
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    /// `transactionTime` of the last complete run: the next `since: auto`.
    #[serde(rename = "transactionTime")]
    pub transaction_time: Option<String>,
    pub run_id: Option<String>,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryEntry {
    pub run_id: String,
    #[serde(rename = "transactionTime")]
    pub transaction_time: String,
    pub finished: String,
    pub files: u64,
    pub resources: u64,
    pub bytes: u64,
    pub exit_code: u8,
}

impl HistoryEntry {
    pub fn of(rec: &RunRecord, exit_code: u8) -> Self {
        HistoryEntry {
            run_id: rec.run_id.clone(),
            transaction_time: rec.transaction_time.clone(),
            finished: rec.finished.clone(),
            files: rec.totals.files,
            resources: rec.totals.resources,
            bytes: rec.totals.bytes,
            exit_code,
        }
    }
}

/// The state folder of one job.
#[derive(Debug, Clone)]
pub struct JobState {
    pub job_dir: PathBuf,
    pub dir: PathBuf,
}

impl JobState {
    pub fn new(job_dir: &Path) -> Self {
        JobState { job_dir: job_dir.to_path_buf(), dir: job_dir.join(STATE_DIR) }
    }

    pub fn create(&self) -> Result<()> {
        create_private_dir(&self.job_dir)?;
        create_private_dir(&self.dir)
    }

    pub fn inflight(&self) -> Result<Option<InFlight>> {
        read_json(&self.dir.join(INFLIGHT))
    }

    pub fn save_inflight(&self, s: &InFlight) -> Result<()> {
        write_json(&self.dir.join(INFLIGHT), s)
    }

    /// `--restart` and `cancel`: forgets the export in flight (and its event log), if there is one, and
    /// returns it. An unreadable `inflight.json` is set aside (as `inflight.json.unreadable`, for a
    /// look) when `unreadable_too`; otherwise it stays an error.
    pub fn forget_inflight(&self, reporter: &dyn Reporter, unreadable_too: bool) -> Result<Option<InFlight>> {
        let old = match self.inflight() {
            Ok(old) => old,
            Err(Error::BadState { path, detail }) if unreadable_too => {
                let aside = self.dir.join(SET_ASIDE);
                fs::rename(&path, &aside).map_err(|e| Error::io(&path, e))?;
                let message = format!("{}: unreadable ({detail}); set aside as {}", path.display(), aside.display());
                reporter.event(&Event::Note { message: &message });
                None
            }
            Err(e) => return Err(e),
        };
        if let Some(old) = &old {
            let message = format!("forgetting the export at {}", old.status_url);
            reporter.event(&Event::Note { message: &message });
        }
        self.clear_inflight()?;
        let _ = fs::remove_file(self.log_path());
        Ok(old)
    }

    /// The manifest of the export in flight, once it has arrived: the copy in the state folder, else
    /// the run folder's (state written by an older version); `None` when neither is there (then the
    /// status URL is asked again).
    pub fn saved_manifest(&self, run_id: &str) -> Option<bytes::Bytes> {
        let copy = self.dir.join(MANIFEST_COPIES).join(MANIFEST_FILE);
        let in_run = self.job_dir.join(run_id).join(MANIFEST_FILE);
        fs::read(copy).or_else(|_| fs::read(in_run)).ok().map(Into::into)
    }

    /// Opens the run folder of the export in flight. A folder deleted by hand (or files missing from
    /// it) is made again: the manifest pages from the state folder's copies (or `manifest` itself), and
    /// a `$bulk-member-match` result kept in the state folder. The first time (`fresh`) the manifest is
    /// written whatever is there.
    pub fn open_run_dir(&self, run_dir: &Path, manifest: &[u8], fresh: bool) -> Result<()> {
        create_private_dir(run_dir)?;
        let first = run_dir.join(MANIFEST_FILE);
        if fresh || !first.exists() {
            write_atomic(&first, manifest)?;
        }
        if fresh {
            return Ok(());
        }
        if let Ok(copies) = fs::read_dir(self.dir.join(MANIFEST_COPIES)) {
            for c in copies.flatten() {
                let to = run_dir.join(c.file_name());
                if !to.exists() {
                    let bytes = fs::read(c.path()).map_err(|e| Error::io(c.path(), e))?;
                    write_atomic(&to, &bytes)?;
                }
            }
        }
        if !run_dir.join(crate::record::MEMBER_MATCH_FILE).exists() {
            self.keep_in_run(run_dir, crate::record::MEMBER_MATCH_FILE)?;
        }
        Ok(())
    }

    /// Once the manifest and its pages are in the run folder: copies of them in the state folder (for
    /// [`JobState::open_run_dir`]), and the `$bulk-member-match` result into the run folder.
    pub fn keep_run_files(&self, run_dir: &Path) -> Result<()> {
        let copies = self.dir.join(MANIFEST_COPIES);
        create_private_dir(&copies)?;
        for page in 1..=crate::record::MAX_MANIFEST_PAGES {
            let name = crate::record::page_file_name(page);
            let Ok(bytes) = fs::read(run_dir.join(&name)) else { break };
            write_atomic(&copies.join(&name), &bytes)?;
        }
        self.keep_in_run(run_dir, crate::record::MEMBER_MATCH_FILE)
    }

    /// Copies a file kept in the state folder (a `$bulk-member-match` result) into the run folder.
    pub fn keep_in_run(&self, run_dir: &Path, name: &str) -> Result<()> {
        match fs::read(self.dir.join(name)) {
            Ok(doc) => write_atomic(&run_dir.join(name), &doc),
            Err(_) => Ok(()),
        }
    }

    /// Forgets the export in flight: `inflight.json` and the manifest copies.
    pub fn clear_inflight(&self) -> Result<()> {
        let copies = self.dir.join(MANIFEST_COPIES);
        match fs::remove_dir_all(&copies) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&copies, e)),
        }
        let p = self.dir.join(INFLIGHT);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&p, e)),
        }
    }

    pub fn checkpoint(&self) -> Result<Checkpoint> {
        Ok(read_json(&self.dir.join(CHECKPOINT))?.unwrap_or_default())
    }

    /// Moves the checkpoint forward after a complete run.
    pub fn advance(&self, entry: HistoryEntry) -> Result<()> {
        let mut c = self.checkpoint()?;
        c.transaction_time = Some(entry.transaction_time.clone());
        c.run_id = Some(entry.run_id.clone());
        c.history.insert(0, entry);
        c.history.truncate(HISTORY);
        write_json(&self.dir.join(CHECKPOINT), &c)
    }

    /// The event log of the export in flight; moved into the run folder when the run completes.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(crate::record::LOG_FILE)
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::BadState { path: path.to_path_buf(), detail: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflight() -> InFlight {
        let u = Url::parse("https://fhir.example/status/1").unwrap();
        InFlight::new("e1".into(), &u, &u, "GET", None)
    }

    #[test]
    fn a_run_folder_deleted_by_hand_is_made_again_from_the_state() {
        let d = tempfile::tempdir().unwrap();
        let s = JobState::new(&d.path().join("job"));
        s.create().unwrap();
        s.save_inflight(&inflight()).unwrap();
        std::fs::write(s.dir.join(crate::record::MEMBER_MATCH_FILE), "{\"match\":1}").unwrap();
        let run = s.job_dir.join("r1");
        s.open_run_dir(&run, b"{\"page\":1}", true).unwrap();
        std::fs::write(run.join("manifest.002.json"), "{\"page\":2}").unwrap();
        s.keep_run_files(&run).unwrap();
        assert_eq!(s.saved_manifest("r1").as_deref(), Some(&b"{\"page\":1}"[..]));
        std::fs::remove_dir_all(&run).unwrap();
        assert_eq!(s.saved_manifest("r1").as_deref(), Some(&b"{\"page\":1}"[..]), "the state's copy");
        s.open_run_dir(&run, b"{\"page\":1}", false).unwrap();
        let read = |n: &str| std::fs::read_to_string(run.join(n)).unwrap();
        assert_eq!(read("manifest.json"), "{\"page\":1}");
        assert_eq!(read("manifest.002.json"), "{\"page\":2}");
        assert_eq!(read("member-match.json"), "{\"match\":1}");
        // Forgetting the export forgets its copies: a later export never gets these pages.
        s.clear_inflight().unwrap();
        assert!(!s.dir.join(MANIFEST_COPIES).exists());
        std::fs::remove_dir_all(&run).unwrap();
        assert_eq!(s.saved_manifest("r1"), None);
    }

    #[test]
    fn an_unreadable_inflight_file_is_an_error_until_set_aside() {
        let d = tempfile::tempdir().unwrap();
        let s = JobState::new(&d.path().join("job"));
        s.create().unwrap();
        std::fs::write(s.dir.join(INFLIGHT), "{\"export_id\": \"cut sh").unwrap();
        let e = s.inflight().unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(matches!(&e, Error::BadState { path, .. } if path.ends_with(INFLIGHT)), "{e:?}");
        assert!(s.forget_inflight(&crate::progress::Silent, false).is_err());
        assert_eq!(s.forget_inflight(&crate::progress::Silent, true).unwrap(), None);
        assert_eq!(s.inflight().unwrap(), None);
        assert!(s.dir.join(SET_ASIDE).exists(), "kept for a look");
    }

    #[test]
    fn a_file_fetched_again_is_recorded_once() {
        let rec = |sha: &str| FileRecord {
            kind: crate::record::FileKind::Output,
            resource_type: "Patient".into(),
            url: "https://f/P".into(),
            path: "Patient.ndjson".into(),
            expected_count: None,
            lines: 1,
            bytes: 1,
            sha256: sha.into(),
            invalid_lines: 0,
            wrong_type_lines: 0,
            types: Default::default(),
            header_lines: 0,
            continues_in: None,
        };
        let mut f = inflight();
        f.record_done(rec("a"));
        f.record_done(rec("b"));
        assert_eq!(f.done, vec![rec("b")]);
    }

    #[test]
    fn checkpoint_keeps_a_short_history() {
        let d = tempfile::tempdir().unwrap();
        let s = JobState::new(&d.path().join("job"));
        s.create().unwrap();
        for i in 0..25 {
            s.advance(HistoryEntry {
                run_id: format!("r{i}"),
                transaction_time: format!("t{i}"),
                finished: "f".into(),
                files: 1,
                resources: 1,
                bytes: 1,
                exit_code: 0,
            })
            .unwrap();
        }
        let c = s.checkpoint().unwrap();
        assert_eq!(c.transaction_time.as_deref(), Some("t24"));
        assert_eq!(c.history.len(), HISTORY);
        assert_eq!(c.history[0].run_id, "r24");
    }
}
