//! Patient Access (`access: patient-access`): one member's data from a health plan's FHIR server,
//! after the member has connected once.
//!
//! - `authorize` ([`authorize`], [`callback`], [`launch`]): SMART standalone launch with PKCE; the
//!   code is exchanged at once and the refresh token and patient id saved ([`connection`]).
//! - `run` ([`run`], this file): lock → the saved refresh token traded for an access token
//!   ([`tokens`]) → `$everything` or per-type searches, page by page ([`read`], [`bundle`]) into
//!   `.part` files with the state saved per page ([`paging`]) → each file checked by the download
//!   verifier and renamed → `run.json`, the event log, the checkpoint: the run folder of a bulk export.

pub mod authorize;
pub mod bundle;
pub mod callback;
pub mod connection;
pub mod launch;
pub mod paging;
pub mod read;
pub mod tokens;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::eventlog::{EventLog, LogEvent, RUN_LOG, new_export_id};
use crate::export::inflight::resolve_since;
use crate::job::{Job, PatientAccess, ReadMode};
use crate::private_fs::{create_private_dir, write_json};
use crate::progress::{Event, Reporter, Tee};
use crate::record::RunOutcome;
use crate::record::{self, JobInfo, RunRecord, summarize};
use crate::session::Session;
use crate::state::RunOptions;
use crate::state::{HistoryEntry, JobState};
use connection::Connection;
use paging::Paging;

/// Runs a patient-access job end to end, without a person. Resumes a read interrupted mid-paging from
/// its saved link.
pub async fn run(job: &Job, opts: &RunOptions, display: Arc<dyn Reporter>) -> Result<RunOutcome> {
    let t0 = Instant::now();
    let state = JobState::new(&job.job_dir());
    let _lock = state.lock()?;
    if opts.restart {
        forget(&state, &*display)?;
    }
    // No connection (or one for another plan): exit 3 with the authorize command, nothing sent.
    let conn = Connection::for_run(job, &state)?;
    let saved = Paging::load(&state)?;
    let export_id = saved.as_ref().map_or_else(new_export_id, |p| p.export_id.clone());
    let log = Arc::new(EventLog::open(&state.log_path(), &export_id).map_err(|e| Error::io(state.log_path(), e))?);
    let reporter: Arc<dyn Reporter> = Arc::new(Tee(vec![display, log.clone()]));
    let session = Session::new(job, reporter.clone())?;

    // 1. The read: a saved one continues from its link, after its files are cut back to it.
    let mut paging = match saved {
        Some(mut p) => {
            let run_dir = state.job_dir.join(p.run_id.as_deref().unwrap_or_default());
            if p.run_id.is_some() && !p.reopen(&run_dir)? {
                let note = "the run folder no longer matches the saved read; reading again from the start";
                reporter.event(&Event::Note { message: note });
                p.restart(&run_dir)?;
            }
            let message = format!("resuming the read after {} page(s)", p.pages);
            reporter.event(&Event::Resumed { status_url: p.current().unwrap_or("") });
            reporter.event(&Event::Note { message: &message });
            p
        }
        None => {
            let since = resolve_since(job, &state)?;
            let steps: Vec<String> = read::requests(job, &conn.patient, since).iter().map(|u| u.to_string()).collect();
            let p = Paging::new(export_id, steps, since.map(crate::instant::format));
            p.save(&state)?;
            log.write(&LogEvent::Kickoff {
                export_url: &p.steps[0],
                parameters: serde_json::json!({"patient": conn.patient, "mode": mode(job).as_str(), "_since": p.since}),
                status_url: None,
                error: None,
            });
            p
        }
    };
    read::read_pages(job, &session, &state, &log, &mut paging).await?;
    let run_id = paging.run_id.clone().expect("the first page names the run");
    let run_dir = state.job_dir.join(&run_id);
    let read_done = crate::instant::now();

    // 2. Every type file checked by the download verifier, then under its final name.
    let expected: u64 = paging.files.iter().filter(|f| f.kind == record::FileKind::Output).map(|f| f.lines).sum();
    let planned: Vec<record::PlannedFile> = paging.files.iter().filter_map(paging::planned).collect();
    reporter.event(&Event::ManifestReady {
        files: paging.files.len(),
        resources: Some(expected),
        planned: &planned,
        verified: &[],
    });
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for (id, f) in paging.files.iter().enumerate() {
        let (dir, f2, settings) = (run_dir.clone(), f.clone(), job.download.clone());
        let done = tokio::task::spawn_blocking(move || paging::finish_file(&dir, &f2, &settings))
            .await
            .map_err(|e| Error::Failed(format!("verifying {}: {e}", f.path)))??;
        let (lines, bytes) = (done.record.lines, done.record.bytes);
        reporter.event(&Event::DownloadFinished { id, file: &done.planned, lines, bytes });
        problems.extend(done.problems);
        files.push(done.record);
    }

    // 3. The record: run.json last, then the checkpoint; the read in flight is forgotten.
    let verdict = summarize(&files, problems, &record::Rules::of(job), t0.elapsed().as_secs_f64());
    let transaction_time = paging.transaction_time.clone().unwrap_or_else(|| paging.started.clone());
    let rec = RunRecord {
        tool: format!("oneup-bulk {}", env!("CARGO_PKG_VERSION")),
        job: JobInfo::of(job),
        request: paging.steps.join(" "),
        status_url: String::new(),
        transaction_time,
        run_id: run_id.clone(),
        started: paging.started.clone(),
        manifest_received: read_done,
        finished: crate::instant::now(),
        since: paging.since.clone(),
        files,
        totals: verdict.totals.clone(),
        problems: verdict.problems,
        warnings: verdict.warnings.iter().chain(&paging.skipped).cloned().collect(),
        member_match: None,
        complete: verdict.complete,
    };
    log.write(&LogEvent::ExportComplete {
        files: rec.files.len(),
        resources: rec.totals.resources,
        bytes: rec.totals.bytes,
        duration_ms: (rec.totals.seconds * 1000.0) as u64,
    });
    let run_log = run_dir.join(RUN_LOG);
    create_private_dir(run_log.parent().expect("the log has a folder"))?;
    std::fs::rename(log.path(), &run_log).map_err(|e| Error::io(&run_log, e))?;
    write_json(&run_dir.join(record::RUN_FILE), &rec)?;
    if rec.complete {
        record::point_latest(&state.job_dir, &run_id)?;
        state.advance(HistoryEntry::of(&rec, verdict.exit_code))?;
    }
    Paging::clear(&state)?;
    Ok(RunOutcome { run_dir, record: rec, exit_code: verdict.exit_code })
}

