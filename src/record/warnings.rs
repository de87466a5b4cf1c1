//! Warnings on a run whose files are all whole: things a person should know that no check fails on.
//! The token was granted less than the export asks for, the export holds no resources, or a type asked
//! for has no file in the manifest. Each is usually a mistake (a scope, a group, a type name the server
//! does not hold) that would otherwise pass as a quiet success. Pure: decided from the job's types, the
//! granted scope and the verified files. They go to the log, the summary and `run.json` (`warnings`);
//! the exit code does not change.

use std::collections::BTreeSet;

use super::{FileKind, FileRecord, Problem};

/// The warnings for a run. `asked` is `export.types` (empty: all types); `granted_scope` the token
/// response's `scope`, if it gave one; `since` the `_since` sent.
pub fn warnings(
    asked: &[String],
    granted_scope: Option<&str>,
    files: &[FileRecord],
    since: Option<&str>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(w) = granted_scope.and_then(|g| crate::scope::narrower_than(g, asked)) {
        out.push(w);
    }
    let outputs = || files.iter().filter(|f| f.kind == FileKind::Output);
    let resources: u64 = outputs().map(|f| f.lines).sum();
    if resources == 0 {
        out.push(match since {
            Some(s) => format!(
                "the export holds no resources: nothing changed since {s} (_since), or the server found nothing to export"
            ),
            None => "the export holds no resources: the server found nothing to export (check the group, export.types and the token's access)".into(),
        });
    } else {
        let present: BTreeSet<&str> = outputs().map(|f| f.resource_type.as_str()).collect();
        let missing: Vec<&str> = asked.iter().map(String::as_str).filter(|t| !present.contains(t)).collect();
        if !missing.is_empty() {
            let changed = since.map(|s| format!(" changed since {s}")).unwrap_or_default();
            out.push(format!(
                "the manifest has no file for {}, asked for in export.types: the server exported none{changed}",
                missing.join(", ")
            ));
        }
    }
    out.into_iter().map(|message| Problem { file: None, line: None, message }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(kind: FileKind, t: &str, lines: u64) -> FileRecord {
        FileRecord {
            kind,
            resource_type: t.into(),
            url: format!("https://s/{t}"),
            path: format!("{t}.ndjson"),
            expected_count: None,
            lines,
            bytes: lines * 100,
            sha256: String::new(),
            invalid_lines: 0,
            wrong_type_lines: 0,
            types: Default::default(),
            header_lines: 0,
            continues_in: None,
        }
    }

    fn texts(p: Vec<Problem>) -> Vec<String> {
        p.into_iter().map(|p| p.message).collect()
    }

    fn types(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_whole_export_of_what_was_asked_has_no_warnings() {
        let files = [file(FileKind::Output, "Patient", 3), file(FileKind::Error, "OperationOutcome", 1)];
        assert_eq!(warnings(&types(&["Patient"]), Some("system/*.read"), &files, None), vec![]);
        assert_eq!(warnings(&[], None, &files, None), vec![]);
    }

    #[test]
    fn a_narrow_scope_and_a_missing_type() {
        let files = [file(FileKind::Output, "Patient", 3)];
        assert_eq!(
            texts(warnings(&types(&["Patient", "Coverage"]), Some("system/Patient.read"), &files, None)),
            [
                "the token's granted scope `system/Patient.read` does not cover Coverage; the server may have left them out of the export",
                "the manifest has no file for Coverage, asked for in export.types: the server exported none",
            ]
        );
        assert_eq!(
            texts(warnings(&types(&["Patient", "Coverage"]), None, &files, Some("2026-01-01T00:00:00Z"))),
            [
                "the manifest has no file for Coverage, asked for in export.types: the server exported none changed since 2026-01-01T00:00:00Z"
            ]
        );
    }

    #[test]
    fn an_empty_export() {
        let only_errors = [file(FileKind::Error, "OperationOutcome", 2), file(FileKind::Output, "Patient", 0)];
        assert_eq!(
            texts(warnings(&types(&["Patient"]), None, &only_errors, None)),
            [
                "the export holds no resources: the server found nothing to export (check the group, export.types and the token's access)"
            ]
        );
        assert_eq!(
            texts(warnings(&[], Some("bulk-data|user/*.rs"), &[], Some("2026-11-28T17:06:49.252Z"))),
            [
                "the export holds no resources: nothing changed since 2026-11-28T17:06:49.252Z (_since), or the server found nothing to export"
            ]
        );
    }
}
