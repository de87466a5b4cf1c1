//! The chaos soak's driver, shared by `src/bin/soak.rs` and the short run in `cargo test`: one
//! iteration starts the sandbox in chaos mode for a seed ([`SandboxConfig::chaos`]), writes a job
//! file for it, runs the real `oneup-bulk run` as a child process, SIGKILLs it at seeded moments and
//! runs it again (also after exit 75) until it completes, then checks the invariants ([`check`]).
//!
//! Everything random comes from the seed: the server's plan and shape, the job's concurrency, how many
//! kills and when. The timing of a kill against the child's progress is the one thing a seed cannot
//! pin down, so a failure's report says what happened run by run.

pub mod check;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sandbox::chaos::{FaultKind, Rng};
use crate::sandbox::{Sandbox, SandboxConfig};

/// How an iteration is run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `oneup-bulk` binary.
    pub bin: PathBuf,
    /// Runs of the binary (killed or not) before the iteration counts as failed.
    pub max_runs: u32,
    /// One run longer than this is killed and the iteration fails (a hang).
    pub run_timeout: Duration,
}

impl Options {
    pub fn new(bin: PathBuf) -> Self {
        Options { bin, max_runs: 40, run_timeout: Duration::from_secs(120) }
    }
}

/// What one iteration did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub seed: u64,
    /// Runs of the binary started, the first one included.
    pub runs: u32,
    pub kills: u32,
    /// What each run ended with: an exit code, or `kill@<ms>`.
    pub history: Vec<String>,
    pub faults: BTreeMap<FaultKind, u64>,
    /// Kick-offs the sandbox accepted, and of those, the ones a kill orphaned.
    pub kickoffs: usize,
    pub orphaned: usize,
    pub downloaded: check::Downloaded,
    pub wall: Duration,
}

impl Report {
    /// `runs 4 (3 reruns: kill@812ms 75 kill@95ms 5), faults 17, kick-offs 1, 9 files 260.3 KB, 3.1 s`.
    pub fn line(&self) -> String {
        format!(
            "runs {} ({} killed; {}), faults {}, kick-offs {}{}, {} files {:.1} KB, {:.1} s",
            self.runs,
            self.kills,
            self.history.join(" "),
            self.faults.values().sum::<u64>(),
            self.kickoffs,
            if self.orphaned > 0 { format!(" ({} orphaned by a kill)", self.orphaned) } else { String::new() },
            self.downloaded.files,
            self.downloaded.bytes as f64 / 1000.0,
            self.wall.as_secs_f64(),
        )
    }
}

/// An iteration whose invariants did not hold, or that never completed.
#[derive(Debug)]
pub struct Failure {
    pub report: Report,
    pub what: String,
    /// What each run said on stderr (its first lines), for a first look.
    pub stderr: String,
}

/// The job file for a chaos sandbox: fast polls, and retries and concurrency from the seed.
fn job_yaml(sb: &Sandbox, out: &Path, rng: &mut Rng) -> String {
    format!(
        "name: t\naccess: bulk-data\nfhir_base: {base}\nauth:\n  client_id: {id}\n  client_secret: {secret}\n  \
         token_url: {token}\nexport:\n  level: system\npoll:\n  min_interval: 10ms\n  max_interval: 200ms\n  \
         timeout: 60s\ndownload:\n  dir: {out}\n  retries: {retries}\n  concurrency: {conc}\ntimeouts:\n  \
         request: 10s\n  read_idle: 5s\n",
        base = sb.fhir_base(),
        token = sb.token_url(),
        id = SandboxConfig::default().client_id,
        secret = SandboxConfig::default().client_secret,
        out = out.display(),
        retries = rng.range(3, 6),
        conc = rng.range(1, 4),
    )
}

