//! Scheduling: `download.concurrency` files at once in a `JoinSet`, and for each file the retry loop
//! around [`attempt`] (resume or restart, backoff, and the final name given through the file's
//! [`Target`]: the rename from `.part`, or the completion of its multipart upload).

use std::sync::Arc;

use tokio::task::JoinSet;

use super::classify::Retry;
use super::fetch::{Attempt, attempt};
use super::{Batch, Downloaded};
use crate::error::{Error, Result};
use crate::job::{DownloadSettings, Validate};
use crate::progress::Event;
use crate::record::PlannedFile;
use crate::record::{FileRecord, Problem};
use crate::session::Session;
use crate::store::{Dir, Target};

/// How one file ended, when no error ended it.
enum FileEnd {
    Verified(Downloaded),
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
    on_verified: &mut dyn super::OnVerified,
) -> Result<Batch> {
    let mut results: Vec<Option<Downloaded>> = vec![None; files.len()];
    let mut queue = Vec::new();
    for (i, f) in files.iter().enumerate() {
        // By path and type, not URL: a refreshed manifest has new (signed) URLs for the same files.
        let d = done.iter().find(|d| d.path == f.path && d.resource_type == f.resource_type);
        let stored = match d {
            Some(_) => run_dir.size(&f.path).await?,
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
                on_verified.verified(&d).await;
                results[i] = Some(d);
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
    let mut failures = 0u32;
    loop {
        let retry = match attempt(session, id, file, &mut target, settings, requires_token).await {
            Err(e) => {
                target.abandon().await;
                return Err(e);
            }
            Ok(Attempt::Verified(mut d)) => {
                let invalid = d.record.invalid_lines + d.record.wrong_type_lines > 0;
                if invalid && settings.validate == Validate::Strict && run_dir.is_object() {
                    // A bucket's consumers may act on any new object: a file that fails strict checks is
                    // never published there (on disk it stays for review; the run fails either way).
                    target.discard().await;
                    let message = "not kept: the file failed strict validation, so its upload was aborted".into();
                    d.problems.push(Problem { file: Some(file.path.clone()), line: None, message });
                } else {
                    target.commit().await?;
                }
                session.reporter.event(&Event::DownloadFinished {
                    id,
                    file,
                    lines: d.record.lines,
                    bytes: d.record.bytes,
                });
                return Ok(FileEnd::Verified(d));
            }
            Ok(Attempt::UrlExpired) => {
                target.abandon().await;
                return Ok(FileEnd::UrlExpired);
            }
            Ok(Attempt::Retry(retry)) => retry,
        };
        let reason = match retry {
            Retry::Resume(r) => r,
            Retry::Restart(r) => {
                target.discard().await;
                r
            }
        };
        if failures >= settings.retries {
            target.abandon().await;
            session.reporter.event(&Event::DownloadFailed { id, file, reason: &reason });
            return Err(Error::Transient(format!(
                "{}: {reason} (after {} attempts); the run's state is kept: run again to resume",
                file.path,
                failures + 1
            )));
        }
        let from = target.resume_from();
        session.reporter.event(&Event::DownloadRetry { id, file, reason: &reason, resume_from: from });
        let wait = session.policy.wait(failures, None, fastrand::f64());
        failures += 1;
        tokio::time::sleep(wait).await;
    }
}
