//! The report as text for people and as one JSON document for scripts.

use std::io::{self, Write};

use super::explain::{explain, file_of};
use super::{InputReport, Report, RunListing, Status};

pub fn render_json(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, report)?;
    writeln!(out)
}

pub fn render_text(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    for input in &report.inputs {
        match &input.runs {
            Some(runs) => job(input, runs, out)?,
            None => checked(input, out)?,
        }
    }
    if report.nothing_checked() {
        return writeln!(out, "nothing checked: a job folder holds runs; name one of them (…/latest) to check it");
    }
    let mbs = report.bytes as f64 / 1e6 / report.seconds.max(1e-9);
    writeln!(
        out,
        "{}: {:.1} MB read in {:.2} s ({:.0} MB/s)",
        if report.whole { "whole and valid" } else { "NOT whole or not valid" },
        report.bytes as f64 / 1e6,
        report.seconds,
        mbs
    )
}

fn checked(input: &InputReport, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "{} ({})", input.path, input.kind)?;
    if let Some(why) = &input.incomplete {
        writeln!(out, "  incomplete: {why}")?;
    }
    writeln!(
        out,
        "  {:<26} {:>5} {:>10} {:>12} {:>8} {:>9}  {:<24} latest lastUpdated",
        "type", "files", "resources", "bytes", "invalid", "wrongtype", "earliest lastUpdated"
    )?;
    let mut tot = (0u64, 0u64, 0u64, 0u64, 0u64);
    for t in &input.types {
        writeln!(
            out,
            "  {:<26} {:>5} {:>10} {:>12} {:>8} {:>9}  {:<24} {}",
            t.resource_type,
            t.files,
            t.resources,
            t.bytes,
            t.invalid_lines,
            t.wrong_type_lines,
            t.earliest_last_updated.as_deref().unwrap_or("-"),
            t.latest_last_updated.as_deref().unwrap_or("-")
        )?;
        tot = (
            tot.0 + t.files,
            tot.1 + t.resources,
            tot.2 + t.bytes,
            tot.3 + t.invalid_lines,
            tot.4 + t.wrong_type_lines,
        );
    }
    writeln!(out, "  {:<26} {:>5} {:>10} {:>12} {:>8} {:>9}", "total", tot.0, tot.1, tot.2, tot.3, tot.4)?;
    for f in input.files.iter().filter(|f| f.truncated) {
        writeln!(out, "  truncated: {} ({})", f.path, f.cut.as_deref().unwrap_or("cut short"))?;
    }
    if !input.checks.is_empty() {
        let bad: Vec<_> = input.checks.iter().filter(|c| !c.ok).collect();
        if bad.is_empty() {
            writeln!(out, "  against the record: all {} checks pass (counts, sha256, files)", input.checks.len())?;
        } else {
            writeln!(out, "  against the record: {} of {} checks fail", bad.len(), input.checks.len())?;
            for c in bad {
                writeln!(out, "    {}", explain(c, file_of(input, c)))?;
            }
        }
    }
    if !input.outcomes.is_empty() {
        writeln!(out, "  server errors (error/ OperationOutcomes):")?;
        for o in &input.outcomes {
            writeln!(out, "    {:>6} × {} {}: {}", o.count, o.severity, o.code, o.diagnostics)?;
        }
    }
    if let Some(d) = &input.deleted {
        let types: Vec<String> = d.types.iter().map(|t| format!("{} {}", t.resource_type, t.entries)).collect();
        writeln!(
            out,
            "  deleted on the server (deleted/, not data): {} entries in {} Bundles{}{}",
            d.entries,
            d.bundles,
            if types.is_empty() { "" } else { ": " },
            types.join(", ")
        )?;
    }
    if let Some(r) = &input.references {
        let s = &r.skipped;
        let skipped = if s.total() == 0 {
            String::new()
        } else {
            let kinds =
                [(s.urn, "urn:"), (s.contained, "#contained"), (s.absolute, "absolute URL"), (s.other, "other")];
            let kinds: Vec<String> = kinds.iter().filter(|(n, _)| *n > 0).map(|(n, k)| format!("{n} {k}")).collect();
            format!("; {} skipped, not Type/id ({})", s.total(), kinds.join(", "))
        };
        writeln!(out, "  references: {} checked against {} resources{skipped}", r.checked, r.resources_indexed)?;
        for d in &r.dangling {
            writeln!(out, "    dangling {}.{}: {} (e.g. {})", d.source_type, d.field, d.count, d.examples.join(", "))?;
        }
        for n in &r.target_not_exported {
            writeln!(
                out,
                "    {}.{} → {} (type not in this export): {}",
                n.source_type, n.field, n.target_type, n.count
            )?;
        }
    }
    if input.problems_total > 0 {
        writeln!(out, "  {} problem lines; list them with --invalid", input.problems_total)?;
    }
    Ok(())
}

/// A job folder: its runs, and which one `latest` names.
fn job(input: &InputReport, runs: &[RunListing], out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "{} (job folder: {} run{})", input.path, runs.len(), if runs.len() == 1 { "" } else { "s" })?;
    if !runs.is_empty() {
        writeln!(out, "  {:<24} {:<12} {:>5} {:>10}  transactionTime", "run", "status", "files", "resources")?;
    }
    let n = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for r in runs {
        let status = match r.status {
            Status::Complete => "complete",
            Status::Incomplete => "incomplete",
            Status::Interrupted => "interrupted",
        };
        let note = match (r.latest, r.status) {
            (true, _) => "  ← latest",
            (false, Status::Interrupted) => "  (so far; rerun the job to finish it)",
            _ => "",
        };
        writeln!(
            out,
            "  {:<24} {:<12} {:>5} {:>10}  {}{note}",
            r.id,
            status,
            n(r.files),
            n(r.resources),
            r.transaction_time.as_deref().unwrap_or("-")
        )?;
    }
    let sep = if input.path.ends_with('/') { "" } else { "/" };
    if runs.iter().any(|r| r.latest) {
        writeln!(
            out,
            "  check the latest complete run: {} inspect {}{sep}latest",
            crate::invocation::program(),
            input.path
        )
    } else if runs.is_empty() {
        writeln!(out, "  no runs yet")
    } else {
        writeln!(out, "  no complete run yet (`latest` names the newest complete run); check a run by its folder")
    }
}

/// `--invalid N`: the first problems with file:line and the reason, then every failed check and
/// incomplete run, each explained.
pub fn render_problems(report: &Report, n: usize, out: &mut dyn Write) -> io::Result<()> {
    for p in report.inputs.iter().flat_map(|i| &i.problems).take(n) {
        writeln!(out, "{}:{}: {}", p.file, p.line, p.reason)?;
    }
    for input in &report.inputs {
        if let Some(why) = &input.incomplete {
            writeln!(out, "{}: incomplete: {why}", input.path)?;
        }
        for c in input.checks.iter().filter(|c| !c.ok) {
            writeln!(out, "{}", explain(c, file_of(input, c)))?;
        }
    }
    Ok(())
}
