//! `authorize JOB.yaml`: connect a member to a patient-access job, once. The authorize address goes to
//! stdout on a line of its own (a browser opens only with `--open`); the plan's redirect is received on
//! the job's loopback `redirect_uri`, or pasted (`--paste`); then who is connected and what `run` does.
//! The code, the verifier and the tokens are never printed.

use std::io::Write as _;
use std::path::Path;

use crate::cli::{AuthorizeArgs, Global};
use crate::error::{Error, exit};
use crate::job::Overrides;
use crate::patient::authorize::{self, Connected};
use crate::patient::callback::{Loopback, read_pasted};
use crate::state::JobState;

use super::{load_job, reporter, signal};

pub async fn authorize(args: AuthorizeArgs, g: &Global) -> Result<u8, Error> {
    let job = load_job(&args.job, &Overrides { out: args.out.clone(), ..Default::default() })?;
    let p = job.patient.as_ref().ok_or_else(|| authorize::not_patient_access(&job))?;
    let state = JobState::new(&job.job_dir());
    let _lock = state.lock()?;
    // Listening before the address is printed: the redirect cannot come before anyone listens.
    let listener = if args.paste { None } else { Some(Loopback::bind(&p.redirect_uri).await?) };
    let started = authorize::begin(&job)?;
    eprintln!("Log in as the member at this address (the plan then redirects to {}):", p.redirect_uri);
    println!("{}", started.url);
    let _ = std::io::stdout().flush();
    if args.open {
        open_browser(started.url.as_str());
    }
    let redirect = match listener {
        Some(l) => {
            eprintln!("waiting for the redirect (up to {}; Ctrl-C to stop)…", humantime::format_duration(args.timeout));
            tokio::select! {
                r = l.wait(args.timeout) => r?,
                s = signal() => return Err(Error::Interrupted(s)),
            }
        }
        None => {
            eprintln!("After logging in, paste the whole address the browser was sent to, then press Enter:");
            tokio::task::spawn_blocking(|| read_pasted(std::io::stdin().lock()))
                .await
                .map_err(|e| Error::Failed(format!("reading stdin: {e}")))??
        }
    };
    let connected = authorize::complete(&job, &state, started, &redirect, reporter(g)).await?;
    print!("{}", connected_text(&job, &state, &args.job, &connected));
    Ok(exit::OK)
}

/// Who is connected, where the connection is kept, and what `run` will do.
fn connected_text(job: &crate::job::Job, state: &JobState, path: &Path, c: &Connected) -> String {
    let name = c.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
    let mut s = format!("connected: Patient/{}{name}\n", c.patient);
    if let Some(old) = &c.replaced {
        s.push_str(&format!(
            "  this job was connected to Patient/{old} before: its checkpoint was reset, the next run reads everything\n"
        ));
    }
    if let Some(scope) = &c.scope {
        s.push_str(&format!("  scope granted: {scope}\n"));
    }
    s.push_str(&format!("  the connection is saved in {} (owner-only)\n", state.dir.display()));
    s.push_str(&format!("next: {} run {}\n", crate::invocation::program(), path.display()));
    s.push_str(&format!("  {}\n", crate::patient::plan_text(job, &c.patient)));
    s
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    if let Err(e) = std::process::Command::new(opener)
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        eprintln!("warning: could not open a browser ({opener}: {e}); open the address above by hand");
    }
}
