//! `run`: one or more jobs, one after another or `--parallel N`; one failing job does not stop the
//! others; the exit code is the worst one; Ctrl-C / SIGTERM stop cleanly with the state kept.
//!
//! Each job runs inside a `job` tracing span (so every log line about it carries its name) with its
//! own reporter from the display (so its lines and counters are its own). When a job ends, one final
//! `job finished` event says its exit code, totals and run folder, and its text summary is printed at
//! once; a [`Board`] keeps every job's result, so an interruption still reports the jobs that finished
//! and names the ones it cut short.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use tracing::Instrument as _;

use crate::app::{RunOptions, RunOutcome, run_job};
use crate::cli::{Global, RunArgs, SummaryFormat};
use crate::error::{Error, Signal, exit};
use crate::export::advice::{self, JobCmd, Left};
use crate::job::Job;
use crate::progress::Display;

use super::dry_run::dry_run;
use super::fit::{self, JobRow};
use super::logging::{error_prefix, json};
use super::{load_job, report_error, signal, summary};
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

/// How far each job of the command got.
#[derive(Debug)]
pub enum SlotState {
    Waiting,
    Running,
    Done(Result<Box<RunOutcome>, Error>),
}

/// One job of the command.
#[derive(Debug)]
pub struct Slot {
    pub name: String,
    /// The job file as named on the command line.
    pub file: Option<PathBuf>,
    pub state: SlotState,
}

impl Slot {
    fn file_text(&self) -> Option<String> {
        self.file.as_ref().map(|p| p.display().to_string())
    }
}

/// Every job's state, shared by the job tasks and whoever reports at the end.
#[derive(Debug)]
pub struct Board(Mutex<Vec<Slot>>);

impl Board {
    pub fn new(jobs: &[Job]) -> Arc<Board> {
        Arc::new(Board(Mutex::new(
            jobs.iter()
                .map(|j| Slot { name: j.name.clone(), file: j.source.clone(), state: SlotState::Waiting })
                .collect(),
        )))
    }

    fn set(&self, i: usize, state: SlotState) {
        if let Some(s) = self.0.lock().expect("board").get_mut(i) {
            s.state = state;
        }
    }

    /// Takes the slots out (at the end).
    pub fn take(&self) -> Vec<Slot> {
        std::mem::take(&mut *self.0.lock().expect("board"))
    }
}

/// How the jobs of one command are run and reported.
#[derive(Clone)]
pub struct Runner {
    pub display: Arc<dyn Display>,
    pub parallel: usize,
    pub summary: SummaryFormat,
    /// `--out`, repeated in the commands the Ctrl-C hint prints (each job keeps its own copy too).
    pub out: Option<PathBuf>,
    /// The terminal's width the summaries fit, or `None` (stdout is not a terminal: as wide as it takes).
    pub columns: Option<usize>,
}

pub async fn run_jobs(args: RunArgs, g: &Global) -> u8 {
    let since = match args.since.as_deref().map(parse_since).transpose() {
        Ok(s) => s,
        Err(e) => return report_error(&e),
    };
    let overrides = crate::job::Overrides { out: args.out.clone(), since };
    // Every job file is checked before anything is sent; a file named twice runs once.
    let mut jobs = Vec::new();
    let mut seen = Vec::new();
    let mut code = exit::OK;
    for p in &args.jobs {
        let key = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        if seen.contains(&key) {
            tracing::warn!("{} is named more than once; running it once", p.display());
            continue;
        }
        seen.push(key);
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
            print!("{}", dry_run(j));
        }
        return exit::OK;
    }
    let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
    let runner = Runner {
        display: super::display(g, &names),
        parallel: args.parallel.max(1),
        summary: args.summary,
        out: args.out.clone(),
        columns: super::fit::stdout_width(),
    };
    let board = Board::new(&jobs);
    let sig = tokio::select! {
        () = run_all(&jobs, &opts, &runner, &board) => None,
        // Dropping the runs cancels their requests; state and .part files stay for the rerun.
        sig = signal() => Some(sig),
    };
    runner.display.finish();
    report(&board.take(), sig, &runner)
}

