//! Unit tests of the synthetic data: valid lines, resolvable references, counts, determinism, filters.

use std::collections::HashSet;

use serde_json::Value;

use super::super::data::{DataSpec, ResourceType, Selection};

const ANCHOR: i64 = 1_735_689_600; // 2025-01-01T00:00:00Z

fn spec(scale: u32) -> DataSpec {
    DataSpec { scale, anchor: ANCHOR }
}

fn all(since: Option<i64>) -> Selection {
    Selection { types: ResourceType::ALL.to_vec(), since, until: None, patients: None }
}

fn lines(b: &[u8]) -> Vec<Value> {
    assert_eq!(b.last(), Some(&b'\n'), "every line ends with \\n");
    b.split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(l))))
        .collect()
}

fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("reference", Value::String(r)) => out.push(r.clone()),
                    _ => references(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

#[test]
fn lines_are_json_of_the_right_type_and_counts_match() {
    let data = spec(1).generate(&all(None));
    assert_eq!(data.len(), ResourceType::ALL.len());
    let mut total = 0;
    for td in &data {
        let ls = lines(&td.bytes);
        assert_eq!(ls.len() as u64, td.count, "{:?}", td.rtype);
        assert!(td.count > 0, "{:?} is empty", td.rtype);
        for l in &ls {
            assert_eq!(l["resourceType"], td.rtype.name());
            assert!(l["id"].is_string());
            assert!(l["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
        }
        // Compact JSON: serde re-serialisation gives the same bytes, so there is no stray whitespace.
        let first = td.bytes.split(|&c| c == b'\n').next().unwrap();
        assert_eq!(serde_json::to_vec(&ls[0]).unwrap().len(), first.len());
        total += td.count;
    }
    assert_eq!(data[0].count, 10, "10 patients at scale 1");
    assert!((150..=600).contains(&total), "a few hundred resources, got {total}");
}

#[test]
fn references_resolve_and_ids_are_unique() {
    let data = spec(2).generate(&all(None));
    let mut ids = HashSet::new();
    let mut refs = Vec::new();
    for td in &data {
        for l in lines(&td.bytes) {
            let id = format!("{}/{}", l["resourceType"].as_str().unwrap(), l["id"].as_str().unwrap());
            assert!(ids.insert(id.clone()), "duplicate {id}");
            references(&l, &mut refs);
        }
    }
    assert!(refs.len() > 100);
    for r in refs {
        assert!(ids.contains(&r), "dangling reference {r}");
    }
}

#[test]
fn generation_is_deterministic_and_filters_keep_the_rest_unchanged() {
    let s = spec(3);
    let a = s.generate(&all(None));
    let b = s.generate(&all(None));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.bytes, y.bytes);
    }
    // _since keeps exactly the lines updated after it, byte for byte.
    let since = ANCHOR - 120 * 86_400;
    let since_str = {
        let mut v = Vec::new();
        super::super::resources::instant(&mut v, since);
        String::from_utf8(v).unwrap()
    };
    let filtered = s.generate(&all(Some(since)));
    for (full, part) in a.iter().zip(&filtered) {
        let want: Vec<&[u8]> = full
            .bytes
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .filter(|l| {
                let v: Value = serde_json::from_slice(l).unwrap();
                v["meta"]["lastUpdated"].as_str().unwrap() > since_str.as_str()
            })
            .collect();
        let got: Vec<&[u8]> = part.bytes.split(|&c| c == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(got, want, "{:?}", full.rtype);
        assert!(part.count < full.count);
    }
}

#[test]
fn patient_subsets_and_type_selection() {
    let s = spec(1);
    let sel = Selection {
        types: vec![ResourceType::Patient, ResourceType::Coverage],
        since: None,
        until: None,
        patients: Some(vec![2, 7]),
    };
    let data = s.generate(&sel);
    assert_eq!(data.len(), 2);
    let pats = lines(&data[0].bytes);
    assert_eq!(pats.len(), 2);
    assert_eq!(pats[1]["id"], "pt-7");
    let d = s.demographics(7);
    assert_eq!(pats[1]["birthDate"], d.birth_date.as_str());
    assert_eq!(pats[1]["name"][0]["family"], d.family);
    assert_eq!(pats[1]["identifier"][0]["value"], d.member_id.as_str());
    for c in lines(&data[1].bytes) {
        let r = c["beneficiary"]["reference"].as_str().unwrap();
        assert!(r == "Patient/pt-2" || r == "Patient/pt-7");
    }
    assert_eq!(s.patient_index("pt-7"), Some(7));
    assert_eq!(s.patient_index("pt-07"), None);
    assert_eq!(s.patient_index("pt-10"), None);
}

#[test]
fn dates_are_civil() {
    let mut v = Vec::new();
    super::super::resources::instant(&mut v, 951_825_600); // 2000-02-29T12:00:00Z
    assert_eq!(v, b"2000-02-29T12:00:00Z");
    v.clear();
    super::super::resources::date(&mut v, -1);
    assert_eq!(v, b"1969-12-31");
}
