//! `inspect`: what is in an export, and is it whole — from the files on disk, streamed, in parallel.
//!
//! Takes run folders (`exports/<job>/<run-id>` or `…/latest`, on disk or in a bucket:
//! `s3://bucket/prefix/<job>/latest`, `gs://…`, `az://…`), folders of NDJSON from any tool
//! (bulk-data-client's `1.Patient.ndjson`, SMART Fetch's `Patient.001.ndjson.gz`), or single files
//! (`.ndjson`, `.ndjson.gz`). The report, per input: resource type, files, resources, bytes, invalid
//! lines, lines of another `resourceType`, earliest/latest `meta.lastUpdated`; the comparison with
//! `run.json` (per file: missing, line count, sha256) or `manifest.json` (per type counts); organized
//! output (`organizeOutputBy`) counted per type from its content (the `Parameters` block headers under
//! `Parameters`; such a file's `type` is `*`, and it counts once under every type it holds); the
//! server's `error/` OperationOutcomes grouped by severity, code and diagnostics; with
//! `--check-references`, references to resources not in the export.
//!
//! `--json` field names (stable): `inputs[]` of `{path, kind ("run"|"folder"|"file"), types[{type, files,
//! resources, bytes, invalid_lines, wrong_type_lines, earliest_last_updated, latest_last_updated}],
//! files[{path, type, resources, bytes, sha256 (null without run.json), invalid_lines, wrong_type_lines, truncated}],
//! checks[{what, file, expected, found, ok}], outcomes[{severity, code, diagnostics, count}],
//! references: null | {resources_indexed, checked, dangling[{source_type, field, count, examples[]}],
//! target_not_exported[{source_type, field, target_type, count}]}, problems[{file, line, reason}]}`,
//! then `whole` (bool), `seconds`, `bytes`.
//!
//! Memory: files are read in 1 MiB blocks through the shared bounded line splitter. Reference checks
//! keep one 64-bit hash per resource (`Type/id`) in a hash set, about 16 bytes a resource with the
//! table's slack: ~160 MB for ten million resources; references are checked in a second pass, so they
//! are never held.

mod refs;
mod render;
mod scan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::record::RunRecord;
use crate::store::Location;
use crate::store::reader::Tree;

pub use render::{render_json, render_problems, render_text};
pub use scan::print_head;

#[derive(Debug, Clone)]
pub struct InspectOptions {
    pub paths: Vec<PathBuf>,
    pub check_references: bool,
    /// With `head`: the type to print.
    pub type_filter: Option<String>,
    pub head: Option<usize>,
    /// Problems to list (they are always counted).
    pub invalid: Option<usize>,
    /// 0: the machine's cores.
    pub threads: usize,
    pub max_line_bytes: usize,
}

