//! The verdict on a run, decided from its verified files alone: totals, problems, whether it is
//! complete, and the exit code (DESIGN §5). Pure, so every outcome is tested on exact inputs.

use super::{FileKind, FileRecord, Problem, Totals};
use crate::error::exit;
use crate::job::Validate;

/// What a run amounts to.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub totals: Totals,
    /// Run-level problems first, then the files' own.
    pub problems: Vec<Problem>,
    /// Every file is on disk and verified (strict validation found nothing). The server may still have
    /// reported errors in `error[]`.
    pub complete: bool,
    /// 0 complete, 5 complete with errors reported by the server, 1 strict validation failed.
    pub exit_code: u8,
}

/// Totals over `files`, the problems found in them, and the exit code. `seconds` is the run's wall time.
pub fn summarize(files: &[FileRecord], file_problems: Vec<Problem>, validate: Validate, seconds: f64) -> Summary {
    let mut totals = Totals { seconds, ..Totals::default() };
    let mut bad_lines = 0;
    for f in files {
        totals.bytes += f.bytes;
        bad_lines += f.invalid_lines + f.wrong_type_lines;
        match f.kind {
            FileKind::Output => {
                totals.files += 1;
                totals.resources += f.lines;
            }
            FileKind::Error => {
                totals.error_files += 1;
                totals.server_errors += f.lines;
            }
            FileKind::Deleted => totals.files += 1,
        }
    }
    let strict_failed = validate == Validate::Strict && bad_lines > 0;
    let mut problems = Vec::new();
    if strict_failed {
        problems.push(Problem {
            file: None,
            line: None,
            message: format!("{bad_lines} lines failed validation (validate: strict); the checkpoint was not moved"),
        });
    }
    problems.extend(file_problems);
    let exit_code = if strict_failed {
        exit::FAILED
    } else if totals.server_errors > 0 {
        exit::SERVER_ERRORS
    } else {
        exit::OK
    };
    Summary { totals, problems, complete: !strict_failed, exit_code }
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
        }
    }

    #[test]
    fn a_clean_run_exits_0_with_totals() {
        let files = [file(FileKind::Output, "Patient", 10, 1000, 0), file(FileKind::Output, "Coverage", 5, 500, 0)];
        let s = summarize(&files, vec![], Validate::Strict, 1.5);
        assert_eq!(
            s,
            Summary {
                totals: Totals { files: 2, resources: 15, bytes: 1500, error_files: 0, server_errors: 0, seconds: 1.5 },
                problems: vec![],
                complete: true,
                exit_code: 0,
            }
        );
    }

    #[test]
    fn server_reported_errors_exit_5_and_stay_complete() {
        let files =
            [file(FileKind::Output, "Patient", 10, 1000, 0), file(FileKind::Error, "OperationOutcome", 2, 200, 0)];
        let s = summarize(&files, vec![], Validate::Strict, 0.0);
        assert_eq!((s.exit_code, s.complete, s.totals.error_files, s.totals.server_errors), (5, true, 1, 2));
        assert_eq!((s.totals.files, s.totals.resources, s.totals.bytes), (1, 10, 1200));
    }

    #[test]
    fn strict_validation_failure_exits_1_and_is_not_complete() {
        let bad = Problem { file: Some("Patient.ndjson".into()), line: Some(3), message: "not JSON".into() };
        let files =
            [file(FileKind::Output, "Patient", 10, 1000, 1), file(FileKind::Error, "OperationOutcome", 1, 9, 0)];
        let s = summarize(&files, vec![bad.clone()], Validate::Strict, 0.0);
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
        let s = summarize(&files[..1], vec![bad.clone()], Validate::Report, 0.0);
        assert_eq!((s.exit_code, s.complete, s.problems), (0, true, vec![bad]));
    }

    #[test]
    fn deleted_files_count_as_files_not_resources() {
        let s = summarize(&[file(FileKind::Deleted, "Bundle", 3, 30, 0)], vec![], Validate::Strict, 0.0);
        assert_eq!((s.totals.files, s.totals.resources, s.exit_code), (1, 0, 0));
    }
}
