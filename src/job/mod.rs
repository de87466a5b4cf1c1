//! Job files: `raw` (serde, no I/O) → `resolve` (env, files, URLs, defaults, cross-field rules) → [`Job`].
//! Problems come back as a [`JobError`] that renders like a compiler diagnostic.

pub mod diag;
pub mod model;

pub use diag::{Diagnostic, JobError};
pub use model::*;
