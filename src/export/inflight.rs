//! An export's life in the job's state: kicked off (and saved as in flight before the first poll, so a
//! crash from then on resumes it instead of starting another), polled until its manifest (X-Progress
//! kept), and forgotten when the server no longer has it or has failed it.

use std::time::SystemTime;

use url::Url;

use super::poll::{self, Polled};
use super::{kickoff, member_match};
use crate::error::{Error, Result, exit};
use crate::eventlog::{EventLog, LogEvent};
use crate::instant;
use crate::job::{Job, Since};
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
    let since = resolve_since(job, state).await?;
    let matched;
    let target = match &job.member_match {
        Some(mm) if job.export.group_id.is_none() => {
            matched = member_match::matched_members_job(session, job, mm, &state.dir, log).await?;
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
    let status_url =
        kickoff::send(session, &k).await.inspect_err(|e| logged(None, Some((e.exit_code(), e.to_string()))))?;
    let s = InFlight::new(export_id, &status_url, &k.url, k.method.as_str(), since);
    state.save_inflight(&s).await?;
    logged(Some(&status_url), None);
    session.reporter.event(&Event::KickedOff { status_url: status_url.as_str() });
    Ok(s)
}

/// The `_since` this run sends: the job's instant (or `--since`), else (auto) the checkpoint's.
pub async fn resolve_since(job: &Job, state: &JobState) -> Result<Option<time::OffsetDateTime>> {
    Ok(match job.export.since {
        Since::None => None,
        Since::At(t) => Some(t),
        Since::Auto => state.checkpoint().await?.transaction_time.as_deref().and_then(instant::parse),
    })
}

/// Polls the status URL until the manifest is ready. A status URL the server no longer knows clears the
/// state (the next run starts afresh); a failed export too.
pub async fn wait_for_manifest(
    job: &Job,
    session: &Session,
    state: &JobState,
    log: &EventLog,
    inflight: &mut InFlight,
    status_url: &Url,
) -> Result<bytes::Bytes> {
    let started = instant::parse(&inflight.started).map(SystemTime::from).unwrap_or_else(SystemTime::now);
    let mut last_progress = inflight.last_progress.clone();
    let res = poll::wait(session, status_url, &job.poll, started, |p| last_progress = p.map(str::to_string)).await;
    if last_progress != inflight.last_progress {
        inflight.last_progress = last_progress;
        let _ = state.save_inflight(inflight).await;
    }
    let error = |message: &str| log.write(&LogEvent::StatusError { message, status_url: status_url.as_str() });
    match res {
        Ok(Polled::Ready(body)) => Ok(body),
        Ok(Polled::Gone(why)) => {
            error(&why);
            state.clear_inflight().await?;
            Err(Error::Transient(format!("{why}. The state is cleared: the next run starts a new export")))
        }
        Err(e) => {
            error(&e.to_string());
            if e.exit_code() == exit::SERVER_REJECTED {
                // The server failed this export for good: the next run must start a new one.
                state.clear_inflight().await?;
            }
            Err(e)
        }
    }
}
