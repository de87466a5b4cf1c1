//! `status` (last runs, exports in flight, checkpoints, lock holders) and `cancel` (DELETE the export in
//! flight, forget it; `--force` for what a plain cancel refuses: an unreadable state file, a lock left
//! by another host).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::cli::Global;
use crate::error::{Error, exit};
use crate::export::advice::{JobCmd, Left, next_steps};
use crate::export::delete::delete_export;
use crate::job::Overrides;
use crate::session::Session;
use crate::state::JobState;

use super::{load_job, reporter};

pub fn status(paths: &[PathBuf], out: Option<&Path>) -> Result<u8, Error> {
    if paths.is_empty() {
        return scan(out.unwrap_or(Path::new("exports")), out);
    }
    let overrides = Overrides { out: out.map(Path::to_path_buf), ..Default::default() };
    let mut code = exit::OK;
    for p in paths {
        let job = match load_job(p, &overrides) {
            Ok(j) => j,
            Err(e) => {
                code = super::run::worst(code, super::report_error(&e));
                continue;
            }
        };
        let state = JobState::open(&job.job_location())?;
        print!("{}", describe(&job.name, &JobCmd::of(&job), &state));
        if job.patient.is_some() {
            print!("{}", crate::patient::status_lines(&state));
        }
    }
    Ok(code)
}

/// `status` without job files: every job folder (one with a `.state/`) under `dir`; `out` is `--out`
/// as given, for the commands the hints print.
fn scan(dir: &Path, out: Option<&Path>) -> Result<u8, Error> {
    let me = crate::invocation::program();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::Usage(format!(
            "{}: {e}; name the job files ({me} status jobs/*.yaml) or the output folder (--out DIR)",
            dir.display()
        ))
    })?;
    let mut jobs: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.join(crate::state::STATE_DIR).is_dir()).collect();
    if jobs.is_empty() {
        return Err(Error::Usage(format!(
            "no job folders under {}; name the job files ({me} status jobs/*.yaml) or the output folder (--out DIR)",
            dir.display()
        )));
    }
    jobs.sort();
    for job_dir in jobs {
        let name = job_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        print!("{}", describe(&name, &JobCmd::new("JOB.yaml", out), &JobState::new(&job_dir)));
    }
    Ok(exit::OK)
}

/// The status text of one job. An unreadable state file is shown with the command that sets it aside.
pub fn describe(name: &str, cmd: &JobCmd, state: &JobState) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{name}  ({})", state.job_dir.display());
    match state.checkpoint() {
        Ok(c) => {
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
        }
        Err(e) => {
            let _ = writeln!(s, "  checkpoint: {e}");
        }
    }
    match state.inflight() {
        Ok(Some(f)) => {
            let _ = writeln!(s, "  in flight: {} since {}", f.status_url, f.started);
            if let Some(p) = &f.last_progress {
                let _ = writeln!(s, "    last progress: {p}");
            }
            if let Some(r) = &f.run_id {
                let _ = writeln!(s, "    downloading into {r}: {} files verified so far", f.done.len());
            }
        }
        Ok(None) => {
            let _ = writeln!(s, "  in flight: nothing");
        }
        Err(e) => {
            let _ = writeln!(s, "  in flight: {e}; `{}` sets it aside", cmd.line("cancel --force"));
        }
    }
    if let Some(h) = state.lock_holder() {
        let _ = writeln!(s, "  running now: {h}");
    }
    s
}

/// Prints `error: …` (after `prefix`) and what to type next; returns the exit code.
fn report(prefix: &str, e: &Error, cmd: &JobCmd, job_dir: &Path) -> u8 {
    eprintln!("{prefix}{e}");
    eprint!("{}", next_steps(cmd, e, &Left::of(job_dir)));
    e.exit_code()
}

/// `cancel`: DELETE the export in flight and forget it. Refused while a run holds the job (the message
/// names the process to stop). `force`: an unreadable `inflight.json` is set aside without asking the
/// server anything, and a lock recorded by another host is broken (see `state::lock`).
pub async fn cancel(path: &Path, out: Option<&Path>, force: bool, g: &Global) -> Result<u8, Error> {
    let overrides = Overrides { out: out.map(Path::to_path_buf), ..Default::default() };
    let job = load_job(path, &overrides)?;
    let cmd = JobCmd::of(&job);
    let state = JobState::open(&job.job_location())?;
    let display = reporter(g);
    let locked = if force { state.lock_forced(&*display) } else { state.lock() };
    let lock = match locked {
        Ok(l) => l,
        Err(e) => return Ok(report("error: ", &e, &cmd, &state.job_dir)),
    };
    let res = cancel_locked(&job, &state, &cmd, force, display).await;
    lock.release().await;
    res
}

