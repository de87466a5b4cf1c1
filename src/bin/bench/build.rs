//! `--build-times`: the cold build of the README's first command, in a fresh target folder each time
//! (so nothing is reused), under `nice`: `cargo build --release` and `cargo build` (dev profile).
//! Run from the repository root; takes minutes.

use std::process::Command;
use std::time::Instant;

pub fn print_cold_builds() {
    println!("| cold build | wall s | CPU s (user + sys) |\n|---|---:|---:|");
    for (name, args) in [("cargo build --release --locked", &["--release"][..]), ("cargo build --locked", &[][..])] {
        let target = tempfile::tempdir().expect("temp dir");
        let report = tempfile::NamedTempFile::new().expect("temp file");
        let t = Instant::now();
        let st = Command::new("/usr/bin/time")
            .arg("-o")
            .arg(report.path())
            .args(["-f", "%U %S", "nice", "cargo", "build", "--locked", "--quiet"])
            .args(args)
            .env("CARGO_TARGET_DIR", target.path())
            .status();
        let wall = t.elapsed().as_secs_f64();
        let cpu: f64 = std::fs::read_to_string(report.path())
            .unwrap_or_default()
            .lines()
            .last()
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|x| x.parse::<f64>().ok())
            .sum();
        match st {
            Ok(s) if s.success() => println!("| {name} | {wall:.0} | {cpu:.0} |"),
            other => println!("| {name} | failed: {other:?} | |"),
        }
    }
}
