//! `run`: one or more jobs, one after another or `--parallel N`; one failing job does not stop the
//! others; the exit code is the worst one; Ctrl-C / SIGTERM stop cleanly with the state kept.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::app::{RunOptions, RunOutcome, run_job};
use crate::cli::{Global, RunArgs};
use crate::error::{Error, exit};
use crate::export::kickoff;
use crate::job::{AuthMethod, Job};
use crate::progress::Reporter;
use crate::record::FileKind;

use super::{load_job, report_error, reporter, signal};

/// Exit codes from least to most severe, for "the worst one".
const SEVERITY: [u8; 9] = [
    exit::OK,
    exit::SERVER_ERRORS,
    exit::TEMPFAIL,
    exit::SERVER_REJECTED,
    exit::AUTH,
    exit::FAILED,
    exit::USAGE,
    exit::SIGTERM,
    exit::SIGINT,
];

pub fn worst(a: u8, b: u8) -> u8 {
    let rank = |c| SEVERITY.iter().position(|&s| s == c).unwrap_or(5);
    if rank(b) > rank(a) { b } else { a }
}

/// `--since`: an RFC 3339 instant or a date (midnight UTC), read like the job file's `since`.
pub fn parse_since(s: &str) -> Result<OffsetDateTime, Error> {
    crate::instant::parse(s).ok_or_else(|| {
        Error::Usage(format!("--since {s:?}: expected an instant like 2024-01-31T00:00:00Z or a date like 2024-01-31"))
    })
}

pub async fn run_jobs(args: RunArgs, g: &Global) -> u8 {
    let since = match args.since.as_deref().map(parse_since).transpose() {
        Ok(s) => s,
        Err(e) => return report_error(&e),
    };
    let out = match args.out.as_deref().map(super::out_location).transpose() {
        Ok(o) => o,
        Err(e) => return report_error(&e),
    };
    let overrides = crate::job::Overrides { out, since };
    // Every job file is checked before anything is sent.
    let mut jobs = Vec::new();
    let mut code = exit::OK;
    for p in &args.jobs {
        match load_job(p, &overrides) {
            Ok(j) => jobs.push(j),
            Err(e) => code = worst(code, report_error(&e)),
        }
    }
    if code != exit::OK {
        return code;
    }
    let opts = RunOptions { restart: args.restart };
    if args.dry_run {
        for j in &jobs {
            print!("{}", dry_run(j).await);
        }
        return exit::OK;
    }
    let display = reporter(g);
    let run_all = run_all(jobs, opts, display.clone(), args.parallel.max(1));
    tokio::select! {
        code = run_all => code,
        sig = signal() => {
            display.finish();
            // Dropping the runs cancels their requests; state and .part files stay for the rerun.
            report_error(&Error::Interrupted(sig))
        }
    }
}

async fn run_all(jobs: Vec<Job>, opts: RunOptions, display: Arc<dyn Reporter>, parallel: usize) -> u8 {
    let many = jobs.len() > 1;
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut set = tokio::task::JoinSet::new();
    for (i, job) in jobs.into_iter().enumerate() {
        let (sem, opts, display) = (sem.clone(), opts.clone(), display.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let res = run_job(&job, &opts, display.clone()).await;
            display.finish();
            (i, job.name.clone(), res)
        });
    }
    let mut results = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(r) => results.push(r),
            Err(e) => results.push((usize::MAX, "?".into(), Err(Error::Failed(format!("job task failed: {e}"))))),
        }
    }
    results.sort_by_key(|r| r.0);
    let mut code = exit::OK;
    let mut table = String::new();
    for (_, name, res) in &results {
        match res {
            Ok(out) => {
                print!("{}", summary(name, out));
                code = worst(code, out.exit_code);
                let _ = writeln!(
                    table,
                    "  {name:<24} {:>3}  complete: {} resources in {} files",
                    out.exit_code, out.record.totals.resources, out.record.totals.files
                );
            }
            Err(e) => {
                eprintln!("error: job {name}: {e}");
                code = worst(code, e.exit_code());
                let _ = writeln!(table, "  {name:<24} {:>3}  {}", e.exit_code(), first_line(&e.to_string()));
            }
        }
    }
    if many {
        println!("\njobs (exit code, outcome):\n{table}");
    }
    code
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The end-of-run summary: files and resources per type, bytes, time, where the files are.
pub fn summary(name: &str, out: &RunOutcome) -> String {
    let r = &out.record;
    let mut per_type: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for f in r.files.iter().filter(|f| f.kind == FileKind::Output) {
        let e = per_type.entry(&f.resource_type).or_default();
        e.0 += 1;
        e.1 += f.lines;
        e.2 += f.bytes;
    }
    let mut s = String::new();
    let status = match out.exit_code {
        exit::OK => "complete",
        exit::SERVER_ERRORS => "complete, with errors reported by the server",
        _ => "downloaded, but validation failed",
    };
    let _ = writeln!(s, "{name}: {status} (transactionTime {})", r.transaction_time);
    let _ = writeln!(s, "  {:<28} {:>6} {:>10} {:>12}", "type", "files", "resources", "bytes");
    for (t, (files, lines, bytes)) in &per_type {
        let _ = writeln!(s, "  {t:<28} {files:>6} {lines:>10} {bytes:>12}");
    }
    let _ = writeln!(s, "  {:<28} {:>6} {:>10} {:>12}", "total", r.totals.files, r.totals.resources, r.totals.bytes);
    if r.totals.server_errors > 0 {
        let _ = writeln!(
            s,
            "  the server reported {} error(s): see {}/error/",
            r.totals.server_errors,
            out.run_dir.display()
        );
    }
    for p in r.problems.iter().take(5) {
        let loc = match (&p.file, p.line) {
            (Some(f), Some(l)) => format!("{f}:{l}: "),
            (Some(f), None) => format!("{f}: "),
            _ => String::new(),
        };
        let _ = writeln!(s, "  problem: {loc}{}", p.message);
    }
    let _ = writeln!(s, "  {:.1} s; files in {}", r.totals.seconds, out.run_dir.display());
    s
}

