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
//! Never "whole and valid" unless it is: a run folder without `run.json` (interrupted, or left
//! behind when its export ended) or whose `run.json` says incomplete is reported incomplete with what
//! to do; a gzip stream that breaks off is a per-file problem like a cut plain file; one file given
//! alone is held only against its own `run.json` entry; a job folder (`exports/<job>`) lists its runs
//! and is not checked (exit 2 when nothing else was named). `deleted/` Bundles are counted per type of
//! the deleted resources, apart from the data.
//!
//! `--json` field names (stable): `inputs[]` of `{path, kind ("run"|"folder"|"file"|"job"), incomplete
//! (null | why and what to do), types[{type, files, resources, bytes, invalid_lines, wrong_type_lines,
//! earliest_last_updated, latest_last_updated}], files[{path, type, resources, bytes, sha256 (null
//! without run.json), invalid_lines, wrong_type_lines, truncated}], checks[{what, file, expected, found,
//! ok}], outcomes[{severity, code, diagnostics, count}], deleted: null | {files, bundles, entries,
//! types[{type, entries}]}, references: null | {resources_indexed, checked, skipped{urn, contained,
//! absolute, other}, dangling[{source_type, field, count, examples[]}], target_not_exported[{source_type,
//! field, target_type, count}]}, problems[{file, line, reason}]}`, and for a job folder `runs[{id, status
//! ("complete"|"incomplete"|"interrupted"), latest, transactionTime, files, resources}]`; then `whole`
//! (bool), `seconds`, `bytes`.
//!
//! Memory: files are read in 1 MiB blocks through the shared bounded line splitter. Reference checks
//! keep one 64-bit hash per resource (`Type/id`) in a hash set, about 16 bytes a resource with the
//! table's slack: ~160 MB for ten million resources; references are checked in a second pass, so they
//! are never held.

mod command;
mod compare;
mod deleted;
mod explain;
mod head;
mod input;
mod jobdir;
mod refs;
mod render;
mod scan;
mod standing;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::record::RunRecord;
use input::{Input, JOB, RUN};

pub use command::run_command;
pub use deleted::DeletedReport;
pub use head::print_head;
pub use jobdir::RunListing;
pub use refs::{RefReport, Skipped};
pub use render::{render_json, render_problems, render_text};
pub use standing::Status;

#[derive(Debug, Clone)]
pub struct InspectOptions {
    pub paths: Vec<PathBuf>,
    pub check_references: bool,
    /// With `head`: the type to print.
    pub type_filter: Option<String>,
    pub head: Option<usize>,
    /// With `head`: indent each resource rather than print its line as it is.
    pub pretty: bool,
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
            pretty: false,
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
    /// 0 when every input is whole and valid, 1 otherwise; 2 when nothing was checked (job folders
    /// only: their runs are listed).
    pub fn exit_code(&self) -> u8 {
        if self.nothing_checked() {
            crate::error::exit::USAGE
        } else if self.whole {
            0
        } else {
            1
        }
    }

    /// Every input was a job folder.
    pub fn nothing_checked(&self) -> bool {
        self.inputs.iter().all(|i| i.kind == JOB)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct InputReport {
    pub path: String,
    pub kind: &'static str,
    /// A run folder that does not hold a finished run: why, and what to do.
    pub incomplete: Option<String>,
    pub types: Vec<TypeSummary>,
    pub files: Vec<FileSummary>,
    pub checks: Vec<Check>,
    pub outcomes: Vec<OutcomeGroup>,
    pub deleted: Option<DeletedReport>,
    pub references: Option<RefReport>,
    pub problems: Vec<scan::Problem>,
    /// A job folder's runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<Vec<RunListing>>,
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

#[derive(Debug, Clone, Default, Serialize)]
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
    /// Why `truncated`: a last line cut short, or a gzip stream that breaks off.
    #[serde(skip)]
    pub cut: Option<String>,
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
    /// A `deleted/` file: its Bundles' entries by the type of the deleted resource.
    #[serde(skip)]
    pub deleted: BTreeMap<String, u64>,
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

/// Reads everything and builds the report.
pub fn inspect(opts: &InspectOptions) -> Result<Report> {
    let t0 = std::time::Instant::now();
    if opts.paths.is_empty() {
        return Err(Error::Usage("name at least one run folder, folder or file".into()));
    }
    let inputs: Vec<Input> = opts.paths.iter().map(|p| input::resolve(p)).collect::<Result<_>>()?;
    let threads =
        if opts.threads == 0 { std::thread::available_parallelism().map_or(2, |n| n.get()) } else { opts.threads };
    let mut reports = Vec::new();
    let mut bytes = 0;
    for input in &inputs {
        if input.kind == JOB {
            let runs = Some(jobdir::list(&input.tree));
            reports.push(InputReport { path: input.path.clone(), kind: JOB, runs, ..Default::default() });
            continue;
        }
        let (report, read) = inspect_one(input, opts, threads)?;
        bytes += read;
        reports.push(report);
    }
    let checked = || reports.iter().filter(|r| r.kind != JOB);
    let whole = checked().next().is_some()
        && checked().all(|r| {
            r.incomplete.is_none()
                && r.problems_total == 0
                && r.checks.iter().all(|c| c.ok)
                && r.files.iter().all(|f| !f.truncated && f.invalid_lines == 0 && f.wrong_type_lines == 0)
                && r.references.as_ref().is_none_or(|x| x.dangling.is_empty())
        });
    Ok(Report { inputs: reports, whole, seconds: t0.elapsed().as_secs_f64(), bytes })
}

/// One run folder, folder or file: read, counted, compared with its record. Returns the bytes read.
fn inspect_one(input: &Input, opts: &InspectOptions, threads: usize) -> Result<(InputReport, u64)> {
    let run_json = input.tree.read(crate::record::RUN_FILE);
    let record: Option<RunRecord> = run_json.as_deref().and_then(|b| serde_json::from_slice(b).ok());
    let mut incomplete = None;
    if input.kind == RUN {
        incomplete = match (&run_json, &record) {
            (Some(_), None) => {
                Some("run.json cannot be read as a run record, so nothing says this run is whole".into())
            }
            _ => {
                let place = input::run_place(&input.tree);
                let view = place.as_ref().map(|(job, _)| standing::JobView::of(job));
                let id = place.map(|(_, id)| id).unwrap_or_default();
                standing::assess(record.as_ref(), view.as_ref(), &id, input.partial.len()).1
            }
        };
    }
    // SHA-256 only where there is a record to compare it with: hashing costs as much as parsing.
    let hash = record.is_some();
    let scanned =
        scan::scan_files(&input.tree, &input.files, threads, opts.max_line_bytes, opts.check_references, hash);
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let (mut problems_total, mut bytes) = (0, 0);
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
    let references =
        opts.check_references.then(|| refs::check(&input.tree, &input.files, &ids, threads, opts.max_line_bytes));
    let report = InputReport {
        path: input.path.clone(),
        kind: input.kind,
        incomplete,
        types: summarise(&files),
        checks: compare::compare(input, record.as_ref(), &files),
        deleted: deleted::report(&files),
        files,
        outcomes: outcomes
            .into_iter()
            .map(|((severity, code, diagnostics), count)| OutcomeGroup { severity, code, diagnostics, count })
            .collect(),
        references,
        problems,
        problems_total,
        runs: None,
    };
    Ok((report, bytes))
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
