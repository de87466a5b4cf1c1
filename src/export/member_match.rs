//! Payer-to-Payer member matching, run before the export, and the job it leaves to export. Two ways:
//! Da Vinci PDex `$bulk-member-match` (here: POST the `Parameters` of `MemberBundle`s with `Prefer:
//! respond-async`, wait like an export, read the result in either form — see [`super::match_result`] —
//! and export the `MatchedMembers` group), or HRex `$member-match` one member at a time
//! ([`super::hrex_match`], 1up's documented way), whose matched members become the export as
//! `member_match.matched_export` says. Answers are kept in the state folder while the export is in
//! flight and then in the run folder; the [`MemberMatchRecord`] goes into `run.json`.

use std::path::Path;
use std::time::SystemTime;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderName};
use serde_json::Value;

use super::match_result::{Answer, Groups, read_answer};
use crate::error::{Error, Result};
use crate::eventlog::{EventLog, LogEvent};
use crate::fhir::outcome_text;
use crate::http::MAX_SMALL_BODY;
use crate::job::{Job, Level, MatchOperation, MatchedExport, MemberMatch};
use crate::progress::Event;
use crate::record::MemberMatchRecord;
use crate::session::{Req, Session, TokenUse};
use crate::state::JobState;

/// The `$bulk-member-match` answer as received (the state folder while in flight, then the run folder).
pub const RESULT_FILE: &str = crate::record::MEMBER_MATCH_FILE;
/// Per-member `$member-match` answers, and PDex 2.2 result files.
pub const RESULTS_DIR: &str = "member-match";
/// The record, kept in the state folder until `run.json` takes it.
const RECORD_FILE: &str = "member-match.record.json";
/// A PDex 2.2 result file (Group NDJSON) is small: 10,000 members are about a megabyte.
const MAX_RESULT_FILE: usize = 64 << 20;

/// POSTs the members and waits for the result document.
async fn bulk_answer(session: &Session, job: &Job, mm: &MemberMatch) -> Result<Bytes> {
    let body = std::fs::read(&mm.parameters_file).map_err(|e| Error::io(&mm.parameters_file, e))?;
    serde_json::from_slice::<Value>(&body).map_err(|e| {
        Error::Usage(format!(
            "{}: not JSON ({e}); a FHIR Parameters resource is expected",
            mm.parameters_file.display()
        ))
    })?;
    let url = job.fhir_base.join("Group/$bulk-member-match").expect("relative");
    let req = Req {
        method: Method::POST,
        url: url.clone(),
        headers: Vec::new(),
        body: Some(Bytes::from(body)),
        token: TokenUse::AllowedOrigins,
        what: "$bulk-member-match".into(),
    }
    .header(ACCEPT, "application/fhir+json")
    .header(CONTENT_TYPE, "application/fhir+json")
    .header(HeaderName::from_static("prefer"), "respond-async");
    let reply = session.send(&req, MAX_SMALL_BODY).await?;
    match reply.status.as_u16() {
        200 => Ok(reply.body),
        202 => {
            let status_url = super::poll::status_location(&reply.headers, &url, "$bulk-member-match")?;
            match super::poll::wait(session, &status_url, &job.poll, SystemTime::now(), |_| {}).await? {
                super::poll::Polled::Ready(b) => Ok(b),
                super::poll::Polled::Gone(gone) => Err(Error::ServerRejected(format!("$bulk-member-match: {gone}"))),
            }
        }
        s @ (401 | 403) => Err(Error::AuthRefused {
            url: url.to_string(),
            detail: format!("HTTP {s} on $bulk-member-match: {}", outcome_text(&reply.body)),
        }),
        s => Err(Error::ServerRejected(format!("HTTP {s} on $bulk-member-match: {}", outcome_text(&reply.body)))),
    }
}

/// Fetches PDex 2.2 result files (bearer token only when the manifest asks, like export files), keeping
/// each as received.
async fn fetch_results(
    session: &Session,
    urls: &[String],
    token: bool,
    keep_dir: &Path,
) -> Result<(Groups, Vec<String>)> {
    let mut groups = Groups::default();
    let mut files = Vec::new();
    crate::private_fs::create_private_dir(&keep_dir.join(RESULTS_DIR))?;
    for (i, u) in urls.iter().enumerate() {
        let url = url::Url::parse(u)
            .map_err(|e| Error::ServerRejected(format!("$bulk-member-match result file {u:?} is not a URL: {e}")))?;
        crate::job::check_url_scheme(&url).map_err(Error::ServerRejected)?;
        let mut req = Req::get(url.clone(), "$bulk-member-match result").header(ACCEPT, "application/fhir+ndjson");
        req.token = if token { TokenUse::AllowedOrigins } else { TokenUse::Never };
        let reply = session.send(&req, MAX_RESULT_FILE).await?;
        if !reply.status.is_success() {
            return Err(Error::ServerRejected(format!(
                "$bulk-member-match result file {}: HTTP {}: {}",
                crate::redact::redact_query(&url),
                reply.status.as_u16(),
                outcome_text(&reply.body)
            )));
        }
        let name = format!("{RESULTS_DIR}/result.{:03}.ndjson", i + 1);
        crate::private_fs::write_atomic(&keep_dir.join(&name), &reply.body)?;
        groups.add_ndjson(&name, &reply.body)?;
        files.push(name);
    }
    Ok((groups, files))
}

