//! Job files: `raw` (serde, no I/O) → `resolve` (env, files, URLs, defaults, cross-field rules) → [`Job`].
//! Problems come back as a [`JobError`] that renders like a compiler diagnostic.

pub mod diag;
pub mod model;

pub use diag::{Diagnostic, JobError};
pub use model::*;

/// Placeholder until the job-file parser lands.
pub fn load(
    _path: &std::path::Path,
    _env: &dyn Fn(&str) -> Option<String>,
) -> Result<Job, JobError> {
    unimplemented!()
}

pub fn summary(_job: &Job) -> String {
    unimplemented!()
}