/// One iteration for `seed`. Runs on the caller's Tokio runtime (the sandbox serves on it).
pub async fn iteration(seed: u64, opts: &Options) -> Result<Report, Failure> {
    let started = Instant::now();
    let sb = Sandbox::start(SandboxConfig::chaos(seed)).await.map_err(|e| Failure {
        report: Report { seed, ..Report::default() },
        what: format!("the sandbox did not start: {e}"),
        stderr: String::new(),
    })?;
    let dir = tempfile::tempdir().map_err(|e| Failure {
        report: Report { seed, ..Report::default() },
        what: format!("no temp dir: {e}"),
        stderr: String::new(),
    })?;
    let mut rng = Rng::new(seed ^ 0x0C1E_A7ED_0000_0001);
    let out = dir.path().join("out");
    let job_file = dir.path().join("chaos.yaml");
    let job_dir = out.join("t");
    let mut report = Report { seed, ..Report::default() };
    let mut stderr = String::new();
    let result = async {
        std::fs::write(&job_file, job_yaml(&sb, &out, &mut rng)).map_err(|e| format!("writing the job: {e}"))?;
        let mut kills_left = rng.range(1, 4);
        let mut orphaned = BTreeSet::new();
        loop {
            if report.runs >= opts.max_runs {
                return Err(format!("no complete run in {} runs", opts.max_runs));
            }
            let kill_at = (kills_left > 0 && rng.chance(0.8)).then(|| Duration::from_millis(rng.range(20, 1500)));
            let before = sb.kickoff_count();
            let completed_before = check::completed_runs(&job_dir)?.len();
            let log = dir.path().join(format!("run{}.stderr", report.runs));
            report.runs += 1;
            let ended = run_once(opts, &sb, &job_file, &log, kill_at).await?;
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = writeln!(stderr, "run {}:", report.runs);
            for l in said.lines().take(6) {
                let _ = writeln!(stderr, "  {l}");
            }
            match ended {
                Ended::Killed { at, since_kickoff } => {
                    kills_left -= 1;
                    report.kills += 1;
                    report.history.push(format!("kill@{}ms", at.as_millis()));
                    let recorded = check::after_kill(&job_dir, &sb).map_err(|e| format!("after a kill: {e}"))?;
                    // The kill came after the run had finished its work (record, latest, checkpoint,
                    // state cleared) and before the process exited: the export is complete, and a
                    // rerun would rightly start the next one. Judge this one, with the exit code the
                    // checkpoint recorded.
                    let completed = check::completed_runs(&job_dir)?;
                    if recorded.is_none() && completed.len() > completed_before {
                        let code = i32::from(completed[0]);
                        report.history.push(format!("(complete before the kill: {code})"));
                        report.downloaded = check::complete(&job_dir, &sb, code, &orphaned)?;
                        report.orphaned = orphaned.len();
                        return Ok(());
                    }
                    // Accepted during this run and not in the state: the kill came before the client
                    // could write the status URL down. Nobody can know of that export; it is not a
                    // second kick-off of the same one — if the kill came right after it.
                    for k in sb.kickoffs().into_iter().skip(before) {
                        if recorded.as_deref().map(check::job_of).as_deref() != Some(k.job_id.as_str()) {
                            let gap = since_kickoff.unwrap_or_default();
                            if gap > ORPHAN_WINDOW {
                                return Err(format!(
                                    "export {} was accepted {gap:?} before the kill and is not in the state",
                                    k.job_id
                                ));
                            }
                            report.history.push(format!("(orphan {}ms after its kick-off)", gap.as_millis()));
                            orphaned.insert(k.job_id);
                        }
                    }
                }
                Ended::Exited(code) => {
                    report.history.push(code.to_string());
                    match code {
                        0 | 5 => {
                            report.downloaded = check::complete(&job_dir, &sb, code, &orphaned)?;
                            report.orphaned = orphaned.len();
                            return Ok(());
                        }
                        75 => check::state_parses(&job_dir).map(drop)?,
                        _ => return Err(format!("run {} exited {code}", report.runs)),
                    }
                }
            }
        }
    }
    .await;
    report.faults = sb.chaos_fired();
    report.kickoffs = sb.kickoff_count();
    report.wall = started.elapsed();
    sb.shutdown().await;
    match result {
        Ok(()) => Ok(report),
        Err(mut what) => {
            if std::env::var_os("SOAK_KEEP").is_some() {
                what.push_str(&format!(" (kept: {})", dir.keep().display()));
            }
            Err(Failure { report, what, stderr })
        }
    }
}

/// A kick-off is written to the state as soon as its answer arrives; an export missing from the state
/// longer than this after the sandbox accepted it is a client bug, not a kill's bad timing (generous:
/// the soak runs at the lowest priority on busy machines).
const ORPHAN_WINDOW: Duration = Duration::from_secs(2);

