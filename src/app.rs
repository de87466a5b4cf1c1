//! One job, start to finish, in the order the data flows:
//! lock → token → kick-off (or resume) → poll → manifest → downloads → run record → checkpoint.
//! Each step is one call into its module; this file only sequences them and keeps the state current.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde_json::json;
use time::OffsetDateTime;
use url::Url;

use crate::download::{Downloaded, download_all};
use crate::error::{Error, Result, exit};
use crate::eventlog::EventLog;
use crate::export::{kickoff, manifest, member_match, poll};
use crate::instant;
use crate::job::{Job, Since, Validate};
use crate::progress::{Event, Reporter, Tee};
use crate::record::{self, FileKind, JobInfo, Problem, RunRecord, Totals};
use crate::session::{Req, Session};
use crate::state::{HistoryEntry, InFlight, JobState};

/// Per-run choices from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides `download.dir`.
    pub out: Option<PathBuf>,
    /// Overrides the job's `since` for this run.
    pub since: Option<OffsetDateTime>,
    /// Forget an export in flight and start a new one.
    pub restart: bool,
}

/// What a finished run left behind.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub record: RunRecord,
    /// 0 complete, 5 complete with server-reported errors, 1 strict validation failed.
    pub exit_code: u8,
}

/// `<dir>/<job name>`.
pub fn job_dir(job: &Job, opts: &RunOptions) -> PathBuf {
    opts.out.as_deref().unwrap_or(&job.download.dir).join(&job.name)
}

/// The `_since` this run sends: `--since`, else the job's instant, else (auto) the checkpoint.
pub fn resolve_since(job: &Job, opts: &RunOptions, state: &JobState) -> Result<Option<OffsetDateTime>> {
    if let Some(s) = opts.since {
        return Ok(Some(s));
    }
    Ok(match job.export.since {
        Since::None => None,
        Since::At(t) => Some(t),
        Since::Auto => state.checkpoint()?.transaction_time.as_deref().and_then(instant::parse),
    })
}

