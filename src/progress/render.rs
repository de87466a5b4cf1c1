//! The text of one job's lines, as a pure function of its [`JobView`], the terminal width and the
//! instant. Every line fits the width: each line is a list of parts with priorities, and the least
//! important parts are dropped (then the flexible text shortened) until it fits, so nothing wraps at
//! 60 columns. Colour, when on, only wraps parts; widths are counted on the plain text.

use std::time::Instant;

use super::units::{self, cut, width};
use super::view::{Counters, FileView, JobView, Phase};

/// File lines shown per job; more files in flight are summed up on one line.
pub const MAX_FILE_LINES: usize = 8;
const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// How lines are laid out on this terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Columns available (one less than the terminal's, so the cursor never wraps).
    pub width: usize,
    /// Job names are padded (or cut) to this.
    pub label_width: usize,
    /// With several jobs, file lines carry the job's name too.
    pub labelled_files: bool,
    pub color: bool,
}

impl Layout {
    /// `columns` of the terminal; `names` of every job the display will show.
    pub fn new(columns: usize, names: &[String], color: bool) -> Layout {
        let width = columns.saturating_sub(1).max(20);
        let cap = if width >= 100 {
            24
        } else if width >= 72 {
            16
        } else {
            10
        };
        let longest = names.iter().map(|n| width_of(n)).max().unwrap_or(0);
        Layout { width, label_width: longest.clamp(1, cap), labelled_files: names.len() > 1, color }
    }

    fn wide(&self) -> bool {
        self.width >= 100
    }

    fn narrow(&self) -> bool {
        self.width < 72
    }

    fn sep(&self) -> &'static str {
        if self.wide() { "  " } else { " " }
    }

    fn label(&self, name: &str) -> String {
        format!("{:<w$}", cut(name, self.label_width), w = self.label_width)
    }
}

fn width_of(s: &str) -> usize {
    width(s)
}

/// One part of a line.
#[derive(Debug, Clone)]
struct Part {
    text: String,
    /// 0: always kept; higher numbers are dropped first.
    prio: u8,
    kind: Kind,
    style: Option<&'static str>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Fixed,
    /// Text that may be cut down to `min` characters.
    Shrink {
        min: usize,
    },
    /// A bar of `min..=max` columns, filled to `frac`.
    Bar {
        frac: f64,
        min: usize,
        max: usize,
    },
}

fn fixed(text: impl Into<String>, prio: u8) -> Part {
    Part { text: text.into(), prio, kind: Kind::Fixed, style: None }
}

fn shrink(text: impl Into<String>, prio: u8, min: usize) -> Part {
    Part { text: text.into(), prio, kind: Kind::Shrink { min }, style: None }
}

fn bar(frac: f64, prio: u8, min: usize, max: usize) -> Part {
    Part { text: String::new(), prio, kind: Kind::Bar { frac: frac.clamp(0.0, 1.0), min, max }, style: None }
}

impl Part {
    fn styled(mut self, s: &'static str) -> Part {
        self.style = Some(s);
        self
    }

    fn min_width(&self) -> usize {
        match self.kind {
            Kind::Fixed => width(&self.text),
            Kind::Shrink { min } => width(&self.text).min(min),
            Kind::Bar { min, .. } => min,
        }
    }
}

const BOLD: &str = "1";
const YELLOW: &str = "33";
const RED: &str = "31";

/// Lays out parts in `layout.width` columns.
fn fit(mut parts: Vec<Part>, layout: &Layout) -> String {
    let sep = layout.sep();
    let need = |ps: &[Part]| ps.iter().map(Part::min_width).sum::<usize>() + width(sep) * ps.len().saturating_sub(1);
    while need(&parts) > layout.width {
        let Some((i, _)) = parts.iter().enumerate().filter(|(_, p)| p.prio > 0).max_by_key(|(i, p)| (p.prio, *i))
        else {
            break;
        };
        parts.remove(i);
    }
    // Room left after fixed text and minimal bars: flexible text first, then the bars grow.
    let mut room = layout.width.saturating_sub(need(&parts));
    for p in parts.iter_mut() {
        if let Kind::Shrink { min } = p.kind {
            let full = width(&p.text);
            let give = full.min(min + room);
            room -= give.saturating_sub(min.min(full));
            p.text = cut(&p.text, give);
        }
    }
    for p in parts.iter_mut() {
        if let Kind::Bar { frac, min, max } = p.kind {
            let w = (min + room).min(max);
            room -= w - min;
            p.text = draw_bar(frac, w);
        }
    }
    // Whatever still overflows (only must-keep parts left) is cut from the end.
    let mut left = layout.width;
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        let s = if i == 0 { "" } else { sep };
        if left <= width(s) {
            break;
        }
        out.push_str(s);
        left -= width(s);
        let text = cut(&p.text, left);
        left -= width(&text);
        match (layout.color, p.style) {
            (true, Some(code)) => out.push_str(&format!("\x1b[{code}m{text}\x1b[0m")),
            _ => out.push_str(&text),
        }
    }
    out
}

