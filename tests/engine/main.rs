//! End-to-end tests of `run` against the in-process sandbox on 127.0.0.1: the flow, the token rules,
//! the faults, the resume and recovery paths, timeouts and warnings. One binary; modules by theme.

mod harness;
#[path = "../support/mod.rs"]
mod support;

mod azure;
mod chaos;
mod display;
mod expiry;
mod faults;
mod field;
mod flow;
mod logs;
mod oneup;
mod patient;
mod payer;
mod recovery;
mod s3;
mod screens;
mod security;
mod servers;
mod silent;
mod store;
mod timeouts;
mod tls;
mod unattended;
