//! Per-job state beside the outputs (`<dir>/<job>/.state/`, on disk or in the bucket): the export in
//! flight (status URL, request, start, verified files, and a copy of its manifest pages so a run folder
//! deleted by hand can be made again), the checkpoint (last complete `transactionTime` and a short
//! history) and the lock that keeps two runs of one job apart (`state/lock.rs`).
//!
//! On disk every write is atomic (write, fsync, rename), so a `kill -9` leaves either the old state or
//! the new one, and the lock is an OS file lock. In a bucket every write is a conditional put
//! (create-if-absent, or if-the-version-is-the-one-we-last-saw), so two writers cannot both win, and the
//! lock is a renewed lease ([`crate::store::lease`]). The state always lives beside the data: one place
//! of truth that every machine running the job can see.

mod lock;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use crate::error::{Error, Result};
use crate::private_fs::create_private_dir;
use crate::progress::{Event, Reporter};
use crate::record::{FileRecord, MANIFEST_FILE, RunRecord};
use crate::store::{Dir, Expect, Location};

pub use lock::{Lock, LockHolder, hostname};

pub const STATE_DIR: &str = ".state";
pub const INFLIGHT: &str = "inflight.json";
pub const CHECKPOINT: &str = "checkpoint.json";
/// Copies of the in-flight export's manifest pages, as received (`manifest.json`, `manifest.002.json`…).
const MANIFEST_COPIES: &str = "manifest";
/// Where an unreadable `inflight.json` is set aside by `--restart` and `cancel --force`.
const SET_ASIDE: &str = "inflight.json.unreadable";
/// For a bucket job, the in-flight event log is copied beside the state at most this often (each
/// copy is the whole log, so copying it on every verified file would cost O(files²) bytes).
const LOG_SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
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
    /// `<dir>/<job>` on disk (for a bucket job, its URL as text: use [`JobState::job`]).
    pub job_dir: PathBuf,
    /// `<dir>/<job>/.state` on disk (for a bucket job, its URL as text: use [`JobState::store`]).
    pub dir: PathBuf,
    /// `<dir>/<job>`: runs, `latest`.
    pub job: Dir,
    /// `<dir>/<job>/.state`.
    pub store: Dir,
    /// The version of each state file as last read or written (bucket only): what the next
    /// conditional write expects.
    versions: Arc<Mutex<HashMap<String, Expect>>>,
    /// The event log while in flight: in `.state/` on disk; for a bucket, a private scratch file copied
    /// to `.state/log.ndjson` when the state is saved (at most every [`LOG_SYNC_EVERY`]).
    log: PathBuf,
    log_synced: Arc<Mutex<Option<std::time::Instant>>>,
}

impl JobState {
    /// The state of the job folder `job_dir` on disk.
    pub fn new(job_dir: &Path) -> Self {
        Self::at(Dir::Local(job_dir.to_path_buf()))
    }

    /// The state of the job at `loc` (a folder or a bucket prefix).
    pub fn open(loc: &Location) -> Result<Self> {
        Ok(Self::at(Dir::open(loc)?))
    }

    /// The state of the job folder or prefix `job`.
    pub fn at(job: Dir) -> Self {
        let job_dir = match &job {
            Dir::Local(p) => p.clone(),
            Dir::Object(o) => PathBuf::from(o.url.to_string()),
        };
        let dir = job_dir.join(STATE_DIR);
        let log = match &job {
            Dir::Local(_) => dir.join(crate::record::LOG_FILE),
            Dir::Object(o) => scratch_dir(&o.url.to_string()).join(crate::record::LOG_FILE),
        };
        let store = job.join(STATE_DIR);
        JobState { job_dir, dir, job, store, versions: Arc::default(), log, log_synced: Arc::default() }
    }

    pub fn create(&self) -> Result<()> {
        self.job.create()?;
        self.store.create()
    }

    pub fn inflight(&self) -> Result<Option<InFlight>> {
        self.read_json(INFLIGHT)
    }

