//! oneup-bulk: run FHIR Bulk Data exports described in YAML job files.
//!
//! The data flows job → token → kick-off → poll → manifest → downloads → run record, and the modules say so:
//! [`job`] (files to a validated [`job::Job`]), [`auth`] (tokens), [`export`] (kick-off, poll, manifest),
//! [`download`] (streaming to disk with [`ndjson`] line checks), [`record`] (run folder and run.json),
//! [`state`] (checkpoint, lock, resume), all driven by [`app`]; [`patient`] is the Patient Access flow
//! (one member's data, after `authorize`). [`sandbox`] is a local Bulk Data server
//! for the demo and the tests.

pub mod app;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod digest;
pub mod download;
pub mod error;
pub mod eventlog;
pub mod export;
pub mod fhir;
pub mod holder;
pub mod http;
pub mod inspect;
pub mod instant;
pub mod invocation;
pub mod job;
pub mod jwt;
pub mod ndjson;
pub mod oauth;
pub mod patient;
pub mod private_fs;
pub mod progress;
pub mod record;
pub mod redact;
pub mod sandbox;
pub mod scope;
pub mod session;
pub mod soak;
pub mod state;
pub mod store;

pub use error::{Error, Result};