/// Runs one job end to end. Resumes an export in flight (never kicking off a second one) and a run
/// interrupted during downloads (keeping verified files).
pub async fn run_job(job: &Job, opts: &RunOptions, display: Arc<dyn Reporter>) -> Result<RunOutcome> {
    let t0 = Instant::now();
    let state = JobState::new(&job_dir(job, opts));
    let _lock = state.lock()?;

    let mut inflight = state.inflight()?;
    if opts.restart
        && let Some(old) = inflight.take()
    {
        display.event(&Event::Note { message: &format!("--restart: forgetting the export at {}", old.status_url) });
        state.clear_inflight()?;
        let _ = std::fs::remove_file(state.log_path());
    }
    let export_id = inflight.as_ref().map(|s| s.export_id.clone()).unwrap_or_else(new_export_id);
    let log = Arc::new(EventLog::open(&state.log_path(), &export_id).map_err(|e| Error::io(state.log_path(), e))?);
    let reporter: Arc<dyn Reporter> = Arc::new(Tee(vec![display.clone(), log.clone()]));
    let session = Arc::new(Session::new(job, reporter.clone())?);

    // Kick-off, or pick up the export a previous run started.
    let mut inflight = match inflight {
        Some(s) => {
            reporter.event(&Event::Resumed { status_url: &s.status_url });
            s
        }
        None => {
            let since = resolve_since(job, opts, &state)?;
            let matched;
            let kick_job = match &job.member_match {
                Some(mm) if job.export.group_id.is_none() => {
                    matched = match_members(job, mm, &session, &state, &log).await?;
                    &matched
                }
                _ => job,
            };
            let k = kickoff::build(kick_job, since);
            let status_url = match kickoff::send(&session, &k).await {
                Ok(u) => u,
                Err(e) => {
                    log.event("kickoff", json!({"exportUrl": k.url.as_str(), "errorCode": e.exit_code(), "errorBody": e.to_string(), "requestParameters": params_json(&k)}));
                    return Err(e);
                }
            };
            let s = InFlight {
                export_id: export_id.clone(),
                status_url: status_url.to_string(),
                request: k.url.to_string(),
                method: k.method.to_string(),
                started: instant::now(),
                since: since.map(instant::format),
                last_progress: None,
                run_id: None,
                done: Vec::new(),
            };
            // Saved before the first poll: a crash from here on resumes this export.
            state.save_inflight(&s)?;
            log.event("kickoff", json!({"exportUrl": k.url.as_str(), "errorCode": null, "errorBody": null, "requestParameters": params_json(&k), "statusUrl": status_url.as_str()}));
            reporter.event(&Event::KickedOff { status_url: status_url.as_str() });
            s
        }
    };
    let status_url = Url::parse(&inflight.status_url)
        .map_err(|e| Error::Failed(format!("state holds a bad status URL ({e}); run with --restart")))?;

    // Poll, unless the manifest is already saved from an earlier attempt.
    let manifest_bytes = match inflight.run_id.as_deref() {
        Some(run_id) => {
            let p = state.job_dir.join(run_id).join(record::MANIFEST_FILE);
            std::fs::read(&p).map_err(|e| Error::io(&p, e))?.into()
        }
        None => {
            let started = inflight.started.as_str();
            let started = instant::parse(started).map(SystemTime::from).unwrap_or_else(SystemTime::now);
            let mut last_progress = inflight.last_progress.clone();
            let res = poll::wait_for_manifest(&session, &status_url, &job.poll, started, |p| {
                last_progress = p.map(str::to_string);
            })
            .await;
            if last_progress != inflight.last_progress {
                inflight.last_progress = last_progress;
                let _ = state.save_inflight(&inflight);
            }
            match res {
                Ok(Ok(body)) => body,
                Ok(Err(expired)) => {
                    log.event("status_error", json!({"message": expired, "statusUrl": status_url.as_str()}));
                    state.clear_inflight()?;
                    return Err(Error::Transient(format!(
                        "{expired}. The state is cleared: the next run starts a new export"
                    )));
                }
                Err(e) => {
                    log.event("status_error", json!({"message": e.to_string(), "statusUrl": status_url.as_str()}));
                    if e.exit_code() == exit::SERVER_REJECTED {
                        // The server failed this export for good: the next run must start a new one.
                        state.clear_inflight()?;
                    }
                    return Err(e);
                }
            }
        }
    };
    let manifest_received = instant::now();

    let first = manifest::parse(&manifest_bytes)?;
    let run_id = record::run_id(&first.transaction_time);
    let run_dir = state.job_dir.join(&run_id);
    crate::private_fs::create_private_dir(&run_dir)?;
    if inflight.run_id.is_none() {
        crate::private_fs::write_atomic(&run_dir.join(record::MANIFEST_FILE), &manifest_bytes)?;
    }
    let m = collect_pages(&session, job, &status_url, &run_dir, first, true).await?;
    let mut files = manifest::plan(&m, &status_url)?;
    if inflight.run_id.is_none() {
        let mm = state.dir.join(MEMBER_MATCH_FILE);
        if let Ok(doc) = std::fs::read(&mm) {
            crate::private_fs::write_atomic(&run_dir.join(MEMBER_MATCH_FILE), &doc)?;
        }
        inflight.run_id = Some(run_id.clone());
        state.save_inflight(&inflight)?;
        log.event("status_complete", json!({"transactionTime": m.transaction_time}));
        log.event(
            "manifest_complete",
            json!({"transactionTime": m.transaction_time, "totalOutputFileCount": m.output.len(),
                   "totalDeletedFileCount": m.deleted.len(), "totalErrorFileCount": m.error.len(),
                   "totalManifests": m.pages}),
        );
    }
    let expected: Option<u64> = m.output.iter().map(|e| e.count).sum();
    reporter.event(&Event::ManifestReady {
        files: files.len(),
        resources: expected,
        planned: &files,
        verified: &inflight.done,
    });

    // Downloads: verified files are recorded in the state as they land, so a rerun skips them.
    let mut refreshes = 0;
    let downloaded = loop {
        let res = download_all(
            session.clone(),
            &run_dir,
            &files,
            &job.download,
            m.requires_access_token,
            &inflight.done.clone(),
            |d: &Downloaded| {
                inflight.done.push(d.record.clone());
                if let Err(e) = state.save_inflight(&inflight) {
                    tracing::warn!(error = %e, "could not record a verified file in the state");
                }
            },
        )
        .await;
        match res {
            // Signed file URLs expire (often after an hour): the status URL hands out fresh ones.
            Err(Error::UrlExpired(what)) if refreshes < MAX_URL_REFRESHES => {
                refreshes += 1;
                let note = format!("{what}: the file URLs have expired; asking the status URL for fresh ones");
                reporter.event(&Event::Note { message: &note });
                log.event("status_progress", json!({"body": null, "xProgress": note, "retryAfter": null}));
                let body =
                    match poll::wait_for_manifest(&session, &status_url, &job.poll, SystemTime::now(), |_| {}).await? {
                        Ok(b) => b,
                        Err(gone) => return Err(Error::Transient(format!("{gone}; the file URLs had expired"))),
                    };
                let fresh = collect_pages(&session, job, &status_url, &run_dir, manifest::parse(&body)?, false).await?;
                files = manifest::plan(&fresh, &status_url)?;
            }
            Err(Error::UrlExpired(what)) => {
                return Err(Error::AuthRefused {
                    url: what,
                    detail: "the file URLs kept being refused after fresh ones were fetched".into(),
                });
            }
            other => break other?,
        }
    };

    // The record: run.json last, then the checkpoint.
    let problems: Vec<Problem> = downloaded.iter().flat_map(|d| d.problems.clone()).collect();
    let bad_lines: u64 = downloaded.iter().map(|d| d.record.invalid_lines + d.record.wrong_type_lines).sum();
    let strict_failed = job.download.validate == Validate::Strict && bad_lines > 0;
    let mut totals = Totals::default();
    for d in &downloaded {
        let r = &d.record;
        totals.bytes += r.bytes;
        match r.kind {
            FileKind::Output => {
                totals.files += 1;
                totals.resources += r.lines;
            }
            FileKind::Error => {
                totals.error_files += 1;
                totals.server_errors += r.lines;
            }
            FileKind::Deleted => totals.files += 1,
        }
    }
    totals.seconds = t0.elapsed().as_secs_f64();
    let exit_code = if strict_failed {
        exit::FAILED
    } else if totals.server_errors > 0 {
        exit::SERVER_ERRORS
    } else {
        exit::OK
    };
    let mut all_problems = problems;
    if strict_failed {
        all_problems.insert(
            0,
            Problem {
                file: None,
                line: None,
                message: format!(
                    "{bad_lines} lines failed validation (validate: strict); the checkpoint was not moved"
                ),
            },
        );
    }
    let rec = RunRecord {
        tool: format!("oneup-bulk {}", env!("CARGO_PKG_VERSION")),
        job: JobInfo {
            name: job.name.clone(),
            file: job.source.as_ref().map(|p| p.display().to_string()),
            access: job.access.as_str().to_string(),
            fhir_base: job.fhir_base.to_string(),
        },
        request: m.request.clone().unwrap_or_else(|| inflight.request.clone()),
        status_url: inflight.status_url.clone(),
        transaction_time: m.transaction_time.clone(),
        run_id: run_id.clone(),
        started: inflight.started.clone(),
        manifest_received,
        finished: instant::now(),
        since: inflight.since.clone(),
        files: downloaded.iter().map(|d| d.record.clone()).collect(),
        totals: totals.clone(),
        problems: all_problems,
        complete: !strict_failed,
    };
    log.event(
        "export_complete",
        json!({"files": downloaded.len(), "resources": totals.resources, "bytes": totals.bytes, "attachments": 0,
               "duration": (totals.seconds * 1000.0) as u64}),
    );
    // The export's log joins its run folder; run.json is written last and marks the run complete.
    let run_log = run_dir.join(record::LOG_FILE);
    std::fs::rename(log.path(), &run_log).map_err(|e| Error::io(&run_log, e))?;
    crate::private_fs::write_json(&run_dir.join(record::RUN_FILE), &rec)?;
    if !strict_failed {
        record::point_latest(&state.job_dir, &run_id)?;
        state.advance(HistoryEntry {
            run_id: run_id.clone(),
            transaction_time: m.transaction_time.clone(),
            finished: rec.finished.clone(),
            files: totals.files,
            resources: totals.resources,
            bytes: totals.bytes,
            exit_code,
        })?;
    }
    state.clear_inflight()?;
    if job.download.delete_on_success {
        delete_export(&session, &status_url).await;
    }
    Ok(RunOutcome { run_dir, record: rec, exit_code })
}

