//! The end-of-run summary on stdout, as text for people or one JSON document for scripts.
//!
//! Counting rules (the bars count the same way): the rows are the data files (the manifest's
//! `output`), one per resource type, and `total` adds those rows up exactly. The server's `error[]`
//! files and `deleted[]` files are rows of their own below the total, never folded into it. Sizes
//! read both ways: exact bytes with thousands separators and the bars' binary units.
//!
//! On a terminal the text fits its width ([`text_at`]; the helpers are in `fit.rs`); off one it is
//! always the same, as wide as it takes.
//!
//! `run.json`'s `totals` count the same way (`files`/`resources`/`bytes` are the data alone; errors and
//! deleted files have their own fields); the JSON summary carries them as `run_totals`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::app::RunOutcome;
use crate::error::exit;
use crate::progress::units::{bytes, cut, thousands, width};
use crate::record::{FileKind, RunRecord};

use super::fit;

/// Files, lines and bytes of one group of files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub files: u64,
    pub lines: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, lines: u64, bytes: u64) {
        self.files += 1;
        self.lines += lines;
        self.bytes += bytes;
    }
}

/// A run's files, counted by the rules above.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub per_type: BTreeMap<String, Count>,
    pub data: Count,
    pub errors: Count,
    pub deleted: Count,
}

pub fn tally(r: &RunRecord) -> Tally {
    let mut t = Tally::default();
    for f in &r.files {
        match f.kind {
            FileKind::Output => {
                t.per_type.entry(f.resource_type.clone()).or_default().add(f.lines, f.bytes);
                t.data.add(f.lines, f.bytes);
            }
            FileKind::Error => t.errors.add(f.lines, f.bytes),
            FileKind::Deleted => t.deleted.add(f.lines, f.bytes),
        }
    }
    t
}

/// What the run's exit code means, in words.
pub fn outcome_words(code: u8) -> &'static str {
    match code {
        exit::OK => "complete",
        exit::SERVER_ERRORS => "complete, with errors reported by the server",
        _ => "downloaded, but not complete (see the problems below)",
    }
}

/// [`outcome_words`] for a narrow terminal.
pub fn outcome_short(code: u8) -> &'static str {
    match code {
        exit::OK => "complete",
        exit::SERVER_ERRORS => "complete, server errors",
        _ => "not complete",
    }
}

fn seconds(s: f64) -> String {
    if s < 60.0 { format!("{s:.1}s") } else { crate::progress::units::clock(std::time::Duration::from_secs_f64(s)) }
}

/// The table's number columns: heading and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Files,
    Resources,
    Bytes,
    Size,
}

impl Col {
    fn head_and_width(self) -> (&'static str, usize) {
        match self {
            Col::Files => ("files", 6),
            Col::Resources => ("resources", 11),
            Col::Bytes => ("bytes", 13),
            Col::Size => ("size", 10),
        }
    }

    fn value(self, c: &Count) -> String {
        match self {
            Col::Files => thousands(c.files),
            Col::Resources => thousands(c.lines),
            Col::Bytes => thousands(c.bytes),
            Col::Size => bytes(c.bytes),
        }
    }
}

/// The widest table that fits `room`: every column; without `size`; `size` instead of the exact
/// bytes; then with the label column narrowed to the longest label, and cut below that.
fn layout(room: usize, labels: &[&str]) -> (usize, &'static [Col]) {
    use Col::*;
    const CHOICES: [&[Col]; 3] =
        [&[Files, Resources, Bytes, Size], &[Files, Resources, Bytes], &[Files, Resources, Size]];
    let need = |label: usize, cols: &[Col]| 2 + label + cols.iter().map(|c| 1 + c.head_and_width().1).sum::<usize>();
    if let Some(cols) = CHOICES.iter().find(|cols| need(24, cols) <= room) {
        return (24, cols);
    }
    let narrowest = CHOICES[2];
    let longest = labels.iter().map(|l| width(l)).max().unwrap_or(5).clamp(5, 24);
    let label = longest.min(room.saturating_sub(need(0, narrowest))).max(5);
    (label, narrowest)
}

