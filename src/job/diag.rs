//! Job-file diagnostics rendered like a compiler's: `error: …`, `--> file:line:col`, the line, a caret
//! under the column, and a hint. All problems of a file are collected before anything is reported.
//! A note (`validate --no-env`: a value not checked) renders the same way but is not an error.

use std::fmt;

use super::locate::{Locator, Pos};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    /// Information that does not make the file invalid.
    Note,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    /// The file as the user named it.
    pub file: String,
    /// 1-based; 0 when the problem has no position (e.g. a file that cannot be read).
    pub line: usize,
    pub column: usize,
    pub source_line: Option<String>,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A problem at `pos` in `file` (whose text `loc` indexes).
    pub fn at(file: &str, loc: &Locator, pos: Option<Pos>, message: impl Into<String>, hint: Option<String>) -> Self {
        let (line, column) = pos.map_or((0, 0), |p| (p.line, p.column));
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            file: file.to_string(),
            line,
            column,
            source_line: loc.line(line).map(str::to_string),
            hint,
        }
    }

    /// A problem with the file as a whole.
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            file: file.to_string(),
            line: 0,
            column: 0,
            source_line: None,
            hint: None,
        }
    }

    /// The same, as a note.
    pub fn note(self) -> Self {
        Diagnostic { severity: Severity::Note, ..self }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// One or more problems in one or more job files (at least one an error; notes may come along).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub diagnostics: Vec<Diagnostic>,
}

impl std::error::Error for JobError {}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Note => "note",
        };
        write!(f, "{label}: {}", self.message)?;
        if self.line == 0 {
            return write!(f, "\n  --> {}", self.file).and_then(|_| hint(f, &self.hint, 2));
        }
        let gutter = self.line.to_string().len();
        write!(f, "\n{:gutter$}--> {}:{}:{}", "", self.file, self.line, self.column)?;
        if let Some(src) = &self.source_line {
            let caret_pad: String =
                src.chars().take(self.column.saturating_sub(1)).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            write!(f, "\n{:gutter$} |\n{} | {}\n{:gutter$} | {}^", "", self.line, src, "", caret_pad)?;
        }
        hint(f, &self.hint, gutter)
    }
}

fn hint(f: &mut fmt::Formatter<'_>, h: &Option<String>, gutter: usize) -> fmt::Result {
    match h {
        Some(h) => write!(f, "\n{:gutter$} = help: {h}", ""),
        None => Ok(()),
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f, "\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// `did you mean "x"?` for the closest candidate, when one is close enough.
pub fn did_you_mean(word: &str, candidates: &[&str]) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// The candidate closest to `word`, when one is close enough to be what was meant.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The hint for a value that is not one of `allowed`: the nearest name when one is close, else the list.
pub fn choice_hint(word: &str, allowed: &[&str]) -> String {
    did_you_mean(word, allowed).unwrap_or_else(|| format!("allowed: {}", allowed.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_a_compiler() {
        let loc = Locator::new("auth:\n  clent_id: x\n");
        let d = Diagnostic::at(
            "jobs/x.yaml",
            &loc,
            loc.key("auth.clent_id"),
            "unknown key `clent_id` in `auth`",
            did_you_mean("clent_id", &["client_id", "scope"]),
        );
        assert_eq!(
            d.to_string(),
            "error: unknown key `clent_id` in `auth`\n --> jobs/x.yaml:2:3\n  |\n2 |   clent_id: x\n  |   ^\n  = help: did you mean `client_id`?"
        );
    }

    #[test]
    fn suggestions_only_when_close() {
        assert_eq!(did_you_mean("tpyes", &["types", "since"]).as_deref(), Some("did you mean `types`?"));
        assert_eq!(did_you_mean("zzz", &["types", "since"]), None);
    }

    #[test]
    fn one_hint_for_a_bad_choice() {
        assert_eq!(choice_hint("sytem", &["system", "patient", "group"]), "did you mean `system`?");
        assert_eq!(choice_hint("zzz", &["system", "patient", "group"]), "allowed: system, patient, group");
    }
}