/// How often expired file URLs are refreshed from the status URL in one run.
const MAX_URL_REFRESHES: u32 = 3;

/// Follows a manifest's `link` next pages and merges them. With `saved`, pages are read from (or
/// written to) the run folder as `manifest.NNN.json`, so a resumed run reads them from disk; without,
/// they are fetched fresh (to renew expired file URLs) and not saved over the originals.
async fn collect_pages(
    session: &Session,
    job: &Job,
    status_url: &Url,
    run_dir: &Path,
    first: manifest::Manifest,
    saved: bool,
) -> Result<manifest::Manifest> {
    let mut pages = vec![first];
    while let Some(next) = pages.last().and_then(manifest::next_link) {
        if pages.len() >= manifest::MAX_PAGES {
            return Err(Error::ServerRejected(format!("the manifest has more than {} pages", manifest::MAX_PAGES)));
        }
        let page_file = run_dir.join(manifest::page_file_name(pages.len() + 1));
        let on_disk = if saved { std::fs::read(&page_file).ok() } else { None };
        let body = match on_disk {
            Some(b) => bytes::Bytes::from(b),
            None => {
                let url = status_url
                    .join(&next)
                    .map_err(|e| Error::ServerRejected(format!("manifest link {next:?}: {e}")))?;
                crate::job::check_url_scheme(&url).map_err(Error::ServerRejected)?;
                match poll::wait_for_manifest(session, &url, &job.poll, SystemTime::now(), |_| {}).await? {
                    Ok(b) => {
                        if saved {
                            crate::private_fs::write_atomic(&page_file, &b)?;
                        }
                        b
                    }
                    Err(gone) => return Err(Error::Transient(format!("manifest page {}: {gone}", pages.len() + 1))),
                }
            }
        };
        pages.push(manifest::parse(&body)?);
    }
    Ok(manifest::merge(pages))
}

