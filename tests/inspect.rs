//! `inspect` on exports built here (by hand in `fixture`, or by a real run against the in-process
//! sandbox): what it counts, what it compares, and that it never says "whole and valid" when the
//! export is not (issues 6 and 13). What a person reads is compared whole, as insta snapshots in
//! `tests/snapshots/inspect__*.snap`, with temp folders, run ids, times and speeds filtered.

/// Filters for what changes from one run to the next.
pub const FILTERS: &[(&str, &str)] = &[
    (r"[^\s`(]*\.tmp[A-Za-z0-9]+", "[TMP]"),
    (r"\d{8}T\d{6}(\.\d+)?Z", "[RUN-ID]"),
    (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", "[TIME]"),
    (r"read in \d+\.\d+ s \(\d+ MB/s\)", "read in [SECONDS] s ([SPEED])"),
    (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
];

/// `tests/snapshots/inspect__<name>.snap`, from any module of this test binary, filtered.
macro_rules! snap {
    ($name:expr, $value:expr) => {
        insta::with_settings!({
            snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots"),
            prepend_module_to_snapshot => false,
            filters => crate::FILTERS.to_vec(),
        }, {
            insta::assert_snapshot!(concat!("inspect__", $name), $value)
        })
    };
}

// This file is the crate root: its modules sit in `tests/inspect/` (the harness is the engine tests').
#[path = "inspect/basics.rs"]
mod basics;
#[path = "inspect/binary.rs"]
mod binary;
#[path = "inspect/bucket.rs"]
mod bucket;
#[path = "inspect/cases.rs"]
mod cases;
#[path = "inspect/fixture.rs"]
mod fixture;
#[path = "engine/harness.rs"]
#[allow(unused_imports)] // the engine tests use all of it; these use part
mod harness;
#[path = "inspect/runs.rs"]
mod runs;
#[path = "engine/s3.rs"]
mod s3;
#[path = "support/mod.rs"]
mod support;
