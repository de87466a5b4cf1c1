//! One job, start to finish, in the order the data flows:
//! lock → token → kick-off (or resume) → poll → manifest → downloads → run record → checkpoint.
//! Each step is one call into its module; this file only sequences them and keeps the state current.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use url::Url;

use crate::download::{Batch, Downloaded, download_all};
use crate::error::{Error, Result};
use crate::eventlog::{EventLog, LogEvent, RUN_LOG};
use crate::export::manifest::{self, Manifest};
use crate::export::pages::{self, Pages};
use crate::export::poll::{self, Polled};
use crate::export::{delete, inflight, member_match};
use crate::instant;
use crate::job::Job;
use crate::progress::{Event, Reporter, Tee};
use crate::record::{self, JobInfo, PlannedFile, RunRecord, summarize};
use crate::session::Session;
use crate::state::{HistoryEntry, InFlight, JobState};
use crate::store::{Dir, Location};

/// Per-run choices from the command line that are not part of the job (`--out` and `--since` are
/// applied to the [`Job`] when it is loaded).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Forget an export in flight and start a new one.
    pub restart: bool,
}

/// What a finished run left behind.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The run folder on disk; for a run in a bucket, its URL as text (see [`RunOutcome::location`]).
    pub run_dir: PathBuf,
    pub record: RunRecord,
    /// 0 complete, 5 complete with server-reported errors, 1 strict validation failed.
    pub exit_code: u8,
}

impl RunOutcome {
    /// Where the run is: a folder, or a bucket prefix.
    pub fn location(&self) -> Location {
        Location::from_path(&self.run_dir).unwrap_or_else(|_| Location::Local(self.run_dir.clone()))
    }
}

/// How often expired file URLs are refreshed from the status URL in one run.
const MAX_URL_REFRESHES: u32 = 3;

/// Runs one job end to end. Resumes an export in flight (never kicking off a second one) and a run
/// interrupted during downloads (keeping verified files). The job's lock is held throughout; a run
/// that loses it (a lease in a bucket taken over, or not renewable) stops at once with exit 75.
pub async fn run_job(job: &Job, opts: &RunOptions, display: Arc<dyn Reporter>) -> Result<RunOutcome> {
    let state = JobState::open(&job.job_dir())?;
    let lock = state.lock().await?;
    if let Some(holder) = lock.took_over() {
        let message = format!("took over the job's lease from a run that stopped renewing it ({holder})");
        display.event(&Event::Note { message: &message });
    }
    let res = tokio::select! {
        res = run_locked(job, opts, display, &state) => res,
        why = lock.lost() => Err(Error::Locked(format!("{why}; this run stops, its state kept"))),
    };
    lock.release().await;
    res
}

