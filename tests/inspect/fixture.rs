//! Small exports built by hand: a run folder as `oneup-bulk run` writes it (run.json, manifest.json,
//! error/), gzip, and the report rendered as a person reads it.

use std::io::Write;
use std::path::Path;

use oneup_bulk::inspect::InspectOptions;

pub use crate::support::sha256_hex as sha;

pub const PATIENTS: &str = concat!(
    r#"{"resourceType":"Patient","id":"1","meta":{"lastUpdated":"2024-01-02T00:00:00Z"}}"#,
    "\n",
    r#"{"resourceType":"Patient","id":"2","meta":{"lastUpdated":"2024-03-04T00:00:00Z"}}"#,
    "\n",
);
pub const COVERAGE: &str = concat!(
    r#"{"resourceType":"Coverage","id":"c1","beneficiary":{"reference":"Patient/1"},"payor":[{"reference":"Organization/o1"}]}"#,
    "\n",
    r#"{"resourceType":"Coverage","id":"c2","beneficiary":{"reference":"Patient/404"}}"#,
    "\n",
);
pub const ERRORS: &str = concat!(
    r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"gone"}]}"#,
    "\n",
    r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"gone"}]}"#,
    "\n",
);

/// A run folder as `oneup-bulk run` writes it, with run.json and manifest.json.
pub fn run_folder(dir: &Path) {
    run_folder_with(dir, true, &[]);
}

/// [`run_folder`] with run.json's `complete` and `problems` (messages) as given.
pub fn run_folder_with(dir: &Path, complete: bool, problems: &[&str]) {
    std::fs::create_dir_all(dir.join("error")).unwrap();
    std::fs::write(dir.join("Patient.ndjson"), PATIENTS).unwrap();
    std::fs::write(dir.join("Coverage.ndjson"), COVERAGE).unwrap();
    std::fs::write(dir.join("error/OperationOutcome.ndjson"), ERRORS).unwrap();
    let file = |kind: &str, t: &str, path: &str, body: &str, count: Option<u64>| {
        serde_json::json!({"kind": kind, "type": t, "url": format!("https://s/{path}"), "path": path,
            "expected_count": count, "lines": body.lines().count(), "bytes": body.len(), "sha256": sha(body.as_bytes()),
            "invalid_lines": 0, "wrong_type_lines": 0})
    };
    let problems: Vec<_> =
        problems.iter().map(|m| serde_json::json!({"file": "Patient.ndjson", "line": null, "message": m})).collect();
    let run = serde_json::json!({"tool": "oneup-bulk test", "job": {"name": "t", "file": null, "access": "bulk-data", "fhir_base": "https://s/"},
        "request": "https://s/$export", "status_url": "https://s/status", "transactionTime": "2024-05-01T00:00:00Z", "run_id": "r",
        "started": "x", "manifest_received": "x", "finished": "x", "since": null,
        "files": [file("output", "Patient", "Patient.ndjson", PATIENTS, Some(2)), file("output", "Coverage", "Coverage.ndjson", COVERAGE, Some(2)),
                  file("error", "OperationOutcome", "error/OperationOutcome.ndjson", ERRORS, None)],
        "totals": {"files": 2, "resources": 4, "bytes": 0, "error_files": 1, "server_errors": 2, "seconds": 0.1},
        "problems": problems, "complete": complete});
    std::fs::write(dir.join("run.json"), serde_json::to_vec(&run).unwrap()).unwrap();
    let manifest = serde_json::json!({"transactionTime": "2024-05-01T00:00:00Z", "requiresAccessToken": true,
        "output": [{"type": "Patient", "url": "https://s/p", "count": 2}, {"type": "Coverage", "url": "https://s/c", "count": 2}],
        "error": [{"type": "OperationOutcome", "url": "https://s/e"}]});
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
}

pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body).unwrap();
    gz.finish().unwrap()
}

pub fn opts(p: &Path) -> InspectOptions {
    InspectOptions { paths: vec![p.to_path_buf()], threads: 2, ..Default::default() }
}

pub fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_oneup-bulk"));
    c.env_remove("RUST_LOG").env("NO_COLOR", "1");
    c
}
