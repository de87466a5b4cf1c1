//! Downloads that outlive their links. Signed file URLs expire (often after an hour); when a file host
//! says so (410, or 401/403 to a request sent without a token) the status URL is asked for fresh links
//! (the Bulk Data IG allows it) and the files not yet verified continue, up to [`MAX_URL_REFRESHES`]
//! times in a row without a file verified in between (links that expire every few minutes during an
//! hour's download are renewed as often as it takes). When the server has no fresh links — the status URL answers 404/410, or hands back
//! the same expired link, or the export was synchronous — the export is gone: the state is cleared and
//! [`Error::ExportGone`] tells the caller to start a new one. [`compare_links`] is the pure decision.

use std::sync::Arc;
use std::time::SystemTime;

use url::Url;

use super::{Batch, Downloaded, download_all};
use crate::error::{Error, Result};
use crate::eventlog::{EventLog, LogEvent, RUN_LOG};
use crate::export::advice;
use crate::export::manifest::{self, Manifest};
use crate::export::pages::{self, Pages};
use crate::export::poll::{self, Polled};
use crate::job::Job;
use crate::progress::Event;
use crate::record::PlannedFile;
use crate::session::Session;
use crate::state::{InFlight, JobState};

/// How often expired file URLs are refreshed from the status URL with no file verified in between.
pub const MAX_URL_REFRESHES: u32 = 3;

/// What a fresh manifest says about a file whose link expired.
#[derive(Debug, PartialEq)]
pub enum Links {
    /// The file has a new link: download again with these files.
    Fresh(Vec<PlannedFile>),
    /// The file has the same link as before, or is no longer listed: the server has nothing fresher.
    NoneFresh,
}

/// Compares the link of `expired` (a path from our scheme) in the old plan and the fresh one.
pub fn compare_links(old: &[PlannedFile], fresh: Vec<PlannedFile>, expired: &str) -> Links {
    let url = |files: &[PlannedFile]| files.iter().find(|f| f.path == expired).map(|f| f.url.clone());
    match (url(old), url(&fresh)) {
        (Some(a), Some(b)) if a != b => Links::Fresh(fresh),
        _ => Links::NoneFresh,
    }
}

/// Where the downloads of one export happen, and what they are recorded in.
pub struct Ctx<'a> {
    pub job: &'a Job,
    pub session: &'a Arc<Session>,
    pub state: &'a JobState,
    pub log: &'a EventLog,
    pub status_url: &'a Url,
    pub run_dir: &'a crate::store::Dir,
}

/// Downloads every file not yet verified (recording each in the state as it lands), renewing expired
/// links from the status URL.
pub async fn download(
    cx: &Ctx<'_>,
    inflight: &mut InFlight,
    m: &Manifest,
    mut files: Vec<PlannedFile>,
) -> Result<Vec<Downloaded>> {
    let (job, session) = (cx.job, cx.session);
    let mut refreshes = 0;
    loop {
        let done = inflight.done.clone();
        let verified_before = done.len();
        let batch =
            download_all(session.clone(), cx.run_dir, &files, &job.download, m.requires_access_token, &done, |d| {
                inflight.record_done(d.record.clone());
                if let Err(e) = cx.state.save_inflight(inflight) {
                    tracing::warn!(error = %e, "could not record a verified file in the state");
                }
            })
            .await?;
        let expired = match batch {
            Batch::Complete(d) => return Ok(d),
            Batch::UrlsExpired { file, .. } => file,
        };
        if inflight.synchronous {
            return gone(
                cx,
                &format!(
                    "{expired}: the file link has expired, and a synchronous export has no status URL to renew it from"
                ),
            );
        }
        // Links that expire while a long download goes on are renewed as often as it takes; only
        // fresh links that bring no verified file count against the bound.
        if inflight.done.len() > verified_before {
            refreshes = 0;
        }
        if refreshes >= MAX_URL_REFRESHES {
            return Err(Error::AuthRefused {
                url: expired,
                detail: format!(
                    "the file URLs kept being refused after fresh ones were fetched {MAX_URL_REFRESHES} times \
                     (check auth.token_origins and the manifest's requiresAccessToken); {}",
                    advice::state_kept(job)
                ),
            });
        }
        refreshes += 1;
        let note = format!("{expired}: the file link has expired; asking the status URL for fresh ones");
        session.reporter.event(&Event::Note { message: &note });
        cx.log.write(&LogEvent::StatusProgress { x_progress: Some(&note), retry_after_secs: None });
        let body = match poll::wait(session, cx.status_url, &job.poll, SystemTime::now(), |_| {}).await? {
            Polled::Ready(b) => b,
            Polled::Gone(why) => return gone(cx, &format!("{why}, when asked for fresh file links")),
        };
        let fresh =
            pages::collect(session, &job.poll, cx.status_url, cx.run_dir, manifest::parse(&body)?, Pages::Fresh);
        files = match compare_links(&files, manifest::plan(&fresh.await?, cx.status_url)?, &expired) {
            Links::Fresh(f) => f,
            Links::NoneFresh => {
                return gone(cx, &format!("{expired}: the status URL handed back the same expired link"));
            }
        };
    }
}

/// The export is gone: the state is cleared, and its log joins the (incomplete) run folder it leaves.
fn gone<T>(cx: &Ctx<'_>, why: &str) -> Result<T> {
    cx.log.write(&LogEvent::StatusError { message: why, status_url: cx.status_url.as_str() });
    cx.state.clear_inflight()?;
    let _ = cx.state.finish_log(cx.run_dir, RUN_LOG);
    Err(Error::ExportGone {
        reason: why.to_string(),
        next: format!(
            "the next run starts a new one (`{}`). The state is cleared; the files verified so far stay in {} \
             (incomplete: no run.json)",
            advice::run(cx.job),
            cx.run_dir.location(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FileKind;

    fn file(path: &str, url: &str) -> PlannedFile {
        PlannedFile {
            kind: FileKind::Output,
            resource_type: "Patient".into(),
            url: url.parse().unwrap(),
            count: None,
            path: path.into(),
            continues_in: None,
        }
    }

    #[test]
    fn a_new_link_for_the_expired_file_is_fresh() {
        let old = vec![file("Patient.ndjson", "https://s3/p?sig=1"), file("Coverage.ndjson", "https://s3/c?sig=1")];
        let fresh = vec![file("Patient.ndjson", "https://s3/p?sig=2"), file("Coverage.ndjson", "https://s3/c?sig=2")];
        assert_eq!(compare_links(&old, fresh.clone(), "Patient.ndjson"), Links::Fresh(fresh));
    }

    #[test]
    fn the_same_link_or_no_link_is_nothing_fresh() {
        let old = vec![file("Patient.ndjson", "https://s3/p?sig=1"), file("Coverage.ndjson", "https://s3/c?sig=1")];
        // Other files' links changed, the expired one's did not.
        let same = vec![file("Patient.ndjson", "https://s3/p?sig=1"), file("Coverage.ndjson", "https://s3/c?sig=2")];
        assert_eq!(compare_links(&old, same, "Patient.ndjson"), Links::NoneFresh);
        let missing = vec![file("Coverage.ndjson", "https://s3/c?sig=2")];
        assert_eq!(compare_links(&old, missing, "Patient.ndjson"), Links::NoneFresh);
    }
}
