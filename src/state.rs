//! Per-job state beside the outputs (`<dir>/<job>/.state/`): the export in flight (status URL, request,
//! start, verified files), the checkpoint (last complete `transactionTime` and a short history) and the
//! lock that keeps two runs of one job apart. Every write is atomic (write, fsync, rename), so a
//! `kill -9` leaves either the old state or the new one.

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

use crate::error::{Error, Result};
use crate::private_fs::{create_private_dir, write_json};
use crate::progress::{Event, Reporter};
use crate::record::{FileRecord, RunRecord};

pub const STATE_DIR: &str = ".state";
const INFLIGHT: &str = "inflight.json";
pub const CHECKPOINT: &str = "checkpoint.json";
const LOCK: &str = "lock";
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
    pub job_dir: PathBuf,
    pub dir: PathBuf,
}

/// Held for the duration of a run; the OS releases it when the process dies, however it dies.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl JobState {
    pub fn new(job_dir: &Path) -> Self {
        JobState { job_dir: job_dir.to_path_buf(), dir: job_dir.join(STATE_DIR) }
    }

    pub fn create(&self) -> Result<()> {
        create_private_dir(&self.job_dir)?;
        create_private_dir(&self.dir)
    }

    /// Takes the job's lock, or says who holds it.
    pub fn lock(&self) -> Result<Lock> {
        self.create()?;
        let path = self.dir.join(LOCK);
        let mut f = crate::private_fs::open_private(&path, fs::OpenOptions::new().read(true).write(true).create(true))
            .map_err(|e| Error::io(&path, e))?;
        match f.try_lock() {
            Ok(()) => {
                let holder = format!("pid {} since {}\n", std::process::id(), crate::instant::now());
                let _ = f.set_len(0);
                let _ = f.rewind();
                let _ = f.write_all(holder.as_bytes());
                let _ = f.sync_data();
                Ok(Lock { _file: f })
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
    pub fn lock_holder(&self) -> Option<String> {
        let path = self.dir.join(LOCK);
        let mut f = File::open(&path).ok()?;
        match f.try_lock_shared() {
            Ok(()) => None,
            Err(_) => {
                let mut s = String::new();
                f.read_to_string(&mut s).ok()?;
                Some(s.trim().to_string())
            }
        }
    }

    pub fn inflight(&self) -> Result<Option<InFlight>> {
        read_json(&self.dir.join(INFLIGHT))
    }

    pub fn save_inflight(&self, s: &InFlight) -> Result<()> {
        write_json(&self.dir.join(INFLIGHT), s)
    }

    /// `--restart`: forgets the export in flight (and its event log), if there is one.
    pub fn forget_inflight(&self, reporter: &dyn Reporter) -> Result<()> {
        if let Some(old) = self.inflight()? {
            let message = format!("--restart: forgetting the export at {}", old.status_url);
            reporter.event(&Event::Note { message: &message });
            self.clear_inflight()?;
            let _ = fs::remove_file(self.log_path());
        }
        Ok(())
    }

    /// The manifest an earlier attempt saved in run folder `run_id`.
    pub fn saved_manifest(&self, run_id: &str) -> Result<bytes::Bytes> {
        let p = self.job_dir.join(run_id).join(crate::record::MANIFEST_FILE);
        Ok(fs::read(&p).map_err(|e| Error::io(&p, e))?.into())
    }

    /// Copies a file kept in the state folder (a `$bulk-member-match` result) into the run folder.
    pub fn keep_in_run(&self, run_dir: &Path, name: &str) -> Result<()> {
        match fs::read(self.dir.join(name)) {
            Ok(doc) => crate::private_fs::write_atomic(&run_dir.join(name), &doc),
            Err(_) => Ok(()),
        }
    }

    pub fn clear_inflight(&self) -> Result<()> {
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
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            Error::Failed(format!(
                "{}: unreadable state ({e}); remove it to start afresh, or run `oneup-bulk cancel`",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_released_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let s = JobState::new(&d.path().join("job"));
        let l = s.lock().unwrap();
        let e = s.lock().unwrap_err();
        assert_eq!(e.exit_code(), 75);
        assert!(e.to_string().contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(s.lock_holder().is_some());
        drop(l);
        assert!(s.lock_holder().is_none());
        s.lock().unwrap();
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
