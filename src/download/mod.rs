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

mod classify;
mod fetch;
mod schedule;
pub mod verify;

use std::path::{Path, PathBuf};

pub use classify::parse_content_range_start;
pub use schedule::download_all;

use crate::record::PlannedFile;
use crate::record::{FileRecord, Problem};

/// Told of each file as it is verified (the run records it in the job's state, so a rerun skips it).
pub trait OnVerified: Send {
    fn verified<'a>(&'a mut self, d: &'a Downloaded) -> futures_util::future::BoxFuture<'a, ()>;
}

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
    /// A file host refused a download that carried no token (401/403): the signed URLs have expired and
    /// fresh ones come from the status URL. No more files were started; those in flight were let finish.
    UrlsExpired {
        /// The refused file's path (relative to the run folder).
        file: String,
        /// The files verified before the batch stopped (those already done included), in manifest order.
        done: Vec<Downloaded>,
    },
}

/// Where a file is written until it is verified: `<final path>.part`.
pub fn part_path(final_path: &Path) -> PathBuf {
    let mut s = final_path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

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
            },
            problems,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FileKind;

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
        };
        let tally = verify::Tally {
            lines: 3,
            invalid: 1,
            wrong_type: 1,
            problems: vec![(2, "not a JSON object".into()), (3, "no resourceType".into())],
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