/// The text summary of one job, as wide as it takes (stdout is not a terminal): a row per resource
/// type, the total, the server's error files and the deleted files apart, problems, time and folder.
pub fn text(name: &str, out: &RunOutcome) -> String {
    text_at(name, out, None)
}

/// [`text`] fitted to a terminal of `columns` (`None`: not a terminal, the text as it always was).
/// Lines that would be wider lose the `size` column, then the exact bytes (keeping `size`), and put
/// the transaction time and long paths on lines of their own; a long outcome is said shorter.
pub fn text_at(name: &str, out: &RunOutcome, columns: Option<usize>) -> String {
    let room = fit::room(columns);
    let r = &out.record;
    let t = tally(r);
    let mut s = String::new();
    let head = format!("{name}: {}", outcome_words(out.exit_code));
    let tt = format!("transactionTime {}", r.transaction_time);
    if width(&head) + width(&tt) + 3 <= room {
        let _ = writeln!(s, "{head} ({tt})");
    } else if width(&head) <= room {
        let _ = writeln!(s, "{head}\n  {tt}");
    } else {
        let _ = writeln!(s, "{name}: {}\n  {tt}", outcome_short(out.exit_code));
    }
    let mut rows: Vec<(&str, &Count)> = t.per_type.iter().map(|(ty, c)| (ty.as_str(), c)).collect();
    rows.push(("total", &t.data));
    if t.deleted.files > 0 {
        rows.push(("deleted/ (removed ids)", &t.deleted));
    }
    if t.errors.files > 0 {
        rows.push(("error/ (server errors)", &t.errors));
    }
    let labels: Vec<&str> = rows.iter().map(|(l, _)| *l).collect();
    let (label_w, cols) = layout(room, &labels);
    let line = |label: &str, cells: Vec<(String, usize)>| {
        let mut l = format!("  {:<label_w$}", cut(label, label_w));
        for (v, w) in cells {
            let _ = write!(l, " {v:>w$}");
        }
        l
    };
    let heads = cols.iter().map(|c| c.head_and_width()).map(|(h, w)| (h.to_string(), w)).collect();
    let _ = writeln!(s, "{}", line("type", heads));
    for (label, c) in &rows {
        let _ = writeln!(s, "{}", line(label, cols.iter().map(|col| (col.value(c), col.head_and_width().1)).collect()));
    }
    if t.errors.files > 0 {
        let n = t.errors.lines;
        let head = format!("  the server reported {} error{}: see ", thousands(n), if n == 1 { "" } else { "s" });
        s.push_str(&fit::tail_line(&head, &out.run_dir.join("error").display().to_string(), room));
    }
    for line in r.member_match.iter().flat_map(|m| m.summary_lines()) {
        let _ = writeln!(s, "{line}");
    }
    for w in &r.warnings {
        let _ = writeln!(s, "  warning: {}", w.message);
    }
    for p in r.problems.iter().take(5) {
        let loc = match (&p.file, p.line) {
            (Some(f), Some(l)) => format!("{f}:{l}: "),
            (Some(f), None) => format!("{f}: "),
            _ => String::new(),
        };
        let _ = writeln!(s, "  problem: {loc}{}", p.message);
    }
    if r.problems.len() > 5 {
        let _ = writeln!(s, "  … and {} more problems in run.json", r.problems.len() - 5);
    }
    let head = format!("  {}; files in ", seconds(r.totals.seconds));
    s.push_str(&fit::tail_line(&head, &out.run_dir.display().to_string(), room));
    s
}

fn count_json(c: &Count, lines: &str) -> Value {
    json!({"files": c.files, lines: c.lines, "bytes": c.bytes})
}

