//! The verdict on a run, decided from its verified files alone: totals, problems, warnings, whether it
//! is complete, and the exit code (DESIGN §5). Pure, so every outcome is tested on exact inputs.
//!
//! Counts: a data file's line count must agree with the manifest's `count`; one that does not was
//! fetched until [`IDENTICAL_FETCHES`] full fetches gave the same bytes, so it is what the server has.
//! It fails the run (exit 1) unless the job sets `download.accept_count_mismatch`, which makes it a
//! warning. `error[]` and `deleted[]` counts are informative (servers copy the failed output's count
//! there): a mismatch is a warning, never a failure.

use super::{FileKind, FileRecord, Problem, Totals};
use crate::download::IDENTICAL_FETCHES;
use crate::error::exit;
use crate::job::{DownloadSettings, Validate};

/// What the job decides about the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub validate: Validate,
    /// `download.accept_count_mismatch`.
    pub accept_count_mismatch: bool,
    /// The job file, for the messages (`jobs/provider.yaml`).
    pub job_file: String,
}

impl Rules {
    pub fn of(job: &crate::job::Job) -> Self {
        Self::new(&job.download, job.file_label())
    }

    pub fn new(d: &DownloadSettings, job_file: String) -> Self {
        Rules { validate: d.validate, accept_count_mismatch: d.accept_count_mismatch, job_file }
    }
}

/// What a run amounts to.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub totals: Totals,
    /// Run-level problems first, then the files' own.
    pub problems: Vec<Problem>,
    /// What did not fail the run but deserves a look (`run.json` `warnings`).
    pub warnings: Vec<Problem>,
    /// Every file is on disk and verified (strict validation found nothing, every data file agrees with
    /// the manifest or the job accepts it). The server may still have reported errors in `error[]`.
    pub complete: bool,
    /// 0 complete, 5 complete with errors reported by the server, 1 strict validation failed or a data
    /// file's count did not match (not accepted).
    pub exit_code: u8,
}

/// Totals over `files`, the problems found in them, and the exit code. `seconds` is the run's wall time.
pub fn summarize(files: &[FileRecord], file_problems: Vec<Problem>, rules: &Rules, seconds: f64) -> Summary {
    let mut totals = Totals { seconds, ..Totals::default() };
    let mut bad_lines = 0;
    let mut count_problems = Vec::new();
    let mut warnings = Vec::new();
    for f in files {
        bad_lines += f.invalid_lines + f.wrong_type_lines;
        match f.kind {
            FileKind::Output => {
                totals.files += 1;
                totals.resources += f.lines - f.header_lines.min(f.lines);
                totals.bytes += f.bytes;
            }
            FileKind::Error => {
                totals.error_files += 1;
                totals.server_errors += f.lines;
                totals.error_bytes += f.bytes;
            }
            FileKind::Deleted => {
                totals.deleted_files += 1;
                totals.deleted_entries += f.lines;
                totals.deleted_bytes += f.bytes;
            }
        }
        if f.count_agrees() {
            continue;
        }
        let (said, holds) = (f.expected_count.unwrap_or_default(), f.lines);
        let warn = |message: String| Problem { file: Some(f.path.clone()), line: None, message };
        match f.kind {
            FileKind::Output if rules.accept_count_mismatch => warnings.push(warn(format!(
                "the manifest says {said} resources, the file holds {holds}; {IDENTICAL_FETCHES} full fetches gave \
                 the same bytes, so it is kept as the server has it (download.accept_count_mismatch: true)"
            ))),
            FileKind::Output => count_problems.push(warn(format!(
                "the manifest says {said} resources, the file holds {holds}; {IDENTICAL_FETCHES} full fetches gave \
                 the same bytes (sha256 {}), so this is what the server has. The file is kept; to accept such \
                 files set `download.accept_count_mismatch: true` in {} and run `oneup-bulk run {}` (a new export)",
                f.sha256, rules.job_file, rules.job_file
            ))),
            FileKind::Error | FileKind::Deleted => warnings.push(warn(format!(
                "the manifest's {} entry says {said}, the file holds {holds}: {} counts are informative \
                 (some servers copy the failed output's count there); the file is kept",
                section(f.kind),
                section(f.kind)
            ))),
        }
    }
    let strict_failed = rules.validate == Validate::Strict && bad_lines > 0;
    let count_failed = !count_problems.is_empty();
    let mut problems = Vec::new();
    if strict_failed {
        problems.push(Problem {
            file: None,
            line: None,
            message: format!("{bad_lines} lines failed validation (validate: strict); the checkpoint was not moved"),
        });
    }
    if count_failed {
        problems.push(Problem {
            file: None,
            line: None,
            message: format!(
                "{} data file(s) do not hold the resources the manifest counts (download.accept_count_mismatch \
                 is off); the run is not complete and the checkpoint was not moved",
                count_problems.len()
            ),
        });
    }
    problems.extend(count_problems);
    problems.extend(file_problems);
    let exit_code = if strict_failed || count_failed {
        exit::FAILED
    } else if totals.server_errors > 0 {
        exit::SERVER_ERRORS
    } else {
        exit::OK
    };
    Summary { totals, problems, warnings, complete: !strict_failed && !count_failed, exit_code }
}