enum Ended {
    Exited(i32),
    /// Killed this long after the start, and this long after the last kick-off the sandbox accepted
    /// (as seen every few milliseconds), if there was one during the run.
    Killed {
        at: Duration,
        since_kickoff: Option<Duration>,
    },
}

/// Runs the binary once; SIGKILLs it at `kill_at` if it is still running then.
async fn run_once(
    opts: &Options,
    sb: &Sandbox,
    job: &Path,
    log: &Path,
    kill_at: Option<Duration>,
) -> Result<Ended, String> {
    let err = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = Command::new(&opts.bin)
        .arg("run")
        .arg("-q")
        .arg("--summary")
        .arg("none")
        .arg(job)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{}: {e}", opts.bin.display()))?;
    let t0 = Instant::now();
    let (mut kickoffs, mut kicked_at) = (sb.kickoff_count(), None);
    loop {
        if sb.kickoff_count() != kickoffs {
            kickoffs = sb.kickoff_count();
            kicked_at = Some(Instant::now());
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(Ended::Exited(status.code().unwrap_or(-1)));
        }
        let elapsed = t0.elapsed();
        let hung = elapsed >= opts.run_timeout;
        if hung || kill_at.is_some_and(|at| elapsed >= at) {
            // SIGKILL: no chance to clean up, like the OOM killer or a node going away.
            // SAFETY: kill(2) on the pid of a child we have not reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
            let _ = child.wait();
            if hung {
                return Err(format!("a run did not end within {:?}", opts.run_timeout));
            }
            return Ok(Ended::Killed { at: elapsed, since_kickoff: kicked_at.map(|t| t.elapsed()) });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What to print for a failed iteration: the seed, what broke, how to reproduce it, what the runs said.
pub fn describe_failure(f: &Failure) -> String {
    let mut s = format!("FAILED seed {}: {}\n  {}\n", f.report.seed, f.what, f.report.line());
    let _ = writeln!(s, "  repro: cargo run --locked --bin soak -- --seed {} --iterations 1", f.report.seed);
    for l in f.stderr.lines() {
        let _ = writeln!(s, "  | {l}");
    }
    s
}

/// Totals over iterations, for the soak's summary.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub iterations: u32,
    pub failed: Vec<u64>,
    pub faults: BTreeMap<FaultKind, u64>,
    pub kills: u32,
    pub reruns: u32,
    pub kickoffs: usize,
    pub orphaned: usize,
    pub files: usize,
    pub bytes: u64,
}

impl Totals {
    pub fn add(&mut self, r: &Report, ok: bool) {
        self.iterations += 1;
        if !ok {
            self.failed.push(r.seed);
        }
        for (k, n) in &r.faults {
            *self.faults.entry(*k).or_default() += n;
        }
        self.kills += r.kills;
        self.reruns += r.runs.saturating_sub(1);
        self.kickoffs += r.kickoffs;
        self.orphaned += r.orphaned;
        self.files += r.downloaded.files;
        self.bytes += r.downloaded.bytes;
    }

    /// The summary, several lines.
    pub fn summary(&self, wall: Duration) -> String {
        let mut s = format!(
            "{} iterations, {} failed{}\n",
            self.iterations,
            self.failed.len(),
            if self.failed.is_empty() { String::new() } else { format!(" (seeds {:?})", self.failed) }
        );
        let total: u64 = self.faults.values().sum();
        let _ = writeln!(s, "faults injected: {total}");
        for k in FaultKind::ALL {
            let _ = writeln!(s, "  {:<26} {}", k.name(), self.faults.get(&k).copied().unwrap_or(0));
        }
        let _ = writeln!(s, "kills: {}, reruns: {}", self.kills, self.reruns);
        let _ = writeln!(
            s,
            "kick-offs: {} ({} orphaned by a kill before the state had them)",
            self.kickoffs, self.orphaned
        );
        let _ = writeln!(s, "downloaded and checked: {} files, {:.1} MB", self.files, self.bytes as f64 / 1e6);
        let _ = write!(s, "wall time: {:.1} s", wall.as_secs_f64());
        s
    }
}