/// `$bulk-member-match`: the record, and the job that exports the `MatchedMembers` group.
async fn bulk(session: &Session, job: &Job, mm: &MemberMatch, keep_dir: &Path) -> Result<(MemberMatchRecord, Job)> {
    let doc = bulk_answer(session, job, mm).await?;
    crate::private_fs::write_atomic(&keep_dir.join(RESULT_FILE), &doc)?;
    let (groups, mut files) = match read_answer(&doc)? {
        Answer::Groups(g) => (g, Vec::new()),
        Answer::Files { urls, requires_access_token } => {
            fetch_results(session, &urls, requires_access_token, keep_dir).await?
        }
    };
    let (group_id, mut rec) = groups.record()?;
    files.insert(0, RESULT_FILE.to_string());
    rec.files = files;
    let mut j = job.clone();
    j.export.level = Level::Group;
    j.export.group_id = Some(group_id);
    Ok((rec, j))
}

/// `$member-match`: the record, and the job that exports the matched members.
async fn one_by_one(
    session: &Session,
    job: &Job,
    mm: &MemberMatch,
    keep_dir: &Path,
) -> Result<(MemberMatchRecord, Job)> {
    let rec = super::hrex_match::run(session, job, mm, keep_dir, RESULTS_DIR).await?;
    let mut j = job.clone();
    if mm.matched_export == MatchedExport::Patients {
        j.export.level = Level::Patient;
        j.export.patients = rec.matched.iter().filter_map(|m| m.patient.clone()).collect();
    }
    Ok((rec, j))
}

/// Clears what an earlier match left in the state folder, so its answers cannot join this run.
fn forget(dir: &Path) -> Result<()> {
    for f in [RESULT_FILE, RECORD_FILE] {
        match std::fs::remove_file(dir.join(f)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(dir.join(f), e)),
            _ => {}
        }
    }
    match std::fs::remove_dir_all(dir.join(RESULTS_DIR)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir.join(RESULTS_DIR), e)),
        _ => Ok(()),
    }
}

/// Payer-to-Payer: matches the members (answers kept in `state`), and returns the job that exports them.
pub async fn matched_members_job(
    session: &Session,
    job: &Job,
    mm: &MemberMatch,
    state: &JobState,
    log: &EventLog,
) -> Result<Job> {
    let dir = &state.dir;
    crate::private_fs::create_private_dir(dir)?;
    forget(dir)?;
    let (rec, target) = match mm.operation {
        MatchOperation::BulkMemberMatch => bulk(session, job, mm, dir).await?,
        MatchOperation::MemberMatch => one_by_one(session, job, mm, dir).await?,
    };
    crate::private_fs::write_json(&dir.join(RECORD_FILE), &rec)?;
    let exporting = match (&target.export.group_id, target.export.level) {
        (Some(g), Level::Group) => format!("exporting Group/{g}"),
        (_, Level::Patient) if !target.export.patients.is_empty() => {
            format!("exporting {} matched patients", target.export.patients.len())
        }
        _ => "exporting what the server scopes to the matched members".into(),
    };
    let note = format!(
        "${}: {} of {} matched, {} not matched, {} consent refused; {exporting}",
        rec.operation,
        rec.matched.len(),
        rec.members,
        rec.not_matched.len(),
        rec.consent_refused.len()
    );
    session.reporter.event(&Event::Note { message: &note });
    for w in rec.warnings() {
        tracing::warn!("{}", w.message);
    }
    log.write(&LogEvent::MemberMatch {
        matched: rec.matched.len(),
        non_matched: rec.not_matched.len(),
        consent_constrained: rec.consent_refused.len(),
        group_id: rec.group_id.as_deref().unwrap_or(""),
    });
    if rec.matched.is_empty() {
        let kept = dir.join(rec.files.first().map_or(RESULT_FILE, |f| f.as_str()));
        return Err(Error::Failed(format!("no member matched, so there is nothing to export; see {}", kept.display())));
    }
    if mm.matched_export == MatchedExport::Patients && target.export.patients.is_empty() {
        return Err(Error::ServerRejected(
            "members matched, but no answer named the patient (MemberId) to export; use `matched_export: server-scoped`"
                .into(),
        ));
    }
    Ok(target)
}

/// Copies the match's answers from the state folder into the run folder (when the manifest arrives).
pub fn keep_in_run(job: &Job, state: &JobState, run: &crate::store::Dir) -> Result<()> {
    if job.member_match.is_none() {
        return Ok(());
    }
    // Refused before the run starts for a bucket (see `app::run_job`): the match's files are local.
    let crate::store::Dir::Local(run_dir) = run else {
        return Err(Error::Usage("member_match needs download.dir on local disk".into()));
    };
    state.keep_in_run(run, RESULT_FILE)?;
    let Ok(entries) = std::fs::read_dir(state.dir.join(RESULTS_DIR)) else {
        return Ok(());
    };
    crate::private_fs::create_private_dir(&run_dir.join(RESULTS_DIR))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let bytes = std::fs::read(e.path()).map_err(|err| Error::io(e.path(), err))?;
        crate::private_fs::write_atomic(&run_dir.join(RESULTS_DIR).join(name), &bytes)?;
    }
    Ok(())
}

/// The record of this export's match, for `run.json` (`None` for jobs without one).
pub fn record(job: &Job, state: &JobState) -> Option<MemberMatchRecord> {
    job.member_match.as_ref()?;
    let bytes = std::fs::read(state.dir.join(RECORD_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}
