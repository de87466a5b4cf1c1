//! Downloads (DESIGN §1.6): a bounded number of files at once, each streamed to `<path>.part` while a
//! blocking worker decodes gzip, splits and checks lines, hashes and writes; the file is renamed to its
//! final name only when the byte count, line count and (in strict mode) every line check out. An
//! interrupted body resumes with `Range` when the server allows it, else starts again.
//!
//! The layers, top to bottom:
//! - [`schedule`]: the bounded set of files in flight and the per-file retry loop → [`download_all`].
//! - [`fetch`]: one HTTP attempt for one file, the body's chunks handed to the blocking worker.
//! - [`classify`]: pure decisions: what a response's head means ([`classify::classify`]) and what the
//!   end of a body means ([`classify::judge_body`]).
//! - [`verify`]: the synchronous verifier (gzip, lines, checks, SHA-256, size cap, resume replay) in
//!   front of a [`verify::Sink`], where verified bytes go (a local `.part` file today).
//!
//! Above them, [`refresh`] renews expired file links from the status URL between batches.

mod classify;
mod fetch;
pub mod refresh;
mod schedule;
pub mod verify;

pub use classify::{IDENTICAL_FETCHES, parse_content_range_start};
pub use schedule::download_all;

use crate::record::PlannedFile;
use crate::record::{FileRecord, Problem};

/// One verified file.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub record: FileRecord,
    pub problems: Vec<Problem>,
}

/// How a batch of downloads ended, when no error ended it.
#[derive(Debug)]
pub enum Batch {
    /// Every file is verified: all of them, in manifest order (those already done included).
    Complete(Vec<Downloaded>),
    /// A file host answered 410, or refused a download that carried no token (401/403): the file links
    /// have expired and fresh ones may come from the status URL. No more files were started; those in flight were let finish.
    UrlsExpired {
        /// The refused file's path (relative to the run folder).
        file: String,
        /// The files verified before the batch stopped (those already done included), in manifest order.
        done: Vec<Downloaded>,
    },
}

pub use crate::store::sink::part_path;

impl Downloaded {
    /// The record of `file` once the verifier has seen all of it.
    fn new(file: &PlannedFile, v: verify::Verified) -> Self {
        let problems = v
            .tally
            .problems
            .into_iter()
            .map(|(line, message)| Problem { file: Some(file.path.clone()), line: Some(line), message })
            .collect();
        Downloaded {
            record: FileRecord {
                kind: file.kind,
                resource_type: file.resource_type.clone(),
                url: file.url.to_string(),
                path: file.path.clone(),
                expected_count: file.count,
                lines: v.tally.lines,
                bytes: v.bytes,
                sha256: v.sha256,
                invalid_lines: v.tally.invalid,
                wrong_type_lines: v.tally.wrong_type,
                types: v.tally.types,
                header_lines: v.tally.headers,
                continues_in: file.continues_in.clone(),
            },
            problems,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FileKind;
    use std::path::Path;

    #[test]
    fn part_path_appends_part() {
        let p = part_path(Path::new("run/error/OperationOutcome.ndjson"));
        assert_eq!(p, Path::new("run/error/OperationOutcome.ndjson.part"));
    }

    #[test]
    fn a_verified_file_becomes_its_record_and_problems() {
        let file = PlannedFile {
            kind: FileKind::Output,
            resource_type: "Patient".into(),
            url: "https://files.example/Patient.ndjson?X-Sig=abc".parse().unwrap(),
            count: Some(3),
            path: "Patient.002.ndjson".into(),
            continues_in: None,
        };
        let tally = verify::Tally {
            lines: 3,
            invalid: 1,
            wrong_type: 1,
            problems: vec![(2, "not a JSON object".into()), (3, "no resourceType".into())],
            ..Default::default()
        };
        let d = Downloaded::new(&file, verify::Verified { bytes: 120, sha256: "ab".repeat(32), tally });
        assert_eq!(
            d.record,
            FileRecord {
                kind: FileKind::Output,
                resource_type: "Patient".into(),
                url: "https://files.example/Patient.ndjson?X-Sig=abc".into(),
                path: "Patient.002.ndjson".into(),
                expected_count: Some(3),
                lines: 3,
                bytes: 120,
                sha256: "ab".repeat(32),
                invalid_lines: 1,
                wrong_type_lines: 1,
                types: Default::default(),
                header_lines: 0,
                continues_in: None,
            }
        );
        let problem = |line, message: &str| Problem {
            file: Some("Patient.002.ndjson".into()),
            line: Some(line),
            message: message.into(),
        };
        assert_eq!(d.problems, vec![problem(2, "not a JSON object"), problem(3, "no resourceType")]);
    }
}