impl Default for InspectOptions {
    fn default() -> Self {
        InspectOptions {
            paths: Vec::new(),
            check_references: false,
            type_filter: None,
            head: None,
            invalid: None,
            threads: 0,
            max_line_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub inputs: Vec<InputReport>,
    pub whole: bool,
    pub seconds: f64,
    pub bytes: u64,
}

impl Report {
    /// 0 when every input is whole and valid, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.whole { 0 } else { 1 }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct InputReport {
    pub path: String,
    pub kind: &'static str,
    pub types: Vec<TypeSummary>,
    pub files: Vec<FileSummary>,
    pub checks: Vec<Check>,
    pub outcomes: Vec<OutcomeGroup>,
    pub references: Option<refs::RefReport>,
    pub problems: Vec<scan::Problem>,
    #[serde(skip)]
    pub problems_total: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TypeSummary {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub files: u64,
    pub resources: u64,
    pub bytes: u64,
    pub invalid_lines: u64,
    pub wrong_type_lines: u64,
    pub earliest_last_updated: Option<String>,
    pub latest_last_updated: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileSummary {
    pub path: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub resources: u64,
    pub bytes: u64,
    /// Computed when the input has a `run.json` to compare with; `null` otherwise.
    pub sha256: Option<String>,
    pub invalid_lines: u64,
    pub wrong_type_lines: u64,
    pub truncated: bool,
    #[serde(skip)]
    pub kind: FileRole,
    #[serde(skip)]
    pub earliest: Option<String>,
    #[serde(skip)]
    pub latest: Option<String>,
    /// Organized output (`type` `*`): what each type's lines add up to.
    #[serde(skip)]
    pub parts: BTreeMap<String, Part>,
    /// Organized output: the `Parameters` block headers.
    #[serde(skip)]
    pub header_lines: u64,
}

/// The lines of one type in an organized file.
#[derive(Debug, Clone, Default)]
pub struct Part {
    pub resources: u64,
    /// The bytes of its lines, newlines included.
    pub bytes: u64,
    pub earliest: Option<String>,
    pub latest: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileRole {
    #[default]
    Output,
    Error,
    Deleted,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub file: String,
    pub expected: String,
    pub found: String,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OutcomeGroup {
    pub severity: String,
    pub code: String,
    pub diagnostics: String,
    pub count: u64,
}

/// One input resolved to the files to read: a folder (or bucket prefix) and the files in it, by
/// relative path, with their sizes.
struct Input {
    path: String,
    kind: &'static str,
    tree: Tree,
    files: Vec<(String, u64)>,
}

fn is_ndjson(rel: &str) -> bool {
    let n = rel.rsplit('/').next().unwrap_or(rel);
    (n.ends_with(".ndjson") || n.ends_with(".ndjson.gz") || n.ends_with(".jsonl")) && n != "log.ndjson"
}

/// Data files sit at the top of a run folder or in its `error/` and `deleted/` (not in `log/`).
fn is_data_file(rel: &str) -> bool {
    let place = match rel.split_once('/') {
        None => true,
        Some((dir, rest)) => (dir == "error" || dir == "deleted") && !rest.contains('/'),
    };
    place && is_ndjson(rel)
}

fn resolve(path: &Path) -> Result<Input> {
    let loc = Location::from_path(path).map_err(Error::Usage)?;
    let (tree, label) = match &loc {
        Location::Object(_) => (Tree::open(&loc)?, loc.to_string()),
        Location::Local(p) => {
            let meta = std::fs::metadata(p).map_err(|e| Error::Usage(format!("{}: {e}", p.display())))?;
            if meta.is_file() {
                let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let tree = Tree::Local(parent.to_path_buf());
                let label = p.display().to_string();
                return Ok(Input { path: label, kind: "file", tree, files: vec![(name, meta.len())] });
            }
            (Tree::Local(p.clone()), p.display().to_string())
        }
    };
    let listed = tree.list()?;
    let has = |name: &str| listed.iter().any(|(rel, _)| rel == name);
    let kind = if has(crate::record::RUN_FILE) || has(crate::record::MANIFEST_FILE) { "run" } else { "folder" };
    let files: Vec<_> = listed.into_iter().filter(|(rel, _)| is_data_file(rel)).collect();
    if files.is_empty() && kind == "folder" {
        return Err(Error::Usage(format!("{label}: no .ndjson files here")));
    }
    Ok(Input { path: label, kind, tree, files })
}

/// Reads everything and builds the report.
pub fn inspect(opts: &InspectOptions) -> Result<Report> {
    let t0 = std::time::Instant::now();
    if opts.paths.is_empty() {
        return Err(Error::Usage("name at least one run folder, folder or file".into()));
    }
    let inputs: Vec<Input> = opts.paths.iter().map(|p| resolve(p)).collect::<Result<_>>()?;
    let threads =
        if opts.threads == 0 { std::thread::available_parallelism().map_or(2, |n| n.get()) } else { opts.threads };
    let mut reports = Vec::new();
    let mut bytes = 0;
    for input in &inputs {
        // SHA-256 only where there is a record to compare it with: hashing costs as much as parsing.
        let run = input.tree.read(crate::record::RUN_FILE);
        let hash = run.is_some();
        let scanned =
            scan::scan_files(&input.tree, &input.files, threads, opts.max_line_bytes, opts.check_references, hash);
        let mut files = Vec::new();
        let mut problems = Vec::new();
        let mut problems_total = 0;
        let mut outcomes: BTreeMap<(String, String, String), u64> = BTreeMap::new();
        let mut ids = scan::IdSet::default();
        for s in scanned {
            let s = s.map_err(|(rel, e)| Error::io(format!("{}/{rel}", input.tree.label()), e))?;
            bytes += s.summary.bytes;
            problems_total += s.problems_total;
            problems.extend(s.problems);
            for (k, n) in s.outcomes {
                *outcomes.entry(k).or_default() += n;
            }
            ids.extend(s.ids);
            files.push(s.summary);
        }
        let types = summarise(&files);
        let checks = compare(input, run.as_deref(), &files);
        let references = if opts.check_references {
            Some(refs::check(&input.tree, &input.files, &ids, threads, opts.max_line_bytes))
        } else {
            None
        };
        reports.push(InputReport {
            path: input.path.clone(),
            kind: input.kind,
            types,
            files,
            checks,
            outcomes: outcomes
                .into_iter()
                .map(|((severity, code, diagnostics), count)| OutcomeGroup { severity, code, diagnostics, count })
                .collect(),
            references,
            problems,
            problems_total,
        });
    }
    let whole = reports.iter().all(|r| {
        r.problems_total == 0
            && r.checks.iter().all(|c| c.ok)
            && r.files.iter().all(|f| !f.truncated && f.invalid_lines == 0 && f.wrong_type_lines == 0)
            && r.references.as_ref().is_none_or(|x| x.dangling.is_empty())
    });
    Ok(Report { inputs: reports, whole, seconds: t0.elapsed().as_secs_f64(), bytes })
}

fn summarise(files: &[FileSummary]) -> Vec<TypeSummary> {
    let mut by: BTreeMap<String, TypeSummary> = BTreeMap::new();
    let mut add = |name: &str, p: &Part, invalid: u64, wrong: u64| {
        let t = by
            .entry(name.to_string())
            .or_insert_with(|| TypeSummary { resource_type: name.into(), ..Default::default() });
        t.files += 1;
        t.resources += p.resources;
        t.bytes += p.bytes;
        t.invalid_lines += invalid;
        t.wrong_type_lines += wrong;
        if let Some(e) = &p.earliest
            && t.earliest_last_updated.as_ref().is_none_or(|x| e < x)
        {
            t.earliest_last_updated = Some(e.clone());
        }
        if let Some(l) = &p.latest
            && t.latest_last_updated.as_ref().is_none_or(|x| l > x)
        {
            t.latest_last_updated = Some(l.clone());
        }
    };
    for f in files.iter().filter(|f| f.kind == FileRole::Output) {
        if f.resource_type != crate::record::MIXED {
            let whole =
                Part { resources: f.resources, bytes: f.bytes, earliest: f.earliest.clone(), latest: f.latest.clone() };
            add(&f.resource_type, &whole, f.invalid_lines, f.wrong_type_lines);
            continue;
        }
        // Organized output: each type where it belongs; lines that are no resource stay under `*`.
        for (name, p) in &f.parts {
            add(name, p, 0, 0);
        }
        if f.invalid_lines + f.wrong_type_lines > 0 {
            add(crate::record::MIXED, &Part::default(), f.invalid_lines, f.wrong_type_lines);
        }
    }
    by.into_values().collect()
}

/// Expected against found: per file from `run.json`, else per type from `manifest.json`.
fn compare(input: &Input, run: Option<&[u8]>, files: &[FileSummary]) -> Vec<Check> {
    let mut checks = Vec::new();
    let run: Option<RunRecord> = run.and_then(|b| serde_json::from_slice(b).ok());
    if let Some(run) = run {
        for r in &run.files {
            match files.iter().find(|f| f.path == r.path) {
                None => checks.push(Check {
                    what: "missing file".into(),
                    file: r.path.clone(),
                    expected: "present".into(),
                    found: "absent".into(),
                    ok: false,
                }),
                Some(f) => {
                    // `error[]`/`deleted[]` counts are informative (servers copy the failed output's
                    // count there); organized counts may or may not include the block headers.
                    if let Some(c) = r.expected_count.filter(|_| r.kind == crate::record::FileKind::Output) {
                        checks.push(Check {
                            what: "count".into(),
                            file: r.path.clone(),
                            expected: c.to_string(),
                            found: f.resources.to_string(),
                            ok: crate::record::count_agrees(Some(c), f.resources, f.header_lines),
                        });
                    }
                    checks.push(Check {
                        what: "sha256".into(),
                        file: r.path.clone(),
                        expected: r.sha256.clone(),
                        found: f.sha256.clone().unwrap_or_default(),
                        ok: f.sha256.as_deref() == Some(r.sha256.as_str()),
                    });
                }
            }
        }
        for f in files.iter().filter(|f| !run.files.iter().any(|r| r.path == f.path)) {
            checks.push(Check {
                what: "extra file".into(),
                file: f.path.clone(),
                expected: "absent".into(),
                found: "present".into(),
                ok: false,
            });
        }
        return checks;
    }
    let manifest: Option<serde_json::Value> =
        input.tree.read(crate::record::MANIFEST_FILE).and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(m) = manifest {
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        for e in m["output"].as_array().into_iter().flatten() {
            if let (Some(t), Some(c)) = (e["type"].as_str(), e["count"].as_u64()) {
                *expected.entry(t.to_string()).or_default() += c;
            }
        }
        for (t, c) in expected {
            let found: u64 =
                files.iter().filter(|f| f.kind == FileRole::Output && f.resource_type == t).map(|f| f.resources).sum();
            checks.push(Check {
                what: "count".into(),
                file: t.clone(),
                expected: c.to_string(),
                found: found.to_string(),
                ok: c == found,
            });
        }
    }
    checks
}
