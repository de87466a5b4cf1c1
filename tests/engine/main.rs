//! End-to-end tests of `run` against the in-process sandbox on 127.0.0.1: the flow, the token rules,
//! the faults and the resume paths. One binary; modules by theme.

mod harness;

mod display;
mod faults;
mod flow;
mod logs;
mod s3;
mod security;
mod servers;
mod store;
mod tls;
mod unattended;
