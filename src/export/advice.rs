//! What to type next, in one place so every message says it the same way: the exact command lines,
//! starting with how this program is run from here ([`crate::invocation::program`]), with the job file
//! as the user gave it and `--out` when the command line had it, quoted for a shell where needed. The
//! commands print [`next_steps`] after an error, chosen from the error and from what the job's state
//! holds afterwards; the export and download steps end their messages with [`state_kept`] or
//! [`state_cleared`]; `run` prints [`after_signal`] after Ctrl-C or SIGTERM. Pure but for
//! [`Left::of`] and the program text the constructors read.

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::invocation;
use crate::job::Job;
use crate::state::{INFLIGHT, JobState, LockHolder};

/// How the user names a job on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCmd {
    program: String,
    file: String,
    out: Option<PathBuf>,
}

impl JobCmd {
    /// `file` as given on the command line (`Job::file_label`); `out` is `--out`, if it was given.
    pub fn new(file: impl Into<String>, out: Option<&Path>) -> Self {
        JobCmd { program: invocation::program().into(), file: file.into(), out: out.map(Path::to_path_buf) }
    }

    /// The job's file, with the `--out` it was loaded with ([`Job::out_given`]).
    pub fn of(job: &Job) -> Self {
        JobCmd::new(job.file_label(), job.out_given.as_deref())
    }

    /// The same command, run as `program` (how the tests pin it).
    pub fn run_as(self, program: &str) -> Self {
        JobCmd { program: program.into(), ..self }
    }

    /// `<program> <sub> [--out DIR] <file>`, quoted for a POSIX shell where needed.
    pub fn line(&self, sub: &str) -> String {
        format!("{} {sub}{} {}", self.program, out_flag(self.out.as_deref()), quote(&self.file))
    }
}

/// ` --out DIR` (quoted), or nothing.
fn out_flag(out: Option<&Path>) -> String {
    out.map(|o| format!(" --out {}", quote(&o.display().to_string()))).unwrap_or_default()
}

/// What the job's state holds after an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Left {
    /// An export in flight: a rerun resumes it.
    InFlight,
    /// No export in flight: the next run starts a new one.
    Nothing,
    /// `inflight.json` cannot be read.
    Unreadable(PathBuf),
}

impl Left {
    /// Reads the state of the job whose folder is `job_dir`.
    pub fn of(job_dir: &Path) -> Left {
        match JobState::new(job_dir).inflight() {
            Ok(Some(_)) => Left::InFlight,
            Ok(None) => Left::Nothing,
            Err(Error::BadState { path, .. }) => Left::Unreadable(path),
            Err(_) => Left::Nothing,
        }
    }
}

/// The lines to print after `e` (each indented, each ending in a newline), or nothing when the only
/// thing to do is what the error says (fix the job file, the credentials…).
pub fn next_steps(cmd: &JobCmd, e: &Error, left: &Left) -> String {
    match (e, left) {
        (Error::Job(_) | Error::Usage(_), _) => String::new(),
        (Error::Locked(holder), _) => locked(cmd, holder),
        (Error::BadState { path, .. }, _) if path.file_name().is_some_and(|n| n == INFLIGHT) => unreadable(cmd, path),
        (Error::BadState { path, .. }, _) => {
            let p = quote(&path.display().to_string());
            format!(
                "  to go on, move it aside (`since: auto` then makes the next run a full export):\n    mv {p} {p}.unreadable\n"
            )
        }
        (_, Left::InFlight) => table(
            "the export is still in flight and its state is kept:",
            &[
                (cmd.line("run"), "resume it"),
                (cmd.line("run --restart"), "forget it and start a new export"),
                (cmd.line("cancel"), "delete it on the server and forget it"),
            ],
        ),
        (_, Left::Unreadable(path)) => unreadable(cmd, path),
        (Error::ExportGone { .. }, Left::Nothing) => table("to start the new export now:", &[(cmd.line("run"), "")]),
        (_, Left::Nothing) => String::new(),
    }
}

fn locked(cmd: &JobCmd, h: &LockHolder) -> String {
    let kill = h.pid.map(|p| format!("`kill {p}`")).unwrap_or_else(|| "its process".into());
    if h.elsewhere() {
        let host = h.host.as_deref().unwrap_or("that host");
        return table(
            &format!(
                "it runs on {host}, another machine sharing this folder: stop it there ({kill});\n  if {host} is gone for good, break its lock:"
            ),
            &[(cmd.line("cancel --force"), "")],
        );
    }
    table(
        &format!(
            "it is still running. If it is stuck, stop it with {kill} (it stops cleanly and keeps its state), then:"
        ),
        &[(cmd.line("run"), "resume its export"), (cmd.line("cancel"), "or forget it")],
    )
}

