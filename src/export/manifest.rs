//! The completion manifest (DESIGN §1.5): parsed with limits, checked, and turned into the list of files
//! to fetch with names from our own scheme ([`plan`]), never from server strings unchecked.
//!
//! Versions read: Bulk Data v1/v2; v3's `organizeOutputBy` output (entries without `type`, the
//! manifest's `outputOrganizedBy`, `continuesInFile`) and paged manifests; STU4's `outcome` (read as
//! `error`, the same meaning). Fields not listed here (`extension` as an object or an array,
//! `manifestType`, `outputFormat`, `fileSize`, `countSeverity`, …) are ignored, whatever their shape.

use std::collections::BTreeMap;

use serde::Deserialize;
use url::Url;

use crate::error::{Error, Result};
use crate::record::{FileKind, MIXED, PlannedFile};

/// More entries than this is not a manifest we trust.
pub const MAX_ENTRIES: usize = 100_000;
/// Pages followed through `link` next.
pub const MAX_PAGES: usize = crate::record::MAX_MANIFEST_PAGES;

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    #[serde(rename = "transactionTime")]
    pub transaction_time: String,
    #[serde(default)]
    pub request: Option<String>,
    #[serde(rename = "requiresAccessToken", default)]
    pub requires_access_token: bool,
    #[serde(default)]
    pub output: Vec<Entry>,
    #[serde(default)]
    pub error: Vec<Entry>,
    #[serde(default)]
    pub deleted: Vec<Entry>,
    #[serde(default)]
    pub link: Vec<Link>,
    /// Bulk Data v3: the resource type the output files are organized by (`organizeOutputBy`).
    #[serde(rename = "outputOrganizedBy", default)]
    pub output_organized_by: Option<String>,
    /// STU4's name for `error`; [`parse`] moves its entries into `error`.
    #[serde(default)]
    outcome: Vec<Entry>,
    /// How many pages were merged into this one (1 for an unpaged manifest).
    #[serde(skip, default = "one")]
    pub pages: usize,
}

fn one() -> usize {
    1
}

/// The `link` with relation `next`, if the manifest is paged.
pub fn next_link(m: &Manifest) -> Option<String> {
    m.link.iter().find(|l| l.relation == "next").map(|l| l.url.clone())
}

/// `manifest.json` for page 1, `manifest.002.json` … for the following pages.
pub use crate::record::page_file_name;

/// One manifest from several pages: the first page's header, every page's files, in order.
pub fn merge(pages: Vec<Manifest>) -> Manifest {
    let mut it = pages.into_iter();
    let mut m = it.next().expect("at least one page");
    for p in it {
        m.output.extend(p.output);
        m.error.extend(p.error);
        m.deleted.extend(p.deleted);
        m.pages += 1;
    }
    m.link.clear();
    m
}

#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    /// Absent in organized output (v3), and in v3's `error[]` and `deleted[]` entries.
    #[serde(rename = "type", default)]
    pub resource_type: Option<String>,
    pub url: String,
    #[serde(default)]
    pub count: Option<u64>,
    /// Organized output: the file the last resource block continues in.
    #[serde(rename = "continuesInFile", default)]
    pub continues_in_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Link {
    pub relation: String,
    pub url: String,
}

/// Parses and checks a manifest body.
pub fn parse(body: &[u8]) -> Result<Manifest> {
    let mut m: Manifest = serde_json::from_slice(body)
        .map_err(|e| Error::ServerRejected(format!("the export's manifest is not a valid Bulk Data manifest: {e}")))?;
    let outcome = std::mem::take(&mut m.outcome);
    m.error.extend(outcome);
    let entries = m.output.len() + m.error.len() + m.deleted.len();
    if entries > MAX_ENTRIES {
        return Err(Error::ServerRejected(format!(
            "the manifest lists {entries} files, more than the {MAX_ENTRIES} accepted"
        )));
    }
    crate::instant::parse_strict(&m.transaction_time).ok_or_else(|| {
        Error::ServerRejected(format!("the manifest's transactionTime {:?} is not an instant", m.transaction_time))
    })?;
    Ok(m)
}

/// A resource type is used in a file name only if it looks like one: `[A-Z][A-Za-z0-9]{0,63}`.
pub fn safe_type(t: &str) -> bool {
    let mut c = t.chars();
    matches!(c.next(), Some('A'..='Z')) && t.len() <= 64 && c.all(|c| c.is_ascii_alphanumeric())
}