/// One job's entry in the JSON summary, for a finished run.
pub fn job_json(name: &str, file: Option<&str>, out: &RunOutcome) -> Value {
    let r = &out.record;
    let t = tally(r);
    let types: Vec<Value> = t
        .per_type
        .iter()
        .map(|(ty, c)| json!({"type": ty, "files": c.files, "resources": c.lines, "bytes": c.bytes}))
        .collect();
    json!({
        "job": name,
        "file": file,
        "exit_code": out.exit_code,
        "outcome": outcome_words(out.exit_code),
        "transactionTime": r.transaction_time,
        "run_dir": out.run_dir.display().to_string(),
        "types": types,
        "data": count_json(&t.data, "resources"),
        "errors": count_json(&t.errors, "outcomes"),
        "deleted": count_json(&t.deleted, "entries"),
        "run_totals": r.totals,
        "problems": r.problems,
        "seconds": r.totals.seconds,
    })
}

/// One job's entry in the JSON summary, for a job that did not finish.
pub fn unfinished_json(name: &str, file: Option<&str>, code: Option<u8>, outcome: &str, error: Option<&str>) -> Value {
    json!({"job": name, "file": file, "exit_code": code, "outcome": outcome, "error": error})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FileRecord, JobInfo, Totals};

    fn rec(kind: FileKind, ty: &str, lines: u64, bytes: u64) -> FileRecord {
        FileRecord {
            kind,
            resource_type: ty.into(),
            url: String::new(),
            path: format!("{ty}.ndjson"),
            expected_count: None,
            lines,
            bytes,
            sha256: String::new(),
            invalid_lines: 0,
            wrong_type_lines: 0,
            types: Default::default(),
            header_lines: 0,
            continues_in: None,
        }
    }

    fn outcome(files: Vec<FileRecord>, code: u8) -> RunOutcome {
        RunOutcome {
            run_dir: "exports/sandbox/20261128T170649.252Z".into(),
            exit_code: code,
            record: RunRecord {
                tool: String::new(),
                job: JobInfo {
                    name: "sandbox".into(),
                    file: None,
                    access: "bulk-data".into(),
                    fhir_base: String::new(),
                },
                request: String::new(),
                status_url: String::new(),
                transaction_time: "2026-11-28T17:06:49.252Z".into(),
                run_id: String::new(),
                started: String::new(),
                manifest_received: String::new(),
                finished: String::new(),
                since: None,
                files,
                totals: Totals { seconds: 2.04, ..Totals::default() },
                problems: Vec::new(),
                warnings: Vec::new(),
                member_match: None,
                complete: true,
            },
        }
    }

    #[test]
    fn the_total_adds_up_and_error_files_are_a_row_of_their_own() {
        let out = outcome(
            vec![
                rec(FileKind::Output, "Patient", 10, 5138),
                rec(FileKind::Output, "ExplanationOfBenefit", 45, 57519),
                rec(FileKind::Output, "Condition", 22, 14306),
                rec(FileKind::Error, "OperationOutcome", 1, 217),
            ],
            exit::SERVER_ERRORS,
        );
        assert_eq!(
            text("sandbox", &out),
            "\
sandbox: complete, with errors reported by the server (transactionTime 2026-11-28T17:06:49.252Z)
  type                      files   resources         bytes       size
  Condition                     1          22        14,306   14.0 KiB
  ExplanationOfBenefit          1          45        57,519   56.2 KiB
  Patient                       1          10         5,138    5.0 KiB
  total                         3          77        76,963   75.2 KiB
  error/ (server errors)        1           1           217      217 B
  the server reported 1 error: see exports/sandbox/20261128T170649.252Z/error
  2.0s; files in exports/sandbox/20261128T170649.252Z
"
        );
        let v = job_json("sandbox", Some("jobs/sandbox.yaml"), &out);
        assert_eq!(v["data"], json!({"files": 3, "resources": 77, "bytes": 76963}));
        assert_eq!(v["errors"], json!({"files": 1, "outcomes": 1, "bytes": 217}));
        assert_eq!(v["types"][0], json!({"type": "Condition", "files": 1, "resources": 22, "bytes": 14306}));
        assert_eq!(v["exit_code"], 5);
    }
}
