//! One page of a search or `$everything`: a FHIR `Bundle` read into its resources (each one NDJSON
//! line, exactly as the server wrote it, whitespace outside strings removed), its `link` next and its
//! `meta.lastUpdated`. Pure, so every shape a server may send is tested on exact bytes.
//!
//! Resources are kept as the server's text ([`serde_json::value::RawValue`]), never re-serialised:
//! a decimal like `1.50` stays `1.50`, and keys keep their order.

use serde::Deserialize;
use serde_json::value::RawValue;

/// What one page holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// `link` with `relation: next`, as written (absolute or relative).
    pub next: Option<String>,
    /// `meta.lastUpdated` of the Bundle (when the server built the page).
    pub last_updated: Option<String>,
}

/// One resource of a page.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    /// `resourceType`, when the resource has one that is text.
    pub resource_type: Option<String>,
    /// The resource on one line, without the newline.
    pub line: Vec<u8>,
}

#[derive(Deserialize)]
struct RawBundle<'a> {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    #[serde(default)]
    link: Vec<RawLink>,
    #[serde(default, borrow)]
    entry: Vec<RawEntry<'a>>,
    #[serde(default)]
    meta: Option<RawMeta>,
}

#[derive(Deserialize)]
struct RawLink {
    relation: Option<String>,
    url: Option<String>,
}

#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(default, borrow)]
    resource: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawMeta {
    #[serde(rename = "lastUpdated")]
    last_updated: Option<String>,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "resourceType")]
    resource_type: Option<serde_json::Value>,
}

/// Reads a page. `Err` says why it is not a Bundle (an OperationOutcome's text, or the JSON error).
pub fn parse(body: &[u8]) -> Result<Page, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the page is not UTF-8 ({e})"))?;
    let b: RawBundle = serde_json::from_str(text).map_err(|e| format!("the page is not a FHIR Bundle ({e})"))?;
    match b.resource_type.as_deref() {
        Some("Bundle") => {}
        Some("OperationOutcome") => return Err(crate::fhir::outcome_text(body)),
        Some(other) => return Err(format!("the page is a {other}, not a Bundle")),
        None => return Err("the page has no resourceType".into()),
    }
    let next = b
        .link
        .into_iter()
        .find(|l| l.relation.as_deref() == Some("next"))
        .and_then(|l| l.url)
        .filter(|u| !u.trim().is_empty());
    let entries = b
        .entry
        .into_iter()
        .filter_map(|e| e.resource)
        .map(|r| {
            let resource_type = serde_json::from_str::<Head>(r.get())
                .ok()
                .and_then(|h| h.resource_type)
                .and_then(|t| t.as_str().map(str::to_string));
            Entry { resource_type, line: minify(r.get()) }
        })
        .collect();
    Ok(Page { entries, next, last_updated: b.meta.and_then(|m| m.last_updated) })
}

/// JSON text without the whitespace between tokens (strings untouched), so a pretty-printed resource
/// becomes one NDJSON line. The input is valid JSON (serde has read it).
pub fn minify(json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &c in json.as_bytes() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            if c == b'"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_gives_its_resources_as_sent_and_its_next_link() {
        let body = br#"{"resourceType":"Bundle","type":"searchset","meta":{"lastUpdated":"2025-03-01T10:00:00Z"},
          "link":[{"relation":"self","url":"https://p/fhir/Patient/1/$everything"},
                  {"relation":"next","url":"https://p/fhir/Patient/1/$everything?page=2"}],
          "entry":[
            {"fullUrl":"https://p/fhir/Patient/1","resource":{"resourceType":"Patient","id":"1","name":[{"text":"A  B"}]}},
            {"fullUrl":"x","resource":{
                "resourceType" : "Observation",
                "valueQuantity" : {"value" : 1.50},
                "note":[{"text":"say \"hi\"\n  there"}]
            }},
            {"response":{"status":"200"}},
            {"resource":{"id":"no-type"}}
          ]}"#;
        let p = parse(body).unwrap();
        assert_eq!(p.next.as_deref(), Some("https://p/fhir/Patient/1/$everything?page=2"));
        assert_eq!(p.last_updated.as_deref(), Some("2025-03-01T10:00:00Z"));
        let lines: Vec<(Option<&str>, &str)> =
            p.entries.iter().map(|e| (e.resource_type.as_deref(), std::str::from_utf8(&e.line).unwrap())).collect();
        assert_eq!(
            lines,
            vec![
                (Some("Patient"), r#"{"resourceType":"Patient","id":"1","name":[{"text":"A  B"}]}"#),
                (
                    Some("Observation"),
                    r#"{"resourceType":"Observation","valueQuantity":{"value":1.50},"note":[{"text":"say \"hi\"\n  there"}]}"#
                ),
                (None, r#"{"id":"no-type"}"#),
            ]
        );
    }

    #[test]
    fn the_last_page_has_no_next_and_an_outcome_is_an_error() {
        let p = parse(br#"{"resourceType":"Bundle","link":[{"relation":"self","url":"u"}]}"#).unwrap();
        assert_eq!(p, Page::default());
        let oo = br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"processing","diagnostics":"no such patient"}]}"#;
        assert_eq!(parse(oo).unwrap_err(), "no such patient");
        assert_eq!(parse(br#"{"resourceType":"Patient"}"#).unwrap_err(), "the page is a Patient, not a Bundle");
        assert!(parse(b"<html>").unwrap_err().starts_with("the page is not a FHIR Bundle"));
    }
}