/// Runs `jobs`, `runner.parallel` at a time, recording each one's result on `board`.
pub async fn run_all(jobs: &[Job], opts: &RunOptions, runner: &Runner, board: &Arc<Board>) {
    let sem = Arc::new(tokio::sync::Semaphore::new(runner.parallel.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, job) in jobs.iter().cloned().enumerate() {
        // Taken here, in order, so jobs start in the order they were named.
        let Ok(permit) = sem.clone().acquire_owned().await else { break };
        let (opts, runner, board) = (opts.clone(), runner.clone(), board.clone());
        // At ERROR level so the span (and the job's name on every line) survives any log filter.
        let span = tracing::error_span!("job", job = %job.name);
        set.spawn(
            async move {
                let _permit = permit;
                board.set(i, SlotState::Running);
                let reporter = runner.display.for_job(&job.name);
                let res = run_job(&job, &opts, reporter.clone()).await;
                reporter.finish();
                announce(&job, &res, &runner);
                board.set(i, SlotState::Done(res.map(Box::new)));
            }
            .instrument(span),
        );
    }
    while let Some(r) = set.join_next().await {
        if let Err(e) = r {
            // A job task that panicked: whatever it was running is reported as failed.
            let mut slots = board.0.lock().expect("board");
            for s in slots.iter_mut().filter(|s| matches!(s.state, SlotState::Running)) {
                s.state = SlotState::Done(Err(Error::Failed(format!("the job's task failed: {e}"))));
            }
        }
    }
}

/// A job's final event (inside its span), and its summary or error for people.
fn announce(job: &Job, res: &Result<RunOutcome, Error>, runner: &Runner) {
    let name = job.name.as_str();
    match res {
        Ok(out) => {
            let t = &out.record.totals;
            let tally = summary::tally(&out.record);
            tracing::info!(
                exit_code = out.exit_code,
                outcome = summary::outcome_words(out.exit_code),
                files = tally.data.files,
                resources = tally.data.lines,
                bytes = tally.data.bytes,
                error_files = tally.errors.files,
                server_errors = t.server_errors,
                deleted_files = tally.deleted.files,
                seconds = (t.seconds * 10.0).round() / 10.0,
                run_dir = %out.run_dir.display(),
                transaction_time = %out.record.transaction_time,
                "job finished"
            );
            if runner.summary == SummaryFormat::Text {
                runner.display.print(&summary::text_at(name, out, runner.columns));
            }
        }
        Err(e) => {
            let cmd = JobCmd::of(job);
            let next = advice::next_steps(&cmd, e, &Left::of(&job.job_dir()));
            if json() {
                tracing::error!(exit_code = e.exit_code(), error = %e, next = next.trim(), "job finished");
            } else {
                runner.display.eprint(&format!("{}job {name}: {e}\n{next}", error_prefix()));
            }
        }
    }
}

/// The end of the command: what an interruption cut short, the table of jobs, the JSON summary.
fn report(slots: &[Slot], sig: Option<Signal>, runner: &Runner) -> u8 {
    let mut code = exit::OK;
    for s in slots {
        if let SlotState::Done(res) = &s.state {
            code = worst(code, res.as_ref().map_or_else(Error::exit_code, |o| o.exit_code));
        }
    }
    if let Some(sig) = sig {
        code = worst(code, Error::Interrupted(sig).exit_code());
        interrupted(slots, sig, runner.out.as_deref());
    }
    match runner.summary {
        SummaryFormat::Text if slots.len() > 1 => {
            print!("\njobs (exit code, outcome):\n{}", jobs_table(slots, sig, runner.columns))
        }
        SummaryFormat::Json => {
            let jobs: Vec<serde_json::Value> = slots.iter().map(|s| slot_json(s, sig)).collect();
            println!("{}", serde_json::json!({"jobs": jobs, "exit_code": code}));
        }
        _ => {}
    }
    code
}

fn signal_name(sig: Signal) -> &'static str {
    match sig {
        Signal::Interrupt => "Ctrl-C",
        Signal::Terminate => "SIGTERM",
    }
}

