//! Per-job state beside the outputs (`<dir>/<job>/.state/`, on disk or in the bucket): the export in
//! flight (status URL, request, start, verified files), the checkpoint (last complete
//! `transactionTime` and a short history) and the lock that keeps two runs of one job apart.
//!
//! On disk every write is atomic (write, fsync, rename) and the lock is an OS file lock. In a bucket
//! every write is a conditional put (create-if-absent, or if-the-version-is-the-one-we-read), so two
//! writers cannot both win, and the lock is a renewed lease ([`crate::store::lease`]). The state always
//! lives beside the data: a job has one place of truth that every machine running it can see.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use crate::error::{Error, Result};
use crate::private_fs::create_private_dir;
use crate::progress::{Event, Reporter};
use crate::record::{FileRecord, RunRecord};
use crate::store::{Dir, Expect, Location, lease, upload};

pub const STATE_DIR: &str = ".state";
const INFLIGHT: &str = "inflight.json";
const CHECKPOINT: &str = "checkpoint.json";
const LOCK: &str = "lock";
/// For a bucket job, the in-flight event log is copied beside the state at most this often (each
/// copy is the whole log, so copying it on every verified file would cost O(files²) bytes).
const LOG_SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// Complete runs remembered in `checkpoint.json`.
pub const HISTORY: usize = 20;

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
        }
    }

    pub fn status_url(&self) -> Result<Url> {
        Url::parse(&self.status_url)
            .map_err(|e| Error::Failed(format!("the state holds a bad status URL ({e}); run with --restart")))
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
    /// `<dir>/<job>`: runs, `latest`.
    pub job: Dir,
    /// `<dir>/<job>/.state`.
    pub dir: Dir,
    /// The version of each state file as last read or written (bucket only): what the next
    /// conditional write expects.
    versions: Arc<Mutex<HashMap<&'static str, Expect>>>,
    /// The event log while in flight: in `.state/` on disk; for a bucket, a private scratch file that
    /// is copied to `.state/log.ndjson` when the state is saved (at most every [`LOG_SYNC_EVERY`]).
    log: PathBuf,
    log_synced: Arc<Mutex<Option<std::time::Instant>>>,
}

/// Held for the duration of a run: an OS file lock (released by the OS however the process dies), or
/// a lease in the bucket (renewed in the background; lost → the run stops with exit 75).
pub enum Lock {
    Local(File),
    Lease(lease::Lease),
}

impl Lock {
    /// Resolves when the lock is lost, with why (never, on disk).
    pub async fn lost(&self) -> String {
        match self {
            Lock::Local(_) => std::future::pending().await,
            Lock::Lease(l) => l.lost().await,
        }
    }

    /// The holder this run displaced by taking over its stale lease, if any.
    pub fn took_over(&self) -> Option<&str> {
        match self {
            Lock::Local(_) => None,
            Lock::Lease(l) => l.took_over.as_deref(),
        }
    }

