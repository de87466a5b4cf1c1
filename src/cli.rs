//! The command line, as clap derive types only: no I/O here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  oneup-bulk demo                              try it: a local sandbox server and a sample job, offline
  oneup-bulk validate jobs/*.yaml              check job files (no network)
  oneup-bulk run jobs/provider.yaml            run an export; rerun the same command to resume
  oneup-bulk run --dry-run jobs/provider.yaml  print the requests it would send
  oneup-bulk status                            last runs, exports in flight, checkpoints
  oneup-bulk inspect exports/provider/latest   review downloaded files

Exit codes: 0 complete, 1 failed, 2 bad job file or usage, 3 auth refused, 4 the server rejected or
failed the export, 5 complete but the server reported errors, 75 interrupted or timed out (rerun
resumes), 130 Ctrl-C, 143 SIGTERM.";

#[derive(Debug, Parser)]
#[command(name = "oneup-bulk", version, about = "Run FHIR Bulk Data exports described in YAML job files", after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Only errors on stderr; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More detail (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Plain log lines instead of progress bars, even on a terminal.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Format of log lines on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run jobs: token, kick-off, poll, download, record. Resumes an interrupted run of the same job.
    #[command(
        after_help = "Examples:\n  oneup-bulk run jobs/provider.yaml\n  oneup-bulk run jobs/*.yaml --parallel 2\n  oneup-bulk run jobs/provider.yaml --since 2024-01-01T00:00:00Z --out /data/exports\n  oneup-bulk run jobs/provider.yaml --dry-run"
    )]
    Run(RunArgs),
    /// Check job files offline; non-zero on any problem.
    #[command(
        after_help = "Examples:\n  oneup-bulk validate jobs/provider.yaml\n  ONEUP_CLIENT_ID=x ONEUP_CLIENT_SECRET=y oneup-bulk validate jobs/*.yaml\n  oneup-bulk validate --no-env jobs/*.yaml examples/*.yaml examples/*/*.yaml   (CI, without secrets)\n\nYAML that is not a job file (a Kubernetes manifest: apiVersion/kind) is skipped with a `skip` line."
    )]
    Validate {
        #[arg(required = true, value_name = "JOB.yaml")]
        jobs: Vec<PathBuf>,
        /// Read no environment variables: each `${VAR}` is a note ("not checked"), not an error.
        #[arg(long)]
        no_env: bool,
    },
    /// Last runs, exports in flight, checkpoints and lock holders.
    #[command(
        after_help = "Examples:\n  oneup-bulk status jobs/provider.yaml\n  oneup-bulk status --out /data/exports jobs/*.yaml"
    )]
    Status {
        #[arg(value_name = "JOB.yaml")]
        jobs: Vec<PathBuf>,
        /// Where outputs go, if not the jobs' `download.dir`.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// DELETE the export in flight on the server and forget it.
    #[command(after_help = "Examples:\n  oneup-bulk cancel jobs/provider.yaml")]
    Cancel {
        #[arg(value_name = "JOB.yaml")]
        job: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Review downloaded NDJSON: files, resources, bytes, invalid lines, counts against the manifest.
    #[command(
        after_help = "Examples:\n  oneup-bulk inspect exports/provider/latest\n  oneup-bulk inspect exports/provider/latest --json\n  oneup-bulk inspect exports/provider/latest --type Patient --head 3\n  oneup-bulk inspect some/folder --check-references"
    )]
    Inspect(InspectArgs),
    /// Connection test: discovery, token, CapabilityStatement, advertised export operations. No export.
    #[command(after_help = "Examples:\n  oneup-bulk check jobs/provider.yaml")]
    Check {
        #[arg(value_name = "JOB.yaml")]
        job: PathBuf,
    },
    /// Patient Access: connect a member once (SMART launch with PKCE); `run` then needs no person.
    #[command(after_help = crate::commands::AUTHORIZE_HELP)]
    Authorize(AuthorizeArgs),
    /// Serve a local Bulk Data server with synthetic data (for trying things and for tests).
    #[command(after_help = "Examples:\n  oneup-bulk sandbox\n  oneup-bulk sandbox --port 8089 --data-scale 100")]
    Sandbox {
        #[arg(long, default_value_t = 8089)]
        port: u16,
        /// About ten patients (and their records) per unit.
        #[arg(long, default_value_t = 1)]
        data_scale: u32,
    },
    /// Sandbox + a sample job, end to end, offline: the first thing to run.
    #[command(after_help = "Examples:\n  oneup-bulk demo\n  oneup-bulk demo --out /tmp/demo")]
    Demo {
        /// Where the demo's files go.
        #[arg(long, value_name = "DIR", default_value = "exports")]
        out: PathBuf,
        /// Patient Access instead: connect a sandbox member (no person needed), then run.
        #[arg(long)]
        patient_access: bool,
        #[arg(long, default_value_t = 1)]
        data_scale: u32,
    },
    /// Make a key pair for SMART Backend Services: a private key (PEM, 0600) and the public JWKS to register.
    #[command(
        after_help = "Examples:\n  oneup-bulk keygen --algorithm es384 --kid my-key --out keys/backend\n  (writes keys/backend.pem and keys/backend.jwks.json)"
    )]
    Keygen {
        #[arg(long, value_enum, default_value_t = KeyAlgorithm::Rs384)]
        algorithm: KeyAlgorithm,
        /// Key id, sent as the JWT header `kid` and set in the JWKS.
        #[arg(long, default_value = "oneup-bulk-1")]
        kid: String,
        /// Path prefix of the files to write (`<out>.pem`, `<out>.jwks.json`).
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
    /// Print shell completions.
    #[command(after_help = "Examples:\n  oneup-bulk completions bash > /etc/bash_completion.d/oneup-bulk")]
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyAlgorithm {
    Rs384,
    Es384,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(required = true, value_name = "JOB.yaml")]
    pub jobs: Vec<PathBuf>,
    /// Output folder, instead of each job's `download.dir`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// `_since` for this run only (an RFC 3339 instant or a date), instead of the job's `since`.
    #[arg(long, value_name = "INSTANT")]
    pub since: Option<String>,
    /// Print the requests it would send, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Forget an export in flight and start a new one.
    #[arg(long)]
    pub restart: bool,
    /// Jobs run at once (default: one after another).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub parallel: usize,
}

#[derive(Debug, Args)]
pub struct AuthorizeArgs {
    #[arg(value_name = "JOB.yaml")]
    pub job: PathBuf,
    /// Read the redirected address from stdin instead of listening on the loopback redirect URI.
    #[arg(long)]
    pub paste: bool,
    /// Open the authorize address in the default browser.
    #[arg(long)]
    pub open: bool,
    /// How long to wait for the redirect.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// Where outputs (and the job's state folder) go, if not the job's `download.dir`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// One JSON document on stdout, for scripts.
    #[arg(long)]
    pub json: bool,
    /// Count references to resources that are not in the export.
    #[arg(long)]
    pub check_references: bool,
    /// With --head: the resource type to print.
    #[arg(long = "type", value_name = "TYPE")]
    pub resource_type: Option<String>,
    /// Print N resources (of --type), pretty.
    #[arg(long, value_name = "N")]
    pub head: Option<usize>,
    /// List the first N problems with file:line and the reason.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "20")]
    pub invalid: Option<usize>,
    /// Files read at once (default: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
}
