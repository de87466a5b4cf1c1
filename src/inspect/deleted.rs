//! The manifest's `deleted[]` files (`deleted/`): each line a Bundle whose entries name resources the
//! server deleted since `_since` (`request.url` `Type/id`, method DELETE). They are counted per type of
//! the deleted resource, apart from the data: they hold no resources to load.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{FileRole, FileSummary};

/// Types counted apart in one file (a hostile file cannot grow the map past this).
const MAX_TYPES: usize = 256;
/// The type of an entry that names none.
pub const UNKNOWN: &str = "unknown";

#[derive(Debug, Clone, Default, Serialize)]
pub struct DeletedReport {
    pub files: u64,
    pub bundles: u64,
    pub entries: u64,
    pub types: Vec<DeletedType>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeletedType {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub entries: u64,
}

/// Counts the entries of one Bundle line by the type of the resource each deletes.
pub(super) fn count_entries(bundle: &serde_json::Value, into: &mut BTreeMap<String, u64>) {
    for e in bundle["entry"].as_array().into_iter().flatten() {
        let t = e["request"]["url"]
            .as_str()
            .and_then(type_of_url)
            .or_else(|| e["resource"]["resourceType"].as_str())
            .or_else(|| e["fullUrl"].as_str().and_then(type_of_url))
            .unwrap_or(UNKNOWN);
        if into.len() < MAX_TYPES || into.contains_key(t) {
            *into.entry(t.to_string()).or_default() += 1;
        } else {
            *into.entry(UNKNOWN.to_string()).or_default() += 1;
        }
    }
}

/// `Patient/123`, `https://host/fhir/Patient/123` or `Patient/123/_history/2` → `Patient`.
fn type_of_url(url: &str) -> Option<&str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let at = segs.iter().position(|s| s.starts_with("_history")).unwrap_or(segs.len());
    let (t, id) = (segs.get(at.checked_sub(2)?)?, segs.get(at - 1)?);
    (crate::job::fhir_types::is_r4_type(t) && !id.is_empty()).then_some(*t)
}

/// The `deleted/` files of an input, summed; `None` when it has none.
pub(super) fn report(files: &[FileSummary]) -> Option<DeletedReport> {
    let mut r = DeletedReport::default();
    let mut by: BTreeMap<&str, u64> = BTreeMap::new();
    for f in files.iter().filter(|f| f.kind == FileRole::Deleted) {
        r.files += 1;
        r.bundles += f.resources;
        for (t, n) in &f.deleted {
            r.entries += n;
            *by.entry(t).or_default() += n;
        }
    }
    r.types = by.into_iter().map(|(t, entries)| DeletedType { resource_type: t.to_string(), entries }).collect();
    (r.files > 0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_types_from_request_urls_resources_or_full_urls() {
        let b = serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "DELETE", "url": "Patient/1"}},
            {"request": {"method": "DELETE", "url": "https://h/fhir/Observation/o/_history/3"}},
            {"resource": {"resourceType": "Patient", "id": "2"}},
            {"fullUrl": "https://h/fhir/Coverage/c?x=1"},
            {"request": {"url": "nonsense"}}]});
        let mut m = BTreeMap::new();
        count_entries(&b, &mut m);
        let got: Vec<(&str, u64)> = m.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, [("Coverage", 1), ("Observation", 1), ("Patient", 2), ("unknown", 1)]);
    }
}