fn unreadable(cmd: &JobCmd, path: &Path) -> String {
    table(
        &format!("the state of the export in flight cannot be read ({}):", path.display()),
        &[
            (cmd.line("run --restart"), "set it aside and start a new export"),
            (cmd.line("cancel --force"), "set it aside and start nothing"),
        ],
    )
}

/// `<program> run [--out DIR] <job file>`.
pub fn run(job: &Job) -> String {
    JobCmd::of(job).line("run")
}

/// `<program> run --restart [--out DIR] <job file>`.
pub fn restart(job: &Job) -> String {
    JobCmd::of(job).line("run --restart")
}

/// The end of a message whose error left the export in flight: how to continue and how to start over.
pub fn state_kept(job: &Job) -> String {
    kept(&JobCmd::of(job))
}

fn kept(cmd: &JobCmd) -> String {
    format!(
        "the state is kept: `{}` continues this export, `{}` starts a new one",
        cmd.line("run"),
        cmd.line("run --restart")
    )
}

/// The end of a message whose error cleared the export in flight.
pub fn state_cleared(job: &Job) -> String {
    cleared(&JobCmd::of(job))
}

fn cleared(cmd: &JobCmd) -> String {
    format!("the state is cleared: the next run (`{}`) starts a new export", cmd.line("run"))
}

/// After a signal stopped a `run`: `again` are the job files to run again (those cut short, then those
/// not started), `cut` those whose export is in flight; `me` is how this program is run from here and
/// `out` the `--out` the command had.
pub fn after_signal(me: &str, out: Option<&Path>, again: &[String], cut: &[String]) -> String {
    let mut s = String::new();
    if !again.is_empty() {
        s.push_str(&format!("  resume:  {}\n", resume(me, out, again)));
    }
    for f in cut {
        s.push_str(&format!("  forget the export instead:  {me} cancel{} {}\n", out_flag(out), quote(f)));
    }
    s
}

/// `<me> run [--out DIR] <files>`: one command that runs `files` again.
pub fn resume(me: &str, out: Option<&Path>, files: &[String]) -> String {
    let files: Vec<String> = files.iter().map(|f| quote(f)).collect();
    format!("{me} run{} {}", out_flag(out), files.join(" "))
}

/// A heading, then commands in a column with what each does.
fn table(heading: &str, rows: &[(String, &str)]) -> String {
    let width = rows.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    let mut s = format!("  {heading}\n");
    for (c, what) in rows {
        let line = if what.is_empty() { c.clone() } else { format!("{c:<width$}    {what}") };
        s.push_str(&format!("    {line}\n"));
    }
    s
}

