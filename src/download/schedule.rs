//! Scheduling: `download.concurrency` files at once in a `JoinSet`, and for each file the retry loop
//! around [`attempt`] (resume or restart, backoff, the final rename from `.part`), including the
//! refetches that tell a file still changing from a manifest count that is simply wrong.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::classify::{Fingerprint, Retry, Streak, judge_mismatch};
use super::fetch::{Attempt, attempt};
use super::{Batch, Downloaded, part_path};
use crate::error::{Error, Result};
use crate::job::DownloadSettings;
use crate::private_fs::create_private_dir;
use crate::progress::Event;
use crate::record::FileRecord;
use crate::record::PlannedFile;
use crate::session::Session;

/// How one file ended, when no error ended it.
enum FileEnd {
    Verified(Box<Downloaded>),
    /// Its signed URL was refused: see [`Batch::UrlsExpired`].
    UrlExpired,
}

/// Downloads every file not already in `done`, `settings.concurrency` at a time, calling `on_verified`
/// as each lands. The first file that cannot be fetched ends the batch: no more are started, those in
/// flight are let finish, and `.part` files stay for a resume. A fatal error is returned as `Err`; a
/// signed URL refused (expired) as [`Batch::UrlsExpired`], so the caller can fetch fresh URLs and call
/// again with the files done so far.
pub async fn download_all(
    session: Arc<Session>,
    run_dir: &Path,
    files: &[PlannedFile],
    settings: &DownloadSettings,
    requires_token: bool,
    done: &[FileRecord],
    mut on_verified: impl FnMut(&Downloaded),
) -> Result<Batch> {
    let mut results: Vec<Option<Downloaded>> = vec![None; files.len()];
    let mut queue = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let final_path = run_dir.join(&f.path);
        // By path and type, not URL: a refreshed manifest has new (signed) URLs for the same files.
        match done.iter().find(|d| d.path == f.path && d.resource_type == f.resource_type) {
            Some(d) if final_path.exists() => {
                results[i] = Some(Downloaded { record: d.clone(), problems: Vec::new() });
            }
            _ => queue.push(i),
        }
    }
    let mut set: JoinSet<(usize, Result<FileEnd>)> = JoinSet::new();
    let mut next = queue.into_iter();
    // Why the batch stops: the first error or refused URL (later ones are dropped).
    let mut stop: Option<Result<String>> = None;
    let spawn = |set: &mut JoinSet<_>, i: usize| {
        let (session, file, settings) = (session.clone(), files[i].clone(), settings.clone());
        let dir = run_dir.to_path_buf();
        // In the caller's span, so log lines from a download carry the job's name.
        let task = async move { (i, download_one(&session, &dir, i, &file, &settings, requires_token).await) };
        set.spawn(tracing::Instrument::in_current_span(task));
    };
    for i in next.by_ref().take(settings.concurrency.max(1)) {
        spawn(&mut set, i);
    }
    while let Some(joined) = set.join_next().await {
        let (i, res) = joined.map_err(|e| Error::Failed(format!("a download task failed: {e}")))?;
        match res {
            Ok(FileEnd::Verified(d)) => {
                on_verified(&d);
                results[i] = Some(*d);
                if stop.is_none()
                    && let Some(j) = next.next()
                {
                    spawn(&mut set, j);
                }
            }
            // Let the files in flight finish (they may complete), start no more.
            Ok(FileEnd::UrlExpired) => {
                stop.get_or_insert(Ok(files[i].path.clone()));
            }
            Err(e) => {
                stop.get_or_insert(Err(e));
            }
        }
    }
    match stop {
        None => Ok(Batch::Complete(results.into_iter().map(|r| r.expect("every file downloaded")).collect())),
        Some(Ok(file)) => Ok(Batch::UrlsExpired { file, done: results.into_iter().flatten().collect() }),
        Some(Err(e)) => Err(e),
    }
}

/// One file, with its retries, from the first request to the rename to its final name.
async fn download_one(
    session: &Session,
    run_dir: &Path,
    id: usize,
    file: &PlannedFile,
    settings: &DownloadSettings,
    requires_token: bool,
) -> Result<FileEnd> {
    let final_path = run_dir.join(&file.path);
    if let Some(parent) = final_path.parent() {
        create_private_dir(parent)?;
    }
    let part = part_path(&final_path);
    session.reporter.event(&Event::DownloadStarted { id, file });
    let verified = |d: Downloaded| -> Result<FileEnd> {
        fs::rename(&part, &final_path).map_err(|e| Error::io(&final_path, e))?;
        session.reporter.event(&Event::DownloadFinished { id, file, lines: d.record.lines, bytes: d.record.bytes });
        Ok(FileEnd::Verified(Box::new(d)))
    };
    let mut failures = 0u32;
    // Whole bodies whose count disagreed with the manifest, in a row with the same bytes.
    let mut streak: Option<Streak> = None;
    loop {
        // The fetch that checks a first count mismatch is a measurement, not a fault: it is not charged
        // to `download.retries`, so even `retries: 0` can tell a wrong count from a changing file.
        let mut free = false;
        let retry = match attempt(session, id, file, &part, settings, requires_token).await? {
            Attempt::Verified(d) => return verified(d),
            Attempt::UrlExpired => return Ok(FileEnd::UrlExpired),
            Attempt::CountMismatch { file: d, reason } => {
                let now = Fingerprint { bytes: d.record.bytes, sha256: d.record.sha256.clone() };
                free = streak.is_none();
                let (s, proven) = judge_mismatch(streak.as_ref(), now);
                if proven {
                    let note = format!(
                        "{}: {reason}; {} full fetches gave the same bytes: kept as the server has it",
                        file.path, s.fetches
                    );
                    session.reporter.event(&Event::Note { message: &note });
                    return verified(d);
                }
                streak = Some(s);
                Retry::Restart(reason)
            }
            Attempt::Retry(retry) => retry,
        };
        let reason = match retry {
            Retry::Resume(r) => r,
            Retry::Restart(r) => {
                let _ = fs::remove_file(&part);
                r
            }
        };
        if failures >= settings.retries && !free {
            session.reporter.event(&Event::DownloadFailed { id, file, reason: &reason });
            return Err(Error::Transient(format!("{}: {reason} (after {} attempts)", file.path, failures + 1)));
        }
        let from = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        session.reporter.event(&Event::DownloadRetry { id, file, reason: &reason, resume_from: from });
        let wait = session.policy.wait(failures, None, fastrand::f64());
        if !free {
            failures += 1;
        }
        tokio::time::sleep(wait).await;
    }
}