async fn cancel_locked(
    job: &crate::job::Job,
    state: &JobState,
    cmd: &JobCmd,
    force: bool,
    display: std::sync::Arc<dyn crate::progress::Reporter>,
) -> Result<u8, Error> {
    if job.patient.is_some() {
        // Patient Access has no server-side export: forget the read in flight (the connection stays).
        let forgot = crate::patient::forget(state, &crate::progress::Silent)?;
        println!(
            "{}: {}",
            job.name,
            if forgot {
                "the read in flight is forgotten; the next run starts over"
            } else {
                "no read in flight; nothing to cancel"
            }
        );
        return Ok(exit::OK);
    }
    let f = match state.inflight() {
        Ok(Some(f)) => f,
        Ok(None) => {
            println!("{}: no export in flight; nothing to cancel", job.name);
            return Ok(exit::OK);
        }
        Err(Error::BadState { .. }) if force => {
            state.forget_inflight(&*display, true)?;
            println!(
                "{}: the unreadable state was set aside; nothing was sent to the server (no status URL could be read)",
                job.name
            );
            return Ok(exit::OK);
        }
        Err(e) => return Ok(report("error: ", &e, cmd, &state.job_dir)),
    };
    if f.synchronous {
        // Its `status_url` is the kick-off URL: there is no server job to DELETE.
        println!("{}: a synchronous export has nothing to delete on the server; forgetting it here", job.name);
        state.clear_inflight()?;
        state.forget_log()?;
        return Ok(exit::OK);
    }
    let session = Session::new(job, display)?;
    let outcome = delete_export(&session, &f.status_url()?).await;
    println!("{}", cancelled(&job.name, outcome, job.access));
    state.clear_inflight()?;
    state.forget_log()?;
    Ok(exit::OK)
}

/// What `cancel` says, from the DELETE's status (`None`: the server could not be reached).
pub fn cancelled(name: &str, status: Option<u16>, access: crate::job::Access) -> String {
    match status {
        Some(s) if (200..300).contains(&s) => format!("{name}: the server deleted the export (HTTP {s})"),
        Some(403) if access.get_only() => format!(
            "{name}: the server answered HTTP 403 to DELETE, as 1up documents for population-level exports; forgotten here anyway"
        ),
        Some(s @ (404 | 410)) => {
            format!("{name}: the server no longer has this export (HTTP {s}): it was already gone; forgotten here")
        }
        Some(s) => format!(
            "{name}: the server answered HTTP {s} to DELETE (some servers, 1up among them, do not allow it); forgotten here anyway"
        ),
        None => format!("{name}: the server could not be reached; forgotten here anyway"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_says_what_the_server_did() {
        assert_eq!(
            cancelled("t", Some(202), crate::job::Access::BulkData),
            "t: the server deleted the export (HTTP 202)"
        );
        assert_eq!(
            cancelled("t", Some(404), crate::job::Access::BulkData),
            "t: the server no longer has this export (HTTP 404): it was already gone; forgotten here"
        );
        assert_eq!(
            cancelled("t", Some(403), crate::job::Access::BulkData),
            "t: the server answered HTTP 403 to DELETE (some servers, 1up among them, do not allow it); forgotten here anyway"
        );
        assert_eq!(
            cancelled("t", None, crate::job::Access::BulkData),
            "t: the server could not be reached; forgotten here anyway"
        );
    }

    #[test]
    fn status_shows_an_unreadable_state_with_the_way_out() {
        let d = tempfile::tempdir().unwrap();
        let state = JobState::new(&d.path().join("t"));
        state.create().unwrap();
        std::fs::write(state.dir.join(crate::state::INFLIGHT), "not json").unwrap();
        let text = describe("t", &JobCmd::new("jobs/t.yaml", None), &state);
        let text = text.replace(&d.path().display().to_string(), "<tmp>");
        assert_eq!(
            text,
            "t  (<tmp>/t)
  last complete run: none
  checkpoint (since: auto): none: the next run is a full export
  in flight: <tmp>/t/.state/inflight.json: the job's state cannot be read (expected ident at line 1 column 2); `oneup-bulk cancel --force jobs/t.yaml` sets it aside
"
        );
    }
}
