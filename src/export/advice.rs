//! What an error message tells a person to run next, with the job file's path, so every message says it
//! the same way: `oneup-bulk run jobs/x.yaml` to continue, `oneup-bulk run --restart jobs/x.yaml` to
//! start over. Kept in one place so the wording (and the command) changes once.

use crate::job::Job;

/// `oneup-bulk run <job file>`.
pub fn run(job: &Job) -> String {
    format!("oneup-bulk run {}", job.file_label())
}

/// `oneup-bulk run --restart <job file>`.
pub fn restart(job: &Job) -> String {
    format!("oneup-bulk run --restart {}", job.file_label())
}

/// The end of a message whose error left the export in flight: how to continue and how to start over.
pub fn state_kept(job: &Job) -> String {
    format!("the state is kept: `{}` continues this export, `{}` starts a new one", run(job), restart(job))
}

/// The end of a message whose error cleared the export in flight.
pub fn state_cleared(job: &Job) -> String {
    format!("the state is cleared: the next run (`{}`) starts a new export", run(job))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_the_job_file() {
        let yaml = "access: bulk-data\nfhir_base: https://fhir.example/r4\nauth:\n  method: none\n";
        let mut job = crate::job::parse(yaml, "jobs/x.yaml", std::path::Path::new("."), &|_| None).unwrap();
        job.source = Some("jobs/x.yaml".into());
        assert_eq!(
            state_kept(&job),
            "the state is kept: `oneup-bulk run jobs/x.yaml` continues this export, \
             `oneup-bulk run --restart jobs/x.yaml` starts a new one"
        );
        assert_eq!(
            state_cleared(&job),
            "the state is cleared: the next run (`oneup-bulk run jobs/x.yaml`) starts a new export"
        );
    }
}