    /// Lets go: the file lock closed, or the lease marked free.
    pub async fn release(self) {
        if let Lock::Lease(l) = self {
            l.release().await;
        }
    }
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
        let log = match &job {
            Dir::Local(p) => p.join(STATE_DIR).join(crate::record::LOG_FILE),
            Dir::Object(o) => scratch_dir(&o.url.to_string()).join(crate::record::LOG_FILE),
        };
        JobState { dir: job.join(STATE_DIR), job, versions: Arc::default(), log, log_synced: Arc::default() }
    }

    pub fn create(&self) -> Result<()> {
        self.job.create()?;
        self.dir.create()
    }

    /// Takes the job's lock, or says who holds it (exit 75).
    pub async fn lock(&self) -> Result<Lock> {
        self.create()?;
        let Dir::Object(state) = &self.dir else { return self.lock_file().map(Lock::Local) };
        let lease = lease::acquire(state, lease::ttl()).await?;
        let Dir::Object(job) = &self.job else { unreachable!("the state folder is in the job's") };
        upload::abort_stale(job).await?;
        // The event log of an export in flight continues where the last run (on any machine) left it.
        create_private_dir(self.log.parent().expect("the log has a folder"))?;
        match self.dir.read(crate::record::LOG_FILE).await? {
            Some(b) => crate::private_fs::write_atomic(&self.log, &b)?,
            None => {
                let _ = fs::remove_file(&self.log);
            }
        }
        Ok(Lock::Lease(lease))
    }

    fn lock_file(&self) -> Result<File> {
        let Dir::Local(dir) = &self.dir else { unreachable!("a local lock for a local folder") };
        let path = dir.join(LOCK);
        let mut f = crate::private_fs::open_private(&path, fs::OpenOptions::new().read(true).write(true).create(true))
            .map_err(|e| Error::io(&path, e))?;
        match f.try_lock() {
            Ok(()) => {
                let holder = format!("pid {} since {}\n", std::process::id(), crate::instant::now());
                let _ = f.set_len(0);
                let _ = f.rewind();
                let _ = f.write_all(holder.as_bytes());
                let _ = f.sync_data();
                Ok(f)
            }
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = f.read_to_string(&mut holder);
                Err(Error::Locked(format!(
                    "another oneup-bulk run of this job is in progress ({}); this run exits without doing anything",
                    holder.trim()
                )))
            }
            Err(fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    /// Who holds the lock, if anyone (for `status`).
    pub async fn lock_holder(&self) -> Option<String> {
        let dir = match &self.dir {
            Dir::Object(o) => return lease::holder(o).await.ok().flatten(),
            Dir::Local(d) => d,
        };
        let mut f = File::open(dir.join(LOCK)).ok()?;
        match f.try_lock_shared() {
            Ok(()) => None,
            Err(_) => {
                let mut s = String::new();
                f.read_to_string(&mut s).ok()?;
                Some(s.trim().to_string())
            }
        }
    }

    pub async fn inflight(&self) -> Result<Option<InFlight>> {
        self.read_json(INFLIGHT).await
    }

    /// Saves the export in flight (and, for a bucket, the event log so far beside it).
    pub async fn save_inflight(&self, s: &InFlight) -> Result<()> {
        self.write_json(INFLIGHT, s).await?;
        let due = {
            let mut last = self.log_synced.lock().expect("log sync");
            let due = last.is_none_or(|t| t.elapsed() >= LOG_SYNC_EVERY);
            if due {
                *last = Some(std::time::Instant::now());
            }
            due
        };
        if self.dir.is_object()
            && due
            && let Ok(b) = fs::read(&self.log)
        {
            self.dir.write(crate::record::LOG_FILE, &b).await?;
        }
        Ok(())
    }

    /// `--restart`: forgets the export in flight (and its event log), if there is one.
    pub async fn forget_inflight(&self, reporter: &dyn Reporter) -> Result<()> {
        if let Some(old) = self.inflight().await? {
            let message = format!("--restart: forgetting the export at {}", old.status_url);
            reporter.event(&Event::Note { message: &message });
            self.clear_inflight().await?;
            self.forget_log().await?;
        }
        Ok(())
    }

    /// The manifest an earlier attempt saved in run folder `run_id`.
    pub async fn saved_manifest(&self, run_id: &str) -> Result<bytes::Bytes> {
        let rel = format!("{run_id}/{}", crate::record::MANIFEST_FILE);
        self.job.read(&rel).await?.ok_or_else(|| {
            Error::Failed(format!("{}: missing; run with --restart to start a new export", self.job.label(&rel)))
        })
    }

    /// Copies a file kept in the state folder (a `$bulk-member-match` result) into the run folder.
    pub async fn keep_in_run(&self, run_dir: &Dir, name: &str) -> Result<()> {
        match self.dir.read(name).await? {
            Some(doc) => run_dir.write(name, &doc).await,
            None => Ok(()),
        }
    }

    pub async fn clear_inflight(&self) -> Result<()> {
        self.dir.remove(INFLIGHT).await?;
        self.versions.lock().expect("versions").insert(INFLIGHT, Expect::Absent);
        Ok(())
    }

    pub async fn checkpoint(&self) -> Result<Checkpoint> {
        Ok(self.read_json(CHECKPOINT).await?.unwrap_or_default())
    }

    /// Moves the checkpoint forward after a complete run.
    pub async fn advance(&self, entry: HistoryEntry) -> Result<()> {
        let mut c = self.checkpoint().await?;
        c.transaction_time = Some(entry.transaction_time.clone());
        c.run_id = Some(entry.run_id.clone());
        c.history.insert(0, entry);
        c.history.truncate(HISTORY);
        self.write_json(CHECKPOINT, &c).await
    }

    /// The event log of the export in flight, on local disk (see [`JobState::finish_log`]).
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    /// Moves the event log into the run folder (as `rel`) when the run is recorded.
    pub async fn finish_log(&self, run_dir: &Dir, rel: &str) -> Result<()> {
        match run_dir {
            Dir::Local(p) => {
                let to = p.join(rel);
                create_private_dir(to.parent().expect("the log has a folder"))?;
                fs::rename(&self.log, &to).map_err(|e| Error::io(&to, e))
            }
            Dir::Object(_) => {
                let b = fs::read(&self.log).map_err(|e| Error::io(&self.log, e))?;
                run_dir.write(rel, &b).await?;
                self.forget_log().await
            }
        }
    }

    /// Removes the event log of the export in flight.
    pub async fn forget_log(&self) -> Result<()> {
        let _ = fs::remove_file(&self.log);
        if self.dir.is_object() {
            self.dir.remove(crate::record::LOG_FILE).await?;
        }
        Ok(())
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(&self, name: &'static str) -> Result<Option<T>> {
        let Some((b, version)) = self.dir.read_versioned(name).await? else {
            self.versions.lock().expect("versions").insert(name, Expect::Absent);
            return Ok(None);
        };
        self.versions.lock().expect("versions").insert(name, version);
        serde_json::from_slice(&b).map(Some).map_err(|e| {
            Error::Failed(format!(
                "{}: unreadable state ({e}); remove it to start afresh, or run `oneup-bulk cancel`",
                self.dir.label(name)
            ))
        })
    }

    /// Writes a state file, expecting the version last seen (nothing seen: the file must not exist).
    async fn write_json<T: Serialize>(&self, name: &'static str, value: &T) -> Result<()> {
        let expect = self.versions.lock().expect("versions").get(name).cloned().unwrap_or(Expect::Absent);
        let written = self.dir.write_versioned(name, &crate::store::json_bytes(value)?, &expect).await?;
        self.versions.lock().expect("versions").insert(name, written);
        Ok(())
    }
}

/// A private folder for this job's scratch files (the event log while in flight, for a bucket job):
/// per user and per bucket prefix, under the system's temporary folder.
fn scratch_dir(key: &str) -> PathBuf {
    let mut h = crate::digest::Sha256::new();
    h.update(key.as_bytes());
    let digest = h.finish_hex();
    std::env::temp_dir().join(format!("oneup-bulk-{}", &digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_lock_is_refused_and_released_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let s = JobState::new(&d.path().join("job"));
        let l = s.lock().await.unwrap();
        let e = s.lock().await.err().unwrap();
        assert_eq!(e.exit_code(), 75);
        assert!(e.to_string().contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(s.lock_holder().await.is_some());
        drop(l);
        assert!(s.lock_holder().await.is_none());
        s.lock().await.unwrap();
    }

    #[tokio::test]
    async fn checkpoint_keeps_a_short_history() {
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
            .await
            .unwrap();
        }
        let c = s.checkpoint().await.unwrap();
        assert_eq!(c.transaction_time.as_deref(), Some("t24"));
        assert_eq!(c.history.len(), HISTORY);
        assert_eq!(c.history[0].run_id, "r24");
    }
}
