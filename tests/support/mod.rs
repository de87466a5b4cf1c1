//! Helpers every test binary uses (`#[path]`-included by each): checksums computed here, apart from the
//! library's own, and files written into a test's temp folder.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

/// SHA-256 of `b` as lowercase hex, as `run.json` and `inspect` record it.
pub fn sha256_hex(b: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `text` to `dir/name` (a job file, a fixture) and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    p
}

/// A command's stdout, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's stderr, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
