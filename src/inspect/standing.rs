//! Whether a run folder holds a finished run: `run.json` is written last, so a folder without one was
//! interrupted (its export still in flight: a rerun finishes it) or left behind (the export ended
//! first); a `run.json` may also record the run as incomplete. Read from the folder and its job's
//! `.state/`, the same on disk and in a bucket.

use serde::Serialize;

use crate::record::{FileKind, RunRecord};
use crate::state::{InFlight, JobState};
use crate::store::{Dir, Location};

/// How the next step is named: with the job file when the record names it, else a placeholder.
fn rerun(file: Option<&str>) -> String {
    format!("{} run {}", crate::invocation::program(), file.unwrap_or("JOB.yaml"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `run.json` says complete.
    Complete,
    /// `run.json` says incomplete, or there is none and nothing will finish the run.
    Incomplete,
    /// No `run.json`, and the job's export in flight is this run's: a rerun resumes it.
    Interrupted,
}

/// What the job's state says about one of its runs.
pub(super) struct JobView {
    inflight: Option<InFlight>,
    has_state: bool,
}

impl JobView {
    /// The state of the job folder `job` (errors read as "no state": the report still says incomplete).
    pub fn of(job: &Location) -> JobView {
        let Ok(dir) = Dir::open(job) else { return JobView { inflight: None, has_state: false } };
        let has_state = dir.list(crate::state::STATE_DIR).is_ok_and(|l| !l.is_empty());
        let inflight = if has_state { JobState::at(dir).inflight().ok().flatten() } else { None };
        JobView { inflight, has_state }
    }

    /// The export in flight, when it is run `run_id`'s.
    pub fn in_flight_for(&self, run_id: &str) -> Option<&InFlight> {
        self.inflight.as_ref().filter(|f| f.run_id.as_deref() == Some(run_id))
    }
}

/// Files and resources verified so far by an export in flight (data files only).
pub(super) fn verified_so_far(f: &InFlight) -> (u64, u64) {
    let data = f.done.iter().filter(|d| d.kind == FileKind::Output);
    data.fold((0, 0), |(n, r), d| (n + 1, r + d.lines))
}

/// The status of a run folder, and when it is not complete, why and what to do.
pub(super) fn assess(
    record: Option<&RunRecord>,
    job: Option<&JobView>,
    run_id: &str,
    partial: usize,
) -> (Status, Option<String>) {
    if let Some(r) = record {
        if r.complete {
            return (Status::Complete, None);
        }
        let first = r.problems.first().map(|p| match &p.file {
            Some(f) => format!("{f}: {}", p.message),
            None => p.message.clone(),
        });
        let more = r.problems.len().saturating_sub(1);
        let why = match (first, more) {
            (None, _) => String::new(),
            (Some(p), 0) => format!(" ({p})"),
            (Some(p), n) => format!(" ({p}; {n} more in run.json)"),
        };
        let rerun = rerun(r.job.file.as_deref());
        let text = format!(
            "run.json records this run as incomplete{why}, so `latest` does not point here; the next \
             `{rerun}` exports again from the job's last complete run"
        );
        return (Status::Incomplete, Some(text));
    }
    let rerun = rerun(None);
    if let Some(f) = job.and_then(|j| j.in_flight_for(run_id)) {
        let (files, _) = verified_so_far(f);
        let text = format!(
            "no run.json: the run was interrupted and its export is still in flight ({files} data files verified \
             so far); run the job again (`{rerun}`) to finish it"
        );
        return (Status::Interrupted, Some(text));
    }
    if job.is_some_and(|j| j.has_state) {
        let text = format!(
            "no run.json, and no export in flight for it: the run stopped before it finished (its export was lost, \
             cancelled or replaced) and only the files verified by then are here; run the job again (`{rerun}`) \
             for a new export"
        );
        return (Status::Incomplete, Some(text));
    }
    if partial > 0 {
        let text = format!(
            "no run.json, and {partial} download(s) not finished (*.part): the run was interrupted; run its job \
             again to finish it"
        );
        return (Status::Incomplete, Some(text));
    }
    // A folder from another tool, with its manifest: nothing says it is unfinished.
    (Status::Complete, None)
}
