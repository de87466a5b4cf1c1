//! What to type next after an error, in one place so every message says it the same way: the exact
//! command lines, with the job file as the user gave it (and `--out` when they used it), chosen from
//! the error and from what the job's state holds afterwards. Pure but for [`Left::of`].

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::state::{INFLIGHT, JobState, LockHolder};

/// How the user names a job on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCmd {
    file: String,
    out: Option<PathBuf>,
}

impl JobCmd {
    /// `file` as given on the command line (`Job::file_label`); `out` is `--out`, if it was given.
    pub fn new(file: impl Into<String>, out: Option<&Path>) -> Self {
        JobCmd { file: file.into(), out: out.map(Path::to_path_buf) }
    }

    /// `oneup-bulk <sub> [--out DIR] <file>`, quoted for a POSIX shell where needed.
    pub fn line(&self, sub: &str) -> String {
        let out = self.out.as_ref().map(|o| format!(" --out {}", quote(&o.display().to_string()))).unwrap_or_default();
        format!("oneup-bulk {sub}{out} {}", quote(&self.file))
    }
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

/// Prints `error: …` (after `prefix`) and what to type next; returns the exit code.
pub fn report(prefix: &str, e: &Error, cmd: &JobCmd, job_dir: &Path) -> u8 {
    eprintln!("{prefix}{e}");
    eprint!("{}", next_steps(cmd, e, &Left::of(job_dir)));
    e.exit_code()
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
        JobCmd::new("jobs/x.yaml", None)
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
        let c = JobCmd::new("my jobs/x.yaml", Some(Path::new("/data/exports")));
        assert_eq!(c.line("run --restart"), "oneup-bulk run --restart --out /data/exports 'my jobs/x.yaml'");
        assert_eq!(JobCmd::new("it's.yaml", None).line("cancel"), "oneup-bulk cancel 'it'\\''s.yaml'");
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
}
