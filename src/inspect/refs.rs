//! `--check-references`: the second pass. The first pass indexed every resource as a 64-bit hash of
//! `Type/id`; this one reads the output files again and looks up every relative `Type/id` reference.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use serde_json::Value;

use super::scan::{id_hash, open, type_from_name};
use crate::job::fhir_types::is_r4_type;
use crate::ndjson::{LineSplitter, read_lines};
use crate::store::reader::Tree;

pub type IdSet = HashSet<u64>;

const EXAMPLES: usize = 3;

#[derive(Debug, Clone, Serialize, Default)]
pub struct RefReport {
    pub resources_indexed: u64,
    pub checked: u64,
    pub dangling: Vec<Dangling>,
    pub target_not_exported: Vec<NotExported>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dangling {
    pub source_type: String,
    pub field: String,
    pub count: u64,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotExported {
    pub source_type: String,
    pub field: String,
    pub target_type: String,
    pub count: u64,
}

#[derive(Default)]
struct Acc {
    checked: u64,
    dangling: BTreeMap<(String, String), (u64, Vec<String>)>,
    not_exported: BTreeMap<(String, String, String), u64>,
}

/// Every `reference` string in a resource, with the path of fields that leads to it.
fn references<'a>(v: &'a Value, path: &mut Vec<&'a str>, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("reference") {
                out.push((path.join("."), r.as_str()));
            }
            for (k, child) in m {
                if k != "reference" && (child.is_object() || child.is_array()) {
                    path.push(k);
                    references(child, path, out);
                    path.pop();
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, path, out)),
        _ => {}
    }
}

pub(super) fn check(tree: &Tree, files: &[(String, u64)], ids: &IdSet, threads: usize, max_line: usize) -> RefReport {
    let outputs: Vec<&str> = files
        .iter()
        .map(|(rel, _)| rel.as_str())
        .filter(|rel| !rel.starts_with("error") && !rel.starts_with("deleted") && !rel.contains(".error."))
        .collect();
    let exported: BTreeSet<String> = outputs.iter().filter_map(|f| type_from_name(Path::new(f))).collect();
    let next = AtomicUsize::new(0);
    let total = Mutex::new(Acc::default());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1).min(outputs.len().max(1)) {
            s.spawn(|| {
                let mut acc = Acc::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = outputs.get(i) else { break };
                    let Ok(mut r) = open(tree, f) else { continue };
                    let mut splitter = LineSplitter::new(max_line);
                    let mut on_line = |_: u64, line: Result<&[u8], crate::ndjson::LineError>| {
                        let Ok(line) = line else { return };
                        let Ok(v) = serde_json::from_slice::<Value>(line) else {
                            return;
                        };
                        let src = v["resourceType"].as_str().unwrap_or("?").to_string();
                        let mut found = Vec::new();
                        references(&v, &mut Vec::new(), &mut found);
                        for (field, r) in found {
                            let Some((t, id)) = r.split_once('/') else {
                                continue;
                            };
                            let id = id.split('/').next().unwrap_or(id);
                            if !is_r4_type(t) || id.is_empty() {
                                continue; // absolute URLs, contained (#x), logical references
                            }
                            acc.checked += 1;
                            if ids.contains(&id_hash(t, id)) {
                                continue;
                            }
                            if !exported.contains(t) {
                                *acc.not_exported.entry((src.clone(), field, t.to_string())).or_default() += 1;
                            } else {
                                let e = acc.dangling.entry((src.clone(), field)).or_default();
                                e.0 += 1;
                                if e.1.len() < EXAMPLES {
                                    e.1.push(r.to_string());
                                }
                            }
                        }
                    };
                    // A file that cannot be read was already reported by the first pass.
                    let _ = read_lines(&mut *r, &mut splitter, |_| true, &mut on_line);
                }
                let mut t = total.lock().expect("lock");
                t.checked += acc.checked;
                for (k, (n, ex)) in acc.dangling {
                    let e = t.dangling.entry(k).or_default();
                    e.0 += n;
                    for x in ex {
                        if e.1.len() < EXAMPLES {
                            e.1.push(x);
                        }
                    }
                }
                for (k, n) in acc.not_exported {
                    *t.not_exported.entry(k).or_default() += n;
                }
            });
        }
    });
    let t = total.into_inner().expect("lock");
    RefReport {
        resources_indexed: ids.len() as u64,
        checked: t.checked,
        dangling: t
            .dangling
            .into_iter()
            .map(|((source_type, field), (count, examples))| Dangling { source_type, field, count, examples })
            .collect(),
        target_not_exported: t
            .not_exported
            .into_iter()
            .map(|((source_type, field, target_type), count)| NotExported { source_type, field, target_type, count })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_with_their_field_paths() {
        let v: Value = serde_json::from_str(
            r#"{"resourceType":"ExplanationOfBenefit","patient":{"reference":"Patient/1"},
                "insurance":[{"coverage":{"reference":"Coverage/9"}}],"contained":[{"id":"x"}]}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        references(&v, &mut Vec::new(), &mut out);
        out.sort();
        assert_eq!(out, vec![("insurance.coverage".to_string(), "Coverage/9"), ("patient".to_string(), "Patient/1")]);
    }
}