/// Names the jobs a signal cut short, with the commands that resume or forget them.
fn interrupted(slots: &[Slot], sig: Signal, out: Option<&std::path::Path>) {
    let code = Error::Interrupted(sig).exit_code();
    let cut: Vec<&Slot> = slots.iter().filter(|s| matches!(s.state, SlotState::Running)).collect();
    let waiting: Vec<&Slot> = slots.iter().filter(|s| matches!(s.state, SlotState::Waiting)).collect();
    let me = crate::invocation::program();
    let files = |ss: &[&Slot]| ss.iter().map(|s| s.file_text().unwrap_or_else(|| s.name.clone())).collect::<Vec<_>>();
    if json() {
        for s in &cut {
            let resume = advice::resume(me, out, &files(&[s]));
            tracing::error!(job = %s.name, exit_code = code, resume = %resume, "job finished: interrupted ({}); state kept", signal_name(sig));
        }
        for s in &waiting {
            tracing::warn!(job = %s.name, "job not started: interrupted ({}) before its turn", signal_name(sig));
        }
        return;
    }
    let mut m = format!("{}interrupted ({})", error_prefix(), signal_name(sig));
    match cut.as_slice() {
        [] => m.push_str("; no job was running\n"),
        [one] => {
            let _ = writeln!(m, " during job {}; its state is kept", one.name);
        }
        many => {
            let names: Vec<&str> = many.iter().map(|s| s.name.as_str()).collect();
            let _ = writeln!(m, " during jobs {}; their state is kept", names.join(", "));
        }
    }
    if !waiting.is_empty() {
        let names: Vec<&str> = waiting.iter().map(|s| s.name.as_str()).collect();
        let _ = writeln!(m, "  not started: {}", names.join(", "));
    }
    let again: Vec<String> = files(&cut).into_iter().chain(files(&waiting)).collect();
    m.push_str(&advice::after_signal(me, out, &again, &files(&cut)));
    eprint!("{m}");
}

/// The table of jobs at the end of a command of several, fitted to `columns` (see [`fit::jobs_table`]).
pub fn jobs_table(slots: &[Slot], sig: Option<Signal>, columns: Option<usize>) -> String {
    let rows: Vec<JobRow> = slots
        .iter()
        .map(|s| {
            let (code, long, short) = match &s.state {
                SlotState::Done(Ok(out)) => {
                    let d = summary::tally(&out.record).data;
                    let n = crate::progress::units::thousands(d.lines);
                    (
                        out.exit_code.to_string(),
                        format!("{}: {n} resources in {} files", summary::outcome_words(out.exit_code), d.files),
                        format!("{}: {n} resources", summary::outcome_short(out.exit_code)),
                    )
                }
                SlotState::Done(Err(e)) => {
                    let first = first_line(&e.to_string()).to_string();
                    (e.exit_code().to_string(), first.clone(), first)
                }
                SlotState::Running => match sig {
                    Some(sig) => {
                        let what = format!("interrupted ({})", signal_name(sig));
                        (Error::Interrupted(sig).exit_code().to_string(), what.clone(), what)
                    }
                    None => ("?".into(), "did not finish".into(), "did not finish".into()),
                },
                SlotState::Waiting => ("-".into(), "not started".into(), "not started".into()),
            };
            JobRow { name: s.name.clone(), code, long, short }
        })
        .collect();
    fit::jobs_table(&rows, columns)
}

fn slot_json(s: &Slot, sig: Option<Signal>) -> serde_json::Value {
    let file = s.file_text();
    match &s.state {
        SlotState::Done(Ok(out)) => summary::job_json(&s.name, file.as_deref(), out),
        SlotState::Done(Err(e)) => {
            summary::unfinished_json(&s.name, file.as_deref(), Some(e.exit_code()), "failed", Some(&e.to_string()))
        }
        SlotState::Running => {
            let code = sig.map(|s| Error::Interrupted(s).exit_code());
            summary::unfinished_json(&s.name, file.as_deref(), code, "interrupted", None)
        }
        SlotState::Waiting => summary::unfinished_json(&s.name, file.as_deref(), None, "not started", None),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
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
