//! Scheduling: `download.concurrency` files at once in a `JoinSet`, and for each file the retry loop
//! around [`attempt`] (resume or restart, backoff, and the final name given through the file's
//! [`Target`]: the rename from `.part`, or the completion of its multipart upload), including the
//! refetches that tell a file still changing from a manifest count that is simply wrong.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::classify::{Fingerprint, Retry, Streak, judge_mismatch};
use super::fetch::{Attempt, attempt};
use super::{Batch, Downloaded};
use crate::error::{Error, Result};
use crate::job::{DownloadSettings, Validate};
use crate::progress::Event;
use crate::record::{FileRecord, PlannedFile, Problem};
use crate::session::Session;
use crate::store::{Dir, Target};

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
    run_dir: &Dir,
    files: &[PlannedFile],
    settings: &DownloadSettings,
    requires_token: bool,
    done: &[FileRecord],
    mut on_verified: impl FnMut(&Downloaded),
) -> Result<Batch> {
    let mut results: Vec<Option<Downloaded>> = vec![None; files.len()];
    let mut queue = Vec::new();
    for (i, f) in files.iter().enumerate() {
        // By path and type, not URL: a refreshed manifest has new (signed) URLs for the same files.
        let d = done.iter().find(|d| d.path == f.path && d.resource_type == f.resource_type);
        let stored = match d {
            Some(_) => run_dir.size(&f.path)?,
            None => None,
        };
        match d {
            Some(d) if stored == Some(d.bytes) => {
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
        let dir = run_dir.clone();
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
    run_dir: &Dir,
    id: usize,
    file: &PlannedFile,
    settings: &DownloadSettings,
    requires_token: bool,
) -> Result<FileEnd> {
    let mut target: Target = run_dir.target(&file.path)?;
    session.reporter.event(&Event::DownloadStarted { id, file });
    let res = fetch_one(session, run_dir, &mut target, id, file, settings, requires_token).await;
    if res.as_ref().is_ok_and(|e| matches!(e, FileEnd::Verified(_))) {
        return res;
    }
    // An attempt given up: a `.part` stays for a resume; an upload (which cannot resume) is aborted.
    target.abandon().await;
    res
}

/// The attempts at one file, into `target`.
async fn fetch_one(
    session: &Session,
    run_dir: &Dir,
    target: &mut Target,
    id: usize,
    file: &PlannedFile,
    settings: &DownloadSettings,
    requires_token: bool,
) -> Result<FileEnd> {
    let strict = settings.validate == Validate::Strict;
    async fn verified(
        session: &Session,
        target: &mut Target,
        bucket: bool,
        strict: bool,
        id: usize,
        file: &PlannedFile,
        mut d: Downloaded,
    ) -> Result<FileEnd> {
        if bucket && strict && d.record.invalid_lines + d.record.wrong_type_lines > 0 {
            // A bucket's consumers may act on any new object: a file that fails strict checks is never
            // published there (on disk it stays for review; the run fails either way).
            target.discard().await;
            let message = "not kept: the file failed strict validation, so its upload was aborted".into();
            d.problems.push(Problem { file: Some(file.path.clone()), line: None, message });
        } else {
            target.commit().await?;
        }
        session.reporter.event(&Event::DownloadFinished { id, file, lines: d.record.lines, bytes: d.record.bytes });
        Ok(FileEnd::Verified(Box::new(d)))
    }
    let bucket = run_dir.is_object();
    let mut failures = 0u32;
    // Whole bodies whose count disagreed with the manifest, in a row with the same bytes.
    let mut streak: Option<Streak> = None;
    loop {
        // The fetch that checks a first count mismatch is a measurement, not a fault: it is not charged
        // to `download.retries`, so even `retries: 0` can tell a wrong count from a changing file.
        let mut free = false;
        let retry = match attempt(session, id, file, target, settings, requires_token).await? {
            Attempt::Verified(d) => return verified(session, target, bucket, strict, id, file, d).await,
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
                    return verified(session, target, bucket, strict, id, file, d).await;
                }
                streak = Some(s);
                Retry::Restart(reason)
            }
            Attempt::Retry(retry) => retry,
        };
        let reason = match retry {
            Retry::Resume(r) => r,
            Retry::Restart(r) => {
                target.discard().await;
                r
            }
        };
        if failures >= settings.retries && !free {
            session.reporter.event(&Event::DownloadFailed { id, file, reason: &reason });
            return Err(Error::Transient(format!("{}: {reason} (after {} attempts)", file.path, failures + 1)));
        }
        let from = target.resume_from();
        session.reporter.event(&Event::DownloadRetry { id, file, reason: &reason, resume_from: from });
        let wait = session.policy.wait(failures, None, fastrand::f64());
        if !free {
            failures += 1;
        }
        tokio::time::sleep(wait).await;
    }
}
