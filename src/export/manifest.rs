//! The completion manifest (DESIGN §1.5): parsed with limits, checked, and turned into the list of files
//! to fetch with names from our own scheme ([`plan`]), never from server strings unchecked.

use std::collections::BTreeMap;

use serde::Deserialize;
use url::Url;

use crate::error::{Error, Result};
use crate::record::{FileKind, PlannedFile};

/// More entries than this is not a manifest we trust.
pub const MAX_ENTRIES: usize = 100_000;
/// Pages followed through `link` next.
pub const MAX_PAGES: usize = 1_000;

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
pub fn page_file_name(page: usize) -> String {
    if page <= 1 { "manifest.json".into() } else { format!("manifest.{page:03}.json") }
}

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
    #[serde(rename = "type")]
    pub resource_type: String,
    pub url: String,
    #[serde(default)]
    pub count: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Link {
    pub relation: String,
    pub url: String,
}

/// Parses and checks a manifest body.
pub fn parse(body: &[u8]) -> Result<Manifest> {
    let m: Manifest = serde_json::from_slice(body)
        .map_err(|e| Error::ServerRejected(format!("the export's manifest is not a valid Bulk Data manifest: {e}")))?;
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
/// that is not a safe name is refused (a hostile server could otherwise write `../../x`).
pub fn plan(m: &Manifest, base: &Url) -> Result<Vec<PlannedFile>> {
    let mut out = Vec::new();
    for (kind, entries, dir) in [
        (FileKind::Output, &m.output, ""),
        (FileKind::Error, &m.error, "error/"),
        (FileKind::Deleted, &m.deleted, "deleted/"),
    ] {
        let mut per_type: BTreeMap<&str, usize> = BTreeMap::new();
        for e in entries {
            *per_type.entry(e.resource_type.as_str()).or_default() += 1;
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for e in entries {
            let t = e.resource_type.as_str();
            if !safe_type(t) {
                return Err(Error::ServerRejected(format!(
                    "the manifest names a file type {:?} that is not a FHIR resource type",
                    t.chars().take(80).collect::<String>()
                )));
            }
            let url = base.join(&e.url).map_err(|err| {
                Error::ServerRejected(format!("the manifest's file URL {:?} is not a URL: {err}", e.url))
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(Error::ServerRejected(format!("the manifest's file URL {url} is not http(s)")));
            }
            let n = seen.entry(t).or_default();
            *n += 1;
            let path = if per_type[t] > 1 { format!("{dir}{t}.{n:03}.ndjson") } else { format!("{dir}{t}.ndjson") };
            out.push(PlannedFile { kind, resource_type: t.to_string(), url, count: e.count, path });
        }
    }
    Ok(out)
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
            r#"{"transactionTime":"2024-01-01T00:00:00Z","output":[{"url":"x"}]}"#,
        ] {
            let e = parse(body.as_bytes()).unwrap_err();
            assert_eq!(e.exit_code(), 4, "{body}");
        }
    }
}
