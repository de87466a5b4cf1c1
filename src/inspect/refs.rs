//! `--check-references`: the second pass. The first pass indexed every resource as a 64-bit hash of
//! `Type/id`; this one reads the output files again and looks up every relative `Type/id` reference.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;

use super::scan::{IdSet, id_hash, open, type_from_name};
use crate::job::fhir_types::is_r4_type;
use crate::ndjson::{LineSplitter, RefSink, parse_refs, read_lines};
use crate::store::reader::Tree;

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

impl Acc {
    /// One reference `r` in field `field` of a `src` resource. Allocates only for the ones reported.
    fn reference(&mut self, src: &str, field: &str, r: &str, ids: &IdSet, exported: &BTreeSet<String>) {
        let Some((t, id)) = r.split_once('/') else {
            return;
        };
        let id = id.split('/').next().unwrap_or(id);
        if !is_r4_type(t) || id.is_empty() {
            return; // absolute URLs, contained (#x), logical references
        }
        self.checked += 1;
        if ids.contains(&id_hash(t, id)) {
            return;
        }
        if !exported.contains(t) {
            *self.not_exported.entry((src.to_string(), field.to_string(), t.to_string())).or_default() += 1;
        } else {
            let e = self.dangling.entry((src.to_string(), field.to_string())).or_default();
            e.0 += 1;
            if e.1.len() < EXAMPLES {
                e.1.push(r.to_string());
            }
        }
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
                    let mut sink = RefSink::default();
                    let mut on_line = |_: u64, line: Result<&[u8], crate::ndjson::LineError>| {
                        let Ok(line) = line else { return };
                        // Lines that are not valid resources were reported by the first pass.
                        if let Ok(head) = parse_refs(line, &mut sink) {
                            let src = head.resource_type.as_deref().unwrap_or("?");
                            for (field, r) in sink.refs(line) {
                                acc.reference(src, field, &r, ids, &exported);
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
    use crate::inspect::scan::Prehashed;
    use std::hash::Hasher;

    fn refs_of(line: &str) -> Vec<(String, String)> {
        let mut sink = RefSink::default();
        parse_refs(line.as_bytes(), &mut sink).unwrap();
        let mut out: Vec<(String, String)> =
            sink.refs(line.as_bytes()).map(|(f, r)| (f.to_string(), r.into_owned())).collect();
        out.sort();
        out
    }

    #[test]
    fn references_with_their_field_paths() {
        let line = r#"{"resourceType":"ExplanationOfBenefit","patient":{"reference":"Patient/1"},
                "insurance":[{"coverage":{"reference":"Coverage/9"}}],"contained":[{"id":"x"}],
                "item":[{"a":[[{"reference":"Practitioner/p\u0031"}]]}],"reference":"Group/g",
                "x":{"reference":{"reference":"Patient/muted"}}}"#;
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            refs_of(line),
            vec![
                s("", "Group/g"),
                s("insurance.coverage", "Coverage/9"),
                s("item.a", "Practitioner/p1"),
                s("patient", "Patient/1")
            ]
        );
    }

    #[test]
    fn ids_pass_through_the_hasher() {
        let mut h = Prehashed::default();
        h.write_u64(42);
        assert_eq!(h.finish(), 42);
    }
}
