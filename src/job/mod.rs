//! Job files: [`raw`] (serde, no I/O) → [`resolve`] (env, files, URLs, defaults, cross-field rules) →
//! [`Job`]. Problems come back as a [`JobError`] that renders like a compiler diagnostic, with
//! positions from [`locate`].

pub mod diag;
pub mod fhir_types;
pub mod locate;
pub mod model;
pub mod overrides;
pub mod raw;
pub mod resolve;

pub use diag::{Diagnostic, JobError};
pub use model::*;
pub use overrides::Overrides;
pub use resolve::{load, parse, summary};
