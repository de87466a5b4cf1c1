//! Job files: [`raw`] (serde, no I/O; the one list of keys) → [`resolve`] (env, files, URLs, defaults,
//! cross-field rules) → [`Job`]. Enumerations are declared once with their names in [`choice`].
//! Problems come back as a [`JobError`] that renders like a compiler diagnostic, with positions from
//! [`locate`].

pub mod choice;
pub mod diag;
pub mod fhir_types;
pub mod locate;
pub mod model;
pub mod overrides;
pub mod raw;
pub mod resolve;

pub use diag::{Diagnostic, JobError, Severity};
pub use model::*;
pub use overrides::Overrides;
pub use resolve::{Env, Lint, lint, load, parse, summary};