/// `[=====>    ]`, `w` columns wide.
pub fn draw_bar(frac: f64, w: usize) -> String {
    let inner = w.saturating_sub(2);
    let full = ((frac.clamp(0.0, 1.0) * inner as f64).floor() as usize).min(inner);
    let mut s = String::with_capacity(w);
    s.push('[');
    s.push_str(&"=".repeat(full));
    if full < inner {
        if frac > 0.0 {
            s.push('>');
            s.push_str(&" ".repeat(inner - full - 1));
        } else {
            s.push_str(&" ".repeat(inner - full));
        }
    }
    s.push(']');
    s
}

/// Every line of one job: its header, then a line per file in flight.
pub fn job_lines(v: &JobView, layout: &Layout, now: Instant) -> Vec<String> {
    let mut lines = vec![header(v, layout, now)];
    let shown = v.active.values().take(MAX_FILE_LINES);
    lines.extend(shown.map(|f| file_line(v, f, layout)));
    if v.active.len() > MAX_FILE_LINES {
        let mut parts = indent(v, layout);
        parts.push(fixed(format!("… and {} more files in flight", v.active.len() - MAX_FILE_LINES), 0));
        lines.push(fit(parts, layout));
    }
    lines
}

fn spinner(v: &JobView, now: Instant) -> char {
    SPINNER[(now.saturating_duration_since(v.started).as_millis() / 100) as usize % SPINNER.len()]
}

fn header(v: &JobView, layout: &Layout, now: Instant) -> String {
    let elapsed = units::clock(now.saturating_duration_since(v.started));
    let mut parts = vec![fixed(layout.label(&v.job), 0).styled(BOLD)];
    let plain = |parts: &mut Vec<Part>, text: &str| {
        parts.insert(0, fixed(spinner(v, now).to_string(), 0));
        parts.push(fixed(text, 0));
        parts.push(fixed(elapsed.clone(), 2));
    };
    match &v.phase {
        Phase::Starting => plain(&mut parts, "getting an access token"),
        Phase::Token => plain(&mut parts, "starting the export"),
        Phase::KickedOff => plain(&mut parts, "export started; waiting for the server"),
        Phase::Resumed => plain(&mut parts, "resuming the export in flight"),
        Phase::Waiting { progress, export_elapsed, at, next_at } => {
            parts.insert(0, fixed(spinner(v, now).to_string(), 0));
            let waited = *export_elapsed + now.saturating_duration_since(*at);
            let what = if layout.narrow() { "waiting" } else { "waiting for the server" };
            parts.push(fixed(format!("{what} {}", units::clock(waited)), 0));
            if let Some(p) = progress.as_deref().filter(|p| !p.trim().is_empty()) {
                let p = format!("· {}", p.trim());
                let min = width(&p).min(24);
                parts.push(shrink(p, 1, min));
            }
            let next = next_at.saturating_duration_since(now);
            let check =
                if next.is_zero() { "checking".to_string() } else { format!("next check in {}", units::wait(next)) };
            parts.push(fixed(format!("· {check}"), 3));
        }
        Phase::Retrying { what, attempt, of, until, reason } => {
            parts.insert(0, fixed(spinner(v, now).to_string(), 0));
            let left = until.saturating_duration_since(now);
            parts.push(fixed(format!("retrying {what} ({attempt}/{of}) in {}", units::wait(left)), 0).styled(YELLOW));
            parts.push(shrink(format!("· {reason}"), 1, 8));
            parts.push(fixed(elapsed, 3));
        }
        Phase::Downloading => {
            parts.insert(0, fixed(spinner(v, now).to_string(), 0));
            let c = v.counters();
            let frac = if c.sizes_known && c.bytes_known > 0 {
                c.bytes_done as f64 / c.bytes_known as f64
            } else if c.files > 0 {
                c.files_done as f64 / c.files as f64
            } else {
                0.0
            };
            parts.push(bar(frac, 3, 10, 30));
            parts.push(fixed(format!("{}/{} files", c.files_done, c.files), 0));
            parts.push(fixed(sizes(&c), 1));
            if let Some(r) = v.rate(now) {
                parts.push(fixed(units::rate(r), 4));
            }
            if let Some((eta, exact)) = v.eta(now) {
                let tilde = if exact { "" } else { "~" };
                parts.push(fixed(format!("ETA {tilde}{}", units::clock(eta)), 2));
            }
            if c.failed > 0 {
                parts.push(fixed(format!("{} failed", c.failed), 0).styled(RED));
            }
            if let Some(extra) = extra_files(&c) {
                parts.push(fixed(extra, 6));
            }
            parts.push(fixed(elapsed, 5));
        }
    }
    fit(parts, layout)
}

