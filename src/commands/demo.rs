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

use super::{reporter, signal};

/// The demo's job, shipped in the binary so `demo` works from anywhere.
pub const DEMO_JOB: &str = include_str!("../../examples/sandbox.yaml");

pub async fn sandbox(port: u16, data_scale: u32) -> Result<u8, Error> {
    let cfg = SandboxConfig { data_scale, ..Default::default() };
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
            println!("try: oneup-bulk run examples/sandbox.yaml");
        },
        async {
            signal().await;
        },
    )
    .await
    .map_err(|e| Error::Usage(format!("cannot serve on {addr}: {e} (is the port in use? try --port)")))?;
    Ok(exit::OK)
}

pub async fn demo(out: &Path, data_scale: u32, g: &Global) -> Result<u8, Error> {
    let sb = Sandbox::start(SandboxConfig { data_scale, ..Default::default() })
        .await
        .map_err(|e| Error::Failed(format!("cannot start the sandbox on 127.0.0.1: {e}")))?;
    let mut job = job::parse(DEMO_JOB, "examples/sandbox.yaml", Path::new("."), &|_| None)?;
    job.fhir_base = sb.fhir_base();
    job.auth.token_url = Some(sb.token_url());
    eprintln!("demo: a local Bulk Data server is running at {} with synthetic data", sb.fhir_base());
    eprintln!("demo: running examples/sandbox.yaml against it (token → kick-off → poll → download → record)\n");
    job.apply(&Overrides { out: Some(crate::store::Location::Local(out.to_path_buf())), ..Default::default() });
    let opts = RunOptions::default();
    let display = reporter(g);
    let res = tokio::select! {
        r = run_job(&job, &opts, display.clone()) => r,
        s = signal() => Err(Error::Interrupted(s)),
    };
    display.finish();
    sb.shutdown().await;
    let outcome = res?;
    print!("{}", super::run::summary(&job.name, &outcome));
    let latest = out.join(&job.name).join("latest");
    println!("\nnext:");
    println!("  oneup-bulk inspect {}          review what arrived", latest.display());
    println!("  cp examples/sandbox.yaml jobs/mine.yaml   and point it at your server");
    // The sandbox reports an error[] file on purpose (real servers do); the demo itself succeeded.
    Ok(if outcome.exit_code == exit::SERVER_ERRORS { exit::OK } else { outcome.exit_code })
}