    /// Saves the export in flight (and, for a bucket, the event log so far beside it).
    pub fn save_inflight(&self, s: &InFlight) -> Result<()> {
        self.write_json(INFLIGHT, s)?;
        if !self.store.is_object() {
            return Ok(());
        }
        let due = {
            let mut last = self.log_synced.lock().expect("log sync");
            let due = last.is_none_or(|t| t.elapsed() >= LOG_SYNC_EVERY);
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        match fs::read(&self.log) {
            Ok(b) if due => self.store.write(crate::record::LOG_FILE, &b),
            _ => Ok(()),
        }
    }

    /// `--restart` and `cancel`: forgets the export in flight (and its event log), if there is one, and
    /// returns it. An unreadable `inflight.json` is set aside (as `inflight.json.unreadable`, for a
    /// look) when `unreadable_too`; otherwise it stays an error.
    pub fn forget_inflight(&self, reporter: &dyn Reporter, unreadable_too: bool) -> Result<Option<InFlight>> {
        let old = match self.inflight() {
            Ok(old) => old,
            Err(Error::BadState { path, detail }) if unreadable_too => {
                let bytes = self.store.read(INFLIGHT)?.unwrap_or_default();
                self.store.write(SET_ASIDE, &bytes)?;
                let aside = self.store.label(SET_ASIDE);
                let message = format!("{}: unreadable ({detail}); set aside as {aside}", path.display());
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
        self.forget_log()?;
        Ok(old)
    }

    /// The manifest of the export in flight, once it has arrived: the copy in the state folder, else
    /// the run folder's (state written by an older version); `None` when neither is there (then the
    /// status URL is asked again).
    pub fn saved_manifest(&self, run_id: &str) -> Option<bytes::Bytes> {
        let copy = format!("{MANIFEST_COPIES}/{MANIFEST_FILE}");
        let in_run = format!("{run_id}/{MANIFEST_FILE}");
        self.store.read(&copy).ok().flatten().or_else(|| self.job.read(&in_run).ok().flatten())
    }

    /// Opens the run folder of the export in flight. A folder deleted by hand (or files missing from
    /// it) is made again: the manifest pages from the state folder's copies (or `manifest` itself), and
    /// a `$bulk-member-match` result kept in the state folder. The first time (`fresh`) the manifest is
    /// written whatever is there.
    pub fn open_run_dir(&self, run_dir: &Dir, manifest: &[u8], fresh: bool) -> Result<()> {
        run_dir.create()?;
        if fresh || run_dir.size(MANIFEST_FILE)?.is_none() {
            run_dir.write(MANIFEST_FILE, manifest)?;
        }
        if fresh {
            return Ok(());
        }
        for name in self.store.list(MANIFEST_COPIES)? {
            if run_dir.size(&name)?.is_none()
                && let Some(bytes) = self.store.read(&format!("{MANIFEST_COPIES}/{name}"))?
            {
                run_dir.write(&name, &bytes)?;
            }
        }
        if run_dir.size(crate::record::MEMBER_MATCH_FILE)?.is_none() {
            self.keep_in_run(run_dir, crate::record::MEMBER_MATCH_FILE)?;
        }
        Ok(())
    }

    /// Once the manifest and its pages are in the run folder: copies of them in the state folder (for
    /// [`JobState::open_run_dir`]), and the `$bulk-member-match` result into the run folder.
    pub fn keep_run_files(&self, run_dir: &Dir) -> Result<()> {
        for page in 1..=crate::record::MAX_MANIFEST_PAGES {
            let name = crate::record::page_file_name(page);
            let Some(bytes) = run_dir.read(&name)? else { break };
            self.store.write(&format!("{MANIFEST_COPIES}/{name}"), &bytes)?;
        }
        self.keep_in_run(run_dir, crate::record::MEMBER_MATCH_FILE)
    }

    /// Copies a file kept in the state folder (a `$bulk-member-match` result) into the run folder.
    pub fn keep_in_run(&self, run_dir: &Dir, name: &str) -> Result<()> {
        match self.store.read(name)? {
            Some(doc) => run_dir.write(name, &doc),
            None => Ok(()),
        }
    }

    /// Forgets the export in flight: `inflight.json` and the manifest copies.
    pub fn clear_inflight(&self) -> Result<()> {
        self.store.remove_all(MANIFEST_COPIES)?;
        self.store.remove(INFLIGHT)?;
        self.versions.lock().expect("versions").insert(INFLIGHT.into(), Expect::Absent);
        Ok(())
    }

    pub fn checkpoint(&self) -> Result<Checkpoint> {
        Ok(self.read_json(CHECKPOINT)?.unwrap_or_default())
    }

    /// Moves the checkpoint forward after a complete run.
    pub fn advance(&self, entry: HistoryEntry) -> Result<()> {
        let mut c = self.checkpoint()?;
        c.transaction_time = Some(entry.transaction_time.clone());
        c.run_id = Some(entry.run_id.clone());
        c.history.insert(0, entry);
        c.history.truncate(HISTORY);
        self.write_json(CHECKPOINT, &c)
    }

    /// The event log of the export in flight, on local disk (see [`JobState::finish_log`]).
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    /// Makes the scratch folder of a bucket job's event log, with the log the last run left (on any
    /// machine) when an export is in flight.
    pub fn prepare_log(&self) -> Result<()> {
        if !self.store.is_object() {
            return Ok(());
        }
        create_private_dir(self.log.parent().expect("the log has a folder"))?;
        match self.store.read(crate::record::LOG_FILE)? {
            Some(b) => crate::private_fs::write_atomic(&self.log, &b),
            None => {
                let _ = fs::remove_file(&self.log);
                Ok(())
            }
        }
    }

    /// Moves the event log into the run folder (as `rel`) when the run is recorded.
    pub fn finish_log(&self, run_dir: &Dir, rel: &str) -> Result<()> {
        match run_dir {
            Dir::Local(p) => {
                let to = p.join(rel);
                create_private_dir(to.parent().expect("the log has a folder"))?;
                fs::rename(&self.log, &to).map_err(|e| Error::io(&to, e))
            }
            Dir::Object(_) => {
                let b = fs::read(&self.log).map_err(|e| Error::io(&self.log, e))?;
                run_dir.write(rel, &b)?;
                self.forget_log()
            }
        }
    }

    /// Removes the event log of the export in flight.
    pub fn forget_log(&self) -> Result<()> {
        let _ = fs::remove_file(&self.log);
        if self.store.is_object() {
            self.store.remove(crate::record::LOG_FILE)?;
        }
        Ok(())
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>> {
        let Some((b, version)) = self.store.read_versioned(name)? else {
            self.versions.lock().expect("versions").insert(name.into(), Expect::Absent);
            return Ok(None);
        };
        self.versions.lock().expect("versions").insert(name.into(), version);
        serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::BadState { path: PathBuf::from(self.store.label(name)), detail: e.to_string() })
    }

    /// Writes a state file, expecting the version last seen (nothing seen: the file must not exist).
    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let expect = self.versions.lock().expect("versions").get(name).cloned().unwrap_or(Expect::Absent);
        let written = self.store.write_versioned(name, &crate::store::json_bytes(value)?, &expect)?;
        self.versions.lock().expect("versions").insert(name.into(), written);
        Ok(())
    }
}

/// A private folder for a bucket job's scratch files (its event log while in flight): one per bucket
/// prefix, under the system's temporary folder.
fn scratch_dir(key: &str) -> PathBuf {
    let mut h = crate::digest::Sha256::new();
    h.update(key.as_bytes());
    std::env::temp_dir().join(format!("oneup-bulk-{}", &h.finish_hex()[..16]))
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
        let run_dir = Dir::Local(run.clone());
        s.open_run_dir(&run_dir, b"{\"page\":1}", true).unwrap();
        std::fs::write(run.join("manifest.002.json"), "{\"page\":2}").unwrap();
        s.keep_run_files(&run_dir).unwrap();
        assert_eq!(s.saved_manifest("r1").as_deref(), Some(&b"{\"page\":1}"[..]));
        std::fs::remove_dir_all(&run).unwrap();
        assert_eq!(s.saved_manifest("r1").as_deref(), Some(&b"{\"page\":1}"[..]), "the state's copy");
        s.open_run_dir(&run_dir, b"{\"page\":1}", false).unwrap();
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
