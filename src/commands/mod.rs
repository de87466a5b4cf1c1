//! The subcommands: each turns parsed arguments into calls on the library and returns an exit code.
//! Messages for people go to stderr; data (summaries, reports) to stdout.

mod authorize;
mod check;
mod demo;
mod demo_patient;
mod dry_run;
pub mod fit;
mod logging;
mod run;
mod status;
pub mod summary;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cli::{Cli, Command, Global, LogFormat};
use crate::error::{Error, Signal, exit};
use crate::job::{self, Job};
use crate::progress::{Bars, Display, Plain, Reporter, Silent};

pub use logging::{color_stderr, init_logging, json as json_logs, json_error_line, report_error};
pub use run::{Board, Runner, Slot, SlotState, jobs_table, run_all, run_jobs};

/// True when progress bars should be drawn: stderr is a terminal, and nobody asked for quiet or detail.
pub fn use_bars(g: &Global) -> bool {
    !g.quiet && g.verbose == 0 && !g.no_progress && g.log_format == LogFormat::Text && std::io::stderr().is_terminal()
}

/// Where the jobs `names` show their progress: bars on a terminal, log lines elsewhere, nothing with `-q`.
pub fn display(g: &Global, names: &[String]) -> Arc<dyn Display> {
    if g.quiet {
        Arc::new(Silent)
    } else if use_bars(g) {
        Arc::new(Bars::new(names, color_stderr()))
    } else {
        Arc::new(Plain)
    }
}

/// A reporter for one-request commands (`cancel`): log lines, or nothing with `-q`.
pub fn reporter(g: &Global) -> Arc<dyn Reporter> {
    if g.quiet { Arc::new(Silent) } else { Arc::new(Plain) }
}

/// Runs a parsed command line; returns the process exit code.
pub async fn main(cli: Cli) -> u8 {
    crate::invocation::detect();
    let g = cli.global.clone();
    let res = match cli.command {
        Command::Run(args) => return run_jobs(args, &g).await,
        Command::Validate { jobs, no_env } => validate(&jobs, no_env),
        Command::Status { jobs, out } => status::status(&jobs, out.as_deref()),
        Command::Cancel { job, out, force } => status::cancel(&job, out.as_deref(), force, &g).await,
        // Off the runtime's threads: inspect blocks (on files, or on a bucket's requests).
        Command::Inspect(args) => tokio::task::spawn_blocking(move || crate::inspect::run_command(args))
            .await
            .unwrap_or_else(|e| Err(Error::Failed(format!("inspect failed: {e}")))),
        Command::Check { job } => check::check(&job, &g).await,
        Command::Sandbox { port, data_scale, oneup } => demo::sandbox(port, data_scale, oneup).await,
        Command::Authorize(args) => authorize::authorize(args, &g).await,
        Command::Demo { out, data_scale, patient_access: true, .. } => demo_patient::demo(&out, data_scale, &g).await,
        Command::Demo { out, data_scale, with_server_errors, .. } => {
            demo::demo(&out, data_scale, with_server_errors, &g).await
        }
        Command::Keygen { algorithm, kid, out } => keygen(algorithm, &kid, &out),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "oneup-bulk", &mut std::io::stdout());
            Ok(exit::OK)
        }
    };
    match res {
        Ok(code) => code,
        Err(e) => report_error(&e),
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads a job file with the process environment, and applies the command line's overrides.
pub fn load_job(path: &Path, overrides: &job::Overrides) -> Result<Job, Error> {
    overrides.check().map_err(Error::Usage)?;
    let mut job = job::load(path, &env_var).map_err(Error::from)?;
    job.apply(overrides);
    for w in &job.warnings {
        tracing::warn!("{}: {w}", path.display());
    }
    Ok(job)
}

/// `validate`: every file, every problem; a summary line per valid job, a `skip` line per YAML file
/// that is not a job file. With `no_env`, `${VAR}`s are notes and not read.
fn validate(paths: &[PathBuf], no_env: bool) -> Result<u8, Error> {
    let env = if no_env { job::Env::Unchecked } else { job::Env::Vars(&env_var) };
    let mut worst = exit::OK;
    for p in paths {
        match job::lint(p, env) {
            Ok(job::Lint::Job { summary, notes, warnings, details }) => {
                for n in &notes {
                    eprintln!("{n}\n");
                }
                for w in &warnings {
                    eprintln!("warning: {}: {w}", p.display());
                }
                match summary {
                    Some(s) => println!("ok  {}  {s}", p.display()),
                    None => println!("ok  {}  (not every value checked: --no-env)", p.display()),
                }
                for d in &details {
                    println!("      {d}");
                }
            }
            Ok(job::Lint::NotAJob { what }) => println!("skip  {}  not a job file: {what}", p.display()),
            Err(e) => worst = run::worst(worst, report_error(&Error::from(e))),
        }
    }
    Ok(worst)
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn signal() -> Signal {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return Signal::Interrupt;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Signal::Interrupt,
        _ = term.recv() => Signal::Terminate,
    }
}

/// `keygen`: writes `<out>.pem` (0600, never overwritten) and `<out>.jwks.json`.
fn keygen(alg: crate::cli::KeyAlgorithm, kid: &str, out: &Path) -> Result<u8, Error> {
    use std::io::Write as _;
    let alg = match alg {
        crate::cli::KeyAlgorithm::Rs384 => crate::job::JwtAlgorithm::Rs384,
        crate::cli::KeyAlgorithm::Es384 => crate::job::JwtAlgorithm::Es384,
    };
    let (pem, jwks) = crate::jwt::generate(alg, kid).map_err(Error::Failed)?;
    let key_path = out.with_extension("pem");
    let jwks_path = out.with_extension("jwks.json");
    if key_path.exists() {
        return Err(Error::Usage(format!("{} exists; not overwriting a key", key_path.display())));
    }
    if let Some(dir) = key_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private_fs::create_private_dir(dir)?;
    }
    let mut f = crate::private_fs::create_private_file(&key_path).map_err(|e| Error::io(&key_path, e))?;
    f.write_all(pem.as_bytes()).map_err(|e| Error::io(&key_path, e))?;
    std::fs::write(&jwks_path, format!("{jwks}\n")).map_err(|e| Error::io(&jwks_path, e))?;
    println!("private key: {} (keep it secret; job: auth.private_key_file)", key_path.display());
    println!("public JWKS: {} (register it with the server)", jwks_path.display());
    Ok(exit::OK)
}
