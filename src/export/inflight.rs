//! An export's life in the job's state: kicked off (and saved as in flight before the first poll, so a
//! crash from then on resumes it instead of starting another), polled until its manifest (X-Progress
//! kept; once it has arrived, the saved copy instead), and forgotten when the server no longer has it
//! ([`Error::ExportGone`], at any stage: [`after_error`]) or has failed it. A kick-off answered with
//! the manifest itself (a synchronous export) is saved the same way, with the manifest beside it.

use std::time::SystemTime;

use url::Url;

use super::kickoff::Accepted;
use super::poll::{self, Polled};
use super::{advice, kickoff, member_match};
use crate::error::{Error, Result};
use crate::eventlog::{EventLog, LogEvent};
use crate::instant;
use crate::job::{Job, MatchOperation, Since};
use crate::private_fs::write_atomic;
use crate::progress::Event;
use crate::session::Session;
use crate::state::{InFlight, JobState};

/// Starts a new export (after `$bulk-member-match` for Payer-to-Payer jobs that ask for it) and saves it
/// as in flight before the first poll, so a crash from here on resumes this export.
pub async fn kick_off(
    job: &Job,
    session: &Session,
    state: &JobState,
    log: &EventLog,
    export_id: String,
) -> Result<InFlight> {
    let since = resolve_since(job, state)?;
    let matched;
    let target = match &job.member_match {
        // A bulk match's group may be given instead (`export.group_id`); `$member-match` always runs.
        Some(mm) if mm.operation == MatchOperation::MemberMatch || job.export.group_id.is_none() => {
            matched = member_match::matched_members_job(session, job, mm, state, log).await?;
            &matched
        }
        _ => job,
    };
    let k = kickoff::build(target, since);
    let logged = |status_url: Option<&Url>, error: Option<(u8, String)>| {
        let status_url = status_url.map(Url::as_str);
        log.write(&LogEvent::Kickoff {
            export_url: k.url.as_str(),
            parameters: k.logged_parameters(),
            status_url,
            error,
        })
    };
    let accepted =
        kickoff::send(session, &k).await.inspect_err(|e| logged(None, Some((e.exit_code(), e.to_string()))))?;
    let s = match accepted {
        Accepted::Async(status_url) => {
            let s = InFlight::new(export_id, &status_url, &k.url, k.method.as_str(), since);
            state.save_inflight(&s)?;
            logged(Some(&status_url), None);
            session.reporter.event(&Event::KickedOff { status_url: status_url.as_str() });
            s
        }
        Accepted::Complete(manifest) => {
            // The manifest first, then the state that points at it: a crash in between leaves nothing.
            write_atomic(&state.dir.join(SYNC_MANIFEST), &manifest)?;
            let mut s = InFlight::new(export_id, &k.url, &k.url, k.method.as_str(), since);
            s.synchronous = true;
            state.save_inflight(&s)?;
            logged(None, None);
            let message = "the server answered the kick-off with the completion manifest (a synchronous export)";
            session.reporter.event(&Event::Note { message });
            s
        }
    };
    Ok(s)
}

/// Where a synchronous export's manifest waits in the state folder until it is in the run folder.
const SYNC_MANIFEST: &str = "sync-manifest.json";

/// The `_since` this run sends: the job's instant (or `--since`), else (auto) the checkpoint's.
pub fn resolve_since(job: &Job, state: &JobState) -> Result<Option<time::OffsetDateTime>> {
    Ok(match job.export.since {
        Since::None => None,
        Since::At(t) => Some(t),
        Since::Auto => state.checkpoint()?.transaction_time.as_deref().and_then(instant::parse),
    })
}

/// The export's manifest: the copy saved when it arrived (a resumed run, even one whose run folder was
/// deleted by hand), else from the status URL ([`wait_for_manifest`]).
pub async fn manifest(
    job: &Job,
    session: &Session,
    state: &JobState,
    log: &EventLog,
    inflight: &mut InFlight,
    status_url: &Url,
) -> Result<bytes::Bytes> {
    match inflight.run_id.as_deref().and_then(|run_id| state.saved_manifest(run_id)) {
        Some(saved) => Ok(saved),
        None => wait_for_manifest(job, session, state, log, inflight, status_url).await,
    }
}

/// What an error leaves in the state: an export the server no longer has is forgotten (with its event
/// log), so the next run starts a new one instead of failing on it forever. Anything else keeps the
/// state for a resume.
pub fn after_error(state: &JobState, e: &Error) -> Result<()> {
    if let Error::ExportGone { .. } = e {
        state.clear_inflight()?;
        let _ = std::fs::remove_file(state.log_path());
    }
    Ok(())
}

/// Polls the status URL until the manifest is ready. A status URL the server no longer knows is
/// [`Error::ExportGone`]; a failed export clears the state (the next run starts afresh).
pub async fn wait_for_manifest(
    job: &Job,
    session: &Session,
    state: &JobState,
    log: &EventLog,
    inflight: &mut InFlight,
    status_url: &Url,
) -> Result<bytes::Bytes> {
    if inflight.synchronous {
        let p = state.dir.join(SYNC_MANIFEST);
        return Ok(std::fs::read(&p).map_err(|e| Error::io(&p, e))?.into());
    }
    let started = instant::parse(&inflight.started).map(SystemTime::from).unwrap_or_else(SystemTime::now);
    let mut last_progress = inflight.last_progress.clone();
    let res = poll::wait(session, status_url, &job.poll, started, |p| last_progress = p.map(str::to_string)).await;
    if last_progress != inflight.last_progress {
        inflight.last_progress = last_progress;
        let _ = state.save_inflight(inflight);
    }
    let error = |message: &str| log.write(&LogEvent::StatusError { message, status_url: status_url.as_str() });
    match res {
        Ok(Polled::Ready(body)) => Ok(body),
        Ok(Polled::Gone(why)) => {
            error(&why);
            Err(Error::gone(why))
        }
        Err(Error::ServerRejected(why)) => {
            // The server failed this export for good (a status error whose OperationOutcome is not
            // transient): the next run must start a new one.
            error(&why);
            state.clear_inflight()?;
            Err(Error::ServerRejected(format!("{why}; {}", advice::state_cleared(job))))
        }
        Err(e) => {
            error(&e.to_string());
            Err(e)
        }
    }
}
