//! Expected against found: per file from `run.json` (presence, line count, SHA-256, extra files), else
//! per type from the manifest's pages. One file given alone is held only against its own entry.

use std::collections::BTreeMap;

use super::input::{FILE, Input};
use super::{Check, FileRole, FileSummary};
use crate::record::{FileKind, RunRecord};

pub(super) fn compare(input: &Input, run: Option<&RunRecord>, files: &[FileSummary]) -> Vec<Check> {
    let alone = input.kind == FILE;
    if let Some(run) = run {
        return against_record(run, files, alone);
    }
    if alone {
        // The manifest counts whole types, not one file of them.
        return Vec::new();
    }
    against_manifest(input, files)
}

fn check(what: &str, file: &str, expected: String, found: String, ok: bool) -> Check {
    Check { what: what.into(), file: file.into(), expected, found, ok }
}

fn against_record(run: &RunRecord, files: &[FileSummary], alone: bool) -> Vec<Check> {
    let mut checks = Vec::new();
    for r in &run.files {
        match files.iter().find(|f| f.path == r.path) {
            None if alone => {}
            None => checks.push(check("missing file", &r.path, "present".into(), "absent".into(), false)),
            Some(f) => {
                // `error[]`/`deleted[]` counts are informative (servers copy the failed output's
                // count there); organized counts may or may not include the block headers.
                if let Some(c) = r.expected_count.filter(|_| r.kind == FileKind::Output) {
                    let ok = crate::record::count_agrees(Some(c), f.resources, f.header_lines);
                    checks.push(check("count", &r.path, c.to_string(), f.resources.to_string(), ok));
                }
                let found = f.sha256.clone().unwrap_or_default();
                let ok = f.sha256.as_deref() == Some(r.sha256.as_str());
                checks.push(check("sha256", &r.path, r.sha256.clone(), found, ok));
            }
        }
    }
    if !alone {
        for f in files.iter().filter(|f| !run.files.iter().any(|r| r.path == f.path)) {
            checks.push(check("extra file", &f.path, "absent".into(), "present".into(), false));
        }
    }
    checks
}

/// Per-type counts summed over every manifest page (`manifest.json`, `manifest.002.json`, …).
fn against_manifest(input: &Input, files: &[FileSummary]) -> Vec<Check> {
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut pages = 0;
    for page in 1..=crate::record::MAX_MANIFEST_PAGES {
        let Some(bytes) = input.tree.read(&crate::record::page_file_name(page)) else { break };
        let Ok(m) = serde_json::from_slice::<serde_json::Value>(&bytes) else { break };
        pages += 1;
        for e in m["output"].as_array().into_iter().flatten() {
            if let (Some(t), Some(c)) = (e["type"].as_str(), e["count"].as_u64()) {
                *expected.entry(t.to_string()).or_default() += c;
            }
        }
    }
    if pages == 0 {
        return Vec::new();
    }
    expected
        .into_iter()
        .map(|(t, c)| {
            let found: u64 =
                files.iter().filter(|f| f.kind == FileRole::Output && f.resource_type == t).map(|f| f.resources).sum();
            check("count", &t, c.to_string(), found.to_string(), c == found)
        })
        .collect()
}