/// A word for a POSIX shell: as is when it is plainly safe, else in single quotes.
fn quote(s: &str) -> String {
    let safe = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_./-=:,+@%".contains(c));
    if safe { s.to_string() } else { format!("'{}'", s.replace('\'', "'\\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Signal;

    fn cmd() -> JobCmd {
        JobCmd::new("jobs/x.yaml", None).run_as("oneup-bulk")
    }

    #[test]
    fn an_export_in_flight_can_be_resumed_restarted_or_cancelled() {
        let e = Error::Transient("status: gave up after 6 attempts: HTTP 503".into());
        assert_eq!(
            next_steps(&cmd(), &e, &Left::InFlight),
            "  the export is still in flight and its state is kept:
    oneup-bulk run jobs/x.yaml              resume it
    oneup-bulk run --restart jobs/x.yaml    forget it and start a new export
    oneup-bulk cancel jobs/x.yaml           delete it on the server and forget it
"
        );
        // The same words after Ctrl-C, a disk error, a refused token mid-export.
        for e in [
            Error::Interrupted(Signal::Terminate),
            Error::io("/x", std::io::Error::other("disk full")),
            Error::AuthRefused { url: "u".into(), detail: "d".into() },
        ] {
            assert_eq!(
                next_steps(&cmd(), &e, &Left::InFlight),
                next_steps(&cmd(), &Error::Failed("x".into()), &Left::InFlight)
            );
        }
        assert_eq!(next_steps(&cmd(), &e, &Left::Nothing), "");
        assert_eq!(next_steps(&cmd(), &Error::Usage("bad".into()), &Left::InFlight), "");
    }

    #[test]
    fn out_and_odd_paths_are_part_of_the_command() {
        let c = JobCmd::new("my jobs/x.yaml", Some(Path::new("/data/exports"))).run_as("oneup-bulk");
        assert_eq!(c.line("run --restart"), "oneup-bulk run --restart --out /data/exports 'my jobs/x.yaml'");
        let c = JobCmd::new("it's.yaml", None).run_as("./target/release/oneup-bulk");
        assert_eq!(c.line("cancel"), "./target/release/oneup-bulk cancel 'it'\\''s.yaml'");
    }

    #[test]
    fn a_lost_export_starts_anew() {
        let e = Error::gone("the status URL answered 404");
        assert_eq!(
            next_steps(&cmd(), &e, &Left::Nothing),
            "  to start the new export now:\n    oneup-bulk run jobs/x.yaml\n"
        );
    }

    #[test]
    fn a_held_lock_names_what_to_stop() {
        let here = LockHolder { pid: Some(1234), host: Some(crate::state::hostname()), since: Some("T".into()) };
        let e = Error::Locked(here.clone());
        assert_eq!(
            next_steps(&cmd(), &e, &Left::InFlight),
            "  it is still running. If it is stuck, stop it with `kill 1234` (it stops cleanly and keeps its state), then:
    oneup-bulk run jobs/x.yaml       resume its export
    oneup-bulk cancel jobs/x.yaml    or forget it
"
        );
        let there = LockHolder { host: Some("other-host".into()), ..here };
        assert_eq!(
            next_steps(&cmd(), &Error::Locked(there), &Left::InFlight),
            "  it runs on other-host, another machine sharing this folder: stop it there (`kill 1234`);
  if other-host is gone for good, break its lock:
    oneup-bulk cancel --force jobs/x.yaml
"
        );
    }

    #[test]
    fn unreadable_state() {
        let inflight = PathBuf::from("exports/x/.state/inflight.json");
        let e = Error::BadState { path: inflight.clone(), detail: "EOF".into() };
        assert_eq!(
            next_steps(&cmd(), &e, &Left::Unreadable(inflight)),
            "  the state of the export in flight cannot be read (exports/x/.state/inflight.json):
    oneup-bulk run --restart jobs/x.yaml     set it aside and start a new export
    oneup-bulk cancel --force jobs/x.yaml    set it aside and start nothing
"
        );
        let e = Error::BadState { path: "exports/x/.state/checkpoint.json".into(), detail: "EOF".into() };
        assert_eq!(
            next_steps(&cmd(), &e, &Left::Nothing),
            "  to go on, move it aside (`since: auto` then makes the next run a full export):
    mv exports/x/.state/checkpoint.json exports/x/.state/checkpoint.json.unreadable
"
        );
    }

    #[test]
    fn commands_name_the_job_file_and_the_out_it_was_given() {
        let yaml = "access: bulk-data\nfhir_base: https://fhir.example/r4\nauth:\n  method: none\n";
        let mut job = crate::job::parse(yaml, "jobs/x.yaml", std::path::Path::new("."), &|_| None).unwrap();
        job.source = Some("jobs/x.yaml".into());
        assert_eq!(
            kept(&JobCmd::of(&job).run_as("oneup-bulk")),
            "the state is kept: `oneup-bulk run jobs/x.yaml` continues this export, \
             `oneup-bulk run --restart jobs/x.yaml` starts a new one"
        );
        job.apply(&crate::job::Overrides { out: Some("my exports".into()), ..Default::default() });
        assert_eq!(
            cleared(&JobCmd::of(&job).run_as("cargo run --locked --")),
            "the state is cleared: the next run (`cargo run --locked -- run --out 'my exports' jobs/x.yaml`) \
             starts a new export"
        );
        // What the steps print: the same, with the program this process was started as.
        assert_eq!(state_cleared(&job), cleared(&JobCmd::of(&job)));
        assert!(state_kept(&job).contains(&format!("`{} run --out 'my exports' jobs/x.yaml`", invocation::program())));
    }

    #[test]
    fn after_a_signal_resume_every_job_and_forget_those_cut_short() {
        let files = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            after_signal("oneup-bulk", None, &files(&["jobs/a.yaml", "my jobs/b.yaml"]), &files(&["jobs/a.yaml"])),
            "  resume:  oneup-bulk run jobs/a.yaml 'my jobs/b.yaml'
  forget the export instead:  oneup-bulk cancel jobs/a.yaml
"
        );
        assert_eq!(
            after_signal("./oneup-bulk", Some(Path::new("/data/x")), &files(&["a.yaml"]), &files(&["a.yaml"])),
            "  resume:  ./oneup-bulk run --out /data/x a.yaml
  forget the export instead:  ./oneup-bulk cancel --out /data/x a.yaml
"
        );
        assert_eq!(after_signal("./oneup-bulk", None, &[], &[]), "");
    }
}
