//! Job-file diagnostics rendered like a compiler's: `error: …`, `--> file:line:col`, the line, a caret, a hint.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    /// The file as the user named it.
    pub file: String,
    /// 1-based; 0 when the problem has no position (e.g. a file that cannot be read).
    pub line: usize,
    pub column: usize,
    pub source_line: Option<String>,
    pub hint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub diagnostics: Vec<Diagnostic>,
}

impl std::error::Error for JobError {}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", d.message)?;
            if d.line > 0 {
                write!(f, "\n  --> {}:{}:{}", d.file, d.line, d.column)?;
            } else {
                write!(f, "\n  --> {}", d.file)?;
            }
            if let Some(h) = &d.hint {
                write!(f, "\n  = help: {h}")?;
            }
        }
        Ok(())
    }
}