/// Names every file. Several files of one type in one section are numbered `Type.001.ndjson`…; a type
/// that is not a safe name is refused (a hostile server could otherwise write `../../x`). Output
/// entries without a `type` (organized output) hold resources of any type: `organized.001.ndjson`….
/// `error[]` and `deleted[]` entries without a `type` (v3) hold OperationOutcomes and Bundles.
pub fn plan(m: &Manifest, base: &Url) -> Result<Vec<PlannedFile>> {
    let mut out = Vec::new();
    for (kind, entries, dir, untyped) in [
        (FileKind::Output, &m.output, "", MIXED),
        (FileKind::Error, &m.error, "error/", "OperationOutcome"),
        (FileKind::Deleted, &m.deleted, "deleted/", "Bundle"),
    ] {
        let type_of = |e: &'_ Entry| e.resource_type.clone().unwrap_or_else(|| untyped.to_string());
        let mut per_type: BTreeMap<String, usize> = BTreeMap::new();
        for e in entries {
            *per_type.entry(type_of(e)).or_default() += 1;
        }
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for e in entries {
            let t = type_of(e);
            if t != MIXED && !safe_type(&t) {
                return Err(Error::ServerRejected(format!(
                    "the manifest names a file type {:?} that is not a FHIR resource type",
                    t.chars().take(80).collect::<String>()
                )));
            }
            let url = file_url(base, &e.url)?;
            let n = seen.entry(t.clone()).or_default();
            *n += 1;
            let path = if t == MIXED {
                format!("organized.{n:03}.ndjson")
            } else if per_type[&t] > 1 {
                format!("{dir}{t}.{n:03}.ndjson")
            } else {
                format!("{dir}{t}.ndjson")
            };
            out.push(PlannedFile { kind, resource_type: t, url, count: e.count, path, continues_in: None });
        }
    }
    // `continuesInFile` names a server URL: keep it as our name for that file, when it is one of ours.
    let continues: Vec<Option<String>> = m
        .output
        .iter()
        .map(|e| {
            let next = base.join(e.continues_in_file.as_deref()?).ok()?;
            out.iter().find(|f| f.kind == FileKind::Output && f.url == next).map(|f| f.path.clone())
        })
        .collect();
    for (f, c) in out.iter_mut().zip(continues) {
        f.continues_in = c;
    }
    Ok(out)
}