/// `--dry-run`: the token request and the kick-off as they would be sent, secrets redacted.
pub async fn dry_run(job: &Job) -> String {
    let since = match crate::state::JobState::open(&job.job_dir()) {
        Ok(state) => crate::export::inflight::resolve_since(job, &state).await.ok().flatten(),
        Err(_) => None,
    };
    let k = kickoff::build(job, since);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# job {} ({})",
        job.name,
        job.source.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
    );
    match job.auth.method {
        AuthMethod::None => {
            let _ = writeln!(s, "# no token (auth.method: none)");
        }
        m => {
            let url = job
                .auth
                .token_url
                .as_ref()
                .map(|u| u.to_string())
                .unwrap_or_else(|| format!("(discovered from {}.well-known/smart-configuration)", job.fhir_base));
            let _ = writeln!(s, "POST {url}");
            let _ = writeln!(s, "Content-Type: application/x-www-form-urlencoded");
            let mut form = vec!["grant_type=client_credentials".to_string()];
            if let Some(sc) = &job.auth.scope {
                form.push(format!("scope={sc}"));
            }
            match m {
                AuthMethod::ClientSecretPost => {
                    form.push(format!("client_id={}", job.auth.client_id));
                    form.push("client_secret=[redacted]".into());
                }
                AuthMethod::ClientSecretBasic => {
                    let _ = writeln!(s, "Authorization: Basic [redacted]");
                }
                _ => {
                    form.push("client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into());
                    form.push("client_assertion=[signed JWT]".into());
                }
            }
            let _ = writeln!(s, "\n{}\n", form.join("&"));
        }
    }
    let _ = writeln!(s, "{} {}", k.method, k.url);
    let _ = writeln!(s, "Accept: application/fhir+json");
    let _ = writeln!(s, "Prefer: {}", k.prefer);
    if job.auth.method != AuthMethod::None {
        let _ = writeln!(s, "Authorization: Bearer [redacted]");
    }
    for (h, _) in &job.headers {
        let _ = writeln!(s, "{h}: …");
    }
    if let Some(b) = &k.body {
        let _ = writeln!(
            s,
            "Content-Type: application/fhir+json\n\n{}",
            serde_json::to_string_pretty(b).unwrap_or_default()
        );
    }
    let _ =
        writeln!(s, "\n# then: poll the status URL, download the manifest's files into {}/<run-id>/", job.job_dir());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_exit_code() {
        assert_eq!(worst(0, 5), 5);
        assert_eq!(worst(5, 75), 75);
        assert_eq!(worst(75, 1), 1);
        assert_eq!(worst(1, 4), 1);
        assert_eq!(worst(2, 130), 130);
        assert_eq!(worst(3, 0), 3);
    }

    #[test]
    fn since_instant_or_date() {
        assert_eq!(parse_since("2024-01-31").unwrap().to_string(), "2024-01-31 0:00:00.0 +00:00:00");
        assert!(parse_since("2024-01-31T10:00:00+02:00").is_ok());
        assert_eq!(parse_since("yesterday").unwrap_err().exit_code(), 2);
    }
}
