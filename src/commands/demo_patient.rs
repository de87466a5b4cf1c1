//! `demo --patient-access`: the Patient Access flow end to end, offline. The sandbox plays the health
//! plan; the demo plays the member (the plan approves at once as a synthetic member, where a real plan
//! would show its login page), then runs `examples/sandbox-patient.yaml` with the saved connection.

use std::path::Path;

use crate::app::{RunOptions, run_job};
use crate::cli::Global;
use crate::error::{Error, exit};
use crate::job::{self, Overrides};
use crate::patient::authorize;
use crate::sandbox::{PlanConfig, Sandbox, SandboxConfig};
use crate::state::JobState;

use super::{reporter, signal};

/// The demo's job, shipped in the binary so the demo works from anywhere.
pub const DEMO_JOB: &str = include_str!("../../examples/sandbox-patient.yaml");
/// The synthetic member who "logs in".
const MEMBER: &str = "pt-3";

pub async fn demo(out: &Path, data_scale: u32, g: &Global) -> Result<u8, Error> {
    let plan = PlanConfig { member: Some(MEMBER.into()), ..Default::default() };
    let sb = Sandbox::start(SandboxConfig { data_scale, plan, ..Default::default() })
        .await
        .map_err(|e| Error::Failed(format!("cannot start the sandbox on 127.0.0.1: {e}")))?;
    let mut job = job::parse(DEMO_JOB, "examples/sandbox-patient.yaml", Path::new("."), &|_| None)?;
    job.fhir_base = sb.fhir_base();
    job.auth.token_url = Some(sb.plan_token_url());
    if let Some(p) = job.patient.as_mut() {
        p.authorize_url = sb.plan_authorize_url();
    }
    job.apply(&Overrides { out: Some(out.to_path_buf()), ..Default::default() });
    let res = tokio::select! {
        r = connect_and_run(&job, g) => r,
        s = signal() => Err(Error::Interrupted(s)),
    };
    sb.shutdown().await;
    res
}

async fn connect_and_run(job: &job::Job, g: &Global) -> Result<u8, Error> {
    eprintln!("demo: a local health plan is running at {} with synthetic members", job.fhir_base);
    eprintln!("demo: 1. authorize — the member would log in at this address:\n");
    let started = authorize::begin(job)?;
    eprintln!("{}\n", started.url);
    // The member's browser: the sandbox plan approves at once and redirects with a code.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Failed(e.to_string()))?;
    let resp =
        browser.get(started.url.clone()).send().await.map_err(|e| Error::Failed(format!("the sandbox plan: {e}")))?;
    let redirect = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| Error::Failed(format!("the sandbox plan answered HTTP {} without a redirect", resp.status())))?
        .to_string();
    let state = JobState::new(&job.job_dir());
    let c = {
        let _lock = state.lock()?;
        authorize::complete(job, &state, started, &redirect, reporter(g)).await?
    };
    let name = c.name.map(|n| format!(" ({n})")).unwrap_or_default();
    eprintln!(
        "demo: connected Patient/{}{name}; the refresh token is saved in {} (owner-only)",
        c.patient,
        state.dir.display()
    );
    eprintln!("demo: 2. run — no person needed: {}\n", crate::patient::plan_text(job, &c.patient));
    let display = reporter(g);
    let res = run_job(job, &RunOptions::default(), display.clone()).await;
    display.finish();
    let outcome = res?;
    let columns = super::fit::stdout_width();
    print!("{}", super::summary::text_at(&job.name, &outcome, columns));
    let latest = job.job_dir().join("latest");
    let room = super::fit::room(columns);
    let inspect = format!("{} inspect {}", crate::invocation::program(), latest.display());
    print!("\nnext:\n{}", super::fit::next_line(&inspect, "          ", "review what arrived", room));
    let what = "for a real plan (1up's demo plan is filled in)";
    print!("{}", super::fit::next_line("cp examples/patient-access.yaml jobs/member.yaml", "   ", what, room));
    Ok(if outcome.exit_code == exit::SERVER_ERRORS { exit::OK } else { outcome.exit_code })
}
