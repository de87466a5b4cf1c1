//! Fitting what the commands print on stdout to a terminal's width: the end-of-run summary and the
//! table of jobs. Off a terminal nothing is fitted (scripts and logs read the same text as ever), so
//! the width is an `Option`: `None` means "as wide as it takes". Pure but for [`stdout_width`].

use std::io::IsTerminal;

use crate::progress::units::{cut, width};

/// The columns of the terminal stdout is, or `None` when stdout is not a terminal.
pub fn stdout_width() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    console::Term::stdout().size_checked().map(|(_, cols)| usize::from(cols))
}

/// How many columns a line may take: one less than the terminal's (a line that ends in the last
/// column makes some terminals wrap), never under 20; unlimited off a terminal.
pub fn room(columns: Option<usize>) -> usize {
    columns.map_or(usize::MAX, |c| c.saturating_sub(1).max(20))
}

/// `head` then `tail` on one line when that fits in `room`, else `tail` on a line of its own below
/// (indented by two more than `head`), so a long path stays whole and can be copied (a path wider
/// than the terminal is still never cut).
pub fn tail_line(head: &str, tail: &str, room: usize) -> String {
    if width(head) + width(tail) <= room {
        return format!("{head}{tail}\n");
    }
    let indent = head.len() - head.trim_start().len() + 2;
    format!("{}\n{:indent$}{tail}\n", head.trim_end(), "")
}

/// A `next:` line: the command, then what it does after `gap`, or below it (indented) when the two
/// do not fit `room` together; the command itself is never cut.
pub fn next_line(command: &str, gap: &str, what: &str, room: usize) -> String {
    let line = format!("  {command}{gap}{what}");
    if width(&line) <= room { format!("{line}\n") } else { format!("  {command}\n      {what}\n") }
}

/// One line of the table of jobs: the job, its exit code, and what happened in a long and a short
/// form (the short one for narrow terminals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub name: String,
    pub code: String,
    pub long: String,
    pub short: String,
}

/// The table of jobs. When every long row fits, the names take 24 columns as they always have;
/// otherwise the name column is as wide as the longest name (at most 24), and each row says its long
/// form if that fits, else its short form, else puts what happened on a line of its own below (cut
/// with `…` if even that is too wide).
pub fn jobs_table(rows: &[JobRow], columns: Option<usize>) -> String {
    let room = room(columns);
    let line = |name_w: usize, r: &JobRow, what: &str| format!("  {:<name_w$} {:>3}  {what}", r.name, r.code);
    let fits = |s: &str| width(s) <= room;
    let mut t = String::new();
    if rows.iter().all(|r| fits(&line(24, r, &r.long))) {
        for r in rows {
            t.push_str(&line(24, r, &r.long));
            t.push('\n');
        }
        return t;
    }
    let name_w = rows.iter().map(|r| width(&r.name)).max().unwrap_or(1).clamp(1, 24);
    for r in rows {
        let r = JobRow { name: cut(&r.name, room.saturating_sub(8)), ..r.clone() };
        let one_line = [&r.long, &r.short].into_iter().map(|what| line(name_w, &r, what)).find(|l| fits(l));
        match one_line {
            Some(l) => t.push_str(&l),
            None => {
                let below = room.saturating_sub(6);
                let what = if width(&r.long) <= below { &r.long } else { &r.short };
                t.push_str(&format!("{}\n      {}", line(name_w, &r, "").trim_end(), cut(what, below)));
            }
        }
        t.push('\n');
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_tail_goes_below() {
        assert_eq!(tail_line("  files in ", "exports/t", 40), "  files in exports/t\n");
        assert_eq!(
            tail_line("  2.0s; files in ", "exports/a-long-job/20261128", 30),
            "  2.0s; files in\n    exports/a-long-job/20261128\n"
        );
        assert_eq!(room(None), usize::MAX);
        assert_eq!(next_line("oneup-bulk sandbox", "   ", "serve it", usize::MAX), "  oneup-bulk sandbox   serve it\n");
        assert_eq!(next_line("oneup-bulk sandbox", "   ", "serve it", 25), "  oneup-bulk sandbox\n      serve it\n");
        assert_eq!((room(Some(60)), room(Some(5))), (59, 20));
    }

    #[test]
    fn the_jobs_table_narrows_names_then_says_less() {
        let row = |name: &str, code: &str, long: &str, short: &str| JobRow {
            name: name.into(),
            code: code.into(),
            long: long.into(),
            short: short.into(),
        };
        let rows = [
            row(
                "provider",
                "5",
                "complete, with errors reported by the server: 77 resources in 3 files",
                "complete, server errors: 77 resources",
            ),
            row(
                "payer-to-payer-nightly-members",
                "75",
                "status: gave up after 6 attempts: HTTP 503 Service Unavailable",
                "status: gave up after 6 attempts: HTTP 503 Service Unavailable",
            ),
        ];
        assert_eq!(
            jobs_table(&rows, None),
            "  provider                   5  complete, with errors reported by the server: 77 resources in 3 files
  payer-to-payer-nightly-members  75  status: gave up after 6 attempts: HTTP 503 Service Unavailable
"
        );
        // Short names: the column narrows, and a row says its short form when the long one is too wide.
        let short_names = [JobRow { name: "p2p".into(), ..rows[1].clone() }, rows[0].clone()];
        assert_eq!(
            jobs_table(&short_names, Some(80)),
            "  p2p       75  status: gave up after 6 attempts: HTTP 503 Service Unavailable
  provider   5  complete, server errors: 77 resources
"
        );
        // A long name at 60 columns: what happened goes below, cut to fit.
        assert_eq!(
            jobs_table(&rows, Some(60)),
            "  provider                   5
      complete, server errors: 77 resources
  payer-to-payer-nightly-members  75
      status: gave up after 6 attempts: HTTP 503 Service U…
"
        );
    }
}
