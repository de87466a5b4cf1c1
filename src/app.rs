//! One job, start to finish, in the order the data flows:
//! lock → token → kick-off (or resume) → poll → manifest → downloads → run record → checkpoint.
//! Each step is one call into its module; this file only sequences them and keeps the state current.

use std::sync::Arc;
use std::time::Instant;

use crate::download::refresh::{self, Ctx};
use crate::error::{Error, Result};
use crate::eventlog::{EventLog, LogEvent, RUN_LOG, new_export_id};
use crate::export::manifest;
use crate::export::pages::{self, Pages};
use crate::export::{delete, inflight, member_match};
use crate::instant;
use crate::job::Job;
use crate::progress::{Event, Reporter, Tee};
use crate::record::{self, JobInfo, Rules, RunRecord, summarize};
use crate::session::Session;
use crate::state::{HistoryEntry, JobState};
use crate::store::Location;

pub use crate::record::RunOutcome;
pub use crate::state::RunOptions;

impl RunOutcome {
    /// Where the run is: a folder, or a bucket prefix.
    pub fn location(&self) -> Location {
        Location::from_path(&self.run_dir).unwrap_or_else(|_| Location::Local(self.run_dir.clone()))
    }
}

/// Runs one job end to end. Resumes an export in flight (never kicking off a second one) and a run
/// interrupted during downloads (keeping verified files). An export the server no longer has is
/// forgotten and replaced by a new one in the same run, once. The job's lock is held throughout; a run
/// that loses it (a lease in a bucket taken over, or not renewable) stops at once with exit 75.
pub async fn run_job(job: &Job, opts: &RunOptions, display: Arc<dyn Reporter>) -> Result<RunOutcome> {
    if !matches!(job.download.dir, Location::Local(_)) && (job.patient.is_some() || job.member_match.is_some()) {
        return Err(Error::Usage(format!(
            "{}: patient-access and member_match jobs keep their files on local disk for now; set download.dir to a folder",
            job.download.dir
        )));
    }
    if job.patient.is_some() {
        return crate::patient::run(job, opts, display).await; // Patient Access: pages, not an export
    }
    let state = JobState::open(&job.job_location())?;
    let lock = state.lock()?;
    if let Some(holder) = lock.took_over() {
        let message = format!("took over the job's lease from a run that stopped renewing it ({holder})");
        display.event(&Event::Note { message: &message });
    }
    let res = tokio::select! {
        res = run_locked(job, opts, display, &state) => res,
        why = lock.lost() => Err(Error::Transient(format!("{why}; this run stops, its state kept"))),
    };
    lock.release().await;
    res
}

async fn run_locked(job: &Job, opts: &RunOptions, display: Arc<dyn Reporter>, state: &JobState) -> Result<RunOutcome> {
    if opts.restart {
        state.forget_inflight(&*display, true)?;
    }
    let mut res = run_export(job, state, display.clone()).await;
    if let Err(e @ Error::ExportGone { .. }) = &res {
        inflight::after_error(state, e)?;
        let message = format!(
            "{e}; starting a new export now (the files of the old one stay in its run folder, without run.json)"
        );
        display.event(&Event::Note { message: &message });
        res = run_export(job, state, display).await;
    }
    if let Err(e) = &res {
        inflight::after_error(state, e)?;
    }
    res
}

