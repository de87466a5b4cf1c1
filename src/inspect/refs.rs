//! `--check-references`: the second pass. The first pass indexed every resource as a 64-bit hash of
//! `Type/id`; this one reads the output files again and looks up every relative `Type/id` reference.
//! The others cannot be looked up in the files and are counted as skipped, by kind: `urn:uuid:` /
//! `urn:oid:` (a Bundle's own ids), `#id` (contained resources), absolute URLs, and anything else
//! (a type that is not an R4 resource type, a conditional `Type?query`, no id).

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
    pub skipped: Skipped,
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

/// References that are not `Type/id`, so not looked up.
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq, Eq)]
pub struct Skipped {
    pub urn: u64,
    pub contained: u64,
    pub absolute: u64,
    pub other: u64,
}

impl Skipped {
    pub fn total(&self) -> u64 {
        self.urn + self.contained + self.absolute + self.other
    }

    fn add(&mut self, o: Skipped) {
        self.urn += o.urn;
        self.contained += o.contained;
        self.absolute += o.absolute;
        self.other += o.other;
    }

    fn count(&mut self, r: &str) {
        let slot = if r.starts_with("urn:") {
            &mut self.urn
        } else if r.starts_with('#') {
            &mut self.contained
        } else if r.contains("://") {
            &mut self.absolute
        } else {
            &mut self.other
        };
        *slot += 1;
    }
}

#[derive(Default)]
struct Acc {
    checked: u64,
    skipped: Skipped,
    dangling: BTreeMap<(String, String), (u64, Vec<String>)>,
    not_exported: BTreeMap<(String, String, String), u64>,
}

impl Acc {
    /// One reference `r` in field `field` of a `src` resource. Allocates only for the ones reported.
    fn reference(&mut self, src: &str, field: &str, r: &str, ids: &IdSet, exported: &BTreeSet<String>) {
        let Some((t, id)) = r.split_once('/').filter(|(t, _)| is_r4_type(t)) else {
            return self.skipped.count(r);
        };
        let id = id.split('/').next().unwrap_or(id);
        if id.is_empty() || id.contains('?') {
            return self.skipped.count(r);
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
                t.skipped.add(acc.skipped);
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
        skipped: t.skipped,
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
    fn only_type_id_references_are_looked_up_and_the_rest_are_counted_by_kind() {
        let ids: IdSet = [id_hash("Patient", "1")].into_iter().collect();
        let exported: BTreeSet<String> = ["Patient".to_string()].into();
        let mut acc = Acc::default();
        for r in [
            "Patient/1",
            "Patient/1/_history/2",
            "Patient/2",
            "urn:uuid:6b1f0a3e-9a53-4d1e-8f4a-1c2b3d4e5f60",
            "urn:oid:1.2.3",
            "#contained-1",
            "https://other.example/fhir/Patient/1",
            "Patient?identifier=x",
            "Patient/",
            "Widget/1",
        ] {
            acc.reference("Coverage", "beneficiary", r, &ids, &exported);
        }
        assert_eq!(acc.checked, 3);
        assert_eq!(acc.skipped, Skipped { urn: 2, contained: 1, absolute: 1, other: 3 });
        assert_eq!(acc.dangling[&("Coverage".to_string(), "beneficiary".to_string())].0, 1);
    }

    #[test]
    fn ids_pass_through_the_hasher() {
        let mut h = Prehashed::default();
        h.write_u64(42);
        assert_eq!(h.finish(), 42);
    }
}
