//! `bench scan`: the line checks alone, single-threaded over data in memory (no I/O, no other process),
//! so candidates compare on CPU alone: what `inspect` and `validate: strict` cost per byte, before
//! (serde_json) and after (the validating skip in `ndjson/json.rs`).

use std::borrow::Cow;
use std::time::Instant;

use oneup_bulk::ndjson::{self, RefSink};
use serde::Deserialize;

/// The head as `ndjson` read it before the validating skip: serde_json into borrowed options, the
/// rest skipped (`IgnoredAny`).
#[derive(Deserialize)]
#[allow(dead_code)] // read only by serde, to make it parse the same fields
struct OldHead<'a> {
    #[serde(rename = "resourceType", borrow, default)]
    resource_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    meta: Option<OldMeta<'a>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct OldMeta<'a> {
    #[serde(rename = "lastUpdated", borrow, default)]
    last_updated: Option<Cow<'a, str>>,
}

/// Every `reference` in a `Value`, as `--check-references` found them before.
fn old_refs(v: &serde_json::Value, n: &mut usize) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::String(_)) = m.get("reference") {
                *n += 1;
            }
            m.iter().filter(|(k, _)| *k != "reference").for_each(|(_, c)| old_refs(c, n));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| old_refs(x, n)),
        _ => {}
    }
}

pub struct Row {
    pub what: &'static str,
    pub gbps: f64,
}

/// The candidates, each over every line of `data`; best of `reps` passes.
pub fn run(data: &[(String, Vec<u8>)], reps: usize) -> Vec<Row> {
    run_some(data, reps, "")
}

/// One pass of the candidates whose name contains `only`.
pub fn run_only(data: &[(String, Vec<u8>)], only: &str) -> Vec<Row> {
    run_some(data, 1, only)
}

fn run_some(data: &[(String, Vec<u8>)], reps: usize, only: &str) -> Vec<Row> {
    let lines: Vec<&[u8]> = data.iter().flat_map(|(_, b)| b.split(|&c| c == b'\n').filter(|l| !l.is_empty())).collect();
    let bytes: usize = data.iter().map(|(_, b)| b.len()).sum();
    let mut rows = Vec::new();
    let mut time = |what: &'static str, f: &mut dyn FnMut() -> usize| {
        if !what.contains(only) {
            return;
        }
        let mut best = f64::MAX;
        let mut check = 0;
        for _ in 0..reps.max(1) {
            let t = Instant::now();
            check = std::hint::black_box(f());
            best = best.min(t.elapsed().as_secs_f64());
        }
        assert!(check > 0, "{what} saw nothing");
        rows.push(Row { what, gbps: bytes as f64 / 1e9 / best });
    };
    time("split lines (memchr)", &mut || data.iter().map(|(_, b)| memchr::memchr_iter(b'\n', b).count()).sum());
    time("UTF-8 check (std)", &mut || lines.iter().filter(|l| std::str::from_utf8(l).is_ok()).count());
    time("serde_json, skip all (IgnoredAny)", &mut || {
        lines.iter().filter(|l| serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok()).count()
    });
    time("before: serde_json head (strict check, inspect)", &mut || {
        lines.iter().filter(|l| serde_json::from_slice::<OldHead>(l).is_ok()).count()
    });
    time("after: validating skip + head", &mut || lines.iter().filter(|l| ndjson::parse_head(l).is_ok()).count());
    time("after: check_line (strict check)", &mut || {
        lines.iter().filter(|l| ndjson::check_line(l, None).is_ok()).count()
    });
    time("before: serde_json Value + walk (references)", &mut || {
        let mut n = 0;
        for l in &lines {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(l) {
                old_refs(&v, &mut n);
            }
        }
        n + 1
    });
    time("after: validating skip + references", &mut || {
        let mut sink = RefSink::default();
        let mut n = 0;
        for l in &lines {
            if ndjson::parse_refs(l, &mut sink).is_ok() {
                n += sink.refs(l).count();
            }
        }
        n + 1
    });
    rows
}