fn file_url(base: &Url, url: &str) -> Result<Url> {
    let u = base
        .join(url)
        .map_err(|err| Error::ServerRejected(format!("the manifest's file URL {url:?} is not a URL: {err}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(Error::ServerRejected(format!("the manifest's file URL {u} is not http(s)")));
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(json: &str) -> Manifest {
        parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn files_are_named_by_type_and_numbered_when_several() {
        let man = m(r#"{"transactionTime":"2024-01-01T00:00:00Z","request":"x","requiresAccessToken":true,
            "output":[{"type":"Patient","url":"https://s/1"},{"type":"Coverage","url":"https://s/2","count":3},{"type":"Patient","url":"https://s/3"}],
            "error":[{"type":"OperationOutcome","url":"https://s/e"}]}"#);
        let base = Url::parse("https://s/fhir/").unwrap();
        let paths: Vec<_> = plan(&man, &base).unwrap().into_iter().map(|f| (f.path, f.count)).collect();
        assert_eq!(
            paths,
            vec![
                ("Patient.001.ndjson".to_string(), None),
                ("Coverage.ndjson".to_string(), Some(3)),
                ("Patient.002.ndjson".to_string(), None),
                ("error/OperationOutcome.ndjson".to_string(), None),
            ]
        );
    }

    #[test]
    fn hostile_types_and_urls_are_refused() {
        let base = Url::parse("https://s/").unwrap();
        for t in ["../../etc/passwd", "Patient/..", "", "patient", "Pa\u{0}tient"] {
            let json =
                serde_json::json!({"transactionTime":"2024-01-01T00:00:00Z","output":[{"type":t,"url":"https://s/1"}]});
            let man = parse(json.to_string().as_bytes()).unwrap();
            assert!(plan(&man, &base).is_err(), "{t:?}");
        }
        let man =
            m(r#"{"transactionTime":"2024-01-01T00:00:00Z","output":[{"type":"Patient","url":"file:///etc/passwd"}]}"#);
        assert!(plan(&man, &base).is_err());
    }

    #[test]
    fn broken_manifests_are_errors_not_panics() {
        for body in [
            "",
            "not json",
            "[]",
            r#"{"output":[]}"#,
            r#"{"transactionTime":"yesterday","output":[]}"#,
            r#"{"transactionTime":"2024-01-01T00:00:00Z","output":[{"type":"Patient"}]}"#,
            r#"{"transactionTime":"2024-01-01T00:00:00Z","outcome":{"url":"x"}}"#,
        ] {
            let e = parse(body.as_bytes()).unwrap_err();
            assert_eq!(e.exit_code(), 4, "{body}");
        }
    }

    #[test]
    fn organized_output_is_named_from_our_scheme_and_keeps_its_continuations() {
        // The IG's example (BulkDataManifestOrganizedByPatientExample), v3.
        let man = m(r#"{"transactionTime":"2021-01-01T00:00:00Z","requiresAccessToken":true,
            "outputOrganizedBy":"Patient",
            "output":[{"url":"https://example.org/output/file_1.ndjson"},
                {"url":"https://example.org/output/file_2.ndjson","continuesInFile":"https://example.org/output/file_3.ndjson"},
                {"url":"https://example.org/output/file_3.ndjson","count":12}],
            "deleted":[{"url":"https://example.org/output/del_file_1.ndjson"}],
            "error":[{"url":"https://example.org/output/err_file_1.ndjson"}],
            "extension":[{"url":"http://example.org/fhir/StructureDefinition/includes-telehealth-patients","valueBoolean":true}],
            "link":[{"relation":"next","url":"https://example.org/output/manifest-2.json"}]}"#);
        assert_eq!(man.output_organized_by.as_deref(), Some("Patient"));
        let base = Url::parse("https://example.org/fhir/").unwrap();
        let got: Vec<_> = plan(&man, &base)
            .unwrap()
            .into_iter()
            .map(|f| (f.kind, f.resource_type, f.path, f.count, f.continues_in))
            .collect();
        let file = |kind, t: &str, p: &str, c, next: Option<&str>| {
            (kind, t.to_string(), p.to_string(), c, next.map(String::from))
        };
        assert_eq!(
            got,
            vec![
                file(FileKind::Output, MIXED, "organized.001.ndjson", None, None),
                file(FileKind::Output, MIXED, "organized.002.ndjson", None, Some("organized.003.ndjson")),
                file(FileKind::Output, MIXED, "organized.003.ndjson", Some(12), None),
                file(FileKind::Error, "OperationOutcome", "error/OperationOutcome.ndjson", None, None),
                file(FileKind::Deleted, "Bundle", "deleted/Bundle.ndjson", None, None),
            ]
        );
    }

    #[test]
    fn stu4_outcome_is_read_as_error_and_unknown_fields_are_ignored() {
        let man = m(r#"{"manifestType":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export|4.0.0",
            "transactionTime":"2024-01-01T00:00:00+00:00","requiresAccessToken":false,
            "outputFormat":"application/fhir+ndjson","somethingNew":{"deep":[1,2,{"x":null}]},
            "extension":[{"url":"http://example.org/x","valueString":"y"}],
            "output":[{"type":"Patient","url":"https://s/p","count":2,"fileSize":1234,"extension":{"a":1}}],
            "error":[{"type":"OperationOutcome","url":"https://s/e1"}],
            "outcome":[{"url":"https://s/e2","count":1,"countSeverity":[{"code":"error","count":1}]}]}"#);
        let base = Url::parse("https://s/").unwrap();
        let got: Vec<_> = plan(&man, &base).unwrap().into_iter().map(|f| (f.path, f.url.to_string())).collect();
        assert_eq!(
            got,
            vec![
                ("Patient.ndjson".to_string(), "https://s/p".to_string()),
                ("error/OperationOutcome.001.ndjson".to_string(), "https://s/e1".to_string()),
                ("error/OperationOutcome.002.ndjson".to_string(), "https://s/e2".to_string()),
            ]
        );
        // The older shape of `extension` (an object) is ignored too.
        m(r#"{"transactionTime":"2024-01-01T00:00:00Z","extension":{"a":{"b":1}},"output":[]}"#);
    }
}