/// Where the `$bulk-member-match` result is kept (state folder, then the run folder).
pub const MEMBER_MATCH_FILE: &str = "member-match.json";

/// Payer-to-Payer: matches the members, keeps the result, and returns the job that exports the
/// `MatchedMembers` group.
async fn match_members(
    job: &Job,
    mm: &crate::job::MemberMatch,
    session: &Session,
    state: &JobState,
    log: &EventLog,
) -> Result<Job> {
    let r = member_match::run(session, job, mm).await?;
    crate::private_fs::write_atomic(&state.dir.join(MEMBER_MATCH_FILE), &r.document)?;
    let note = format!(
        "$bulk-member-match: {} matched, {} not matched, {} consent-constrained; exporting Group/{}",
        r.matched, r.non_matched, r.consent_constrained, r.matched_group_id
    );
    session.reporter.event(&Event::Note { message: &note });
    log.event(
        "member_match",
        json!({"matched": r.matched, "nonMatched": r.non_matched, "consentConstrained": r.consent_constrained,
               "groupId": r.matched_group_id}),
    );
    if r.matched == 0 {
        return Err(Error::Failed(format!(
            "no member matched, so there is nothing to export; see {}",
            state.dir.join(MEMBER_MATCH_FILE).display()
        )));
    }
    let mut j = job.clone();
    j.export.level = crate::job::Level::Group;
    j.export.group_id = Some(r.matched_group_id);
    Ok(j)
}

/// Asks the server to forget an export (best effort): `DELETE` on its status URL.
pub async fn delete_export(session: &Session, status_url: &Url) -> Option<u16> {
    let mut req = Req::get(status_url.clone(), "delete export");
    req.method = reqwest::Method::DELETE;
    match session.send(&req, 1 << 20).await {
        Ok(r) if r.status.is_success() => Some(r.status.as_u16()),
        Ok(r) => {
            tracing::warn!(
                status = r.status.as_u16(),
                "the server did not delete the export (some servers, 1up among them, answer 403 here)"
            );
            Some(r.status.as_u16())
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not delete the export on the server");
            None
        }
    }
}

fn params_json(k: &kickoff::Kickoff) -> serde_json::Value {
    k.body.clone().unwrap_or_else(|| json!(k.url.query().unwrap_or("")))
}

fn new_export_id() -> String {
    (0..10).map(|_| format!("{:02x}", fastrand::u8(..))).collect()
}
