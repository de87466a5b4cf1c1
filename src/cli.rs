//! The command line, as clap derive types only: no I/O here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  oneup-bulk demo                              try it: a local sandbox and a sample job, offline
  oneup-bulk validate jobs/*.yaml              check job files (no network)
  oneup-bulk run jobs/provider.yaml            run an export; rerun the same command to resume
  oneup-bulk run --dry-run jobs/provider.yaml  print the requests it would send
  oneup-bulk status                            last runs, exports in flight (every job in exports/)
  oneup-bulk inspect exports/provider/latest   review downloaded files

Exit codes: 0 complete, 1 failed, 2 bad job file or usage, 3 auth refused, 4 the server rejected or
failed the export, 5 complete but the server reported errors, 75 interrupted or timed out (rerun
resumes), 130 Ctrl-C, 143 SIGTERM.

Logs and progress go to stderr, summaries and reports to stdout. NO_COLOR turns colour off.";

pub const AUTHORIZE_HELP: &str = "\
Examples:
  oneup-bulk authorize jobs/member-ann.yaml           listen on the loopback redirect_uri
  oneup-bulk authorize --paste jobs/member-ann.yaml   production: paste where the browser lands
  oneup-bulk authorize --open jobs/member-ann.yaml    also open the address in the default browser

The member logs in at the printed address (1up allows a loopback redirect only in its sandbox).
The refresh token and patient id are saved in the job's state folder (owner-only); `oneup-bulk run`
then reads the member's data with no person present.";

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
    /// Format of log lines on stderr: text, or json (one JSON object per line, errors included).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// How `run` prints its end-of-run summary on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SummaryFormat {
    /// A table per job, printed as each job ends, and a line per job at the end.
    Text,
    /// One JSON document at the end, every job in it.
    Json,
    /// No summary.
    None,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run jobs: token, kick-off, poll, download, record. Resumes an interrupted run of the same job.
    #[command(
        after_help = "Examples:\n  oneup-bulk run jobs/provider.yaml\n  oneup-bulk run jobs/*.yaml --parallel 2\n  oneup-bulk run --log-format json --summary json jobs/provider.yaml\n  oneup-bulk run jobs/provider.yaml --since 2024-01-01T00:00:00Z --out /data/exports\n  oneup-bulk run jobs/provider.yaml --dry-run"
    )]
    Run(RunArgs),
    /// Check job files offline; non-zero on any problem.
    #[command(
        after_help = "Examples:\n  oneup-bulk validate jobs/provider.yaml\n  ONEUP_CLIENT_ID=x ONEUP_CLIENT_SECRET=y oneup-bulk validate jobs/*.yaml\n  oneup-bulk validate --no-env jobs/*.yaml examples/*.yaml examples/*/*.yaml   (CI, without secrets)\n\nYAML that is not a job file (a Kubernetes manifest: apiVersion/kind) is skipped with a `skip` line."
    )]
    Validate {
        /// Job files to check (YAML that is not a job file, like a Kubernetes manifest, is skipped).
        #[arg(required = true, value_name = "JOB.yaml")]
        jobs: Vec<PathBuf>,
        /// Read no environment variables: each `${VAR}` is a note ("not checked"), not an error.
        #[arg(long)]
        no_env: bool,
    },
    /// Last runs, exports in flight, checkpoints and lock holders.
    #[command(
        after_help = "Examples:\n  oneup-bulk status\n  oneup-bulk status jobs/provider.yaml\n  oneup-bulk status --out /data/exports jobs/*.yaml"
    )]
    Status {
        /// Job files; without any, every job folder under the output folder (default `exports/`).
        #[arg(value_name = "JOB.yaml")]
        jobs: Vec<PathBuf>,
        /// Where outputs go, if not the jobs' `download.dir`.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// DELETE the export in flight on the server and forget it.
    #[command(
        after_help = "Examples:\n  oneup-bulk cancel jobs/provider.yaml\n  oneup-bulk cancel --force jobs/provider.yaml   (an unreadable state file, or a lock left by another host)\n\nRefused while a run of the job is going on: the message names its pid and host to stop."
    )]
    Cancel {
        /// The job file whose export to cancel.
        #[arg(value_name = "JOB.yaml")]
        job: PathBuf,
        /// Where outputs go, if not the job's `download.dir`.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Also when the state file cannot be read (set aside, nothing sent to the server), or the
        /// lock is held from another host sharing the folder (broken). Never breaks a lock held on
        /// this host.
        #[arg(long)]
        force: bool,
    },
    /// Review downloaded NDJSON: files, resources, bytes, invalid lines, counts against the manifest.
    #[command(
        after_help = "Examples:\n  oneup-bulk inspect exports/provider/latest\n  oneup-bulk inspect exports/provider/latest --json\n  oneup-bulk inspect exports/provider/latest --head 3\n  oneup-bulk inspect exports/provider/latest --type Patient --head 3 --pretty\n  oneup-bulk inspect some/folder --check-references"
    )]
    Inspect(InspectArgs),
    /// Connection test: discovery, token, CapabilityStatement, advertised export operations. No export.
    #[command(after_help = "Examples:\n  oneup-bulk check jobs/provider.yaml")]
    Check {
        /// The job file to check the server of.
        #[arg(value_name = "JOB.yaml")]
        job: PathBuf,
    },
    /// Patient Access: connect a member once (SMART launch with PKCE); `run` then needs no person.
    #[command(after_help = AUTHORIZE_HELP)]
    Authorize(AuthorizeArgs),
    /// Serve a local Bulk Data server with synthetic data (for trying things and for tests).
    #[command(after_help = "Examples:\n  oneup-bulk sandbox\n  oneup-bulk sandbox --port 8089 --data-scale 100")]
    Sandbox {
        /// Port on 127.0.0.1.
        #[arg(long, default_value_t = 8089)]
        port: u16,
        /// About ten patients (and their records) per unit.
        #[arg(long, default_value_t = 1)]
        data_scale: u32,
        /// Behave like 1upHealth as its documentation describes it: GET-only exports (POST and DELETE
        /// answer 403), client-header credentials, exports scoped to the members `$member-match` matched,
        /// PDex 2.2 `$bulk-member-match` results, file URLs on another origin. Try `jobs/*.yaml` against
        /// it with `oneup.gateway` set to the printed address.
        #[arg(long)]
        oneup: bool,
    },
    /// Sandbox + a sample job, end to end, offline: the first thing to run.
    #[command(
        after_help = "Examples:\n  oneup-bulk demo\n  oneup-bulk demo --out /tmp/demo\n  oneup-bulk demo --with-server-errors   (exits 5, like a real run with error[] files)"
    )]
    Demo {
        /// Where the demo's files go.
        #[arg(long, value_name = "DIR", default_value = "exports")]
        out: PathBuf,
        /// Patient Access instead: connect a sandbox member (no person needed), then run.
        #[arg(long)]
        patient_access: bool,
        /// About ten patients (and their records) per unit.
        #[arg(long, default_value_t = 1)]
        data_scale: u32,
        /// Have the sandbox list an `error[]` file, as real servers often do (the run then exits 5).
        #[arg(long)]
        with_server_errors: bool,
    },
    /// Make a key pair for SMART Backend Services: a private key (PEM, 0600) and the public JWKS to register.
    #[command(
        after_help = "Examples:\n  oneup-bulk keygen --algorithm es384 --kid my-key --out keys/backend\n  (writes keys/backend.pem and keys/backend.jwks.json)"
    )]
    Keygen {
        /// The key type and signing algorithm (job: `auth.algorithm`).
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
    Completions {
        /// The shell to print completions for.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyAlgorithm {
    /// RSA 3072, signing with RS384.
    Rs384,
    /// EC P-384, signing with ES384.
    Es384,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Job files; a file named twice runs once.
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
    /// The end-of-run summary on stdout: text, json (one document), or none.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text, value_name = "FORMAT")]
    pub summary: SummaryFormat,
}

#[derive(Debug, Args)]
pub struct AuthorizeArgs {
    /// The member's patient-access job file.
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
    /// Run folders, folders of NDJSON, .ndjson / .ndjson.gz files, or a job's folder (lists its runs).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// One JSON document on stdout, for scripts.
    #[arg(long)]
    pub json: bool,
    /// Count references to resources that are not in the export.
    #[arg(long)]
    pub check_references: bool,
    /// Print resources of this type only (from any file, error/ and deleted/ too); --head 1 if not given.
    #[arg(long = "type", value_name = "TYPE")]
    pub resource_type: Option<String>,
    /// Print the first N resources of each type, as the lines are in the files.
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub head: Option<usize>,
    /// With --head or --type: indent each resource (keys in their order).
    #[arg(long)]
    pub pretty: bool,
    /// List the first N problems with file:line and the reason, then each failed check explained.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "20")]
    pub invalid: Option<usize>,
    /// Files read at once (default: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
}

/// `--head N`: 0 would print nothing.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("give 1 or more".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every entry of every `--help` says something: subcommands, arguments, and possible values
    /// (when some value of an argument is described, all are).
    #[test]
    fn no_blank_entries_in_help() {
        let cmd = Cli::command();
        let mut blank = Vec::new();
        let mut check = |owner: &str, args: Vec<&clap::Arg>| {
            for a in args {
                let id = a.get_id().as_str();
                if a.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() {
                    blank.push(format!("{owner} {id}"));
                }
                let values = a.get_possible_values();
                if values.iter().any(|v| v.get_help().is_some()) {
                    for v in values.iter().filter(|v| v.get_help().is_none()) {
                        blank.push(format!("{owner} {id}={}", v.get_name()));
                    }
                }
            }
        };
        check("oneup-bulk", cmd.get_arguments().collect());
        for sub in cmd.get_subcommands() {
            let name = sub.get_name();
            assert!(sub.get_about().is_some(), "{name} has no description");
            assert!(sub.get_after_help().is_some(), "{name} has no examples");
            // `validate`'s arguments belong to the job-file work, checked there.
            if name != "validate" {
                check(name, sub.get_arguments().filter(|a| !a.is_global_set()).collect());
            }
        }
        assert!(blank.is_empty(), "help entries without a description: {blank:?}");
    }
}
