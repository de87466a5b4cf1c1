//! `sandbox` (serve the local Bulk Data server until Ctrl-C) and `demo` (the sandbox in-process on a
//! free port + `examples/sandbox.yaml`, end to end, offline).

use std::net::SocketAddr;
use std::path::Path;

use crate::app::{RunOptions, run_job};
use crate::cli::Global;
use crate::error::{Error, exit};
use crate::job;
use crate::job::Overrides;
use crate::sandbox::{Sandbox, SandboxConfig, serve_until};

use tracing::Instrument as _;

use super::fit;
use super::logging::say;
use super::signal;

/// The demo's job, shipped in the binary so `demo` works from anywhere.
pub const DEMO_JOB: &str = include_str!("../../examples/sandbox.yaml");

pub async fn sandbox(port: u16, data_scale: u32, oneup: bool) -> Result<u8, Error> {
    let mode = if oneup { crate::sandbox::OneUpMode::all() } else { Default::default() };
    let (tenant, realm) = (mode.tenant.clone(), mode.realm.clone());
    let cfg = SandboxConfig { data_scale, oneup: mode, ..Default::default() };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (id, secret) = (cfg.client_id.clone(), cfg.client_secret.clone());
    serve_until(
        addr,
        cfg,
        |s: &Sandbox| {
            println!("Bulk Data sandbox (synthetic data, no PHI) — Ctrl-C to stop");
            println!("  fhir_base:  {}", s.fhir_base());
            println!("  token_url:  {}", s.token_url());
            println!("  client_id:  {id}");
            println!("  client_secret: {secret}   (a fixed demo value)");
            if oneup {
                println!("  1up mode: tenant {tenant}, realm {realm}; in a job's `oneup:` section write");
                println!("    gateway: http://{addr}");
                println!(
                    "try: ONEUP_CLIENT_ID={id} ONEUP_CLIENT_SECRET={secret} {me} run jobs/provider.yaml (after adding that line)",
                    me = crate::invocation::program()
                );
            } else {
                println!("try: {} run examples/sandbox.yaml", crate::invocation::program());
            }
        },
        async {
            signal().await;
        },
    )
    .await
    .map_err(|e| Error::Usage(format!("cannot serve on {addr}: {e} (is the port in use? try --port)")))?;
    Ok(exit::OK)
}

pub async fn demo(out: &Path, data_scale: u32, with_server_errors: bool, g: &Global) -> Result<u8, Error> {
    let cfg = SandboxConfig { data_scale, error_file: with_server_errors, ..Default::default() };
    let sb =
        Sandbox::start(cfg).await.map_err(|e| Error::Failed(format!("cannot start the sandbox on 127.0.0.1: {e}")))?;
    let mut job = job::parse(DEMO_JOB, "examples/sandbox.yaml", Path::new("."), &|_| None)?;
    job.fhir_base = sb.fhir_base();
    job.auth.token_url = Some(sb.token_url());
    say(&format!("demo: a local Bulk Data server is running at {} with synthetic data", sb.fhir_base()));
    say(&format!(
        "demo: running examples/sandbox.yaml against it (token → kick-off → poll → download → record) into {}\n",
        out.join(&job.name).display()
    ));
    job.apply(&Overrides { out: Some(out.to_path_buf()), ..Default::default() });
    let opts = RunOptions::default();
    let display = super::display(g, std::slice::from_ref(&job.name));
    let reporter = display.for_job(&job.name);
    let span = tracing::error_span!("job", job = %job.name);
    let res = tokio::select! {
        r = run_job(&job, &opts, reporter.clone()).instrument(span) => r,
        s = signal() => Err(Error::Interrupted(s)),
    };
    reporter.finish();
    display.finish();
    sb.shutdown().await;
    let outcome = res?;
    let columns = fit::stdout_width();
    print!("{}", super::summary::text_at(&job.name, &outcome, columns));
    let me = crate::invocation::program();
    let latest = out.join(&job.name).join("latest");
    let next = |cmd: &str, what: &str| fit::next_line(cmd, "   ", what, fit::room(columns));
    print!("\nnext:\n{}", next(&format!("{me} inspect {}", latest.display()), "review what arrived"));
    if Path::new("examples/sandbox.yaml").exists() {
        print!("{}", next("cp examples/sandbox.yaml jobs/mine.yaml", "and point it at your server"));
    } else {
        print!("{}", next(&format!("{me} sandbox"), "serve the same server on :8089 for your own job files"));
    }
    Ok(outcome.exit_code)
}
