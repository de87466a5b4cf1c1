//! Raw job → [`Job`]: `${VAR}` from the environment, secret, key and CA files read and checked, URLs
//! parsed, durations and sizes, header names and values, the access type's defaults, and the rules
//! between fields. Every check `run` relies on happens here, so `validate` finds it with its line.
//! Every problem is collected, with its place in the file, before any is reported: unknown keys, values
//! of the wrong type and resolution errors alike.
//!
//! The steps, one file each: `document` (YAML text → one mapping, not-a-job detection, unknown
//! keys), `values` (one value: `${VAR}`, choices, URLs, durations, sizes, files), `sections`
//! (the top level, `poll`, `download`, `headers`, `tls`), `oneup` (1up's tenant and realm → URLs),
//! `auth`, `member_match`, `export`, `patient` (the keys of `access: patient-access`).
//!
//! Paths inside a job (`client_secret_file`, `private_key_file`, `member_match.parameters_file`,
//! `tls.ca_file`) are relative to the job file's folder, so a job and its files move together;
//! `download.dir` is relative to the working directory, like `--out`.

mod auth;
mod document;
mod export;
mod member_match;
mod oneup;
mod patient;
mod sections;
mod values;

use std::collections::HashSet;
use std::path::Path;

use super::diag::{Diagnostic, JobError};
use super::locate::Locator;
use super::model::*;
use super::raw::Field;

pub use export::PDEX_PREFIX;
pub use values::parse_size;

/// Where `${VAR}` values come from.
#[derive(Clone, Copy)]
pub enum Env<'a> {
    /// Looked up by name (the process environment, or a test's table).
    Vars(&'a dyn Fn(&str) -> Option<String>),
    /// Not read (`validate --no-env`, for CI without secrets): each `${VAR}` is a note, and the value
    /// holding it is not checked.
    Unchecked,
}

/// What `validate` learns about one file.
#[derive(Debug)]
pub enum Lint {
    /// A job file without errors.
    Job {
        /// The [`summary`] line; `None` when a value that was not checked is needed to build the job
        /// (`fhir_base: ${BASE}` under [`Env::Unchecked`]).
        summary: Option<String>,
        /// Values not checked ([`Env::Unchecked`]).
        notes: Vec<Diagnostic>,
        /// Things that work but should change ([`Job::warnings`]).
        warnings: Vec<String>,
        /// Lines to show under the summary: the URLs derived from `oneup:` ([`derived_urls`]).
        details: Vec<String>,
    },
    /// YAML that is not a job file (a Kubernetes manifest): skipped, with what it looks like.
    NotAJob { what: String },
}

/// Reads and resolves a job file.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Job, JobError> {
    let text = read(path)?;
    let mut job = parse(&text, &path.display().to_string(), base_dir(path), env)?;
    job.source = Some(path.to_path_buf());
    if job.name.is_empty() {
        job.name = name_from_stem(path);
    }
    Ok(job)
}

/// Resolves job text. `file_label` names the file in messages; `base_dir` anchors relative paths.
/// A job parsed without a file gets an empty name unless it sets one (`load` fills the stem in).
pub fn parse(
    text: &str,
    file_label: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Job, JobError> {
    match resolve(text, file_label, base_dir, Env::Vars(env)) {
        Outcome::Job(job, _) => Ok(*job),
        Outcome::NotAJob(what) => Err(document::not_a_job_error(file_label, &what)),
        Outcome::Invalid(diagnostics) | Outcome::Incomplete(diagnostics) => Err(JobError { diagnostics }),
    }
}

/// Checks a job file for `validate`: like [`load`], but a file that is not a job file is told apart,
/// and with [`Env::Unchecked`] variables are notes instead of errors.
pub fn lint(path: &Path, env: Env) -> Result<Lint, JobError> {
    let text = read(path)?;
    Ok(match resolve(&text, &path.display().to_string(), base_dir(path), env) {
        Outcome::Job(mut job, notes) => {
            if job.name.is_empty() {
                job.name = name_from_stem(path);
            }
            let details = derived_urls(&job);
            Lint::Job { summary: Some(summary(&job)), notes, warnings: job.warnings, details }
        }
        Outcome::Incomplete(notes) => Lint::Job { summary: None, notes, warnings: Vec::new(), details: Vec::new() },
        Outcome::NotAJob(what) => Lint::NotAJob { what },
        Outcome::Invalid(diagnostics) => return Err(JobError { diagnostics }),
    })
}

fn read(path: &Path) -> Result<String, JobError> {
    std::fs::read_to_string(path).map_err(|e| JobError {
        diagnostics: vec![Diagnostic::file(&path.display().to_string(), format!("cannot read the job file: {e}"))],
    })
}

fn base_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// `jobs/Provider Nightly.yaml` → `provider-nightly`.
pub fn name_from_stem(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().to_lowercase()).unwrap_or_default();
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' }).collect();
    if name.is_empty() { "job".into() } else { name }
}

/// One line: name, access, level, operation, types, where outputs go.
pub fn summary(job: &Job) -> String {
    if let Some(p) = &job.patient {
        return crate::patient::summary(job, p);
    }
    let level = match (&job.export.level, &job.export.group_id) {
        (Level::Group, Some(g)) => format!("group {g}"),
        (l, _) => l.as_str().to_string(),
    };
    let op = match job.export.operation {
        Operation::Export => "$export".to_string(),
        Operation::DavinciDataExport => format!(
            "$davinci-data-export {}",
            job.export.export_type.as_deref().unwrap_or("").trim_start_matches(PDEX_PREFIX)
        ),
    };
    let types = if job.export.types.is_empty() { "all types".to_string() } else { job.export.types.join(",") };
    let mm = match &job.member_match {
        Some(m) => format!(" after ${}", m.operation.as_str()),
        None => String::new(),
    };
    format!(
        "{}: {} {} {}{} [{}] → {}",
        job.name,
        job.access.as_str(),
        level,
        op,
        mm,
        types,
        job.download.dir.join(&job.name)
    )
}

