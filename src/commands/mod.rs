//! The subcommands: each turns parsed arguments into calls on the library and returns an exit code.
//! Messages for people go to stderr; data (summaries, reports) to stdout.

mod check;
mod demo;
mod run;
mod status;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

use crate::cli::{Cli, Command, Global, LogFormat};
use crate::error::{Error, Signal, exit};
use crate::job::{self, Job};
use crate::progress::{Bars, Plain, Reporter, Silent};

pub use run::run_jobs;

/// True when progress bars should be drawn: stderr is a terminal, and nobody asked for quiet or detail.
pub fn use_bars(g: &Global) -> bool {
    !g.quiet && g.verbose == 0 && !g.no_progress && g.log_format == LogFormat::Text && std::io::stderr().is_terminal()
}

/// Logs to stderr. Default level: warnings under progress bars, info otherwise; `-v` debug, `-vv` trace;
/// `RUST_LOG` overrides all of it.
pub fn init_logging(g: &Global) {
    let level = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (false, 0) if use_bars(g) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| format!("oneup_bulk={level},warn").parse().expect("a valid filter"));
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr);
    let _ = match g.log_format {
        LogFormat::Json => builder.json().flatten_event(true).finish().with(filter).try_init(),
        LogFormat::Text => {
            builder.with_target(false).with_ansi(std::io::stderr().is_terminal()).finish().with(filter).try_init()
        }
    };
}

pub fn reporter(g: &Global) -> Arc<dyn Reporter> {
    if g.quiet {
        Arc::new(Silent)
    } else if use_bars(g) {
        Arc::new(Bars::new())
    } else {
        Arc::new(Plain)
    }
}

/// Runs a parsed command line; returns the process exit code.
pub async fn main(cli: Cli) -> u8 {
    let g = cli.global.clone();
    let res = match cli.command {
        Command::Run(args) => return run_jobs(args, &g).await,
        Command::Validate { jobs } => validate(&jobs),
        Command::Status { jobs, out } => status::status(&jobs, out.as_deref()),
        Command::Cancel { job, out } => status::cancel(&job, out.as_deref(), &g).await,
        Command::Inspect(args) => inspect(args),
        Command::Check { job } => check::check(&job, &g).await,
        Command::Sandbox { port, data_scale } => demo::sandbox(port, data_scale).await,
        Command::Demo { out, data_scale } => demo::demo(&out, data_scale, &g).await,
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

/// Prints an error for a person and returns its exit code.
pub fn report_error(e: &Error) -> u8 {
    match e {
        Error::Job(_) => eprintln!("{e}"),
        _ => eprintln!("error: {e}"),
    }
    e.exit_code()
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads a job file with the process environment.
pub fn load_job(path: &Path) -> Result<Job, Error> {
    let job = job::load(path, &env_var).map_err(Error::from)?;
    for w in &job.warnings {
        tracing::warn!("{}: {w}", path.display());
    }
    Ok(job)
}

/// `validate`: every file, every problem; a summary line per valid job.
fn validate(paths: &[PathBuf]) -> Result<u8, Error> {
    let mut worst = exit::OK;
    for p in paths {
        match job::load(p, &env_var).map_err(Error::from) {
            Ok(job) => {
                for w in &job.warnings {
                    eprintln!("warning: {}: {w}", p.display());
                }
                println!("ok  {}  {}", p.display(), job::summary(&job));
            }
            Err(e) => {
                worst = run::worst(worst, report_error(&e));
            }
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

/// `inspect`: the report on stdout (text or JSON); exit 0 whole and valid, 1 not, 2 usage.
fn inspect(a: crate::cli::InspectArgs) -> Result<u8, Error> {
    use crate::inspect::{InspectOptions, print_head, render_json, render_problems, render_text};
    let opts = InspectOptions {
        paths: a.paths,
        check_references: a.check_references,
        type_filter: a.resource_type,
        head: a.head,
        invalid: a.invalid,
        threads: a.threads,
        ..Default::default()
    };
    let mut out = std::io::stdout().lock();
    if opts.head.is_some() || opts.type_filter.is_some() {
        print_head(&opts, &mut out)?;
        return Ok(exit::OK);
    }
    let report = crate::inspect::inspect(&opts)?;
    let res = if a.json {
        render_json(&report, &mut out)
    } else if let Some(n) = opts.invalid {
        render_problems(&report, n, &mut out)
    } else {
        render_text(&report, &mut out)
    };
    res.map_err(|e| Error::io("stdout", e))?;
    Ok(report.exit_code())
}