async fn run_locked(job: &Job, opts: &RunOptions, display: Arc<dyn Reporter>, state: &JobState) -> Result<RunOutcome> {
    let t0 = Instant::now();
    if opts.restart {
        state.forget_inflight(&*display).await?;
    }
    let inflight = state.inflight().await?;
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
    let manifest_bytes = match inflight.run_id.as_deref() {
        Some(run_id) => state.saved_manifest(run_id).await?,
        None => inflight::wait_for_manifest(job, &session, state, &log, &mut inflight, &status_url).await?,
    };
    let manifest_received = instant::now();

    // 3. The manifest (and its pages) in the run folder; the files to fetch.
    let first = manifest::parse(&manifest_bytes)?;
    let run_id = record::run_id(&first.transaction_time);
    let run_dir = state.job.join(&run_id);
    run_dir.create()?;
    let first_time = inflight.run_id.is_none();
    if first_time {
        run_dir.write(record::MANIFEST_FILE, &manifest_bytes).await?;
    }
    let m = pages::collect(&session, &job.poll, &status_url, &run_dir, first, Pages::Saved).await?;
    let files = manifest::plan(&m, &status_url)?;
    if first_time {
        state.keep_in_run(&run_dir, member_match::RESULT_FILE).await?;
        inflight.run_id = Some(run_id.clone());
        state.save_inflight(&inflight).await?;
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
    let downloaded = download(job, &session, state, &log, &mut inflight, &status_url, &run_dir, &m, files).await?;

    // 5. The record: run.json last, then the checkpoint.
    let problems = downloaded.iter().flat_map(|d| d.problems.clone()).collect();
    let warnings: Vec<record::Problem> = Vec::new();
    let files: Vec<_> = downloaded.into_iter().map(|d| d.record).collect();
    let verdict = summarize(&files, problems, job.download.validate, t0.elapsed().as_secs_f64());
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
        complete: verdict.complete,
    };
    log.write(&LogEvent::ExportComplete {
        files: rec.files.len(),
        resources: rec.totals.resources,
        bytes: rec.totals.bytes,
        duration_ms: (rec.totals.seconds * 1000.0) as u64,
    });
    // The export's log joins its run folder; run.json is written last and marks the run complete.
    state.finish_log(&run_dir, RUN_LOG).await?;
    run_dir.write_json(record::RUN_FILE, &rec).await?;
    if rec.complete {
        state.job.point_latest(&run_id).await?;
        state.advance(HistoryEntry::of(&rec, verdict.exit_code)).await?;
    }
    state.clear_inflight().await?;
    if job.download.delete_on_success {
        delete::delete_export(&session, &status_url).await;
    }
    let location = run_dir.location();
    let run_dir = location.local().map_or_else(|| PathBuf::from(location.to_string()), PathBuf::from);
    Ok(RunOutcome { run_dir, record: rec, exit_code: verdict.exit_code })
}

/// Downloads every file not yet verified. Signed file URLs expire (often after an hour): when a file
/// host refuses them, the status URL hands out fresh ones (up to [`MAX_URL_REFRESHES`] times).
#[allow(clippy::too_many_arguments)]
async fn download(
    job: &Job,
    session: &Arc<Session>,
    state: &JobState,
    log: &EventLog,
    inflight: &mut InFlight,
    status_url: &Url,
    run_dir: &Dir,
    m: &Manifest,
    mut files: Vec<PlannedFile>,
) -> Result<Vec<Downloaded>> {
    let mut refreshes = 0;
    loop {
        let done = inflight.done.clone();
        let batch = download_all(
            session.clone(),
            run_dir,
            &files,
            &job.download,
            m.requires_access_token,
            &done,
            &mut Recorder { state, inflight },
        )
        .await?;
        let expired = match batch {
            Batch::Complete(d) => return Ok(d),
            Batch::UrlsExpired { file, .. } => file,
        };
        if refreshes >= MAX_URL_REFRESHES {
            return Err(Error::AuthRefused {
                url: expired,
                detail: "the file URLs kept being refused after fresh ones were fetched".into(),
            });
        }
        refreshes += 1;
        let note = format!("{expired}: the file URLs have expired; asking the status URL for fresh ones");
        session.reporter.event(&Event::Note { message: &note });
        log.write(&LogEvent::StatusProgress { x_progress: Some(&note), retry_after_secs: None });
        let body = match poll::wait(session, status_url, &job.poll, SystemTime::now(), |_| {}).await? {
            Polled::Ready(b) => b,
            Polled::Gone(gone) => return Err(Error::Transient(format!("{gone}; the file URLs had expired"))),
        };
        let fresh = pages::collect(session, &job.poll, status_url, run_dir, manifest::parse(&body)?, Pages::Fresh);
        files = manifest::plan(&fresh.await?, status_url)?;
    }
}

/// Records each verified file in the state as it lands.
struct Recorder<'a> {
    state: &'a JobState,
    inflight: &'a mut InFlight,
}

impl crate::download::OnVerified for Recorder<'_> {
    fn verified<'a>(&'a mut self, d: &'a Downloaded) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            self.inflight.done.push(d.record.clone());
            if let Err(e) = self.state.save_inflight(self.inflight).await {
                tracing::warn!(error = %e, "could not record a verified file in the state");
            }
        })
    }
}

fn new_export_id() -> String {
    (0..10).map(|_| format!("{:02x}", fastrand::u8(..))).collect()
}
