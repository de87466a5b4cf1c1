//! A failed check in words: what differs and what it means. A checksum that differs while every line
//! is valid is said so, with both digests shortened: the bytes are not the ones that were verified.

use super::{Check, FileSummary, InputReport};

/// Hex digits of a SHA-256 shown (enough to tell two apart at a glance).
const SHORT: usize = 12;

/// The file a per-file check is about, when it was read.
pub(super) fn file_of<'a>(input: &'a InputReport, c: &Check) -> Option<&'a FileSummary> {
    input.files.iter().find(|f| f.path == c.file)
}

fn short(hex: &str) -> String {
    if hex.len() > SHORT { format!("{}…", &hex[..SHORT]) } else { hex.to_string() }
}

/// One line: the file (or type), what was found against what the record says, and what it means.
pub(super) fn explain(c: &Check, f: Option<&FileSummary>) -> String {
    let file = &c.file;
    match c.what.as_str() {
        "sha256" => {
            let lines_ok = f.is_some_and(|f| f.invalid_lines == 0 && f.wrong_type_lines == 0 && !f.truncated);
            let digests = format!("SHA-256 {} is not the {} run.json records", short(&c.found), short(&c.expected));
            if lines_ok {
                format!(
                    "{file}: every line is valid, but its {digests}: the bytes changed after they were downloaded and \
                     verified (edited, re-encoded or replaced), so they are not what the server sent"
                )
            } else {
                format!("{file}: its {digests}: the file changed after it was verified (its problem lines show where)")
            }
        }
        // A per-file count names a file; a manifest count names a type (type names have no dot).
        "count" if file.contains('.') => {
            format!("{file}: {} resources, where run.json records {}", c.found, c.expected)
        }
        "count" => format!("{file}: {} resources in the files, where the manifest counts {}", c.found, c.expected),
        "missing file" => format!("{file}: in run.json, but not on disk"),
        "extra file" => format!("{file}: on disk, but not in run.json (added after the run, or left from another)"),
        _ => format!("{} {file}: expected {}, found {}", c.what, c.expected, c.found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(what: &str, file: &str, expected: &str, found: &str) -> Check {
        Check { what: what.into(), file: file.into(), expected: expected.into(), found: found.into(), ok: false }
    }

    #[test]
    fn a_checksum_only_failure_says_the_lines_are_valid() {
        let c = check("sha256", "Patient.ndjson", &"ab".repeat(32), &"cd".repeat(32));
        let f = FileSummary {
            path: "Patient.ndjson".into(),
            resources: 2,
            sha256: Some("cd".repeat(32)),
            ..Default::default()
        };
        assert_eq!(
            explain(&c, Some(&f)),
            "Patient.ndjson: every line is valid, but its SHA-256 cdcdcdcdcdcd… is not the abababababab… run.json \
             records: the bytes changed after they were downloaded and verified (edited, re-encoded or replaced), so \
             they are not what the server sent"
        );
        let bad = FileSummary { invalid_lines: 1, ..f };
        assert_eq!(
            explain(&c, Some(&bad)),
            "Patient.ndjson: its SHA-256 cdcdcdcdcdcd… is not the abababababab… run.json records: the file changed \
             after it was verified (its problem lines show where)"
        );
    }

    #[test]
    fn counts_name_the_record_they_come_from() {
        assert_eq!(
            explain(&check("count", "Patient", "2", "1"), None),
            "Patient: 1 resources in the files, where the manifest counts 2"
        );
        assert_eq!(
            explain(&check("count", "Patient.ndjson", "2", "1"), None),
            "Patient.ndjson: 1 resources, where run.json records 2"
        );
    }
}
