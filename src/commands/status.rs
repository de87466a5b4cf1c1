//! `status` (last runs, exports in flight, checkpoints, lock holders) and `cancel` (DELETE the export in
//! flight, forget it).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cli::Global;
use crate::error::{Error, exit};
use crate::export::delete::delete_export;
use crate::job::Overrides;
use crate::session::Session;
use crate::state::JobState;

use super::{load_job, reporter};

pub async fn status(paths: &[PathBuf], out: Option<&Path>) -> Result<u8, Error> {
    if paths.is_empty() {
        return scan(out.unwrap_or(Path::new("exports"))).await;
    }
    let overrides = Overrides { out: out.map(super::out_location).transpose()?, ..Default::default() };
    let mut code = exit::OK;
    for p in paths {
        let job = match load_job(p, &overrides) {
            Ok(j) => j,
            Err(e) => {
                code = super::run::worst(code, super::report_error(&e));
                continue;
            }
        };
        let state = JobState::open(&job.job_dir())?;
        print!("{}", describe(&job.name, &state).await?);
    }
    Ok(code)
}

/// `status` without job files: every job folder (one with a `.state/`) under `dir`.
async fn scan(dir: &Path) -> Result<u8, Error> {
    if let crate::store::Location::Object(u) = super::out_location(dir)? {
        return Err(Error::Usage(format!("{u}: name the job files to see their status in a bucket")));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::Usage(format!(
            "{}: {e}; name the job files (oneup-bulk status jobs/*.yaml) or the output folder (--out DIR)",
            dir.display()
        ))
    })?;
    let mut jobs: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.join(crate::state::STATE_DIR).is_dir()).collect();
    if jobs.is_empty() {
        return Err(Error::Usage(format!(
            "no job folders under {}; name the job files (oneup-bulk status jobs/*.yaml) or the output folder (--out DIR)",
            dir.display()
        )));
    }
    jobs.sort();
    for job_dir in jobs {
        let name = job_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        print!("{}", describe(&name, &JobState::new(&job_dir)).await?);
    }
    Ok(exit::OK)
}

/// The status text of one job.
pub async fn describe(name: &str, state: &JobState) -> Result<String, Error> {
    let mut s = String::new();
    let _ = writeln!(s, "{name}  ({})", state.job.location());
    let c = state.checkpoint().await?;
    match c.history.first() {
        Some(h) => {
            let _ = writeln!(
                s,
                "  last complete run: {} (transactionTime {}), {} files, {} resources, exit {}",
                h.finished, h.transaction_time, h.files, h.resources, h.exit_code
            );
        }
        None => {
            let _ = writeln!(s, "  last complete run: none");
        }
    }
    let _ = writeln!(
        s,
        "  checkpoint (since: auto): {}",
        c.transaction_time.as_deref().unwrap_or("none: the next run is a full export")
    );
    match state.inflight().await? {
        Some(f) => {
            let _ = writeln!(s, "  in flight: {} since {}", f.status_url, f.started);
            if let Some(p) = &f.last_progress {
                let _ = writeln!(s, "    last progress: {p}");
            }
            if let Some(r) = &f.run_id {
                let _ = writeln!(s, "    downloading into {r}: {} files verified so far", f.done.len());
            }
        }
        None => {
            let _ = writeln!(s, "  in flight: nothing");
        }
    }
    if let Some(h) = state.lock_holder().await {
        let _ = writeln!(s, "  running now: {h}");
    }
    Ok(s)
}

pub async fn cancel(path: &Path, out: Option<&Path>, g: &Global) -> Result<u8, Error> {
    let overrides = Overrides { out: out.map(super::out_location).transpose()?, ..Default::default() };
    let job = load_job(path, &overrides)?;
    let state = JobState::open(&job.job_dir())?;
    let lock = state.lock().await?;
    let Some(f) = state.inflight().await? else {
        lock.release().await;
        println!("{}: no export in flight; nothing to cancel", job.name);
        return Ok(exit::OK);
    };
    let session = Session::new(&job, Arc::clone(&reporter(g)))?;
    let url = url::Url::parse(&f.status_url).map_err(|e| Error::Failed(e.to_string()))?;
    match delete_export(&session, &url).await {
        Some(s) if (200..300).contains(&s) => {
            println!("{}: the server deleted the export (HTTP {s})", job.name)
        }
        Some(s) => println!(
            "{}: the server answered HTTP {s} to DELETE (some servers, 1up among them, do not allow it); forgetting the export here anyway",
            job.name
        ),
        None => println!("{}: the server could not be reached; forgetting the export here anyway", job.name),
    }
    state.clear_inflight().await?;
    state.forget_log().await?;
    lock.release().await;
    Ok(exit::OK)
}