fn section(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Output => "output[]",
        FileKind::Error => "error[]",
        FileKind::Deleted => "deleted[]",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(kind: FileKind, t: &str, lines: u64, bytes: u64, bad: u64) -> FileRecord {
        FileRecord {
            kind,
            resource_type: t.into(),
            url: format!("https://s/{t}"),
            path: format!("{t}.ndjson"),
            expected_count: None,
            lines,
            bytes,
            sha256: String::new(),
            invalid_lines: bad,
            wrong_type_lines: 0,
            types: Default::default(),
            header_lines: 0,
            continues_in: None,
        }
    }

    fn rules(validate: Validate) -> Rules {
        Rules { validate, accept_count_mismatch: false, job_file: "jobs/x.yaml".into() }
    }

    #[test]
    fn a_clean_run_exits_0_with_totals() {
        let files = [file(FileKind::Output, "Patient", 10, 1000, 0), file(FileKind::Output, "Coverage", 5, 500, 0)];
        let s = summarize(&files, vec![], &rules(Validate::Strict), 1.5);
        assert_eq!(
            s,
            Summary {
                totals: Totals { files: 2, resources: 15, bytes: 1500, seconds: 1.5, ..Totals::default() },
                problems: vec![],
                warnings: vec![],
                complete: true,
                exit_code: 0,
            }
        );
    }

    #[test]
    fn server_reported_errors_exit_5_and_stay_complete() {
        let files =
            [file(FileKind::Output, "Patient", 10, 1000, 0), file(FileKind::Error, "OperationOutcome", 2, 200, 0)];
        let s = summarize(&files, vec![], &rules(Validate::Strict), 0.0);
        assert_eq!((s.exit_code, s.complete, s.totals.error_files, s.totals.server_errors), (5, true, 1, 2));
        assert_eq!((s.totals.files, s.totals.resources, s.totals.bytes, s.totals.error_bytes), (1, 10, 1000, 200));
    }

    #[test]
    fn strict_validation_failure_exits_1_and_is_not_complete() {
        let bad = Problem { file: Some("Patient.ndjson".into()), line: Some(3), message: "not JSON".into() };
        let files =
            [file(FileKind::Output, "Patient", 10, 1000, 1), file(FileKind::Error, "OperationOutcome", 1, 9, 0)];
        let s = summarize(&files, vec![bad.clone()], &rules(Validate::Strict), 0.0);
        assert_eq!((s.exit_code, s.complete), (1, false));
        assert_eq!(
            s.problems,
            vec![
                Problem {
                    file: None,
                    line: None,
                    message: "1 lines failed validation (validate: strict); the checkpoint was not moved".into()
                },
                bad.clone(),
            ]
        );
        // `report` counts the same lines but the run stands.
        let s = summarize(&files[..1], vec![bad.clone()], &rules(Validate::Report), 0.0);
        assert_eq!((s.exit_code, s.complete, s.problems), (0, true, vec![bad]));
    }

    #[test]
    fn deleted_files_are_counted_apart_from_the_data() {
        let s = summarize(&[file(FileKind::Deleted, "Bundle", 3, 30, 0)], vec![], &rules(Validate::Strict), 0.0);
        assert_eq!(
            (s.totals.files, s.totals.resources, s.totals.deleted_files, s.totals.deleted_entries, s.exit_code),
            (0, 0, 1, 3, 0)
        );
    }

    fn counted(kind: FileKind, t: &str, path: &str, said: u64, holds: u64) -> FileRecord {
        FileRecord {
            path: path.into(),
            expected_count: Some(said),
            sha256: "e3b0c442".into(),
            ..file(kind, t, holds, holds * 100, 0)
        }
    }

    #[test]
    fn error_counts_are_informative_a_warning_and_exit_5() {
        // The SMART reference server: 639 in the error entry, one OperationOutcome in the file.
        let files = [
            counted(FileKind::Output, "Patient", "Patient.ndjson", 10, 10),
            counted(FileKind::Error, "OperationOutcome", "error/OperationOutcome.ndjson", 639, 1),
            counted(FileKind::Deleted, "Bundle", "deleted/Bundle.ndjson", 4, 2),
        ];
        let s = summarize(&files, vec![], &rules(Validate::Strict), 0.0);
        assert_eq!((s.exit_code, s.complete, s.problems.clone()), (5, true, vec![]));
        assert_eq!(
            s.warnings,
            vec![
                Problem {
                    file: Some("error/OperationOutcome.ndjson".into()),
                    line: None,
                    message: "the manifest's error[] entry says 639, the file holds 1: error[] counts are \
                              informative (some servers copy the failed output's count there); the file is kept"
                        .into(),
                },
                Problem {
                    file: Some("deleted/Bundle.ndjson".into()),
                    line: None,
                    message: "the manifest's deleted[] entry says 4, the file holds 2: deleted[] counts are \
                              informative (some servers copy the failed output's count there); the file is kept"
                        .into(),
                },
            ]
        );
    }

    #[test]
    fn a_data_file_that_never_matches_fails_strictly_and_is_a_warning_when_accepted() {
        // The reference server's second Encounter file: `count: 15`, served empty, every time.
        let files = [
            counted(FileKind::Output, "Encounter", "Encounter.001.ndjson", 29, 29),
            counted(FileKind::Output, "Encounter", "Encounter.002.ndjson", 15, 0),
        ];
        let s = summarize(&files, vec![], &rules(Validate::Strict), 0.0);
        assert_eq!((s.exit_code, s.complete, s.warnings.clone()), (1, false, vec![]));
        assert_eq!(
            s.problems,
            vec![
                Problem {
                    file: None,
                    line: None,
                    message: "1 data file(s) do not hold the resources the manifest counts \
                              (download.accept_count_mismatch is off); the run is not complete and the checkpoint \
                              was not moved"
                        .into(),
                },
                Problem {
                    file: Some("Encounter.002.ndjson".into()),
                    line: None,
                    message: "the manifest says 15 resources, the file holds 0; 2 full fetches gave the same bytes \
                              (sha256 e3b0c442), so this is what the server has. The file is kept; to accept such \
                              files set `download.accept_count_mismatch: true` in jobs/x.yaml and run `oneup-bulk \
                              run jobs/x.yaml` (a new export)"
                        .into(),
                },
            ]
        );
        let accept = Rules { accept_count_mismatch: true, ..rules(Validate::Strict) };
        let s = summarize(&files, vec![], &accept, 0.0);
        assert_eq!((s.exit_code, s.complete, s.problems.clone()), (0, true, vec![]));
        assert_eq!(
            s.warnings,
            vec![Problem {
                file: Some("Encounter.002.ndjson".into()),
                line: None,
                message: "the manifest says 15 resources, the file holds 0; 2 full fetches gave the same bytes, so \
                          it is kept as the server has it (download.accept_count_mismatch: true)"
                    .into(),
            }]
        );
    }

    #[test]
    fn organized_files_count_resources_without_their_headers() {
        let mut f = counted(FileKind::Output, crate::record::MIXED, "organized.001.ndjson", 8, 10);
        f.header_lines = 2;
        let s = summarize(&[f], vec![], &rules(Validate::Strict), 0.0);
        assert_eq!((s.exit_code, s.totals.resources, s.totals.files, s.warnings.len()), (0, 8, 1, 0));
    }
}