/// `12.3/40.1 MiB`, or `12.3/40.1+ MiB` while some sizes are not known yet.
fn sizes(c: &Counters) -> String {
    let s = units::pair(c.bytes_done, c.bytes_known);
    if c.sizes_known {
        return s;
    }
    match s.rsplit_once(' ') {
        Some((nums, unit)) => format!("{nums}+ {unit}"),
        None => s,
    }
}

/// `+1 error file`, `+2 error files, 1 deleted`: the files that are not data, counted apart.
fn extra_files(c: &Counters) -> Option<String> {
    let mut bits = Vec::new();
    if c.error_files > 0 {
        bits.push(format!("+{} error file{}", c.error_files, if c.error_files == 1 { "" } else { "s" }));
    }
    if c.deleted_files > 0 {
        bits.push(format!("+{} deleted", c.deleted_files));
    }
    (!bits.is_empty()).then(|| bits.join(", "))
}

/// File lines start under the header's label (past the spinner column).
fn indent(v: &JobView, layout: &Layout) -> Vec<Part> {
    let pad = " ".repeat(1 + width(layout.sep()));
    if layout.labelled_files { vec![fixed(format!("{pad}{}", layout.label(&v.job)), 0)] } else { vec![fixed(pad, 0)] }
}

/// A message printed above the bars: `job  text`, the job's name where the bars have it, wrapped at spaces to the width, continuation lines
/// under the text, so nothing wraps mid-word or runs under the job's name.
pub fn message(job: &str, text: &str, layout: &Layout, color: bool) -> String {
    let pad = " ".repeat(1 + width(layout.sep()));
    let label = layout.label(job);
    let indent = width(&pad) + width(&label) + 2;
    let room = layout.width.saturating_sub(indent).max(20);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && width(&line) + 1 + width(word) > room {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    let label = if color { format!("\x1b[{BOLD}m{label}\x1b[0m") } else { label };
    let mut out = format!("{pad}{label}  {}", lines[0]);
    for l in &lines[1..] {
        out.push('\n');
        out.push_str(&" ".repeat(indent));
        out.push_str(l);
    }
    out
}

fn file_line(v: &JobView, f: &FileView, layout: &Layout) -> String {
    let path_w = if layout.wide() {
        30
    } else if layout.narrow() {
        18
    } else {
        24
    };
    let size_w = if layout.narrow() { 13 } else { 15 };
    let mut parts = indent(v, layout);
    parts.push(fixed(format!("{:<path_w$}", cut(&f.path, path_w)), 0));
    if let Some(reason) = &f.retrying {
        parts.push(shrink(format!("retrying: {reason}"), 0, 12).styled(YELLOW));
        return fit(parts, layout);
    }
    match f.total {
        Some(t) => {
            parts.push(fixed(format!("{:>size_w$}", units::pair(f.pos, t)), 1));
            let frac = if t == 0 { 1.0 } else { f.pos as f64 / t as f64 };
            parts.push(bar(frac, 3, 8, 24));
            parts.push(fixed(format!("{:>3.0}%", (frac * 100.0).min(100.0).floor()), 2));
        }
        None => parts.push(fixed(format!("{:>size_w$}", units::bytes(f.pos)), 1)),
    }
    fit(parts, layout)
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