/// One export: the one in flight, else a new one.
async fn run_export(job: &Job, state: &JobState, display: Arc<dyn Reporter>) -> Result<RunOutcome> {
    let t0 = Instant::now();
    let inflight = state.inflight()?;
    let export_id = inflight.as_ref().map(|s| s.export_id.clone()).unwrap_or_else(new_export_id);
    let log = Arc::new(EventLog::open(&state.log_path(), &export_id).map_err(|e| Error::io(state.log_path(), e))?);
    let reporter: Arc<dyn Reporter> = Arc::new(Tee(vec![display, log.clone()]));
    let session = Arc::new(Session::new(job, reporter.clone())?);

    // 1. Kick-off, or pick up the export a previous run started.
    let mut inflight = match inflight {
        Some(s) => {
            reporter.event(&Event::Resumed { status_url: &s.status_url });
            s
        }
        None => inflight::kick_off(job, &session, state, &log, export_id).await?,
    };
    let status_url = inflight.status_url()?;

    // 2. Poll until the manifest is ready, unless an earlier attempt saved it.
    let manifest_bytes = inflight::manifest(job, &session, state, &log, &mut inflight, &status_url).await?;
    let manifest_received = instant::now();

    // 3. The manifest (and its pages) in the run folder; the files to fetch.
    let first = manifest::parse(&manifest_bytes)?;
    let run_id = record::run_id(&first.transaction_time);
    let run_dir = state.job.join(&run_id);
    let first_time = inflight.run_id.is_none();
    // A run folder deleted by hand is made again from the state's copies.
    state.open_run_dir(&run_dir, &manifest_bytes, first_time)?;
    let m = pages::collect(&session, &job.poll, &status_url, &run_dir, first, Pages::Saved).await?;
    let files = manifest::plan(&m, &status_url)?;
    if first_time {
        member_match::keep_in_run(job, state, &run_dir)?;
        state.keep_run_files(&run_dir)?;
        inflight.run_id = Some(run_id.clone());
        state.save_inflight(&inflight)?;
        log.write(&LogEvent::StatusComplete { transaction_time: &m.transaction_time });
        log.write(&LogEvent::ManifestComplete {
            transaction_time: &m.transaction_time,
            outputs: m.output.len(),
            deleted: m.deleted.len(),
            errors: m.error.len(),
            pages: m.pages,
        });
    }
    let expected: Option<u64> = m.output.iter().map(|e| e.count).sum();
    reporter.event(&Event::ManifestReady {
        files: files.len(),
        resources: expected,
        planned: &files,
        verified: &inflight.done,
    });

    // 4. Downloads: verified files are recorded in the state as they land, so a rerun skips them.
    let cx = Ctx { job, session: &session, state, log: &log, status_url: &status_url, run_dir: &run_dir };
    let downloaded = refresh::download(&cx, &mut inflight, &m, files).await?;

    // 5. The record: run.json last, then the checkpoint.
    let problems = downloaded.iter().flat_map(|d| d.problems.clone()).collect();
    let matched = member_match::record(job, state);
    let files: Vec<_> = downloaded.into_iter().map(|d| d.record).collect();
    let granted = session.tokens.granted_scope();
    let verdict = summarize(&files, problems, &Rules::of(job), t0.elapsed().as_secs_f64());
    let mut warnings = verdict.warnings;
    warnings.extend(record::warnings(&job.export.types, granted.as_deref(), &files, inflight.since.as_deref()));
    warnings.extend(matched.as_ref().map(|m| m.warnings()).unwrap_or_default());
    for w in &warnings {
        let message = match &w.file {
            Some(f) => format!("{f}: {}", w.message),
            None => w.message.clone(),
        };
        reporter.event(&Event::Warning { message: &message });
    }
    let rec = RunRecord {
        tool: format!("oneup-bulk {}", env!("CARGO_PKG_VERSION")),
        job: JobInfo::of(job),
        request: m.request.clone().unwrap_or_else(|| inflight.request.clone()),
        status_url: inflight.status_url.clone(),
        transaction_time: m.transaction_time.clone(),
        run_id: run_id.clone(),
        started: inflight.started.clone(),
        manifest_received,
        finished: instant::now(),
        since: inflight.since.clone(),
        files,
        totals: verdict.totals.clone(),
        problems: verdict.problems,
        warnings,
        member_match: matched,
        complete: verdict.complete,
    };
    log.write(&LogEvent::ExportComplete {
        files: rec.files.len(),
        resources: rec.totals.resources,
        bytes: rec.totals.bytes,
        duration_ms: (rec.totals.seconds * 1000.0) as u64,
    });
    // The export's log joins its run folder; run.json is written last and marks the run complete.
    state.finish_log(&run_dir, RUN_LOG)?;
    run_dir.write_json(record::RUN_FILE, &rec)?;
    if rec.complete {
        state.job.point_latest(&run_id)?;
        state.advance(HistoryEntry::of(&rec, verdict.exit_code))?;
    }
    state.clear_inflight()?;
    if job.download.delete_on_success && !inflight.synchronous {
        delete::delete_export(&session, &status_url).await;
    }
    let location = run_dir.location();
    let run_dir =
        location.local().map_or_else(|| std::path::PathBuf::from(location.to_string()), std::path::PathBuf::from);
    Ok(RunOutcome { run_dir, record: rec, exit_code: verdict.exit_code })
}
