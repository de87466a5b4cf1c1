//! The report as text for people and as one JSON document for scripts.

use std::io::{self, Write};

use super::Report;

pub fn render_json(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, report)?;
    writeln!(out)
}

pub fn render_text(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    for input in &report.inputs {
        writeln!(out, "{} ({})", input.path, input.kind)?;
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
            writeln!(out, "  truncated: {} (the last line is cut short)", f.path)?;
        }
        if !input.checks.is_empty() {
            let bad: Vec<_> = input.checks.iter().filter(|c| !c.ok).collect();
            if bad.is_empty() {
                writeln!(out, "  against the record: all {} checks pass (counts, sha256, files)", input.checks.len())?;
            } else {
                writeln!(out, "  against the record: {} of {} checks fail", bad.len(), input.checks.len())?;
                for c in bad {
                    writeln!(out, "    {} {}: expected {}, found {}", c.what, c.file, c.expected, c.found)?;
                }
            }
        }
        if !input.outcomes.is_empty() {
            writeln!(out, "  server errors (error/ OperationOutcomes):")?;
            for o in &input.outcomes {
                writeln!(out, "    {:>6} × {} {}: {}", o.count, o.severity, o.code, o.diagnostics)?;
            }
        }
        if let Some(r) = &input.references {
            writeln!(out, "  references: {} checked against {} resources", r.checked, r.resources_indexed)?;
            for d in &r.dangling {
                writeln!(
                    out,
                    "    dangling {}.{}: {} (e.g. {})",
                    d.source_type,
                    d.field,
                    d.count,
                    d.examples.join(", ")
                )?;
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

/// `--invalid N`: the first problems with file:line and the reason.
pub fn render_problems(report: &Report, n: usize, out: &mut dyn Write) -> io::Result<()> {
    for p in report.inputs.iter().flat_map(|i| &i.problems).take(n) {
        writeln!(out, "{}:{}: {}", p.file, p.line, p.reason)?;
    }
    Ok(())
}