/// Where a 1up job's URLs come from, one line each: `fhir_base: <url> (from oneup.tenant bison)`, or
/// `(written in the job; oneup.tenant not used)` when an explicit URL wins. Empty without `oneup:`.
pub fn derived_urls(job: &Job) -> Vec<String> {
    let Some(o) = &job.oneup else {
        return Vec::new();
    };
    let from = |derived: bool, key: &str, name: &Option<String>| match (derived, name) {
        (true, Some(n)) => format!("from oneup.{key} {n}"),
        (true, None) => format!("no oneup.realm: 1up's sandbox realm {ONEUP_SANDBOX_REALM}"),
        (false, Some(_)) => format!("written in the job; oneup.{key} not used"),
        (false, None) => "written in the job".to_string(),
    };
    let mut lines = vec![format!("fhir_base: {} ({})", job.fhir_base, from(o.fhir_base_derived, "tenant", &o.tenant))];
    match (&job.auth.token_url, job.auth.method) {
        (_, AuthMethod::ClientHeaders) => lines.push(format!(
            "credentials: client headers, to {} only (no token request)",
            job.fhir_base.origin().ascii_serialization()
        )),
        (Some(t), _) => lines.push(format!("token_url: {t} ({})", from(o.token_url_derived, "realm", &o.realm))),
        (None, _) => {}
    }
    lines
}

/// How resolving one text ended.
enum Outcome {
    /// Valid; notes for values not checked.
    Job(Box<Job>, Vec<Diagnostic>),
    /// No errors, but values not checked are needed to build the job; the notes say which.
    Incomplete(Vec<Diagnostic>),
    /// At least one error (notes may come along).
    Invalid(Vec<Diagnostic>),
    NotAJob(String),
}

fn resolve(text: &str, file_label: &str, base_dir: &Path, env: Env) -> Outcome {
    let loc = Locator::new(text);
    let mut r = Resolver {
        file: file_label,
        loc: &loc,
        base: base_dir,
        env,
        diags: Vec::new(),
        warnings: Vec::new(),
        loopback_base: false,
        explained: HashSet::new(),
        unchecked: HashSet::new(),
    };
    let raw = match r.document(text) {
        Ok(document::Document::Job(raw)) => raw,
        Ok(document::Document::NotAJob(what)) => return Outcome::NotAJob(what),
        Err(()) => return Outcome::Invalid(r.diags),
    };
    let job = r.job(*raw);
    let diags = r.diags;
    match job {
        _ if diags.iter().any(Diagnostic::is_error) => Outcome::Invalid(diags),
        Some(job) => Outcome::Job(Box::new(job), diags),
        None if !diags.is_empty() => Outcome::Incomplete(diags),
        // Every path that leaves a part unbuilt reports why; this is a bug guard, not a message users see.
        None => Outcome::Invalid(vec![Diagnostic::file(file_label, "the job could not be resolved")]),
    }
}

/// The hint under every value of the wrong type.
const TYPE_HINT: &str = "check the value's type: text, a number, true/false, or a [list]";

struct Resolver<'a> {
    file: &'a str,
    loc: &'a Locator,
    base: &'a Path,
    env: Env<'a>,
    diags: Vec<Diagnostic>,
    warnings: Vec<String>,
    loopback_base: bool,
    /// Paths an earlier diagnostic already accounts for: a misspelt key's suggestion, a section of the
    /// wrong type. "missing `x`" is not said again for them.
    explained: HashSet<String>,
    /// Values holding a `${VAR}` that was not read ([`Env::Unchecked`]); rules that need them are skipped.
    unchecked: HashSet<String>,
}

impl Resolver<'_> {
    /// An error at the value of `path` (or the nearest enclosing key).
    fn err(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        let pos = self.loc.value(path);
        self.diags.push(Diagnostic::at(self.file, self.loc, pos, message, hint));
    }

    /// "missing …" for the required key `key`, reported at `at`, unless an earlier diagnostic already
    /// explains its absence (the key misspelt, its section of the wrong type).
    fn missing(&mut self, key: &str, at: &str, message: impl Into<String>, hint: Option<String>) {
        let mut p = key;
        loop {
            if self.explained.contains(p) {
                return;
            }
            match p.rsplit_once('.') {
                Some((parent, _)) => p = parent,
                None => break,
            }
        }
        self.err(at, message, hint);
    }

    /// The value of a field; a wrong type is reported at the value, and `None` returned.
    fn take<T>(&mut self, path: &str, f: Field<T>) -> Option<T> {
        match f {
            Field::Absent => None,
            Field::Given(t) => Some(t),
            Field::WrongType(why) => {
                self.err(path, format!("{path}: {why}"), Some(TYPE_HINT.into()));
                self.explained.insert(path.to_string());
                None
            }
        }
    }

    /// True when every one of `paths` was resolved or absent, i.e. none holds a value not checked.
    fn checked(&self, paths: &[&str]) -> bool {
        paths.iter().all(|p| !self.unchecked.contains(*p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_become_names() {
        assert_eq!(name_from_stem(Path::new("jobs/Provider Nightly.yaml")), "provider-nightly");
    }
}