/// `--restart` (and `cancel`): forgets the read in flight and its event log; the connection stays.
pub fn forget(state: &JobState, reporter: &dyn Reporter) -> Result<bool> {
    let Some(p) = Paging::load(state)? else {
        return Ok(false);
    };
    let message = format!("forgetting the read in flight after {} page(s)", p.pages);
    reporter.event(&Event::Note { message: &message });
    Paging::clear(state)?;
    let _ = std::fs::remove_file(state.log_path());
    Ok(true)
}

fn mode(job: &Job) -> ReadMode {
    job.patient.as_ref().map_or(ReadMode::Everything, |p| p.mode)
}

/// `validate`'s line for a patient-access job.
pub fn summary(job: &Job, p: &PatientAccess) -> String {
    let read = match p.mode {
        ReadMode::Everything => "Patient/<id>/$everything",
        ReadMode::Search => "one search per type",
    };
    let types = if job.export.types.is_empty() { "all types".to_string() } else { job.export.types.join(",") };
    format!(
        "{}: patient-access {read} [{types}] → {} (authorize at {})",
        job.name,
        job.job_dir().display(),
        p.authorize_url
    )
}

/// What `run` will do, in a sentence (`authorize` ends with it).
pub fn plan_text(job: &Job, patient: &str) -> String {
    let types = if job.export.types.is_empty() { String::new() } else { format!(" [{}]", job.export.types.join(",")) };
    let what = match mode(job) {
        ReadMode::Everything => format!("Patient/{patient}/$everything{types}"),
        ReadMode::Search => format!("a search per type{types} for Patient/{patient}"),
    };
    let since = match job.export.since {
        crate::job::Since::Auto => ", then only what changed since the last complete run (since: auto)",
        _ => "",
    };
    format!("read {what}{since} into {}/<run-id>/", job.job_dir().display())
}

/// `--dry-run` for a patient-access job: the refresh-token request and the first reads, redacted.
pub fn dry_run(job: &Job) -> String {
    let state = JobState::new(&job.job_dir());
    let mut s = String::new();
    let _ = writeln!(s, "# job {} ({})", job.name, job.file_label());
    let url = job.auth.token_url.as_ref().map(|u| u.to_string()).unwrap_or_default();
    let _ = writeln!(s, "POST {url}\nContent-Type: application/x-www-form-urlencoded\n");
    let _ = writeln!(s, "grant_type=refresh_token&refresh_token=[redacted]&client_id={}&…\n", job.auth.client_id);
    let patient = match Connection::load(&state) {
        Ok(Some(c)) => c.patient,
        _ => {
            let _ = writeln!(s, "# no member connected yet: run `{}` first", connection::authorize_command(job));
            "<patient id>".into()
        }
    };
    let since = resolve_since(job, &state).ok().flatten();
    for u in read::requests(job, &patient, since) {
        let _ = writeln!(s, "GET {u}\nAccept: application/fhir+json\nAuthorization: Bearer [redacted]\n");
    }
    let _ = writeln!(s, "# then: follow each page's link next; {}", plan_text(job, &patient));
    s
}

/// `status` lines for a patient-access job: who is connected, and a read in flight.
pub fn status_lines(state: &JobState) -> String {
    let mut s = String::new();
    match Connection::load(state) {
        Ok(Some(c)) => {
            let rotated = c.rotated.map(|r| format!(", refresh token renewed {r}")).unwrap_or_default();
            let _ = writeln!(s, "  member: Patient/{} (connected {}{rotated})", c.patient, c.connected);
        }
        Ok(None) => {
            let _ =
                writeln!(s, "  member: not connected (run `{} authorize` on the job)", crate::invocation::program());
        }
        Err(e) => {
            let _ = writeln!(s, "  member: {e}");
        }
    }
    if let Ok(Some(p)) = Paging::load(state) {
        let _ = writeln!(s, "  read in flight: {} page(s) read since {}", p.pages, p.started);
    }
    s
}
